/**
 * Scale-out over Redis with BullMQ: the bot side. With REDIS_URL set, the bot's JobQueue (limits,
 * positions, the job store) composes through RemoteComposeBackend instead of an engine thread:
 * each request becomes a BullMQ job that any `nocturne worker` process takes (src/scaleout/worker.ts).
 * The bot never loads the model: it reads only model.json for names and version.
 *
 * Generated files come back inside the job's return value in Redis (base64, at most
 * RESULT_MAX_BYTES per job, removed RESULT_TTL_S after completion), because the worker may run on
 * another machine with no shared disk, and Redis is the one thing both sides already reach; the
 * bot writes them into its own out folder. The bound keeps Redis memory predictable; the expiry
 * means an answer that nobody collects (a bot down for longer) does not stay forever; the bot's
 * job store then re-queues the job at its next start and the same seed gives the same notes.
 *
 * The BullMQ job id is the bot's job id, so a job re-added after a bot restart finds the one
 * already queued, running or finished instead of composing twice.
 *
 * Positions ("queued #n"): the bot hands every job to Redis at once (remoteQueue), so the wait
 * list in Redis holds every bot's (and every shard's) waiting jobs in the order workers take them.
 * A job's place is its index in that list, read again whenever a job arrives or a worker takes
 * one (QueueEvents 'waiting'/'active', coalesced into one read at a time) and every few seconds.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ComposeInputError } from '../engine/engine.ts';
import type { AudioOptions, ComposeRequest, ComposeResult, ComposeStage, ModelInfo } from '../engine/types.ts';
import { readModelSpec, type ModelSpec } from '../model/note/folder.ts';
import type { ServingBackend } from '../jobs/engineThread.ts';
import { redactedUrl } from '../redact.ts';

export const COMPOSE_QUEUE = 'compose';
export const DEFAULT_REDIS_PREFIX = 'nocturne';
/** Largest total of a job's generated files carried back through Redis. */
export const RESULT_MAX_BYTES = 32 * 1024 * 1024;
/** How long a finished job's files stay in Redis for the bot to collect. */
export const RESULT_TTL_S = 60 * 60;
/** How long a failed job's record stays (for diagnosis). */
export const FAILED_TTL_S = 24 * 60 * 60;
/** Channel on which a promotion or rollback announces the model folder every worker should serve. */
export const SERVING_CHANNEL = 'serving';
/** How often the places of this bot's waiting jobs are read again even without queue events. */
const POSITION_REFRESH_MS = 5000;
/** Key that keeps the last announced folder, for workers that start later (`<prefix>:serving-dir`). */
export const SERVING_KEY = 'serving-dir';

/** What a worker receives for one request (bytes as base64: BullMQ stores JSON). */
export interface ComposeJobData {
  composer: string;
  notes: number;
  temperature?: number;
  topP?: number;
  randomSeed?: number;
  seedMidiBase64?: string;
  audio?: AudioOptions;
  maxMusicSeconds?: number;
  key?: number;
  tempoBpm?: number;
  score?: boolean;
  includeSeed?: boolean;
}

export interface ResultFile {
  name: string;
  base64: string;
}

/** What a worker returns: the result without local paths, and the files themselves. */
export interface ComposeJobResult {
  result: Omit<ComposeResult, 'midiPath' | 'audioPath' | 'pngPath' | 'scorePath' | 'scorePicturePath'>;
  midi: ResultFile;
  audio: ResultFile;
  png: ResultFile;
  /** The MusicXML and the picture of its first page, when the request asked for the score. */
  score?: ResultFile;
  scorePicture?: ResultFile;
}

/** Progress a worker reports for a job. */
export interface ComposeJobProgress {
  stage: Exclude<ComposeStage, 'done'>;
}

/** A failure caused by the request (unknown composer, bad seed): the worker prefixes it so. */
export const INPUT_ERROR_PREFIX = 'input: ';

/** An ioredis connection for BullMQ (blocking commands need maxRetriesPerRequest: null). */
export function redisConnection(url: string, name: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: name, enableReadyCheck: true });
}

export function modelInfoOf(spec: ModelSpec): ModelInfo {
  return {
    version: spec.version,
    composers: spec.composers.map((c) => ({ name: c.name, pieces: c.pieces })),
    metrics: spec.metrics,
    trainedAt: String(spec.training.startedAt ?? ''),
  };
}

