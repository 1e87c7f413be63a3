/**
 * Retraining on `nocturne worker` processes (REDIS_URL set): both sides of the BullMQ queue
 * "retrain". The bots only queue runs and report them; a worker runs each one in a child process
 * (src/community/retrainProcess.ts, as the single-process mode does), so it keeps composing.
 *
 * - One at a time across all workers: a worker holds the Redis lock `<prefix>:retrain:lock`
 *   (src/scaleout/redisLock.ts: SET NX PX, heartbeat, token-checked release) for the whole run. A
 *   worker that dies (kill -9) stops renewing it, and it expires after NOCTURNE_RETRAIN_LOCK_MS.
 * - "busy": a bot answers at once when the lock is held or a run is already queued, naming who
 *   asked and when; if two requests race past that check, the worker that takes the second job
 *   finds the lock held and answers "busy" for it.
 * - A worker that dies mid-run: BullMQ sees the job stall and hands it to another worker, which
 *   waits for the dead worker's lock to expire and runs it again from the start (a killed run
 *   leaves nothing half-made; the new run marks it interrupted and cleans up). Its child process
 *   ends with it (exitWithParent), so the two runs never overlap.
 * - The schedule: every bot arms its cron task; a run coordinator in Redis lets one bot per
 *   scheduled slot queue the run.
 * - Progress: the child's progress events become BullMQ job progress, which the bot that asked
 *   turns back into the same onProgress calls as a local run. The outcome is the job's return
 *   value. Its curve PNG is a path in NOCTURNE_DATA_DIR.
 * - Promotion: the run changes `<data>/models/serving.json`; the worker also announces the new
 *   folder on `<prefix>:serving`, so every worker reloads even when no bot is listening, and the
 *   bot that asked refreshes its registry (which announces it again; workers ignore a folder they
 *   already serve).
 *
 * The job carries the bot's community settings (paths included): a worker needs the same
 * NOCTURNE_DATA_DIR (contributions, model versions, the store) and corpus at the same paths, i.e.
 * a filesystem every worker and bot can read (docs/scaling.md).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RunCoordinator } from 'node-cron';
import type { RemoteRetraining } from '../community/community.ts';
import type { CommunityConfig } from '../community/config.ts';
import type { RetrainOutcome, RetrainProgress, RetrainRequest } from '../community/retrain.ts';
import { RetrainProcess } from '../community/retrainProcess.ts';
import { RedisLock, processName, readLock, redisRunCoordinator, type HeldBy } from './redisLock.ts';
import { DEFAULT_REDIS_PREFIX, FAILED_TTL_S, SERVING_CHANNEL, SERVING_KEY, redactedUrl, redisConnection } from './redisQueue.ts';

export const RETRAIN_QUEUE = 'retrain';
/** Default NOCTURNE_RETRAIN_LOCK_MS: how long a dead worker's retraining lock blocks the next run. */
export const DEFAULT_RETRAIN_LOCK_MS = 60_000;

export function retrainLockKey(prefix = DEFAULT_REDIS_PREFIX): string {
  return `${prefix}:retrain:lock`;
}

/**
 * A queued run: the bot's validated community settings and the request. The store's URL is not
 * in it (it may hold a password, and job data sits in Redis): the worker uses its own STORE_URL.
 */
export interface RetrainJobData {
  config: Omit<CommunityConfig, 'storeUrl'>;
  request: RetrainRequest;
  requestedAt: string;
  /** The bot process that queued it ("host pid n"). */
  from: string;
}

/** What the retraining lock says about its holder. */
export interface RetrainLockInfo {
  [key: string]: unknown;
  jobId: string;
  /** The run's id, once its child has started. */
  runId?: string;
  /** The worker holding it ("host pid n"). */
  worker: string;
  trigger: string;
  requestedBy?: string;
  startedAt: string;
}

const utc = (iso: string) => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

