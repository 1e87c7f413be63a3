/**
 * The bot behind every front end: the engine (in its own thread), the job store, the queue and
 * the commands. A class because it has a lifecycle: open, recover the jobs a crash left, close.
 * Adapters get a BotContext (this) and talk to it only through src/chat/dispatch.ts.
 */
import { stat } from 'node:fs/promises';
import { COMMANDS } from '../../commands/index.ts';
import type { ModelInfo } from '../engine/types.ts';
import { EngineThread, type ServingBackend } from '../jobs/engineThread.ts';
import { RemoteComposeBackend } from '../scaleout/redisQueue.ts';
import { DEFAULT_QUEUE_LIMITS, JobQueue, QueueRefusal, type QueueLimits, type QueueStats } from '../jobs/queue.ts';
import { JobStore, type MemberSettings, type ServerSettings } from '../jobs/store.ts';
import { defaultInstanceSettings, Heartbeat, heartbeatFresh, type InstanceSettings } from '../scaleout/instances.ts';
import { storeLocation } from '../storage/backend.ts';
import type { JobInput, JobRecord, Platform, Requester } from '../jobs/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import { fitUploads, formatMegabytes } from '../jobs/audioFit.ts';
import { removeJobOutputs } from '../jobs/cleanup.ts';
import { replyTokenExpiresAt, withoutReplyToken } from '../jobs/replyToken.ts';
import type { BotContext, CommandSpec, CommunityContext, Reply } from '../../commands/shared/command.ts';
import { FILE_LABELS, failureLine, requestText, resultPost } from '../../commands/shared/results.ts';

export interface BotOptions {
  modelDir: string;
  /** The data folder: the job store's SQLite file (nocturne.sqlite) when storeUrl is unset. */
  dataDir: string;
  /** STORE_URL: job records and server settings go to this Redis or Postgres store instead. */
  storeUrl?: string;
  /** Where each job's files go: <outDir>/<job-id>/. */
  outDir: string;
  backend?: BackendChoice;
  limits?: Partial<QueueLimits>;
  /** Jobs older than this when the bot starts again are answered with an apology, not re-queued. */
  recoverMaxAgeMs?: number;
  log?: (line: string) => void;
  /** Called with each finished piece (e.g. for the retraining loop's drift watch). */
  onPiece?: (record: JobRecord) => void;
  /** The community loop (src/chat/community.ts); without it, its commands are left out. */
  community?: CommunityContext;
  /** Compose through `nocturne worker` processes over Redis (BullMQ) instead of loading the model here. */
  redisUrl?: string;
  /**
   * This process's instance name and heartbeat timing (NOCTURNE_INSTANCE, src/scaleout/instances.ts);
   * default: the host name, 10 s heartbeats, stale after 60 s, a scan for orphaned jobs every 30 s.
   */
  instance?: Partial<InstanceSettings>;
}

/** What one recovery pass did, for the log. */
export interface RecoverOutcome {
  requeued: string[];
  apologized: string[];
  waiting: string[];
  /** Jobs taken over from instances whose heartbeat is stale or missing, as `id (from name)`. */
  takenOver: string[];
  /** Jobs left to another instance that is running (its heartbeat is fresh). */
  othersLive: string[];
}

/** How a restarted bot reaches the person who asked for an unfinished job. */
export type ReplyFinder = (record: JobRecord) => Reply | undefined;

const DEFAULT_RECOVER_MAX_AGE_MS = 60 * 60 * 1000;
/**
 * A job that was being composed or rendered during this many crashes may be what crashes the bot:
 * it gets an apology instead of a new try (so it runs at most this many times).
 */
export const MAX_INTERRUPTIONS = 2;

function settingsKey(who: Requester): string {
  return `${who.platform}:${who.serverId ?? who.channelId}`;
}

/** A member's own settings: the same table, by platform and user id (the same in every server of theirs). */
function memberSettingsKey(who: Requester): string {
  return `${who.platform}:user:${who.userId}`;
}

/** The commands a bot offers: the community loop's only when it runs. */
export function botCommands(community: boolean): readonly CommandSpec[] {
  return community ? COMMANDS : COMMANDS.filter((c) => !c.community);
}

export class Bot implements BotContext {
  readonly startedAt = new Date();
  readonly commands: readonly CommandSpec[];
  private readonly running = new Set<Promise<unknown>>();
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<unknown> | undefined;
  private closing = false;