export function jobDataOf(request: ComposeRequest): ComposeJobData {
  return {
    composer: request.composer,
    notes: request.notes,
    temperature: request.temperature,
    topP: request.topP,
    randomSeed: request.randomSeed,
    seedMidiBase64: request.seedMidi ? Buffer.from(request.seedMidi).toString('base64') : undefined,
    audio: request.audio,
    maxMusicSeconds: request.maxMusicSeconds,
    key: request.key,
    tempoBpm: request.tempoBpm,
    score: request.score,
    includeSeed: request.includeSeed,
  };
}

/** The request a worker composes for a job's data (jobDataOf's inverse), writing into `outDir`. */
export function requestOf(data: ComposeJobData, outDir: string): ComposeRequest {
  return {
    composer: data.composer,
    notes: data.notes,
    temperature: data.temperature,
    topP: data.topP,
    randomSeed: data.randomSeed,
    seedMidi: data.seedMidiBase64 ? new Uint8Array(Buffer.from(data.seedMidiBase64, 'base64')) : undefined,
    outDir,
    audio: data.audio,
    maxMusicSeconds: data.maxMusicSeconds,
    key: data.key,
    tempoBpm: data.tempoBpm,
    score: data.score,
    includeSeed: data.includeSeed,
  };
}

export class RemoteComposeBackend implements ServingBackend {
  /** Jobs wait in Redis, not in the bot: the JobQueue hands them over at once, places come from here. */
  readonly remoteQueue = true;
  private readonly listeners = new Map<string, (stage: ComposeStage) => void>();
  /** This bot's jobs still waiting in Redis: the last place reported, and where to report a new one. */
  private readonly queued = new Map<string, { place: number; report: (place: number) => void }>();
  private waitingSeen = 0;
  private refreshing = false;
  private refreshAgain = false;
  private readonly refreshTimer: NodeJS.Timeout;

  private constructor(
    private spec: ModelSpec,
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly publisher: Redis,
    readonly prefix: string,
    /** Connections handed to BullMQ: it does not close connections it was given. */
    private readonly connections: Redis[],
  ) {
    events.on('progress', ({ jobId, data }) => {
      const stage = (data as ComposeJobProgress | undefined)?.stage;
      if (!stage) return;
      // A job being worked on has no place any more; a read in flight must not report one after this.
      this.queued.delete(jobId);
      this.listeners.get(jobId)?.(stage);
    });
    events.on('waiting', () => this.refreshPositions());
    events.on('active', () => this.refreshPositions());
    this.refreshTimer = setInterval(() => this.refreshPositions(), POSITION_REFRESH_MS);
    this.refreshTimer.unref();
  }

  /** Jobs waiting in Redis, from every bot, when last read (for the queue bound and /status). */
  remoteWaiting(): number {
    return this.waitingSeen;
  }

  /** Reads the wait list (oldest first: the next a worker takes) and reports each of this bot's jobs' place if it changed. */
  private refreshPositions(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    void (async () => {
      do {
        this.refreshAgain = false;
        try {
          if (this.queued.size === 0) {
            // Nothing of ours waits: the count is enough (the bound and /status).
            this.waitingSeen = await this.queue.getWaitingCount();
            continue;
          }
          const ids = await this.queue.getRanges(['wait'], 0, -1, true);
          this.waitingSeen = ids.length;
          ids.forEach((id, i) => {
            const entry = this.queued.get(id);
            if (!entry || entry.place === i + 1) return;
            entry.place = i + 1;
            entry.report(i + 1);
          });
        } catch {
          // Redis unreachable for now: the places are read again at the next event or tick.
        }
      } while (this.refreshAgain);
      this.refreshing = false;
    })();
  }

