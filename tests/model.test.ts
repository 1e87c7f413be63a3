import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { inputWidth, writeInputRow } from '../src/model/note/features.ts';
import { DATA_ATTRIBUTION, modelAttribution } from '../src/model/folder.ts';
import { loadModelFolder, readModelSpec } from '../src/model/note/folder.ts';
import { initialState, sequenceHidden, stepForward, disposeState } from '../src/model/note/network.ts';
import { lstmCell, lstmRecurrence } from '../src/model/layers.ts';
import { seededRandom } from '../src/model/random.ts';
import { generateTokens, sampleNext } from '../src/model/note/sampling.ts';
import { beatPositions, type NoteToken } from '../src/tokens/tokenize.ts';
import { createTinyModel } from './support/tinyModel.ts';

let dir: string;
before(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(join(tmpdir(), 'nocturne-model-'));
  await createTinyModel(join(dir, 'tiny'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const melody = (n: number, seed = 1): NoteToken[] => {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => ({ dt: i === 0 ? 0 : Math.floor(rng.next() * 4) * 3, pitch: 48 + Math.floor(rng.next() * 30), dur: 1 + Math.floor(rng.next() * 12), vel: Math.floor(rng.next() * 8) }));
};

describe('model folder', () => {
  test('saves and loads the same weights', async () => {
    const a = await loadModelFolder(join(dir, 'tiny'));
    const b = await loadModelFolder(join(dir, 'tiny'));
    for (const name of Object.keys(a.weights)) assert.deepEqual(await a.weights[name].data(), await b.weights[name].data(), name);
    tf.dispose([...Object.values(a.weights), ...Object.values(b.weights)]);
  });

  const tamper = async (edit: (spec: Record<string, any>) => void) => {
    const copy = join(dir, `tampered-${Math.random().toString(36).slice(2)}`);
    await createTinyModel(copy);
    const spec = JSON.parse(await readFile(join(copy, 'model.json'), 'utf8'));
    edit(spec);
    await writeFile(join(copy, 'model.json'), JSON.stringify(spec));
    return copy;
  };

  test('refuses a different token scheme, composer count or weight shape', async () => {
    await assert.rejects(readModelSpec(await tamper((s) => (s.tokens.stepsPerBeat = 4))), /token scheme/);
    await assert.rejects(readModelSpec(await tamper((s) => s.composers.push({ name: 'Bach', pieces: 1, tempoBpm: 100 }))), /input width/);
    await assert.rejects(readModelSpec(await tamper((s) => (s.hyperparameters.hidden = 32))), /weight lstm0\/wx is 327x64, expected 327x128|weight .* expected/);
    await assert.rejects(readModelSpec(await tamper((s) => (s.format = 'keras'))), /format/);
  });

  test('refuses truncated weights and a missing folder with a clear message', async () => {
    const copy = join(dir, 'truncated');
    await createTinyModel(copy);
    await truncate(join(copy, 'weights.bin'), 100);
    await assert.rejects(loadModelFolder(copy), /weights\.bin holds 100 bytes/);
    await assert.rejects(loadModelFolder(join(dir, 'nope')), /no model\.json/);
  });

  test("a piece credits the training data its model's folder names; a folder without one, piano-midi.de", async () => {
    const spec = await readModelSpec(await tamper((s) => (s.data.attribution = 'Trained on other MIDI files, CC0')));
    assert.equal(modelAttribution(spec), 'Trained on other MIDI files, CC0');
    const bare = await readModelSpec(await tamper((s) => delete s.data.attribution));
    assert.equal(modelAttribution(bare), DATA_ATTRIBUTION);
  });
});

describe('stateful decoding', () => {
  test('stepping gives the same activations as running the whole window', async () => {
    const { spec, weights } = await loadModelFolder(join(dir, 'tiny'));
    const h = spec.hyperparameters;
    const T = h.window;
    const D = inputWidth(spec.composers.length);
    const tokens = melody(T);
    const positions = beatPositions(tokens);
    const rows = new Float32Array(T * D);
    for (let t = 0; t < T; t++) writeInputRow(rows, t * D, t ? tokens[t - 1] : undefined, t ? positions[t - 1] % 12 : 0, 1);
    const whole = tf.tidy(() => sequenceHidden(weights, h, tf.tensor2d(rows, [T, D]), 1, T).arraySync());
    let state = initialState(h, 1);
    let maxDiff = 0;
    for (let t = 0; t < T; t++) {
      const x = tf.tensor2d(rows.subarray(t * D, (t + 1) * D), [1, D]);
      const step = stepForward(weights, h, state, x);
      state = step.state;
      const z = step.z.arraySync()[0];
      z.forEach((v, k) => (maxDiff = Math.max(maxDiff, Math.abs(v - whole[t][k]))));
      tf.dispose([x, step.z]);
    }
    disposeState(state);
    tf.dispose(Object.values(weights));
    // The sequence form's attention sees at most W outputs through its block mask; stepping
    // keeps a ring of W. Past the first W steps both must agree exactly (up to float error).
    assert.ok(maxDiff < 1e-4, `max difference ${maxDiff}`);
  });
});

describe('LSTM recurrence', () => {
  test('its hand-written backward pass gives autodiff\'s gradients through lstmCell; its forward gives the same outputs bit for bit', () => {
    const [B, T, H] = [3, 7, 5];
    const xProj = tf.randomNormal([T * B, 4 * H], 0, 1, 'float32', 11) as tf.Tensor2D;
    const wh = tf.randomNormal([H, 4 * H], 0, 0.5, 'float32', 12) as tf.Tensor2D;
    const weightsOfOutputs = tf.randomNormal([T * B, H], 0, 1, 'float32', 13) as tf.Tensor2D; // a loss that weighs every output
    const reference = (x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D => {
      const steps = tf.unstack(x.reshape([T, B, 4 * H])) as tf.Tensor2D[];
      let h = tf.zeros([B, H]) as tf.Tensor2D;
      let c = tf.zeros([B, H]) as tf.Tensor2D;
      const hs: tf.Tensor2D[] = [];
      for (const step of steps) {
        [h, c] = lstmCell(step, h, c, w, H);
        hs.push(h);
      }
      return tf.concat(hs, 0) as tf.Tensor2D;
    };
    const before = tf.memory().numTensors;
    const lossOf = (f: (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D) => (x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.tanh(f(x as tf.Tensor2D, w as tf.Tensor2D)), weightsOfOutputs));
    const [gxRef, gwRef] = tf.grads(lossOf(reference))([xProj, wh]);
    const [gx, gw] = tf.grads(lossOf((x, w) => lstmRecurrence(x, w, B, T)))([xProj, wh]);
    const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
      const [av, bv] = [a.dataSync(), b.dataSync()];
      assert.equal(av.length, bv.length);
      let scale = 0;
      for (const v of bv) scale = Math.max(scale, Math.abs(v));
      assert.ok(scale > 0.01, `${what}: the gradient is not trivially zero`);
      for (let k = 0; k < av.length; k++) assert.ok(Math.abs(av[k] - bv[k]) <= 1e-5 * scale + 1e-6, `${what}[${k}]: ${av[k]} vs ${bv[k]}`);
    };
    close(gx, gxRef, 'd xProj');
    close(gw, gwRef, 'd wh');
    tf.dispose([gxRef, gwRef, gx, gw]);
    assert.equal(tf.memory().numTensors, before, 'the backward pass leaves no tensors behind');
    const out = lstmRecurrence(xProj, wh, B, T);
    assert.equal(tf.memory().numTensors, before + 1, 'the forward pass leaves only its output');
    const outRef = tf.tidy(() => reference(xProj, wh));
    assert.deepEqual(Array.from(out.dataSync()), Array.from(outRef.dataSync()));
    tf.dispose([out, outRef]);
    tf.dispose([xProj, wh, weightsOfOutputs]);
  });
});

describe('sampling', () => {
  test('sampleNext: greedy at temperature 0, tiny top-p keeps only the best, masks hold', () => {
    const logits = [0.1, 2, 0.5, 1.9];
    const rng = seededRandom(1);
    assert.equal(sampleNext(logits, 0, 1, rng), 1);
    for (let i = 0; i < 50; i++) assert.equal(sampleNext(logits, 1, 1e-6, rng), 1);
    for (let i = 0; i < 50; i++) assert.notEqual(sampleNext(logits, 1, 1, rng, (k) => k !== 1), 1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[sampleNext(logits, 1, 1, rng)]++;
    const p1 = Math.exp(2) / logits.reduce((s, l) => s + Math.exp(l), 0);
    assert.ok(Math.abs(counts[1] / 4000 - p1) < 0.03, `frequency ${counts[1] / 4000} vs ${p1}`);
    assert.throws(() => sampleNext(logits, 1, 1, rng, () => false), /masked/);
  });

  test('the same seed and parameters give the same notes; another seed gives others', async () => {
    const { spec, weights } = await loadModelFolder(join(dir, 'tiny'));
    const req = { composer: 0, notes: 40, temperature: 1, topP: 0.95, randomSeed: 42 };
    const [a] = generateTokens(weights, spec.hyperparameters, 2, [req]);
    const [b] = generateTokens(weights, spec.hyperparameters, 2, [req]);
    const [c] = generateTokens(weights, spec.hyperparameters, 2, [{ ...req, randomSeed: 43 }]);
    assert.equal(a.length, 40);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    // Batched with others, a request still gets its own notes.
    const batch = generateTokens(weights, spec.hyperparameters, 2, [{ ...req, randomSeed: 7, notes: 25 }, req, { ...req, composer: 2 }]);
    assert.deepEqual(batch[1], a);
    assert.equal(batch[0].length, 25);
    tf.dispose(Object.values(weights));
  });

  test('chords are written low to high without repeated keys', async () => {
    const { spec, weights } = await loadModelFolder(join(dir, 'tiny'));
    const [tokens] = generateTokens(weights, spec.hyperparameters, 2, [{ composer: 1, notes: 300, temperature: 1.5, topP: 1, randomSeed: 5 }]);
    let chords = 0;
    tokens.forEach((t, i) => {
      if (i > 0 && t.dt === 0) {
        chords++;
        assert.ok(t.pitch > tokens[i - 1].pitch, `note ${i}: ${t.pitch} after ${tokens[i - 1].pitch} at the same onset`);
      }
    });
    assert.ok(chords > 0, 'an untrained model at temperature 1.5 should emit some dt = 0');
    tf.dispose(Object.values(weights));
  });

  test('generation leaks no tensors, primed or not', async () => {
    const { spec, weights } = await loadModelFolder(join(dir, 'tiny'));
    generateTokens(weights, spec.hyperparameters, 2, [{ composer: 0, notes: 5, temperature: 1, topP: 1, randomSeed: 1 }]); // warm-up
    const before = tf.memory().numTensors;
    const beforeBytes = tf.memory().numBytes;
    generateTokens(weights, spec.hyperparameters, 2, [
      { composer: 0, notes: 60, temperature: 1, topP: 0.9, randomSeed: 1 },
      { composer: 1, notes: 30, temperature: 0.5, topP: 1, randomSeed: 2, primer: melody(50) },
    ]);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(tf.memory().numBytes, beforeBytes);
    tf.dispose(Object.values(weights));
  });

  test('a primer changes what follows', async () => {
    const { spec, weights } = await loadModelFolder(join(dir, 'tiny'));
    const req = { composer: 0, notes: 30, temperature: 0, topP: 1, randomSeed: 1 };
    const [plain, primed] = generateTokens(weights, spec.hyperparameters, 2, [req, { ...req, primer: melody(40, 9) }]);
    assert.notDeepEqual(plain, primed);
    tf.dispose(Object.values(weights));
  });
});

describe('batches', () => {
  test('evaluation chunks cover every note exactly once; training chunks stay full', async () => {
    const { chunkPieces, buildBatch } = await import('../src/model/note/train/batches.ts');
    const pieces = [{ composer: 'Chopin', tokens: melody(300) }, { composer: 'Mozart', tokens: melody(20) }];
    const options = { window: 128, composerIndex: new Map([['Chopin', 0], ['Mozart', 1]]), composers: 2 };
    const evalChunks = chunkPieces(pieces, 128);
    const batch = buildBatch(pieces, evalChunks, options);
    assert.equal(batch.realTargets, 320);
    tf.dispose([batch.inputs, ...batch.targets]);
    const trainChunks = chunkPieces(pieces, 128, seededRandom(3));
    const covered = new Set<number>();
    for (const c of trainChunks.filter((c) => c.piece === 0)) {
      assert.ok(c.start + 128 <= 300, 'a training chunk never runs past its piece');
      for (let k = c.start; k < c.start + 128; k++) covered.add(k);
    }
    assert.equal(covered.size, 300);
  });
});