  private constructor(
    private engine: ServingBackend,
    readonly store: JobStore,
    readonly queue: JobQueue,
    private readonly options: BotOptions,
    private readonly log: (line: string) => void,
    private readonly heartbeat: Heartbeat,
    readonly instance: InstanceSettings,
  ) {
    this.commands = botCommands(Boolean(options.community));
    queue.owner = instance.name;
  }

  /**
   * Opens the store, claims this process's instance name there (refused with InstanceNameInUse
   * when another running process holds it), and opens the engine.
   */
  static async open(options: BotOptions): Promise<Bot> {
    const log = options.log ?? (() => {});
    const instance = { ...defaultInstanceSettings(), ...options.instance };
    const store = await JobStore.open(storeLocation(options.dataDir, options.storeUrl), log);
    let heartbeat: Heartbeat;
    try {
      heartbeat = await Heartbeat.start(store.instances, instance, log);
    } catch (e) {
      await store.close();
      throw e;
    }
    let engine: ServingBackend;
    try {
      engine = options.redisUrl ? await RemoteComposeBackend.open(options.redisUrl, options.modelDir, log) : await EngineThread.open(options.modelDir, options.backend ?? 'auto', log);
    } catch (e) {
      await heartbeat.stop();
      await store.close();
      throw new Error(`cannot load the model in ${options.modelDir}: ${(e as Error).message}`);
    }
    const queue = new JobQueue(engine, store, options.outDir, { ...DEFAULT_QUEUE_LIMITS, ...options.limits }, log);
    return new Bot(engine, store, queue, options, log, heartbeat, instance);
  }

  get model(): ModelInfo {
    return this.engine.info();
  }

  get community(): CommunityContext | undefined {
    return this.options.community;
  }

  get composerNames(): string[] {
    return this.engine.composerNames;
  }

  queueStats(): QueueStats {
    return this.queue.stats();
  }

  async settingsFor(who: Requester): Promise<ServerSettings> {
    const [server, own] = await Promise.all([this.serverSettingsFor(who), this.memberSettingsFor(who)]);
    return { ...server, ...own };
  }

  serverSettingsFor(who: Requester): Promise<ServerSettings> {
    return this.store.serverSettings(settingsKey(who));
  }

  saveSettingsFor(who: Requester, settings: ServerSettings): Promise<void> {
    return this.store.setServerSettings(settingsKey(who), settings);
  }

  memberSettingsFor(who: Requester): Promise<MemberSettings> {
    return this.store.memberSettings(memberSettingsKey(who));
  }

  saveMemberSettingsFor(who: Requester, settings: MemberSettings): Promise<void> {
    return this.store.setMemberSettings(memberSettingsKey(who), settings);
  }

  runJob(input: JobInput, reply: Reply): Promise<JobRecord | undefined> {
    const work = new Promise<JobRecord | undefined>((resolve) => {
      let started = false;
      const listener = {
        position: (place: number, eta: number) => {
          if (!started) void reply.progress(`queued #${place}, about ${eta} s`);
        },
        stage: (stage: 'composing' | 'rendering') => {
          started = true;
          void reply.progress(stage === 'composing' ? 'composing…' : 'rendering the audio and the piano roll…');
        },
        finished: (record: JobRecord) => {
          this.pieceFinished(record);
          const answer = record.state === 'done' ? this.postResult(record, reply) : reply.error(failureLine(record));
          void answer.finally(() => resolve(record));
        },
        paused: (record: JobRecord) => {
          void reply.progress(`the bot is restarting: job ${record.id} stays queued and will be composed when it is back`).finally(() => resolve(record));
        },
      };
      this.queue.submit(input, listener).catch(async (e) => {
        if (!(e instanceof QueueRefusal)) this.log(`could not queue a job: ${(e as Error).message}`);
        await reply.error(e instanceof QueueRefusal ? e.message : `could not queue your piece (${(e as Error).message}); please try again`);
        resolve(undefined);
      });
    });
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
    return work;
  }

  /**
   * Serves a different model folder from the next batch on (a promoted or rolled-back model).
   * If it cannot be opened, the current model keeps serving and this rejects with the reason.
   */
  async useModel(modelDir: string): Promise<ModelInfo> {
    const previous = this.engine;
    const next = await previous.serve(modelDir);
    if (next === previous) {
      // Loaded elsewhere: the Redis workers reload it without a restart.
      this.log(`now serving model ${next.info().version} from ${modelDir} (announced to the workers)`);
      return next.info();
    }
    this.engine = next;
    await this.queue.useBackend(next);
    await previous.close();
    this.log(`now serving model ${next.info().version} from ${modelDir}`);
    return next.info();
  }