  static async open(redisUrl: string, modelDir: string, log: (line: string) => void = () => {}, prefix = DEFAULT_REDIS_PREFIX): Promise<RemoteComposeBackend> {
    const spec = await readModelSpec(modelDir);
    const connections = [redisConnection(redisUrl, 'nocturne-bot-queue'), redisConnection(redisUrl, 'nocturne-bot-events')];
    const queue = new Queue(COMPOSE_QUEUE, { connection: connections[0], prefix });
    const events = new QueueEvents(COMPOSE_QUEUE, { connection: connections[1], prefix });
    const publisher = redisConnection(redisUrl, 'nocturne-bot-publish');
    queue.on('error', (e: Error) => log(`redis (queue): ${e.message}`));
    // Every job in flight waits in Job.waitUntilFinished, which listens for the queue's 'closing'
    // until the job ends: one listener per job, bounded by the bot's queue limit, not a leak (Node
    // warned past 10 under the 200-request load).
    queue.setMaxListeners(0);
    events.on('error', (e: Error) => log(`redis (events): ${e.message}`));
    publisher.on('error', (e: Error) => log(`redis (publish): ${e.message}`));
    // The queue and the events object report these errors (logged above); without a listener of
    // its own, ioredis also prints "Unhandled error event" for each reconnect during an outage.
    for (const c of connections) c.on('error', () => undefined);
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    } catch (e) {
      await Promise.allSettled([queue.close(), events.close()]);
      for (const c of [...connections, publisher]) c.disconnect();
      throw new Error(`cannot reach Redis at ${redactedUrl(redisUrl)}: ${(e as Error).message}`);
    }
    log(`jobs go through Redis (${redactedUrl(redisUrl)}) to nocturne worker processes; this process does not load the model`);
    return new RemoteComposeBackend(spec, queue, events, publisher, prefix, connections);
  }

  get composerNames(): string[] {
    return this.spec.composers.map((c) => c.name);
  }

  info(): ModelInfo {
    return modelInfoOf(this.spec);
  }

  /** Jobs waiting for a worker (for status lines). */
  waitingCount(): Promise<number> {
    return this.queue.getWaitingCount();
  }

  async composeMany(requests: ComposeRequest[], onStage?: (index: number, stage: ComposeStage) => void, onQueued?: (index: number, place: number) => void): Promise<PromiseSettledResult<ComposeResult>[]> {
    return Promise.allSettled(requests.map((r, i) => this.composeOne(r, (stage) => onStage?.(i, stage), (place) => onQueued?.(i, place))));
  }

  private async composeOne(request: ComposeRequest, onStage: (stage: ComposeStage) => void, onQueued: (place: number) => void): Promise<ComposeResult> {
    const jobId = basename(request.outDir);
    this.listeners.set(jobId, onStage);
    this.queued.set(jobId, { place: 0, report: onQueued });
    try {
      const job: Job = await this.queue.add(COMPOSE_QUEUE, jobDataOf(request), {
        jobId,
        attempts: 3,
        backoff: { type: 'fixed', delay: 1000 },
        removeOnComplete: { age: RESULT_TTL_S },
        removeOnFail: { age: FAILED_TTL_S },
      });
      this.refreshPositions();
      let value: ComposeJobResult;
      try {
        value = (await job.waitUntilFinished(this.events)) as ComposeJobResult;
      } catch (e) {
        const message = (e as Error).message ?? String(e);
        if (message.startsWith(INPUT_ERROR_PREFIX)) throw new ComposeInputError(message.slice(INPUT_ERROR_PREFIX.length));
        throw new Error(message.split('\n')[0]);
      }
      return await this.writeFiles(request.outDir, value);
    } finally {
      this.listeners.delete(jobId);
      this.queued.delete(jobId);
    }
  }

  private async writeFiles(outDir: string, value: ComposeJobResult): Promise<ComposeResult> {
    await mkdir(outDir, { recursive: true });
    const write = async (f: ResultFile) => {
      // The names come from our own worker, but are still reduced to a plain file name.
      const path = join(outDir, basename(f.name).replace(/[^\w.-]/g, '_'));
      await writeFile(path, Buffer.from(f.base64, 'base64'));
      return path;
    };
    const [midiPath, audioPath, pngPath] = await Promise.all([write(value.midi), write(value.audio), write(value.png)]);
    const score = value.score && value.scorePicture ? { scorePath: await write(value.score), scorePicturePath: await write(value.scorePicture) } : {};
    return { ...value.result, midiPath, audioPath, pngPath, ...score };
  }

  /** Tells every worker to serve `modelDir` from now on (a promotion or rollback). */
  async announceServing(modelDir: string): Promise<void> {
    this.spec = await readModelSpec(modelDir);
    await this.publisher.set(`${this.prefix}:${SERVING_KEY}`, modelDir);
    await this.publisher.publish(`${this.prefix}:${SERVING_CHANNEL}`, modelDir);
  }

  /** The workers load the model (each reloads without a restart); this process only reads its names. */
  async serve(modelDir: string): Promise<this> {
    await this.announceServing(modelDir);
    return this;
  }

  async close(): Promise<void> {
    clearInterval(this.refreshTimer);
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    await Promise.allSettled([...this.connections, this.publisher].map((c) => c.quit()));
    for (const c of [...this.connections, this.publisher]) c.disconnect();
  }
}

/** The URL without its password, for log lines (shared with STORE_URL's log lines). */
export { redactedUrl };
