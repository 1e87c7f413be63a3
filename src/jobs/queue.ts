/**
 * The one in-process queue in front of the engine.
 *
 * - Bounded: at most `maxWaiting` jobs wait; beyond that a submit is refused with
 *   "busy, try again in ~N s" (an estimate from recent batch times).
 * - Batched: jobs that arrive together (within `batchWindowMs` of the first, up to `maxBatch`)
 *   are sampled in one composeMany pass. A batch only takes jobs of similar length (within a factor
 *   of two of the first job's notes), so a 16-note request never waits for a 2000-note one: the
 *   rule is src/jobs/batching.ts's, which the Redis worker (src/scaleout/worker.ts) applies too.
 * - Rate limited: per user, at most `userMaxOpen` jobs waiting or running and `userPerMinute`
 *   submits per rolling minute; per server, `serverPerMinute` submits per rolling minute.
 * - Every state change is written to the JobStore; listeners hear positions, stages and the end.
 * - A reply address's token (a Discord interaction token) leaves the record when the job ends,
 *   or once it can no longer be used if the job is still open then (src/jobs/replyToken.ts).
 * - stop(): refuses new jobs, leaves the waiting ones queued in the store (a restart re-queues
 *   them), and waits (bounded) for the batch in flight.
 * - With a remote backend (Redis: backend.remoteQueue), jobs are handed over as soon as their
 *   batching window closes, since they wait in Redis with every other bot's jobs: the places
 *   ("queued #n") and the queue bound then count the jobs waiting there, as the backend reports.
 *
 * A class because it has a lifecycle (a pump loop, timers, stop).
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MUSIC_MAX_SECONDS, type ComposeRequest, type ComposeResult, type ComposeStage } from '../engine/types.ts';
import { fitAudio, fitUploads, formatMegabytes, type FittedAudio, type UploadKind } from './audioFit.ts';
import { takeBatch } from './batching.ts';
import { removeJobOutputs } from './cleanup.ts';
import type { ComposeBackend } from './engineThread.ts';
import type { JobStore } from './store.ts';
import type { JobInput, JobParams, JobRecord } from './types.ts';
import { ANY_KEY, parseKey } from '../tokens/key.ts';
import { tenantOf } from './tenant.ts';
import { replyTokenExpiresAt, withoutReplyToken } from './replyToken.ts';
import { redactUrls } from '../redact.ts';

export interface QueueLimits {
  /** Most jobs waiting (not counting the batch being composed). */
  maxWaiting: number;
  /** Most jobs sampled in one pass. */
  maxBatch: number;
  /** How long the first job of a batch waits for others to join, in ms. */
  batchWindowMs: number;
  /** Most jobs one user may have waiting or running at once. */
  userMaxOpen: number;
  /** Most submits per user per rolling minute. */
  userPerMinute: number;
  /** Most submits per server (or DM channel) per rolling minute. */
  serverPerMinute: number;
  /** Longest piece composed, in seconds of music (NOCTURNE_MAX_MUSIC_MINUTES); longer ones are refused before rendering. */
  maxMusicSeconds?: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = Object.freeze({
  maxWaiting: 100,
  maxBatch: 8,
  batchWindowMs: 40,
  userMaxOpen: 2,
  userPerMinute: 6,
  serverPerMinute: 60,
  maxMusicSeconds: MUSIC_MAX_SECONDS,
});

export interface JobListener {
  /** 1-based place among the waiting jobs (1 = next). Called on submit and when it moves. */
  position?(place: number, etaSeconds: number): void;
  stage?(stage: Exclude<ComposeStage, 'done'>): void;
  /** The job is done or failed: see record.state, record.outputs, record.error. */
  finished(record: JobRecord): void;
  /** The bot is shutting down before this job started; it stays queued for the next start. */
  paused?(record: JobRecord): void;
}

/** A submit the queue will not take now: the message is one line for the user. */
export class QueueRefusal extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
    this.name = 'QueueRefusal';
  }
}