function emptyOutcome(runId: string, status: RetrainOutcome['status'], reason: string, started: number): RetrainOutcome {
  return { runId, status, reason, servingBefore: '', servingAfter: '', contributionsUsed: 0, heldBack: 0, newComposers: [], waitingLabels: [], seconds: (Date.now() - started) / 1000 };
}

/** "busy" because a worker holds the lock. Pure. */
export function busyBecauseRunning(held: RetrainLockInfo, started = Date.now()): RetrainOutcome {
  const by = held.requestedBy ? ` by ${held.requestedBy}` : '';
  return emptyOutcome(held.runId ?? '', 'busy', `a retraining run is already in progress (run ${held.runId ?? `of job ${held.jobId}`}, ${held.trigger}${by} at ${utc(held.startedAt)}, on worker ${held.worker})`, started);
}

// -------------------------------------------------------------------------------------------------
// The bot's side

/** Queues retraining runs for the workers and follows them (Community.useRemoteRetraining). */
export class RedisRetraining implements RemoteRetraining {
  private readonly listeners = new Map<string, (p: RetrainProgress) => void>();
  readonly runCoordinator: RunCoordinator;

  private constructor(
    private readonly queue: Queue<RetrainJobData, RetrainOutcome>,
    private readonly events: QueueEvents,
    private readonly redis: Redis,
    private readonly connections: Redis[],
    private readonly prefix: string,
    private readonly log: (line: string) => void,
  ) {
    events.on('progress', ({ jobId, data }) => {
      const progress = data as RetrainProgress | undefined;
      if (progress?.stage) this.listeners.get(jobId)?.(progress);
    });
    this.runCoordinator = redisRunCoordinator(redis, prefix, (key, holder) => log(`community: scheduled retraining ${key} is run by ${holder}; not queued again here`));
  }

