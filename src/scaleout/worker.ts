/**
 * `nocturne worker`: takes compose jobs from the BullMQ queue in Redis and runs the engine (in its
 * engine thread), any number of them on any machine. A class because it has a lifecycle.
 *
 * - Batching per worker: BullMQ hands this process up to `maxBatch` jobs at once; the ones that
 *   arrive within `batchWindowMs` of the first are batched by the in-process queue's rule
 *   (src/jobs/batching.ts: jobs of similar length together), each batch sampled in one
 *   composeMany pass.
 * - Progress: 'composing' and 'rendering' go to the bot as BullMQ job progress events.
 * - Files go back in the job's return value (see src/scaleout/redisQueue.ts for why and the bounds).
 * - A worker that dies mid-job stops renewing its lock; BullMQ's stalled-job check hands the job
 *   to another worker (lockDurationMs), so the user still gets exactly one answer.
 * - Promotions: a message on `<prefix>:serving` names a model folder; the worker opens it and
 *   swaps engines between batches, without a restart. The last announced folder is also kept in
 *   `<prefix>:serving-dir`, and a worker that starts later serves that one.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ComposeRequest, ComposeStage } from '../engine/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import { fitAudio } from '../jobs/audioFit.ts';
import { takeBatch } from '../jobs/batching.ts';
import { EngineThread } from '../jobs/engineThread.ts';
import { COMPOSE_QUEUE, DEFAULT_REDIS_PREFIX, INPUT_ERROR_PREFIX, RESULT_MAX_BYTES, SERVING_CHANNEL, SERVING_KEY, redactedUrl, redisConnection, requestOf, type ComposeJobData, type ComposeJobProgress, type ComposeJobResult } from './redisQueue.ts';

export interface WorkerOptions {
  redisUrl: string;
  modelDir: string;
  backend: BackendChoice;
  maxBatch: number;
  batchWindowMs: number;
  /** How long a job's lock lasts without renewal: a dead worker's job moves on after about this. */
  lockDurationMs: number;
  prefix?: string;
  log: (line: string) => void;
}

interface Pending {
  job: Job<ComposeJobData>;
  resolve: (value: ComposeJobResult) => void;
  reject: (e: Error) => void;
}

export class ComposeWorker {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private worker!: Worker<ComposeJobData, ComposeJobResult>;
  private subscriber!: Redis;
  private connection!: Redis;
  /** The folder served now, or being opened to serve next. */
  private servingDir: string;
  private switching: Promise<void> = Promise.resolve();
  /** Jobs being composed (or waiting for their batch) here, by job id. */
  private readonly inHand = new Map<string, Promise<ComposeJobResult>>();
  batches = 0;
  jobs = 0;

  private constructor(
    private engine: EngineThread,
    private readonly o: WorkerOptions,
  ) {
    this.servingDir = o.modelDir;
  }

  static async start(o: WorkerOptions): Promise<ComposeWorker> {
    const prefix = o.prefix ?? DEFAULT_REDIS_PREFIX;
    const connection = redisConnection(o.redisUrl, 'nocturne-worker');
    // A worker started after a promotion (or a rollback) serves what was announced last, not the
    // folder it was configured with.
    const announced = await connection.get(`${prefix}:${SERVING_KEY}`).catch(() => null);
    const modelDir = announced && existsSync(join(announced, 'model.json')) ? announced : o.modelDir;
    let engine: EngineThread;
    try {
      engine = await EngineThread.open(modelDir, o.backend, o.log);
    } catch (e) {
      connection.disconnect();
      throw e;
    }
    if (modelDir !== o.modelDir) o.log(`worker: serving ${modelDir}, the model last announced on Redis (rather than ${o.modelDir})`);
    const self = new ComposeWorker(engine, { ...o, modelDir });
    self.connection = connection;
    self.worker = new Worker<ComposeJobData, ComposeJobResult>(COMPOSE_QUEUE, (job) => self.take(job), {
      connection: self.connection,
      prefix,
      concurrency: o.maxBatch,
      lockDuration: o.lockDurationMs,
      stalledInterval: Math.max(1000, Math.floor(o.lockDurationMs / 2)),
      maxStalledCount: 2,
    });
    self.worker.on('error', (e) => o.log(`worker: redis: ${e.message}`));
    self.subscriber = redisConnection(o.redisUrl, 'nocturne-worker-serving');
    self.subscriber.on('error', (e) => o.log(`worker: redis (serving): ${e.message}`));
    // One switch after another, in the order they were announced.
    self.subscriber.on('message', (_channel, dir) => void (self.switching = self.switching.then(() => self.serve(dir))));
    await self.subscriber.subscribe(`${prefix}:${SERVING_CHANNEL}`);
    await self.worker.waitUntilReady();
    o.log(`worker: taking compose jobs from ${redactedUrl(o.redisUrl)} with model ${engine.info().version} (batches of up to ${o.maxBatch})`);
    return self;
  }

  get modelVersion(): string {
    return this.engine.info().version;
  }