  private pieceFinished(record: JobRecord): void {
    if (record.state !== 'done' || !this.options.onPiece) return;
    try {
      this.options.onPiece(record);
    } catch (e) {
      this.log(`onPiece failed: ${(e as Error).message}`);
    }
  }

  /**
   * Posts a finished job's files, as many as fit this reply's upload limit together (the rule of
   * src/jobs/audioFit.ts: MIDI, piano roll, score, then the audio); the post says what was left out.
   */
  async postResult(record: JobRecord, reply: Reply): Promise<void> {
    const post = resultPost(record);
    const missing: string[] = [];
    const notices: string[] = post.notice ? [post.notice] : [];
    const present = [];
    for (const f of post.files) {
      try {
        present.push({ ...f, bytes: (await stat(f.path)).size });
      } catch {
        missing.push(FILE_LABELS[f.kind]);
      }
    }
    const { kept, leftOut } = fitUploads(present, reply.uploadLimitBytes);
    if (kept.length === 0) {
      await reply.error(`the files of job ${record.id} are gone: press Regenerate under it (or /compose again with seed ${record.params.randomSeed})`);
      return;
    }
    if (leftOut.length) {
      const what = leftOut.map((f) => `the ${FILE_LABELS[f.kind]} (${formatMegabytes(f.bytes)})`);
      notices.push(`left out: ${what.join(' and ')}, over the ${formatMegabytes(reply.uploadLimitBytes!)} upload limit here with the other files`);
    }
    if (missing.length) notices.push(`the ${missing.join(' and ')} file${missing.length > 1 ? 's are' : ' is'} gone`);
    // In the post's own order (the audio first), not the fitting's.
    const files = present.filter((f) => kept.includes(f)).map(({ bytes: _bytes, ...f }) => f);
    await reply.result({ ...post, files, notice: notices.length ? notices.join('; ') : undefined });
  }

