import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../model/backend.ts';
import { loadModelFolder } from '../model/folder.ts';
import { generateTokens } from '../model/sampling.ts';
async function main() {
  await initBackend('auto', () => {});
  for (const dir of ['models/default', 'models/long-context']) {
    const { spec, weights } = await loadModelFolder(dir);
    const req = { composer: 7, notes: 500, temperature: 1, topP: 0.95, randomSeed: 1 };
    generateTokens(weights, spec.hyperparameters, spec.composers.length, [req]);
    const n0 = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) generateTokens(weights, spec.hyperparameters, spec.composers.length, [{ ...req, randomSeed: i }]);
    console.log(dir, ((performance.now() - t0) / 3).toFixed(0), 'ms per 500 notes at batch 1; tensors', n0, tf.memory().numTensors);
  }
}
main();