  /**
   * BullMQ's processor: joins the next batch and resolves with that job's files.
   *
   * A job this worker already holds can come back to it: when Redis was away for longer than the
   * job's lock (a restart), the lock has expired and BullMQ hands the job out again. The new
   * attempt then shares the composition in hand instead of composing it a second time; the old
   * attempt's result is refused by Redis (its lock is gone) and the new one's is taken. Without
   * this, the two attempts of one job id confuse BullMQ's lock renewal (tracked by job id) until
   * the job fails as stalled.
   */
  private take(job: Job<ComposeJobData>): Promise<ComposeJobResult> {
    const id = job.id ?? '';
    const earlier = this.inHand.get(id);
    if (earlier) {
      this.o.log(`worker: job ${id} was handed out again (its lock expired while Redis was away); it gets the piece already being composed`);
      return earlier;
    }
    const work = new Promise<ComposeJobResult>((resolve, reject) => {
      this.pending.push({ job, resolve, reject });
      if (this.pending.length >= this.o.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.batchWindowMs);
    });
    this.inHand.set(id, work);
    const forget = () => {
      if (this.inHand.get(id) === work) this.inHand.delete(id);
    };
    work.then(forget, forget);
    return work;
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    // Every job in hand has waited its window: those of other lengths form the next batches.
    while (this.pending.length > 0) {
      const { batch, rest } = takeBatch(this.pending, (p) => p.job.data.notes, this.o.maxBatch);
      this.pending = rest;
      this.running = this.running.then(() => this.compose(batch)).catch((e) => this.o.log(`worker: ${(e as Error).message}`));
    }
  }

  private async compose(batch: Pending[]): Promise<void> {
    const scratch = await mkdtemp(join(tmpdir(), 'nocturne-worker-'));
    try {
      const requests: ComposeRequest[] = batch.map(({ job }, i) => requestOf(job.data, join(scratch, String(i))));
      this.batches++;
      this.jobs += batch.length;
      const onStage = (i: number, stage: ComposeStage) => {
        if (stage === 'done') return;
        void batch[i]?.job.updateProgress({ stage } satisfies ComposeJobProgress).catch(() => undefined);
      };
      const settled = await this.engine.composeMany(requests, onStage);
      await Promise.all(
        settled.map(async (s, i) => {
          const { resolve, reject } = batch[i];
          if (s.status === 'rejected') {
            const e = s.reason as Error;
            const line = (e?.message ?? String(e)).split('\n')[0];
            return reject(new Error(e?.name === 'ComposeInputError' ? `${INPUT_ERROR_PREFIX}${line}` : line));
          }
          try {
            const { midiPath, pngPath, scorePath, scorePicturePath, ...rest } = s.value;
            const scoreFiles = scorePath && scorePicturePath ? [scorePath, scorePicturePath] : [];
            // Long pieces: the audio is made smaller (mono, then OGG) to fit the bound for Redis.
            let others = 0;
            for (const p of [midiPath, pngPath, ...scoreFiles]) others += (await stat(p)).size;
            const fitted = await fitAudio(midiPath, s.value.audioPath, RESULT_MAX_BYTES - others);
            if (!fitted.audioPath) return reject(new Error(`the audio does not fit the ${RESULT_MAX_BYTES}-byte limit for results carried through Redis`));
            const audioPath = fitted.audioPath;
            const { audioPath: _unfitted, ...result } = rest;
            const files = await Promise.all([midiPath, audioPath, pngPath, ...scoreFiles].map(async (p) => ({ name: basename(p), bytes: await readFile(p) })));
            const total = files.reduce((n, f) => n + f.bytes.length, 0);
            if (total > RESULT_MAX_BYTES) return reject(new Error(`the files are ${total} bytes, over the ${RESULT_MAX_BYTES}-byte limit for results carried through Redis`));
            const [midi, audio, png, score, scorePicture] = files.map((f) => ({ name: f.name, base64: f.bytes.toString('base64') }));
            resolve({ result, midi, audio, png, ...(score && scorePicture ? { score, scorePicture } : {}) });
          } catch (e) {
            reject(new Error(`could not read the generated files: ${(e as Error).message}`));
          }
        }),
      );
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Serves another model folder from the next batch on (a folder announced again is ignored). */
  private async serve(modelDir: string): Promise<void> {
    // Several processes may announce one promotion (the worker that ran it, each bot).
    if (modelDir === this.servingDir) return;
    const previousDir = this.servingDir;
    this.servingDir = modelDir;
    try {
      const next = await EngineThread.open(modelDir, this.o.backend, this.o.log);
      const previous = this.engine;
      await this.running;
      this.engine = next;
      await previous.close();
      this.o.log(`worker: now serving model ${next.info().version} from ${modelDir}`);
    } catch (e) {
      if (this.servingDir === modelDir) this.servingDir = previousDir;
      this.o.log(`worker: could not open the promoted model ${modelDir} (${(e as Error).message}); still serving ${this.engine.info().version}`);
    }
  }

  /** Stops taking jobs, finishes the ones it holds (bounded by BullMQ's close), closes the engine. */
  async close(): Promise<void> {
    await this.worker.close();
    this.flush();
    await this.running;
    await this.subscriber.quit().catch(() => undefined);
    await this.connection.quit().catch(() => undefined);
    await this.engine.close();
  }
}
