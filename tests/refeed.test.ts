/**
 * The decoders must agree with the training forward pass: stepping (dense or multi-hot
 * inputs) gives the same activations as sequenceHidden over the whole chunk, and whole-window
 * re-feed gives the same notes as stateful decoding while the history fits in the window.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { inputWidth, writeInputRow } from '../src/model/note/features.ts';
import { loadModelFolder } from '../src/model/note/folder.ts';
import { disposeState, initialState, sequenceHidden, sparseInputTable, stepForward, type SparseInputs } from '../src/model/note/network.ts';
import type { Weights } from '../src/model/layers.ts';
import { seededRandom } from '../src/model/random.ts';
import { generateTokensRefeed, refeedSteps } from '../src/model/note/refeed.ts';
import { generateTokens } from '../src/model/note/sampling.ts';
import type { ModelSpec } from '../src/model/note/folder.ts';
import { beatPositions, type NoteToken } from '../src/tokens/tokenize.ts';
import { createTinyModel } from './support/tinyModel.ts';

let dir: string;
let spec: ModelSpec;
let weights: Weights;
before(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(join(tmpdir(), 'nocturne-refeed-'));
  await createTinyModel(join(dir, 'tiny'));
  ({ spec, weights } = await loadModelFolder(join(dir, 'tiny')));
});
after(async () => {
  tf.dispose(Object.values(weights));
  await rm(dir, { recursive: true, force: true });
});

const melody = (n: number, seed: number): NoteToken[] => {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => ({ dt: i === 0 ? 0 : Math.floor(rng.next() * 4) * 3, pitch: 40 + Math.floor(rng.next() * 40), dur: 1 + Math.floor(rng.next() * 12), vel: Math.floor(rng.next() * 8) }));
};

/** Time-major input rows [T*B, D] for B melodies (row t describes note t-1), composer = row index. */
function chunkRows(melodies: NoteToken[][], D: number): Float32Array {
  const B = melodies.length;
  const T = melodies[0].length;
  const rows = new Float32Array(T * B * D);
  melodies.forEach((tokens, b) => {
    const positions = beatPositions(tokens);
    for (let t = 0; t < T; t++) writeInputRow(rows, (t * B + b) * D, t ? tokens[t - 1] : undefined, t ? positions[t - 1] : 0, b % 3);
  });
  return rows;
}

/** The same rows as SparseInputs (active columns, slot-major, padded with -1). */
function sparse(rows: Float32Array, D: number, B: number, table: Float32Array): SparseInputs {
  const active = Array.from({ length: B }, (_, r) => {
    const cols: number[] = [];
    for (let c = 0; c < D; c++) if (rows[r * D + c] !== 0) cols.push(c);
    return cols;
  });
  const slots = Math.max(...active.map((a) => a.length));
  const columns = new Int32Array(slots * B).fill(-1);
  active.forEach((cols, r) => cols.forEach((c, s) => (columns[s * B + r] = c)));
  return { table, columns, rows: B, slots };
}

describe('stepping', () => {
  test('multi-hot (sparse) steps give the same z as dense steps, to the last bit, and both match sequenceHidden at batch 3', () => {
    const h = spec.hyperparameters;
    const D = inputWidth(spec.composers.length);
    const B = 3;
    const T = h.window; // several attention windows: the ring fills, then slides
    const rows = chunkRows([melody(T, 1), melody(T, 2), melody(T, 3)], D);
    const whole = tf.tidy(() => sequenceHidden(weights, h, tf.tensor2d(rows, [T * B, D]), B, T).dataSync().slice());
    const table = sparseInputTable(weights);
    let dense = initialState(h, B);
    let multiHot = initialState(h, B);
    const Z = h.headDim;
    let maxStepVsWhole = 0;
    let maxSparseVsDense = 0;
    for (let t = 0; t < T; t++) {
      const slice = rows.subarray(t * B * D, (t + 1) * B * D);
      const x = tf.tensor2d(slice, [B, D]);
      const a = stepForward(weights, h, dense, x);
      const b = stepForward(weights, h, multiHot, sparse(slice, D, B, table));
      dense = a.state;
      multiHot = b.state;
      const za = a.z.dataSync();
      const zb = b.z.dataSync();
      for (let k = 0; k < B * Z; k++) {
        maxSparseVsDense = Math.max(maxSparseVsDense, Math.abs(za[k] - zb[k]));
        maxStepVsWhole = Math.max(maxStepVsWhole, Math.abs(zb[k] - whole[t * B * Z + k]));
      }
      tf.dispose([x, a.z, b.z]);
    }
    disposeState(dense);
    disposeState(multiHot);
    assert.equal(maxSparseVsDense, 0, `sparse and dense input projections differ by ${maxSparseVsDense}`);
    assert.ok(maxStepVsWhole < 1e-4, `stepping differs from the whole-chunk pass by ${maxStepVsWhole}`);
  });
});

describe('whole-window re-feed', () => {
  test('window lengths are whole attention blocks, capped at the window', () => {
    const h = spec.hyperparameters; // attention window 8, window 32
    assert.equal(refeedSteps(h, 1, 32), 8);
    assert.equal(refeedSteps(h, 9, 32), 16);
    assert.equal(refeedSteps(h, 32, 32), 32);
    assert.equal(refeedSteps(h, 500, 32), 32);
    assert.throws(() => refeedSteps(h, 5, 20), /multiple of the attention window/);
  });

  test('gives the same notes as stateful decoding while the history fits in the window', () => {
    const h = spec.hyperparameters;
    const requests = [
      { composer: 0, notes: h.window, temperature: 1, topP: 0.95, randomSeed: 5 },
      { composer: 2, notes: h.window - 7, temperature: 0.7, topP: 1, randomSeed: 6 },
      { composer: 1, notes: 12, temperature: 1, topP: 0.9, randomSeed: 7, primer: melody(h.window - 12, 4) },
    ];
    const stateful = generateTokens(weights, h, spec.composers.length, requests);
    const refeed = generateTokensRefeed(weights, h, spec.composers.length, requests);
    assert.deepEqual(refeed, stateful);
  });

  test('keeps running past the window (dropping the oldest notes), batched, without leaking tensors', () => {
    const h = spec.hyperparameters;
    const requests = [
      { composer: 0, notes: 10, temperature: 1, topP: 0.95, randomSeed: 1, primer: melody(3 * h.window, 8) },
      { composer: 1, notes: 6, temperature: 1, topP: 0.95, randomSeed: 2 },
    ];
    generateTokensRefeed(weights, h, spec.composers.length, requests); // warm-up
    const before = tf.memory().numTensors;
    const out = generateTokensRefeed(weights, h, spec.composers.length, requests);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(out.map((o) => o.length), [10, 6]);
    for (const t of out.flat()) assert.ok(t.pitch >= 21 && t.pitch <= 108 && t.dur >= 1 && t.dt >= 0);
  });
});
