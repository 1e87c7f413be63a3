/**
 * Worker-thread entry for EngineThread: owns the Engine (and so every tensor), answers batches.
 * Sampling is synchronous CPU work; running it here keeps the chat connections' event loop free
 * (Discord and Slack both drop a command that is not acknowledged within 3 s).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from '../engine/engine.ts';
import type { ComposeRequest } from '../engine/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import type { FromEngineThread, ToEngineThread } from './engineThread.ts';

const port = parentPort;
if (!port) throw new Error('engineWorker.ts runs only as a worker thread');
const { modelDir, backend } = workerData as { modelDir: string; backend: BackendChoice };
const send = (message: FromEngineThread): void => port.postMessage(message);

let engine: Engine | undefined;
try {
  engine = await Engine.open(modelDir, backend, (line) => send({ type: 'log', line }));
  send({ type: 'opened', info: engine.info(), composerNames: engine.composerNames });
} catch (e) {
  send({ type: 'open-failed', message: e instanceof Error ? e.message : String(e) });
}

port.on('message', (message: ToEngineThread) => {
  if (message.type === 'close') {
    engine?.dispose();
    engine = undefined;
    port.close();
    return;
  }
  if (message.type === 'compose') void compose(message.batchId, message.requests);
});

async function compose(batchId: number, requests: ComposeRequest[]): Promise<void> {
  if (!engine) {
    send({ type: 'composed', batchId, results: requests.map(() => ({ status: 'rejected', name: 'Error', message: 'the model is not loaded' })) });
    return;
  }
  try {
    const settled = await engine.composeMany(requests, (index, stage) => send({ type: 'stage', batchId, index, stage }));
    send({
      type: 'composed',
      batchId,
      results: settled.map((s) =>
        s.status === 'fulfilled'
          ? { status: 'fulfilled', value: s.value }
          : { status: 'rejected', name: (s.reason as Error)?.name ?? 'Error', message: (s.reason as Error)?.message ?? String(s.reason) },
      ),
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    send({ type: 'composed', batchId, results: requests.map(() => ({ status: 'rejected', name: 'Error', message })) });
  }
}