export interface QueueStats {
  waiting: number;
  composing: number;
  finishedSinceStart: number;
  failedSinceStart: number;
  /** Recent seconds per batch (exponential average). */
  batchSeconds: number;
  /** Mean jobs per batch since start. */
  meanBatchSize: number;
  /** Sampling passes and the jobs they held, since start. */
  batches: number;
  batchedJobs: number;
  maxWaiting: number;
}

interface Entry {
  record: JobRecord;
  listener: JobListener;
}

const MINUTE_MS = 60_000;

/** A job's key, tempo, score and whether the seed opens the piece, as the engine takes them (the key by index; "any" is no key). */
export function composeControls(p: JobParams): Pick<ComposeRequest, 'key' | 'tempoBpm' | 'score' | 'includeSeed'> {
  const key = p.key === undefined ? undefined : parseKey(p.key);
  if (p.key !== undefined && key === undefined) throw new Error(`the stored key ${JSON.stringify(p.key)} names no key`);
  return { key: key === ANY_KEY ? undefined : key, tempoBpm: p.tempoBpm, score: p.score, ...(p.includeSeed ? { includeSeed: true } : {}) };
}

function safely(f: () => void, log: (line: string) => void): void {
  try {
    f();
  } catch (e) {
    log(`job listener failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export class JobQueue {
  private readonly waiting: Entry[] = [];
  private readonly open = new Map<string, number>(); // user key -> jobs waiting or running
  private readonly recent = new Map<string, number[]>(); // rate key -> submit times
  private readonly finishing = new Set<Promise<void>>();
  private readonly batchesInFlight = new Set<Promise<void>>();
  /** Per open job with a reply token: the timer that drops the token from its record when it expires. */
  private readonly tokenTimers = new Map<string, NodeJS.Timeout>();
  private current: Promise<void> | undefined;
  private composingCount = 0;
  private stopping = false;
  private abandoned = false;
  private ema = 5;
  private batches = 0;
  private batchedJobs = 0;
  private finished = 0;
  private failed = 0;
  /** The bot instance (NOCTURNE_INSTANCE) new job records name as their owner. */
  owner: string | undefined;

  constructor(
    private backend: ComposeBackend,
    private readonly store: JobStore,
    private readonly outRoot: string,
    readonly limits: QueueLimits = DEFAULT_QUEUE_LIMITS,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Jobs waiting here and, with a remote backend, in the shared queue. */
  private waitingCount(): number {
    return this.waiting.length + (this.backend.remoteWaiting?.() ?? 0);
  }

  stats(): QueueStats {
    return {
      waiting: this.waitingCount(),
      composing: this.composingCount,
      finishedSinceStart: this.finished,
      failedSinceStart: this.failed,
      batchSeconds: this.ema,
      meanBatchSize: this.batches ? this.batchedJobs / this.batches : 0,
      batches: this.batches,
      batchedJobs: this.batchedJobs,
      maxWaiting: this.limits.maxWaiting,
    };
  }

  /** Rough seconds until a job at `place` (1-based) starts. */
  etaSeconds(place: number): number {
    const batchesAhead = Math.ceil(place / this.limits.maxBatch) - 1 + (this.composingCount > 0 ? 0.5 : 0);
    return Math.max(1, Math.round(batchesAhead * this.ema + this.ema));
  }

  /**
   * Checks the limits, stores the job as 'queued' and puts it in line. Throws QueueRefusal (one
   * line for the user) when the queue is full, the user or server is over a limit, or the bot is
   * shutting down.
   */
  async submit(input: JobInput, listener: JobListener): Promise<JobRecord> {
    const userKey = `${input.who.platform}:${input.who.userId}`;
    const serverKey = `${input.who.platform}:${input.who.serverId ?? input.who.channelId}`;
    // The terminal is one local person at their own machine: only the queue bound applies.
    this.checkLimits(userKey, serverKey, input.who.platform !== 'terminal');
    // Reserve before the first await, so concurrent submits see each other.
    const now = Date.now();
    this.open.set(userKey, (this.open.get(userKey) ?? 0) + 1);
    this.remember(`user:${userKey}`, now);
    this.remember(`server:${serverKey}`, now);
    let record: JobRecord;
    try {
      const id = await this.store.freshId();
      const outDir = join(this.outRoot, id);
      let seedPath: string | undefined;
      if (input.seedMidi) {
        await mkdir(outDir, { recursive: true });
        seedPath = join(outDir, 'seed.mid');
        await writeFile(seedPath, input.seedMidi);
      }
      const stamp = new Date().toISOString();
      record = {
        id,
        kind: input.kind,
        parentId: input.parentId,
        who: input.who,
        tenant: tenantOf(input.who),
        address: input.address,
        params: { ...input.params, randomSeed: input.params.randomSeed ?? Math.floor(Math.random() * 2 ** 31) },
        seedPath,
        uploadLimitBytes: input.uploadLimitBytes,
        outDir,
        modelVersion: this.backend.info().version,
        state: 'queued',
        createdAt: stamp,
        updatedAt: stamp,
        ...(this.owner !== undefined ? { owner: this.owner } : {}),
      };
      await this.store.create(record);
    } catch (e) {
      this.release(userKey);
      throw e;
    }
    this.expireReplyToken(record);
    this.enqueue({ record, listener });
    return record;
  }

  /**
   * Puts a stored job (left open by a crash or a shutdown) back in line, without rate limits:
   * the user already waited once. Recovery runs at start, so these are normally first in line.
   */
  async requeue(record: JobRecord, listener: JobListener): Promise<JobRecord> {
    const expired = (replyTokenExpiresAt(record.address) ?? Infinity) <= Date.now();
    const updated = await this.store.update(record.id, {
      state: 'queued',
      requeues: (record.requeues ?? 0) + 1,
      modelVersion: this.backend.info().version,
      ...(expired ? { address: withoutReplyToken(record.address) } : {}),
    });
    const userKey = `${record.who.platform}:${record.who.userId}`;
    this.open.set(userKey, (this.open.get(userKey) ?? 0) + 1);
    this.expireReplyToken(updated);
    this.enqueue({ record: updated, listener });
    return updated;
  }

  /**
   * Drops the job's reply token from its record when the token stops being usable, if the job is
   * still open then (its end drops it otherwise). The timer does not keep the process alive, and
   * stop() clears it: a stopped bot's next start drops the tokens that expired meanwhile.
   */
  private expireReplyToken(record: JobRecord): void {
    const at = replyTokenExpiresAt(record.address);
    if (at === undefined) return;
    clearTimeout(this.tokenTimers.get(record.id));
    const timer = setTimeout(() => {
      this.tokenTimers.delete(record.id);
      this.store.update(record.id, { address: withoutReplyToken(record.address) }).catch((e) => this.log(`job ${record.id}: could not drop its expired reply token: ${(e as Error).message}`));
    }, Math.max(0, at - Date.now()));
    timer.unref();
    this.tokenTimers.set(record.id, timer);
  }

  /** The job ended: its record's patch drops the reply token, and the expiry timer goes. */
  private endPatch(record: JobRecord): Partial<JobRecord> {
    clearTimeout(this.tokenTimers.get(record.id));
    this.tokenTimers.delete(record.id);
    return record.address && 'token' in record.address ? { address: withoutReplyToken(record.address) } : {};
  }

  /**
   * Stops taking jobs and waits up to `graceMs` for the batch in flight (and its uploads-to-be)
   * to finish. Waiting jobs stay 'queued' in the store; their listeners hear paused().
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const timer of this.tokenTimers.values()) clearTimeout(timer);
    this.tokenTimers.clear();
    for (const entry of this.waiting.splice(0)) safely(() => entry.listener.paused?.(entry.record), this.log);
    const inFlight = Promise.allSettled([this.current, ...this.finishing]);
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([inFlight.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)))]);
    clearTimeout(timer);
    // Jobs still composing keep their open state in the store, so the next start re-queues them
    // instead of recording a failure caused only by this shutdown.
    if (!finished) this.abandoned = true;
  }

  /**
   * Composes the next batches with `backend` (a newly promoted model). Batches in flight finish
   * on the old one; resolves when they have, so the caller can close it.
   */
  async useBackend(backend: ComposeBackend): Promise<void> {
    this.backend = backend;
    await Promise.allSettled([...this.batchesInFlight]);
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  private checkLimits(userKey: string, serverKey: string, rateLimited: boolean): void {
    const l = this.limits;
    if (this.stopping) throw new QueueRefusal('the bot is restarting: try again in about a minute', 60);
    if (rateLimited) this.checkRates(userKey, serverKey);
    const waiting = this.waitingCount();
    if (waiting >= l.maxWaiting) {
      const eta = this.etaSeconds(waiting);
      throw new QueueRefusal(`busy: ${waiting} pieces are queued, try again in ~${eta} s`, eta);
    }
  }

  private checkRates(userKey: string, serverKey: string): void {
    const l = this.limits;
    const open = this.open.get(userKey) ?? 0;
    if (open >= l.userMaxOpen) {
      const eta = this.etaSeconds(this.waiting.length);
      throw new QueueRefusal(`you already have ${open} piece${open === 1 ? '' : 's'} on the way: wait for ${open === 1 ? 'it' : 'one'} to finish (~${eta} s), then ask again`, eta);
    }
    const userWait = this.windowWait(`user:${userKey}`, l.userPerMinute);
    if (userWait > 0) throw new QueueRefusal(`you asked for ${l.userPerMinute} pieces in the last minute: try again in ~${userWait} s`, userWait);
    const serverWait = this.windowWait(`server:${serverKey}`, l.serverPerMinute);
    if (serverWait > 0) throw new QueueRefusal(`this server asked for ${l.serverPerMinute} pieces in the last minute: try again in ~${serverWait} s`, serverWait);
  }

  /** Seconds until the rolling window for `key` has room, or 0 if it has room now. */
  private windowWait(key: string, perMinute: number): number {
    const now = Date.now();
    const times = (this.recent.get(key) ?? []).filter((t) => now - t < MINUTE_MS);
    this.recent.set(key, times);
    if (times.length < perMinute) return 0;
    return Math.max(1, Math.ceil((times[times.length - perMinute] + MINUTE_MS - now) / 1000));
  }

  private remember(key: string, at: number): void {
    const times = this.recent.get(key) ?? [];
    times.push(at);
    this.recent.set(key, times);
  }

  private release(userKey: string): void {
    const n = (this.open.get(userKey) ?? 1) - 1;
    if (n <= 0) this.open.delete(userKey);
    else this.open.set(userKey, n);
  }

  private enqueue(entry: Entry): void {
    this.waiting.push(entry);
    const place = this.waiting.length;
    // A remote backend reports the place in the shared queue once the job is there.
    if (!this.backend.remoteQueue) safely(() => entry.listener.position?.(place, this.etaSeconds(place)), this.log);
    this.pump();
  }

  private pump(): void {
    if (this.current || this.stopping || this.waiting.length === 0) return;
    this.current = this.runNext()
      .catch((e) => this.log(`job queue: ${e instanceof Error ? e.message : String(e)}`))
      .finally(() => {
        this.current = undefined;
        this.pump();
      });
  }

  private async runNext(): Promise<void> {
    if (this.waiting.length < this.limits.maxBatch && this.limits.batchWindowMs > 0) await sleep(this.limits.batchWindowMs);
    if (this.stopping || this.waiting.length === 0) return;
    const batch = this.takeBatch();
    if (!this.backend.remoteQueue) this.waiting.forEach((entry, i) => safely(() => entry.listener.position?.(i + 1, this.etaSeconds(i + 1)), this.log));
    await this.compose(batch);
  }

  /** The next batch (src/jobs/batching.ts: the first waiting job and the next ones of similar length). */
  private takeBatch(): Entry[] {
    const { batch, rest } = takeBatch(this.waiting, (entry) => entry.record.params.notes, this.limits.maxBatch);
    this.waiting.splice(0, this.waiting.length, ...rest);
    return batch;
  }

  /**
   * Composes one batch. Resolves once its sampling is done (the engine reports 'rendering'), so
   * the next batch can be sampled while this one's audio renders in fluidsynth processes: at most
   * two batches are in flight, one sampling and one rendering.
   */
  private async compose(batch: Entry[]): Promise<void> {
    const remote = this.backend.remoteQueue === true;
    while (!remote && this.batchesInFlight.size >= 2) await Promise.race(this.batchesInFlight);
    // Remote: time from the first job started by a worker, not from the hand-over (it may wait there).
    let started = performance.now();
    let begun = !remote;
    // Remote: a job counts as composing once a worker has started it (until then it is waiting there).
    const startedJobs = new Set<number>();
    let composing = remote ? 0 : batch.length;
    this.composingCount += composing;
    this.batches++;
    this.batchedJobs += batch.length;
    const version = this.backend.info().version;
    const requests: ComposeRequest[] = [];
    const live: Entry[] = [];
    for (const entry of batch) {
      const { record } = entry;
      let seedMidi: Uint8Array | undefined;
      try {
        seedMidi = record.seedPath ? new Uint8Array(await readFile(record.seedPath)) : undefined;
      } catch (e) {
        this.track(this.fail(entry, `the seed MIDI of this job is gone (${(e as Error).message}); upload it again`, 'internal'));
        continue;
      }
      try {
        const p = record.params;
        requests.push({ ...composeControls(p), composer: p.composer, notes: p.notes, temperature: p.temperature, topP: p.topP, randomSeed: p.randomSeed, seedMidi, outDir: record.outDir, audio: { format: p.format }, maxMusicSeconds: this.limits.maxMusicSeconds });
        live.push(entry);
      } catch (e) {
        this.track(this.fail(entry, (e as Error).message, 'input'));
      }
    }
    const markComposing = (e: Entry) => this.store.update(e.record.id, { state: 'composing', modelVersion: version }).catch((err) => this.log(`job ${e.record.id}: ${(err as Error).message}`));
    // Remote: still 'queued' until a worker starts it.
    if (!remote) await Promise.all(live.map(markComposing));
    let markSampled!: () => void;
    const sampled = new Promise<void>((resolve) => (markSampled = resolve));
    const run = this.backend
      .composeMany(
        requests,
        (index, stage) => {
          const entry = live[index];
          if (!entry || stage === 'done') return;
          if (!begun) {
            begun = true;
            started = performance.now();
          }
          if (remote && !startedJobs.has(index)) {
            startedJobs.add(index);
            composing++;
            this.composingCount++;
            if (stage === 'composing') void markComposing(entry);
          }
          if (stage === 'rendering') markSampled();
          safely(() => entry.listener.stage?.(stage), this.log);
          if (stage === 'rendering') void this.store.update(entry.record.id, { state: 'rendering' }).catch(() => undefined);
        },
        (index, place) => {
          const entry = live[index];
          if (entry) safely(() => entry.listener.position?.(place, this.etaSeconds(place)), this.log);
        },
      )
      .catch((e): PromiseSettledResult<ComposeResult>[] => requests.map(() => ({ status: 'rejected', reason: e })))
      .then((settled) => {
        markSampled();
        this.composingCount -= composing;
        if (this.abandoned) return;
        this.ema = 0.7 * this.ema + 0.3 * ((performance.now() - started) / 1000);
        settled.forEach((s, i) => {
          const entry = live[i];
          if (s.status === 'fulfilled') this.track(this.succeed(entry, s.value));
          else {
            const reason = s.reason as Error;
            const input = reason?.name === 'ComposeInputError';
            const line = (reason?.message ?? String(s.reason)).split('\n')[0];
            this.track(this.fail(entry, line, input ? 'input' : 'internal'));
          }
        });
      });
    this.batchesInFlight.add(run);
    void run.finally(() => this.batchesInFlight.delete(run));
    this.track(run);
    if (!remote) await sampled;
  }

  private track(p: Promise<void>): void {
    this.finishing.add(p);
    void p.finally(() => this.finishing.delete(p));
  }

  private async succeed(entry: Entry, result: ComposeResult): Promise<void> {
    const { record } = entry;
    try {
      const fitted = await this.fitFiles(result, record.uploadLimitBytes);
      const updated = await this.store.update(record.id, {
        ...this.endPatch(record),
        state: 'done',
        finishedAt: new Date().toISOString(),
        modelVersion: result.modelVersion,
        outputs: {
          midi: result.midiPath,
          audio: fitted.audioPath,
          png: result.pngPath,
          audioNote: fitted.note,
          noteCount: result.noteCount,
          musicSeconds: result.musicSeconds,
          composeSeconds: result.seconds,
          composer: result.composer,
          key: result.params.key,
          estimatedKey: result.params.estimatedKey,
          ...(result.params.keyNote ? { keyNote: result.params.keyNote } : {}),
          tempoBpm: result.params.tempoBpm,
          ...(result.params.seedNotes ? { seedNotes: result.params.seedNotes } : {}),
          ...(result.scorePath && result.scorePicturePath ? { score: result.scorePath, scorePicture: result.scorePicturePath } : {}),
        },
      });
      this.finished++;
      this.release(`${record.who.platform}:${record.who.userId}`);
      safely(() => entry.listener.finished(updated), this.log);
    } catch (e) {
      await this.fail(entry, `could not finish the files: ${(e as Error).message.split('\n')[0]}`, 'internal');
    }
  }

  /**
   * The audio fitted under what the post's other files leave of `limitBytes` (src/jobs/audioFit.ts:
   * the MIDI, the piano roll and the score first, then the audio, made smaller if need be).
   */
  private async fitFiles(result: ComposeResult, limitBytes: number | undefined): Promise<FittedAudio> {
    if (limitBytes === undefined) return { audioPath: result.audioPath };
    const others: { kind: UploadKind; path?: string }[] = [
      { kind: 'midi', path: result.midiPath },
      { kind: 'image', path: result.pngPath },
      { kind: 'score-picture', path: result.scorePicturePath },
      { kind: 'score', path: result.scorePath },
    ];
    const sized = await Promise.all(others.filter((f) => f.path !== undefined).map(async (f) => ({ kind: f.kind, bytes: (await stat(f.path!)).size })));
    const { room } = fitUploads(sized, limitBytes);
    return fitAudio(result.midiPath, result.audioPath, room, `the ${formatMegabytes(limitBytes)} upload limit (${formatMegabytes(room)} beside the other files)`);
  }

  private async fail(entry: Entry, error: string, errorKind: 'input' | 'internal'): Promise<void> {
    const { record } = entry;
    this.failed++;
    this.release(`${record.who.platform}:${record.who.userId}`);
    // Every failure gets a line, whoever caused it: the user sees only their reply. The cause is
    // the one line the user gets; messages that may carry a connection URL lose its password.
    this.log(`job ${record.id} (${record.kind} ${record.params.composer} ${record.params.notes}, ${record.who.platform}) failed (${errorKind}): ${redactUrls(error)}`);
    await removeJobOutputs(record.outDir).catch((e) => this.log(`job ${record.id}: could not remove its partial files: ${(e as Error).message}`));
    const ended = this.endPatch(record);
    let updated: JobRecord = { ...record, ...ended, state: 'failed', error, errorKind };
    try {
      updated = await this.store.update(record.id, { ...ended, state: 'failed', error, errorKind, finishedAt: new Date().toISOString() });
    } catch (e) {
      this.log(`job ${record.id}: could not store its failure: ${(e as Error).message}`);
    }
    safely(() => entry.listener.finished(updated), this.log);
  }
}
