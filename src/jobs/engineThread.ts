/**
 * The Engine in a worker thread, behind the same composeMany/info/composerNames face. A class
 * because it has a lifecycle: open (start the thread, load the model) and close.
 *
 * If the thread dies (out of memory, a native crash), the batches in flight fail with a one-line
 * error and the next batch starts a fresh thread.
 */
import { Worker } from 'node:worker_threads';
import { ComposeInputError } from '../engine/engine.ts';
import type { ComposeRequest, ComposeResult, ComposeStage, ModelInfo } from '../engine/types.ts';
import type { BackendChoice } from '../model/backend.ts';

/** What the job queue needs from an engine: Engine itself or this thread wrapper. */
export interface ComposeBackend {
  readonly composerNames: string[];
  info(): ModelInfo;
  /**
   * `onQueued` (remote backends only): the request's 1-based place among the jobs waiting in the
   * shared queue, reported when it is queued and whenever it moves, until it starts.
   */
  composeMany(requests: ComposeRequest[], onStage?: (index: number, stage: ComposeStage) => void, onQueued?: (index: number, place: number) => void): Promise<PromiseSettledResult<ComposeResult>[]>;
  /** True when jobs wait in a queue shared with other bots (Redis): the JobQueue then hands them over at once. */
  readonly remoteQueue?: boolean;
  /** Jobs waiting in that shared queue, from every bot, when last seen. */
  remoteWaiting?(): number;
}

/** A backend the bot composes with, which can change the model it serves (Bot.useModel). */
export interface ServingBackend extends ComposeBackend {
  /**
   * Serves the model in `modelDir` from now on. Resolves with the backend that serves it: a new one
   * (the caller moves the queue to it, then closes this one), or this one, when the model is loaded
   * elsewhere (the Redis workers, told to reload it).
   */
  serve(modelDir: string): Promise<ServingBackend>;
  close(drainMs?: number): Promise<void>;
}

export type ToEngineThread = { type: 'compose'; batchId: number; requests: ComposeRequest[] } | { type: 'close' };

export type SettledMessage = { status: 'fulfilled'; value: ComposeResult } | { status: 'rejected'; name: string; message: string };

export type FromEngineThread =
  | { type: 'opened'; info: ModelInfo; composerNames: string[] }
  | { type: 'open-failed'; message: string }
  | { type: 'log'; line: string }
  | { type: 'stage'; batchId: number; index: number; stage: ComposeStage }
  | { type: 'composed'; batchId: number; results: SettledMessage[] };

interface PendingBatch {
  size: number;
  onStage: (index: number, stage: ComposeStage) => void;
  resolve: (results: PromiseSettledResult<ComposeResult>[]) => void;
}

const WORKER_ENTRY = new URL('./engineWorker.ts', import.meta.url).href;

/**
 * Worker threads do not inherit tsx's module hooks, so the thread registers tsx itself before it
 * imports the TypeScript entry (the same thing bin/nocturne.js does for the CLI).
 */
function workerBootstrap(): string {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  return [
    `const { parentPort } = require('node:worker_threads');`,
    `import(${JSON.stringify(tsxApi)})`,
    `  .then((m) => { m.register(); return import(${JSON.stringify(WORKER_ENTRY)}); })`,
    `  .catch((e) => parentPort.postMessage({ type: 'open-failed', message: String((e && e.message) || e) }));`,
  ].join('\n');
}

export class EngineThread implements ServingBackend {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, PendingBatch>();
  private nextBatchId = 1;
  private closing = false;

  private constructor(
    private readonly modelDir: string,
    private readonly backend: BackendChoice,
    private readonly log: (line: string) => void,
    private model: ModelInfo,
    private names: string[],
  ) {}

  /** Starts the thread and loads the model; rejects with the engine's message if it cannot. */
  static async open(modelDir: string, backend: BackendChoice = 'auto', log: (line: string) => void = () => {}): Promise<EngineThread> {
    const thread = new EngineThread(modelDir, backend, log, { version: '', composers: [], metrics: {}, trainedAt: '' }, []);
    await thread.start();
    return thread;
  }

  get composerNames(): string[] {
    return this.names;
  }

  info(): ModelInfo {
    return this.model;
  }

  async composeMany(requests: ComposeRequest[], onStage: (index: number, stage: ComposeStage) => void = () => {}): Promise<PromiseSettledResult<ComposeResult>[]> {
    if (this.closing) throw new Error('the engine is shutting down');
    if (!this.worker) await this.start();
    const batchId = this.nextBatchId++;
    return new Promise((resolve) => {
      this.pending.set(batchId, { size: requests.length, onStage, resolve });
      this.worker!.postMessage({ type: 'compose', batchId, requests } satisfies ToEngineThread);
    });
  }

  /** A new thread on `modelDir` (same backend choice and log); this one keeps running until closed. */
  serve(modelDir: string): Promise<EngineThread> {
    return EngineThread.open(modelDir, this.backend, this.log);
  }

  /**
   * Stops the thread once the batches in flight have come back (waiting at most `drainMs` for
   * them; after that they fail with "the engine thread stopped").
   */
  async close(drainMs = 30_000): Promise<void> {
    this.closing = true;
    for (let waited = 0; this.pending.size > 0 && waited < drainMs; waited += 50) await new Promise((r) => setTimeout(r, 50));
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'close' } satisfies ToEngineThread);
    const timer = setTimeout(() => void worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }

  private start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerBootstrap(), { eval: true, workerData: { modelDir: this.modelDir, backend: this.backend } });
      let opened = false;
      worker.on('message', (message: FromEngineThread) => {
        switch (message.type) {
          case 'opened':
            opened = true;
            this.model = message.info;
            this.names = message.composerNames;
            this.worker = worker;
            resolve();
            break;
          case 'open-failed':
            void worker.terminate();
            reject(new Error(message.message));
            break;
          case 'log':
            this.log(message.line);
            break;
          case 'stage':
            this.pending.get(message.batchId)?.onStage(message.index, message.stage);
            break;
          case 'composed': {
            const batch = this.pending.get(message.batchId);
            this.pending.delete(message.batchId);
            batch?.resolve(message.results.map(settledFromMessage));
            break;
          }
        }
      });
      worker.on('error', (e) => {
        this.log(`engine thread error: ${e.message}`);
        if (!opened) reject(e);
      });
      worker.on('exit', (code) => {
        if (this.worker === worker) this.worker = undefined;
        if (!opened) reject(new Error(`the engine thread exited (code ${code}) before the model loaded`));
        // Fail whatever this thread still owed; the next batch starts a fresh thread.
        for (const [id, batch] of this.pending) {
          this.pending.delete(id);
          const reason = new Error(`the engine thread stopped (exit code ${code}) while composing; please try again`);
          batch.resolve(Array.from({ length: batch.size }, () => ({ status: 'rejected', reason })));
        }
      });
    });
  }
}

function settledFromMessage(m: SettledMessage): PromiseSettledResult<ComposeResult> {
  if (m.status === 'fulfilled') return m;
  const reason = m.name === 'ComposeInputError' ? new ComposeInputError(m.message) : new Error(m.message);
  return { status: 'rejected', reason };
}
