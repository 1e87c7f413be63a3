/**
 * Starts a retraining run in a child process (`node --import tsx retrainWorker.ts`) and follows
 * it: progress events as they come, and the outcome when it ends. A class because a running
 * child is a lifecycle (it can be killed; it ends).
 *
 * If the child dies without an outcome (killed, out of memory), the outcome is 'failed' with the
 * signal or exit code, the run's record is marked interrupted and its lock released, so the next
 * run can start at once. That cleanup is a convenience: the next run would find the dead pid and
 * do the same, which is what happens when the parent dies too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CommunityConfig } from './config.ts';
import { releaseRetrainLock } from './lock.ts';
import type { RetrainOutcome, RetrainProgress, RetrainRequest, RunRecord } from './retrain.ts';
import type { FromRetrainWorker, RetrainProcessOptions } from './retrainMessages.ts';
import type { CommunityStore } from './store.ts';

const WORKER = fileURLToPath(new URL('./retrainWorker.ts', import.meta.url));
const STDERR_KEPT = 4000;

export class RetrainProcess {
  /** The run's id once the child has taken the lock (from its first progress event). */
  runId: string | undefined;
  readonly outcome: Promise<RetrainOutcome>;
  private readonly child: ChildProcess;
  private stderr = '';

  /**
   * Starts the child. `store` (optional) is used only to tidy up after a child that died; the
   * child opens its own connection.
   */
  constructor(config: CommunityConfig, request: RetrainRequest, onProgress: (p: RetrainProgress) => void = () => {}, store?: CommunityStore, options: RetrainProcessOptions = {}) {
    const started = Date.now();
    // The store URL may hold a password: it goes in the child's environment, never in its argv
    // (which `ps` shows). Empty means the SQLite file, whatever this process's STORE_URL says.
    const { storeUrl, ...shown } = config;
    this.child = fork(WORKER, [JSON.stringify(shown), JSON.stringify(request), JSON.stringify(options)], {
      execArgv: ['--import', import.meta.resolve('tsx')],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, STORE_URL: storeUrl ?? '' },
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_KEPT);
    });
    let outcome: RetrainOutcome | undefined;
    this.child.on('message', (message: FromRetrainWorker) => {
      if (message.type === 'progress') {
        this.runId ??= message.progress.runId;
        try {
          onProgress(message.progress);
        } catch {
          // A failing listener must not lose the run.
        }
      } else if (message.type === 'outcome') outcome = message.outcome;
    });
    this.outcome = new Promise<RetrainOutcome>((resolve) => {
      this.child.on('error', (e) => {
        resolve({ runId: this.runId ?? '', status: 'failed', reason: `could not start the retraining process: ${e.message}`, servingBefore: '', servingAfter: '', contributionsUsed: 0, heldBack: 0, newComposers: [], waitingLabels: [], seconds: 0 });
      });
      this.child.on('exit', (code, signal) => {
        if (outcome) return resolve(outcome);
        const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
        const lastError = this.stderr.trim().split('\n').filter(Boolean).pop();
        const reason = `the retraining process ${how} before finishing${lastError ? `: ${lastError.slice(0, 300)}` : ''}; the serving model and the contributions are unchanged`;
        void this.tidyUp(store, reason).finally(() =>
          resolve({ runId: this.runId ?? '', status: 'failed', reason, servingBefore: '', servingAfter: '', contributionsUsed: 0, heldBack: 0, newComposers: [], waitingLabels: [], seconds: (Date.now() - started) / 1000 }),
        );
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Kills the run at once (SIGKILL). Safe at any point: see retrain.ts. */
  kill(): void {
    this.child.kill('SIGKILL');
  }

  private async tidyUp(store: CommunityStore | undefined, reason: string): Promise<void> {
    if (!store || !this.runId) return;
    try {
      const record = await store.get<RunRecord>(`run:${this.runId}`);
      if (record?.state === 'running') await store.set(`run:${this.runId}`, { ...record, state: 'interrupted', updatedAt: new Date().toISOString(), line: reason } satisfies RunRecord);
      await releaseRetrainLock(store, this.runId);
    } catch {
      // The next run cleans up as well.
    }
  }
}