  static async open(redisUrl: string, log: (line: string) => void = () => {}, prefix = DEFAULT_REDIS_PREFIX): Promise<RedisRetraining> {
    const connections = [redisConnection(redisUrl, 'nocturne-bot-retrain'), redisConnection(redisUrl, 'nocturne-bot-retrain-events'), redisConnection(redisUrl, 'nocturne-bot-retrain-lock')];
    const [queueConnection, eventsConnection, redis] = connections;
    const queue = new Queue<RetrainJobData, RetrainOutcome>(RETRAIN_QUEUE, { connection: queueConnection, prefix });
    const events = new QueueEvents(RETRAIN_QUEUE, { connection: eventsConnection, prefix });
    queue.on('error', (e: Error) => log(`redis (retrain queue): ${e.message}`));
    events.on('error', (e: Error) => log(`redis (retrain events): ${e.message}`));
    redis.on('error', (e: Error) => log(`redis (retrain lock): ${e.message}`));
    // QueueEvents blocks on a duplicate of this connection (whose errors come as events' 'error');
    // the original stays connected, and without a listener ioredis prints each of its errors as unhandled.
    eventsConnection.on('error', () => undefined);
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    } catch (e) {
      await Promise.allSettled([queue.close(), events.close()]);
      for (const c of connections) c.disconnect();
      throw new Error(`cannot reach Redis at ${redactedUrl(redisUrl)}: ${(e as Error).message}`);
    }
    return new RedisRetraining(queue, events, redis, connections, prefix, log);
  }

  /** The worker holding the retraining lock, if any. */
  running(): Promise<HeldBy<RetrainLockInfo> | undefined> {
    return readLock<RetrainLockInfo>(this.redis, retrainLockKey(this.prefix));
  }

  /** Queues one run and resolves with its outcome (never rejects): "busy" at once if one runs or waits. */
  async retrain(config: CommunityConfig, request: RetrainRequest, onProgress: (p: RetrainProgress) => void = () => {}): Promise<RetrainOutcome> {
    const started = Date.now();
    const jobId = `retrain-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
    try {
      const held = await this.running();
      if (held) return busyBecauseRunning(held.info, started);
      const [queued] = await this.queue.getJobs(['waiting', 'active', 'delayed', 'prioritized'], 0, 0, true);
      if (queued) {
        const d = queued.data;
        return emptyOutcome('', 'busy', `a retraining run is already queued for a worker (${d.request.trigger}${d.request.requestedBy ? ` by ${d.request.requestedBy}` : ''} at ${utc(d.requestedAt)})`, started);
      }
      this.listeners.set(jobId, onProgress);
      const { storeUrl: _private, ...shared } = config;
      const job = await this.queue.add(RETRAIN_QUEUE, { config: shared, request, requestedAt: new Date().toISOString(), from: processName() }, { jobId, attempts: 1, removeOnComplete: { age: FAILED_TTL_S }, removeOnFail: { age: FAILED_TTL_S } });
      this.log(`community: retraining job ${jobId} queued for a nocturne worker (${request.trigger}${request.requestedBy ? ` by ${request.requestedBy}` : ''})`);
      onProgress({ runId: jobId, stage: 'starting', line: 'queued for a nocturne worker' });
      const outcome = (await job.waitUntilFinished(this.events)) as RetrainOutcome;
      this.log(`community: retraining job ${jobId} finished on a worker: ${outcome.status}: ${outcome.reason}`);
      return outcome;
    } catch (e) {
      const reason = `retraining on a worker failed: ${((e as Error).message ?? String(e)).split('\n')[0]}`;
      this.log(`community: retraining job ${jobId}: ${reason}`);
      return emptyOutcome('', 'failed', reason, started);
    } finally {
      this.listeners.delete(jobId);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    await Promise.allSettled(this.connections.map((c) => c.quit()));
    for (const c of this.connections) c.disconnect();
  }
}

// -------------------------------------------------------------------------------------------------
// The worker's side

export interface RetrainWorkerOptions {
  redisUrl: string;
  /** TTL of the retraining lock (renewed every third of it while the run goes on). */
  lockTtlMs: number;
  /** BullMQ's job lock: a dead worker's job is handed on after about this. */
  lockDurationMs: number;
  prefix?: string;
  /** The store the bots use (STORE_URL; unset: the SQLite file in the bots' shared data folder). */
  storeUrl?: string;
  log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes retraining jobs (one at a time per worker, one at a time overall through the lock). */
export class RetrainJobWorker {
  private worker!: Worker<RetrainJobData, RetrainOutcome>;
  private connection!: Redis;
  private redis!: Redis;
  private current: RetrainProcess | undefined;
  private closing = false;
  runs = 0;

  private constructor(private readonly o: RetrainWorkerOptions) {}

  static async start(o: RetrainWorkerOptions): Promise<RetrainJobWorker> {
    const self = new RetrainJobWorker(o);
    self.connection = redisConnection(o.redisUrl, 'nocturne-worker-retrain');
    self.redis = redisConnection(o.redisUrl, 'nocturne-worker-retrain-lock');
    self.redis.on('error', (e) => o.log(`worker: redis (retrain lock): ${e.message}`));
    self.worker = new Worker<RetrainJobData, RetrainOutcome>(RETRAIN_QUEUE, (job) => self.process(job), {
      connection: self.connection,
      prefix: o.prefix ?? DEFAULT_REDIS_PREFIX,
      concurrency: 1,
      lockDuration: o.lockDurationMs,
      stalledInterval: Math.max(1000, Math.floor(o.lockDurationMs / 2)),
      // One hand-over after a worker dies; a run that kills its worker twice fails.
      maxStalledCount: 1,
    });
    self.worker.on('error', (e) => o.log(`worker: redis (retrain): ${e.message}`));
    await self.worker.waitUntilReady();
    o.log(`worker: taking retraining jobs, one at a time across all workers (lock ${retrainLockKey(o.prefix)}, ${o.lockTtlMs} ms)`);
    return self;
  }

  private get prefix(): string {
    return this.o.prefix ?? DEFAULT_REDIS_PREFIX;
  }

  private async process(job: Job<RetrainJobData, RetrainOutcome>): Promise<RetrainOutcome> {
    const started = Date.now();
    const config: CommunityConfig = { ...job.data.config, storeUrl: this.o.storeUrl };
    const { request } = job.data;
    const jobId = job.id ?? '';
    const key = retrainLockKey(this.prefix);
    const info: RetrainLockInfo = { jobId, worker: processName(), trigger: request.trigger, requestedBy: request.requestedBy, startedAt: new Date().toISOString() };
    if (job.stalledCounter > 0) this.o.log(`worker: retraining job ${jobId} again: the worker that had it stopped`);
    let lock: RedisLock<RetrainLockInfo>;
    let waitedFor: string | undefined;
    for (;;) {
      const attempt = await RedisLock.acquire(this.redis, key, info, this.o.lockTtlMs);
      if (attempt.acquired) {
        lock = attempt.lock;
        break;
      }
      const held = attempt.holder;
      // Another run holds it: this request came in while it ran.
      if (held.info.jobId !== jobId) {
        this.o.log(`worker: retraining job ${jobId}: busy, ${held.info.worker} is running job ${held.info.jobId}`);
        return busyBecauseRunning(held.info, started);
      }
      // An earlier attempt of this very job, on a worker that died: its lock expires by itself.
      if (!waitedFor) this.o.log(`worker: retraining job ${jobId}: the earlier attempt on ${held.info.worker} stopped; waiting for its lock to expire (${held.ttlMs} ms left)`);
      waitedFor = held.info.worker;
      if (this.closing) return emptyOutcome('', 'failed', 'the worker was stopped before the run could start; start it again', started);
      await sleep(Math.min(Math.max(held.ttlMs, 0), this.o.lockTtlMs) + 100);
    }
    this.o.log(`worker: retraining job ${jobId}: ${waitedFor ? `took over the retraining lock of ${waitedFor} after it expired` : 'took the retraining lock'}; starting the run (${request.trigger}${request.requestedBy ? ` by ${request.requestedBy}` : ''})`);
    let lostWhy: string | undefined;
    let run: RetrainProcess | undefined;
    lock.startHeartbeat((why) => {
      lostWhy = why;
      this.o.log(`worker: retraining job ${jobId}: lost the retraining lock (${why}); stopping the run`);
      run?.kill();
    });
    try {
      let runId: string | undefined;
      run = new RetrainProcess(
        config,
        request,
        (p) => {
          if (!runId) {
            runId = p.runId;
            void lock.update({ ...info, runId }).catch(() => undefined);
          }
          void job.updateProgress(p).catch(() => undefined);
        },
        undefined,
        { exitWithParent: true, externalLock: true },
      );
      this.current = run;
      this.runs++;
      let outcome = await run.outcome;
      if (lostWhy) outcome = { ...outcome, status: 'failed', reason: `the run was stopped because its worker lost the retraining lock (${lostWhy}); the serving model and the contributions are unchanged` };
      else if (this.closing && outcome.status === 'failed') outcome = { ...outcome, reason: `the worker running it was stopped; the serving model and the contributions are unchanged; start it again` };
      this.o.log(`worker: retraining job ${jobId}: ${outcome.status}: ${outcome.reason}`);
      if (outcome.status === 'promoted' && outcome.servingAfter) {
        const dir = join(config.dataDir, 'models', outcome.servingAfter);
        await this.redis
          .multi()
          .set(`${this.prefix}:${SERVING_KEY}`, dir)
          .publish(`${this.prefix}:${SERVING_CHANNEL}`, dir)
          .exec()
          .catch((e: Error) => this.o.log(`worker: could not announce ${dir}: ${e.message}`));
      }
      return outcome;
    } finally {
      this.current = undefined;
      await lock.release().catch(() => undefined);
    }
  }

  /** Stops taking runs; a run in progress is killed (safe at any point) and reported as stopped. */
  async close(): Promise<void> {
    this.closing = true;
    this.current?.kill();
    await this.worker.close();
    await this.redis.quit().catch(() => undefined);
    await this.connection.quit().catch(() => undefined);
  }
}
