/**
 * `nocturne worker`: a generation worker for the Redis scale-out (docs/scaling.md). Configured by
 * environment variables (REDIS_URL, NOCTURNE_MODEL_DIR, NOCTURNE_BACKEND, NOCTURNE_BATCH_MAX,
 * NOCTURNE_BATCH_WINDOW_MS, NOCTURNE_WORKER_LOCK_MS, NOCTURNE_WORKER_RETRAIN, NOCTURNE_RETRAIN_LOCK_MS);
 * takes compose jobs and (unless NOCTURNE_WORKER_RETRAIN=off) retraining jobs; runs until
 * SIGTERM/SIGINT, then finishes the batch it holds, stops a retraining run, and exits.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, loadWorkerConfig } from './config.ts';

export const WORKER_USAGE = `usage: nocturne worker
Takes compose jobs from Redis (REDIS_URL) and runs the model; start as many as you like, on any
machine that reaches Redis. The bots (nocturne start with the same REDIS_URL) only talk to chat.
It also takes retraining jobs, one at a time across all workers (NOCTURNE_WORKER_RETRAIN=off to
leave them to other workers); it then needs the bots' NOCTURNE_DATA_DIR and corpus at the same paths.
Settings: REDIS_URL (required), NOCTURNE_MODEL_DIR, NOCTURNE_BACKEND, NOCTURNE_BATCH_MAX,
NOCTURNE_BATCH_WINDOW_MS, NOCTURNE_WORKER_LOCK_MS, NOCTURNE_WORKER_RETRAIN, NOCTURNE_RETRAIN_LOCK_MS
(see .env.example).`;

export async function runWorker(argv: string[], log: (line: string) => void): Promise<number> {
  if (argv.length) {
    log(`nocturne worker takes no arguments (got ${argv.join(' ')}); configure it with environment variables\n\n${WORKER_USAGE}`);
    return 2;
  }
  const envFile = resolve('.env');
  if (existsSync(envFile)) process.loadEnvFile(envFile);
  let config;
  try {
    config = loadWorkerConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      log(e.message);
      return 2;
    }
    throw e;
  }
  const { ComposeWorker } = await import('../scaleout/worker.ts');
  const { retrain, retrainLockMs, storeUrl, ...composeConfig } = config;
  const worker = await ComposeWorker.start({ ...composeConfig, log });
  let retrainer: import('../scaleout/retrainQueue.ts').RetrainJobWorker | undefined;
  if (retrain) {
    const { RetrainJobWorker } = await import('../scaleout/retrainQueue.ts');
    retrainer = await RetrainJobWorker.start({ redisUrl: config.redisUrl, lockTtlMs: retrainLockMs, lockDurationMs: config.lockDurationMs, storeUrl, log });
  }
  const signal = await new Promise<string>((done) => {
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => done(s));
  });
  log(`worker: ${signal}: finishing the batch in hand, then stopping`);
  for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => process.exit(130));
  // A retraining run in progress is stopped (it is safe to kill); compose batches in hand finish.
  await Promise.all([retrainer?.close(), worker.close()]);
  return 0;
}
