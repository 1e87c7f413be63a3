/**
 * Entry of the retraining child process (started by retrainProcess.ts with `node --import tsx`
 * and an IPC channel). argv: the validated config and the request, as JSON. It runs
 * runRetraining, sends progress and the outcome to the parent, and exits. The store URL comes in
 * the environment (STORE_URL; empty: the SQLite file), never in argv, as it may hold a password. Training is CPU-bound
 * and synchronous, so doing it here keeps the bot's own process free to answer /compose.
 */
import { initBackend } from '../model/backend.ts';
import type { CommunityConfig } from './config.ts';
import { runRetraining, type RetrainRequest } from './retrain.ts';
import type { FromRetrainWorker, RetrainProcessOptions } from './retrainMessages.ts';

let exitWithParent = false;

/** The parent is gone (its IPC channel closed): stop here, before anything else is written. */
function parentGone(): void {
  console.error('retraining worker: the parent process is gone; stopping (nothing this run made is used)');
  process.exit(1);
}

function send(message: FromRetrainWorker): Promise<void> {
  return new Promise((resolve) => {
    // Progress is sent at every stage change, so a run whose parent died stops before promoting.
    if (exitWithParent && !process.connected) parentGone();
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

async function main(): Promise<number> {
  const [configJson, requestJson, optionsJson] = process.argv.slice(2);
  if (!configJson || !requestJson) {
    console.error('usage: retrainWorker.ts CONFIG_JSON REQUEST_JSON (started by retrainProcess.ts)');
    return 2;
  }
  const config: CommunityConfig = { ...(JSON.parse(configJson) as CommunityConfig), storeUrl: process.env.STORE_URL?.trim() || undefined };
  const request = JSON.parse(requestJson) as RetrainRequest;
  const options = JSON.parse(optionsJson ?? '{}') as RetrainProcessOptions;
  exitWithParent = options.exitWithParent === true;
  if (exitWithParent) process.on('disconnect', parentGone);
  await initBackend('auto', (line) => console.error(line));
  const outcome = await runRetraining(config, request, (progress) => void send({ type: 'progress', progress }), { externalLock: options.externalLock });
  await send({ type: 'outcome', outcome });
  return outcome.status === 'failed' ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`retraining worker: ${(e as Error).message ?? String(e)}`);
    process.exit(1);
  },
);
