/**
 * `nocturne worker`: a generation worker for the Redis scale-out (docs/scaling.md). Configured by
 * environment variables (REDIS_URL, NOCTURNE_MODEL_DIR, NOCTURNE_BACKEND, NOCTURNE_BATCH_MAX,
 * NOCTURNE_BATCH_WINDOW_MS, NOCTURNE_WORKER_LOCK_MS); runs until SIGTERM/SIGINT, then finishes the
 * batch it holds and exits.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, loadWorkerConfig } from '../config.ts';

export const WORKER_USAGE = `usage: nocturne worker
Takes compose jobs from Redis (REDIS_URL) and runs the model; start as many as you like, on any
machine that reaches Redis. The bots (nocturne start with the same REDIS_URL) only talk to chat.
Settings: REDIS_URL (required), NOCTURNE_MODEL_DIR, NOCTURNE_BACKEND, NOCTURNE_BATCH_MAX,
NOCTURNE_BATCH_WINDOW_MS, NOCTURNE_WORKER_LOCK_MS (see .env.example).`;

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
  const { ComposeWorker } = await import('../jobs/worker.ts');
  const worker = await ComposeWorker.start({ ...config, log });
  const signal = await new Promise<string>((done) => {
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => done(s));
  });
  log(`worker: ${signal}: finishing the batch in hand, then stopping`);
  for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => process.exit(130));
  await worker.close();
  return 0;
}