  /**
   * Jobs a crash or a shutdown left open: each is re-queued (answered where it was asked) or,
   * if too old or retried too often, answered with an apology. Jobs from a platform that is not
   * running now stay open for the next start that runs it. With `owns`, jobs it rejects are left
   * alone: another process answers them (a Discord shard recovers only its own servers' jobs).
   *
   * Which open jobs are this bot's to resume: its own instance's, ownerless ones (records from
   * before instances), and those of instances whose heartbeat is stale or missing (gone), which
   * it takes over. Jobs of another running instance are left alone. Taking an ownerless or gone
   * instance's job is a compare-and-set of its owner on the job record, so of two bots trying at
   * once exactly one gets it. Terminal jobs of another instance are never taken over (they belong
   * to that machine's terminal).
   *
   * `mode` 'scan' is the periodic look for orphans while running: only gone instances' jobs
   * (own jobs are already in this process's queue; ownerless ones may belong to a running bot
   * of an older version).
   */
  async recover(platforms: readonly Platform[], replyFor: ReplyFinder, owns?: (record: JobRecord) => boolean, mode: 'start' | 'scan' = 'start'): Promise<RecoverOutcome> {
    const outcome: RecoverOutcome = { requeued: [], apologized: [], waiting: [], takenOver: [], othersLive: [] };
    const maxAge = this.options.recoverMaxAgeMs ?? DEFAULT_RECOVER_MAX_AGE_MS;
    const me = this.instance.name;
    const live = new Map<string, boolean>();
    const isLive = async (name: string): Promise<boolean> => {
      if (!live.has(name)) live.set(name, heartbeatFresh(await this.store.instances.get(name), this.instance.staleMs));
      return live.get(name)!;
    };
    for (const listed of await this.store.openJobs()) {
      if (this.closing) break;
      let record = listed;
      const owner = record.owner;
      if (owner === me) {
        if (mode === 'scan') continue;
      } else if (owner === undefined) {
        if (mode === 'scan') continue;
      } else if (await isLive(owner)) {
        outcome.othersLive.push(record.id);
        continue;
      } else if (record.who.platform === 'terminal') {
        continue;
      }
      if (platforms.includes(record.who.platform) && owns && !owns(record)) continue;
      if (!platforms.includes(record.who.platform)) {
        if (owner === me || owner === undefined) {
          outcome.waiting.push(record.id);
          // It waits for a start that runs its platform; its reply token expires meanwhile.
          if ((replyTokenExpiresAt(record.address) ?? Infinity) <= Date.now()) await this.store.update(record.id, { address: withoutReplyToken(record.address) });
        }
        continue;
      }
      if (owner !== me) {
        // Read it again for its exact stored text, and take it only if nobody changed it since.
        const raw = await this.store.getRaw(record.id);
        if (!raw || raw.value.owner !== owner) continue;
        const claimed = await this.store.claim(record.id, raw.text, me);
        if (!claimed) continue;
        record = claimed;
        if (owner !== undefined) {
          outcome.takenOver.push(`${record.id} (from ${owner})`);
          this.log(`job ${record.id} (${requestText(record)}): instance ${owner} is gone (no heartbeat for ${Math.round(this.instance.staleMs / 1000)} s): taken over by ${me}`);
        }
      }
      const reply = replyFor(record);
      const age = Date.now() - Date.parse(record.createdAt);
      // An open state other than 'queued' means the job was in flight when the bot went down.
      const interruptions = (record.interruptions ?? 0) + (record.state === 'queued' ? 0 : 1);
      const why = !reply ? 'no way to answer it' : age > maxAge ? 'too old to resume' : interruptions >= MAX_INTERRUPTIONS ? `in progress during ${interruptions} crashes` : undefined;
      if (!reply || why !== undefined) {
        const failed = await this.store.update(record.id, {
          address: withoutReplyToken(record.address),
          state: 'failed',
          errorKind: 'interrupted',
          error: 'interrupted by a restart',
          finishedAt: new Date().toISOString(),
        });
        outcome.apologized.push(record.id);
        await removeJobOutputs(record.outDir).catch(() => undefined);
        this.log(`job ${record.id} (${requestText(record)}) was interrupted by a restart (${why}): apologized`);
        if (reply) await reply.error(failureLine(failed));
        continue;
      }
      if (interruptions !== (record.interruptions ?? 0)) record = await this.store.update(record.id, { interruptions });
      // It starts again from its input: what a killed render left (temporary files) goes.
      await removeJobOutputs(record.outDir).catch(() => undefined);
      void reply.progress(`the bot restarted: resuming job ${record.id} (${requestText(record)})`);
      const listener = {
        position: (place: number, eta: number) => void reply.progress(`resumed after a restart: queued #${place}, about ${eta} s`),
        stage: (stage: 'composing' | 'rendering') => void reply.progress(stage === 'composing' ? 'composing…' : 'rendering the audio and the piano roll…'),
        finished: (r: JobRecord) => {
          this.pieceFinished(r);
          void (r.state === 'done' ? this.postResult(r, reply) : reply.error(failureLine(r)));
        },
        paused: (r: JobRecord) => void reply.progress(`the bot is restarting again: job ${r.id} stays queued and will be composed when it is back`),
      };
      await this.queue.requeue(record, listener);
      outcome.requeued.push(record.id);
    }
    return outcome;
  }

  /**
   * While running, looks every `instance.scanMs` for open jobs of instances that are gone (a bot
   * that crashed and has not come back) and takes them over, as recover does at start.
   */
  watchOrphans(platforms: readonly Platform[], replyFor: ReplyFinder, owns?: (record: JobRecord) => boolean): void {
    if (this.closing || this.scanTimer) return;
    const arm = () => {
      if (this.closing) return;
      this.scanTimer = setTimeout(() => {
        this.scanning = this.recover(platforms, replyFor, owns, 'scan')
          .then((outcome) => {
            if (outcome.takenOver.length) this.log(`took over ${outcome.takenOver.length} job(s) of gone instance(s): ${outcome.takenOver.join(', ')}`);
          })
          .catch((e: Error) => this.log(`the look for orphaned jobs failed: ${e.message}`))
          .finally(() => {
            this.scanning = undefined;
            arm();
          });
      }, this.instance.scanMs);
      this.scanTimer.unref();
    };
    arm();
  }

  /** Stops taking jobs, lets the batch in flight finish (up to graceMs), then closes everything. */
  async close(graceMs = 30_000): Promise<void> {
    this.closing = true;
    clearTimeout(this.scanTimer);
    await this.scanning;
    await this.queue.stop(graceMs);
    // Give the answers to finished jobs a moment to go out before the connections close.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => (timer = setTimeout(r, Math.min(graceMs, 10_000))))]);
    clearTimeout(timer);
    // Whatever is still composing after the grace period stays open in the store for the next start.
    await this.engine.close(1000);
    // Removed last: from now on another running bot may take over what is still open.
    await this.heartbeat.stop();
    await this.store.close();
  }
}
