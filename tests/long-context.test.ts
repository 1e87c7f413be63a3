import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { inputWidth, LOOP_INPUT_SLOTS, OFFSET_COMPOSER, OFFSET_PITCH, writeInputRow } from '../src/model/note/features.ts';
import { loadModelFolder } from '../src/model/note/folder.ts';
import {
  advanceMemory,
  chunkHidden,
  chunkLoss,
  createLongContextWeights,
  disposeMemory,
  emptyMemory,
  memoryMaskFor,
  NOTE_WIDTH,
  relativeBucket,
  ringLength,
  type ChunkCarry,
} from '../src/model/note/longContext.ts';
import { commitNotes, decodeStep, decoderWeights, disposeDecoderWeights, hostHeads, initialRing } from '../src/model/note/ringDecoder.ts';
import { addRelativePitch, CLOCK_PERIODS, createWeights, NO_ANCHOR, RELATIVE_SPAN, RELATIVE_WIDTH, relativePitchLogits, type Hyperparameters } from '../src/model/note/network.ts';
import type { Weights } from '../src/model/layers.ts';
import { seededRandom } from '../src/model/random.ts';
import { chordAtEnd, describeRequestDecoding, disposePreparedDecoder, generateTokens, keyPitchRows, MAX_CHORD_NOTES, parseHeadDecodings, prepareDecoder, tensorHeads } from '../src/model/note/sampling.ts';
import { Engine } from '../src/engine/engine.ts';
import { measureAttentionReach } from '../src/eval/attentionReach.ts';
import { clippedAdamStep } from '../src/model/training.ts';
import { keyRequests, measureKeyAdherence, parallelKey, relativeKey } from '../src/eval/keyAdherence.ts';
import { evaluateStream, streamEpoch } from '../src/model/note/train/fitLongContext.ts';
import { disposeChunk, modelStreamOptions, PieceStream, planRows, type StreamPiece } from '../src/model/note/train/stream.ts';
import { distantReturns } from '../src/tokens/loops.ts';
import { ANY_KEY, estimateKey, keyName, parseKey, segmentKeys, transposeKey } from '../src/tokens/key.ts';
import { DT_CLASSES, PITCH_MIN, STEPS_PER_BEAT, beatPositions, type NoteToken } from '../src/tokens/tokenize.ts';
import { createTinyModel, TINY_HYPERPARAMETERS, TINY_LONG_CONTEXT_HYPERPARAMETERS as H } from './support/tinyModel.ts';

let dir: string;
before(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(join(tmpdir(), 'nocturne-long-context-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const COMPOSERS = 2;
const D = inputWidth(COMPOSERS);
const composerIndex = new Map([
  ['Chopin', 0],
  ['Mozart', 1],
]);

/** A figure of five small steps played again and again, each time from another pitch: a sequence, so interval contexts match often. */
const sequence = (n: number, seed = 1): NoteToken[] => {
  const steps = [2, 2, -5, 3, 1];
  const rng = seededRandom(seed);
  let pitch = 60;
  return Array.from({ length: n }, (_, i) => {
    if (i > 0) pitch += i % steps.length === 0 ? Math.floor(rng.next() * 9) - 4 : steps[i % steps.length];
    return { dt: i === 0 ? 0 : 3, pitch, dur: 2 + (i % 3), vel: i % 8 };
  });
};

const melody = (n: number, seed = 1): NoteToken[] => {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => ({ dt: i === 0 ? 0 : Math.floor(rng.next() * 4) * 3, pitch: 48 + Math.floor(rng.next() * 30), dur: 1 + Math.floor(rng.next() * 12), vel: Math.floor(rng.next() * 8) }));
};

/** `n` notes of melody with a `period`-note figure played `rounds` times from note `from`. */
const looping = (n: number, from: number, period: number, rounds: number): NoteToken[] => {
  const notes = melody(n, 4);
  for (let i = from + period; i < from + period * rounds; i++) notes[i] = notes[i - period];
  return notes;
};

/** z of every real note of one piece, through the training path: chunk after chunk with memory carried. */
function chunkPath(w: Weights, piece: StreamPiece, h: Hyperparameters = H): number[][] {
  const stream = new PieceStream([piece], [[0]], { ...modelStreamOptions(h), composerIndex, composers: COMPOSERS });
  let memory = emptyMemory(h, 1);
  const rows: number[][] = [];
  for (let chunk = stream.next(); chunk; chunk = stream.next()) {
    const mask = memoryMaskFor(chunk.memory, h.memory!);
    const keep = tf.tensor2d(chunk.keep, [1, 1]);
    let carried: ChunkCarry | undefined;
    const z = chunkHidden(w, h, chunk.batch, memory, mask, keep, 0, (c) => (carried = c));
    const values = z.arraySync();
    rows.push(...values.slice(0, Math.min(h.window, piece.tokens.length - rows.length)));
    memory = advanceMemory(h, memory, carried!);
    tf.dispose([z, mask, keep]);
    disposeChunk(chunk.batch);
  }
  disposeMemory(memory);
  return rows;
}

/** The same notes through the sampling path: one step at a time with the ring, on the host. */
function ringPath(w: Weights, piece: StreamPiece, key: number, h: Hyperparameters = H): number[][] {
  const decoder = decoderWeights(w, h);
  const state = initialRing(decoder, [key]);
  const positions = beatPositions(piece.tokens);
  const rows: number[][] = [];
  piece.tokens.forEach((note, i) => {
    const input = new Float32Array(D);
    writeInputRow(input, 0, i > 0 ? piece.tokens[i - 1] : undefined, i > 0 ? positions[i - 1] % STEPS_PER_BEAT : 0, composerIndex.get(piece.composer)!);
    const active = [...input.keys()].filter((c) => input[c] !== 0);
    const z = decodeStep(decoder, state, { table: decoder.inputTable, columns: Int32Array.from(active), rows: 1, slots: active.length })!;
    rows.push([...z]);
    commitNotes(state, decoder, [note]);
  });
  disposeDecoderWeights(decoder);
  return rows;
}

describe('long-context model', () => {
  test('relative buckets: exact for near notes, log-spaced and monotone beyond, within range', () => {
    const R = 639;
    for (let d = 1; d <= 16; d++) assert.equal(relativeBucket(d, 32, R), d - 1);
    let last = 0;
    for (let d = 1; d <= R; d++) {
      const b = relativeBucket(d, 32, R);
      assert.ok(b >= last && b < 32, `distance ${d} → bucket ${b}`);
      last = b;
    }
    assert.equal(relativeBucket(R, 32, R), 31);
  });

  test('a note changes only the predictions after it (training is causal)', () => {
    const w = createLongContextWeights(H, D, 5);
    const notes = melody(H.window, 2);
    const changed = notes.map((t, i) => (i === 5 ? { ...t, pitch: t.pitch + 7, vel: (t.vel + 3) % 8 } : t));
    const run = (tokens: NoteToken[]) => chunkPath(w, { composer: 'Chopin', tokens, keys: new Uint8Array(tokens.length).fill(3) });
    const a = run(notes);
    const b = run(changed);
    const differs = a.map((row, t) => Math.max(...row.map((v, j) => Math.abs(v - b[t][j]))));
    for (let t = 0; t <= 5; t++) assert.equal(differs[t], 0, `step ${t} reads notes before 5 only`);
    // Note 5 is read as step 6's input and as an attention value from step 6 on.
    for (let t = 6; t < H.window; t++) assert.ok(differs[t] > 1e-6, `step ${t} sees note 5`);
    tf.dispose(Object.values(w));
  });

  for (const [layers, residual, intervalValues, intervalMatch, beatClock, loopInput] of [
    [1, false, false, 0, false, false],
    [2, false, false, 0, false, false],
    [2, true, false, 0, false, false],
    [1, false, true, 0, false, false],
    [1, false, true, 3, false, false],
    [1, false, false, 0, true, false],
    [1, false, false, 0, false, true],
    [2, true, true, 3, true, true],
  ] as const)
    test(`sampling one note at a time computes what training computed over chunks with carried memory (${layers} LSTM layer${layers > 1 ? 's' : ''}${residual ? ', residual' : ''}${intervalValues ? ', interval values' : ''}${intervalMatch ? `, interval matching over ${intervalMatch}` : ''}${beatClock ? ', beat clock' : ''}${loopInput ? ', loop input' : ''})`, () => {
      const h = { ...H, layers, residual, intervalValues, intervalMatch, beatClock, loopInput };
      const w = createLongContextWeights(h, D, 7);
      // The gate starts at zero; the sum must hold for a trained one.
      if (residual) w['lstm1/gate'].assign(tf.randomUniform([h.hidden], -1.5, 1.5, 'float32', 5));
      // So do the interval rows of the values, and the match weights.
      if (intervalValues) w['attn/winterval'].assign(tf.randomNormal([RELATIVE_WIDTH, h.attentionDim], 0, 1, 'float32', 6));
      // Two chunks; every note of the second sees every earlier note in both paths (25 notes ≤ memory + 1).
      // With matching, a sequence: its contexts match across the chunk boundary and within each chunk.
      // With the loop input, a figure that circles (3 notes round 4 times) across the chunk boundary.
      const tokens = loopInput ? looping(h.memory! + 1, 8, 3, 4) : intervalMatch ? sequence(h.memory! + 1, 4) : melody(h.memory! + 1, 4);
      const piece: StreamPiece = { composer: 'Mozart', tokens, keys: new Uint8Array(tokens.length).fill(14) };
      const unmatched = intervalMatch || beatClock || loopInput ? chunkPath(w, piece, h) : [];
      if (intervalMatch) w['attn/match'].assign(tf.randomUniform([intervalMatch, h.heads!], 0.5, 1.5, 'float32', 8));
      // The clock weights of either sign: a head may prefer or avoid a period.
      if (beatClock) w['attn/clock'].assign(tf.randomUniform([CLOCK_PERIODS.length, h.heads!], -1.5, 1.5, 'float32', 9));
      if (loopInput) w['lstm0/wloop'].assign(tf.randomNormal([LOOP_INPUT_SLOTS, 4 * h.hidden], 0, 1, 'float32', 10));
      const trained = chunkPath(w, piece, h);
      const sampled = ringPath(w, piece, 14, h);
      assert.equal(trained.length, tokens.length);
      assert.equal(sampled.length, tokens.length);
      let worst = 0;
      trained.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - sampled[t][j])))));
      assert.ok(worst < 1e-4, `largest difference ${worst}`);
      if (beatClock && !intervalMatch) {
        const moved = trained.map((row, t) => Math.max(...row.map((v, j) => Math.abs(v - unmatched[t][j]))));
        assert.ok(moved.slice(0, 2).every((d) => d < 1e-6), 'the first two steps see no slot with a clock');
        assert.ok(moved.slice(2).every((d) => d > 1e-4), `trained clock weights move every later step (${moved.slice(2).filter((d) => d <= 1e-4).length} unmoved)`);
      }
      if (loopInput && !beatClock) {
        // The loop input is first read by the step after the figure's 6th note (its second round completes there).
        const moved = trained.map((row, t) => Math.max(...row.map((v, j) => Math.abs(v - unmatched[t][j]))));
        assert.ok(moved.slice(0, 14).every((d) => d < 1e-6), `no loop before the figure's second round (${moved.slice(0, 14).map((d) => d.toExponential(1))})`);
        assert.ok(moved[14] > 1e-3, `the step after it reads the loop (${moved[14]})`);
      }
      if (intervalMatch && !beatClock) {
        const moved = trained.map((row, t) => Math.max(...row.map((v, j) => Math.abs(v - unmatched[t][j]))));
        assert.ok(moved.slice(0, 3).every((d) => d < 1e-6), 'the first notes have no interval context to match');
        assert.ok(moved.filter((d) => d > 1e-3).length >= 15, `trained match weights move most later steps (${moved.filter((d) => d > 1e-3).length})`);
      }
      tf.dispose(Object.values(w));
    });

  for (const [what, grown, weight, option, refusal] of [
    ['interval matching', { intervalMatch: 4 }, 'attn/match', 'intervalMatch', /needs the chunk's intervalContext/],
    ['the beat clock', { beatClock: true }, 'attn/clock', 'beatClock', /needs the chunk's clockRows/],
    ['the loop input', { loopInput: true }, 'lstm0/wloop', 'loopInput', /needs the chunk's loopInputs/],
  ] as const)
    test(`${what}: grown onto a model without it, it starts as that model and gets a gradient; a chunk without its input is refused`, () => {
      const parent = createLongContextWeights(H, D, 12);
      const h: Hyperparameters = { ...H, ...grown };
      const w = createLongContextWeights(h, D, 13, { weights: parent, hyperparameters: H });
      assert.deepEqual([...new Set(w[weight].dataSync())], [0]);
      const tokens = sequence(30, 3).map((t, i) => (i % 4 === 1 ? { ...t, dt: 9 } : t));
      // Notes 6 to 13 circle a 2-note figure (within the first chunk), so the loop input has something to read.
      for (let i = 8; i < 14; i++) tokens[i] = tokens[i - 2];
      const piece: StreamPiece = { composer: 'Chopin', tokens, keys: new Uint8Array(tokens.length).fill(3) };
      const loss = (weights: Weights, hp: Hyperparameters, withInput = true) => {
        const chunk = new PieceStream([piece], [[0]], { ...modelStreamOptions(hp), [option]: withInput ? hp[option] : undefined, composerIndex, composers: COMPOSERS }).next()!;
        const mask = memoryMaskFor(chunk.memory, hp.memory!);
        const keep = tf.tensor2d(chunk.keep, [1, 1]);
        const memory = emptyMemory(hp, 1);
        const trained = weights[weight] as tf.Variable | undefined;
        try {
          const grads = trained ? tf.variableGrads(() => chunkLoss(weights, hp, chunk.batch, memory, mask, keep, 0).total, [trained]) : { value: tf.tidy(() => chunkLoss(weights, hp, chunk.batch, memory, mask, keep, 0).total), grads: {} };
          const value = grads.value.dataSync()[0];
          const gradient = trained ? tf.tidy(() => tf.abs(Object.values(grads.grads)[0]).max().dataSync()[0]) : 0;
          tf.dispose([grads.value, ...Object.values(grads.grads)]);
          return { value, gradient };
        } finally {
          tf.dispose([mask, keep]);
          disposeMemory(memory);
          disposeChunk(chunk.batch);
        }
      };
      const before = loss(parent, H);
      const after = loss(w, h);
      assert.ok(Math.abs(before.value - after.value) < 1e-5, `starts as its parent (${before.value} against ${after.value})`);
      assert.ok(after.gradient > 1e-5, `and ${weight} gets a gradient at once (${after.gradient})`);
      assert.throws(() => loss(w, h, false), refusal);
      tf.dispose([...Object.values(parent), ...Object.values(w)]);
    });

  test('a residual layer grown onto a trained model starts as that model, in training and in sampling', () => {
    const parent = createLongContextWeights(H, D, 12);
    const grown = { ...H, layers: 2, residual: true };
    const w = createLongContextWeights(grown, D, 13, { weights: parent, hyperparameters: H });
    const tokens = melody(H.memory! + 1, 6);
    const piece: StreamPiece = { composer: 'Chopin', tokens, keys: new Uint8Array(tokens.length).fill(4) };
    const largest = (a: number[][], b: number[][]) => Math.max(...a.map((row, t) => Math.max(...row.map((v, j) => Math.abs(v - b[t][j])))));
    const before = chunkPath(parent, piece, H);
    assert.ok(largest(before, chunkPath(w, piece, grown)) < 1e-6, 'training: the new layer adds nothing yet');
    assert.ok(largest(ringPath(parent, piece, 4, H), ringPath(w, piece, 4, grown)) < 1e-5, 'sampling: the same');
    // Once its gate opens, the new layer changes the predictions.
    w['lstm1/gate'].assign(tf.fill([H.hidden], 0.5));
    assert.ok(largest(before, chunkPath(w, piece, grown)) > 1e-3);
    // A gate that starts slightly open: every unit at that value, the rest still the parent's.
    const ajar = createLongContextWeights(grown, D, 13, { weights: parent, hyperparameters: H }, 0.1);
    assert.deepEqual([...new Set(ajar['lstm1/gate'].dataSync())], [Math.fround(0.1)]);
    assert.deepEqual(ajar['lstm0/wx'].dataSync(), parent['lstm0/wx'].dataSync());
    const opened = largest(before, chunkPath(ajar, piece, grown));
    assert.ok(opened > 1e-4 && opened < largest(before, chunkPath(w, piece, grown)), `a gate at 0.1 moves the predictions less than one at 0.5 (${opened})`);
    tf.dispose([...Object.values(parent), ...Object.values(w), ...Object.values(ajar)]);
  });

  test('the relative pitch head: an interval lands on the same pitch in training and in sampling, starts at zero, and learns', () => {
    // Training's tensor form against the samplers' host form, anchors at both ends of the keyboard and none.
    const anchors = [0, 1, 23, 24, 40, 64, 86, 87, NO_ANCHOR];
    const rel = tf.randomNormal([anchors.length, RELATIVE_WIDTH], 0, 1, 'float32', 3) as tf.Tensor2D;
    const anchorTensor = tf.tensor1d(anchors);
    const trained = relativePitchLogits(rel, anchorTensor).arraySync();
    const host = addRelativePitch(new Float32Array(anchors.length * 88), rel.dataSync() as Float32Array, anchors.map((a) => (a === NO_ANCHOR ? -1 : a)));
    const r = rel.arraySync();
    anchors.forEach((a, i) => {
      for (let p = 0; p < 88; p++) {
        const j = p - a + RELATIVE_SPAN;
        const expected = a !== NO_ANCHOR && j >= 0 && j < RELATIVE_WIDTH ? r[i][j] : 0;
        assert.ok(Math.abs(trained[i][p] - expected) < 1e-6, `training: anchor ${a}, pitch ${p}`);
        assert.ok(Math.abs(host[i * 88 + p] - expected) < 1e-6, `sampling: anchor ${a}, pitch ${p}`);
      }
    });
    tf.dispose([rel, anchorTensor]);

    // Grown onto a model without it, the head starts at zero: the same loss as the parent.
    const parent = createLongContextWeights(H, D, 12);
    const h = { ...H, relativePitch: true };
    const w = createLongContextWeights(h, D, 13, { weights: parent, hyperparameters: H });
    const tokens = melody(20, 8);
    const piece: StreamPiece = { composer: 'Chopin', tokens, keys: new Uint8Array(tokens.length).fill(3) };
    const pitchLoss = (weights: Weights, hp: Hyperparameters) => {
      const chunk = new PieceStream([piece], [[0]], { window: hp.window, composerIndex, composers: COMPOSERS, keyed: true, relativePitch: hp.relativePitch }).next()!;
      const mask = memoryMaskFor(chunk.memory, hp.memory!);
      const keep = tf.tensor2d(chunk.keep, [1, 1]);
      const memory = emptyMemory(hp, 1);
      const wrel = weights['head/wrel'] as tf.Variable | undefined;
      const grads = wrel ? tf.variableGrads(() => chunkLoss(weights, hp, chunk.batch, memory, mask, keep, 0).perHead[1], [wrel]) : { value: tf.tidy(() => chunkLoss(weights, hp, chunk.batch, memory, mask, keep, 0).perHead[1]), grads: {} };
      const loss = grads.value.dataSync()[0];
      const gradient = wrel ? tf.tidy(() => tf.abs(Object.values(grads.grads)[0]).max().dataSync()[0]) : 0;
      tf.dispose([grads.value, ...Object.values(grads.grads), mask, keep]);
      disposeMemory(memory);
      disposeChunk(chunk.batch);
      return { loss, gradient };
    };
    const before = pitchLoss(parent, H);
    const grown = pitchLoss(w, h);
    assert.ok(Math.abs(before.loss - grown.loss) < 1e-6, `starts as its parent (${before.loss} against ${grown.loss})`);
    assert.ok(grown.gradient > 1e-4, 'and gets a gradient at once');

    // The ring decoder's fused pitch product and the tensor heads agree once the head is trained.
    w['head/wrel'].assign(tf.randomNormal([h.headDim, RELATIVE_WIDTH], 0, 0.5, 'float32', 4));
    const z = tf.randomUniform([3, h.headDim], -1, 1, 'float32', 9) as tf.Tensor2D;
    const decoder = decoderWeights(w, h);
    const rowAnchors = [10, -1, 80];
    const fromHost = hostHeads(decoder, z.dataSync() as Float32Array, 3).pitch([0, 2, 5], rowAnchors);
    const fromTensors = tensorHeads(w, z).pitch([0, 2, 5], rowAnchors);
    const plain = tensorHeads(parent, z).pitch([0, 2, 5], rowAnchors);
    let worst = 0;
    fromHost.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - fromTensors[i]))));
    assert.ok(worst < 1e-4, `largest difference ${worst}`);
    const rowDiff = (row: number) => Math.max(...Array.from({ length: 88 }, (_, p) => Math.abs(fromTensors[row * 88 + p] - plain[row * 88 + p])));
    assert.ok(rowDiff(0) > 1e-3, 'a row with a previous note gets the interval scores');
    assert.ok(rowDiff(1) < 1e-6, 'a row at the start of a piece gets none');
    disposeDecoderWeights(decoder);
    tf.dispose([z, ...Object.values(parent), ...Object.values(w)]);
  });

  test('the stream plays pieces whole and in order, and transposition moves notes and key label together', () => {
    const pieces: StreamPiece[] = [
      { composer: 'Chopin', tokens: melody(40, 1), keys: new Uint8Array(40).fill(2) }, // D major
      { composer: 'Mozart', tokens: melody(10, 2), keys: new Uint8Array(10).fill(21) }, // A minor
    ];
    const queues = planRows(pieces, 1);
    assert.deepEqual(queues, [[0, 1]]);
    const stream = new PieceStream(pieces, queues, { window: H.window, composerIndex, composers: COMPOSERS, keyed: true, transpose: 5, rng: seededRandom(9) });
    const seen: { pitch: number; key: number }[] = [];
    const keeps: number[] = [];
    const memories: number[] = [];
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      keeps.push(chunk.keep[0]);
      memories.push(chunk.memory[0]);
      const pitch = chunk.batch.targets[1].argMax(1).arraySync() as number[];
      const real = chunk.batch.targets[1].sum(1).arraySync() as number[];
      const key = chunk.batch.keyInputs!.argMax(1).arraySync() as number[];
      pitch.forEach((p, r) => real[r] > 0 && seen.push({ pitch: p + PITCH_MIN, key: key[r] }));
      disposeChunk(chunk.batch);
    }
    // 40 notes: chunks of 16, 16, 8 (padded), then the 10-note piece from a fresh state.
    assert.deepEqual(keeps, [0, 1, 1, 0]);
    assert.deepEqual(memories, [0, 16, 32, 0]);
    assert.equal(seen.length, 50);
    for (const [p, from, to] of [
      [0, 0, 40],
      [1, 40, 50],
    ] as const) {
      const shift = seen[from].pitch - pieces[p].tokens[0].pitch;
      assert.ok(Math.abs(shift) <= 5);
      for (let i = from; i < to; i++) {
        assert.equal(seen[i].pitch, pieces[p].tokens[i - from].pitch + shift, 'one shift for the whole piece');
        assert.equal(seen[i].key, transposeKey(pieces[p].keys![0], shift), 'the key label moves with the notes');
      }
    }
  });

  test('key dropout labels whole chunks "any key"', () => {
    const pieces: StreamPiece[] = [{ composer: 'Chopin', tokens: melody(16 * 40, 3), keys: new Uint8Array(16 * 40).fill(7) }];
    const stream = new PieceStream(pieces, [[0]], { window: H.window, composerIndex, composers: COMPOSERS, keyed: true, keyDropout: 0.5, rng: seededRandom(1) });
    let any = 0;
    let chunks = 0;
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      const keys = new Set(chunk.batch.keyInputs!.argMax(1).arraySync() as number[]);
      assert.equal(keys.size, 1);
      if (keys.has(ANY_KEY)) any++;
      else assert.ok(keys.has(7));
      chunks++;
      disposeChunk(chunk.batch);
    }
    assert.equal(chunks, 40);
    assert.ok(any > 8 && any < 32, `${any} of 40 chunks unlabelled`);
  });

  test('streamed training lowers the loss on whole pieces', () => {
    const w = createLongContextWeights(H, D, 11);
    const pieces: StreamPiece[] = [0, 1, 2].map((i) => ({ composer: i ? 'Mozart' : 'Chopin', tokens: melody(48, 20 + i), keys: new Uint8Array(48).fill(i) }));
    const optimizer = tf.train.adam(0.01);
    const names = Object.keys(w);
    const before = evaluateStream(w, H, pieces, composerIndex, COMPOSERS, 2).loss;
    const rng = seededRandom(3);
    for (let epoch = 0; epoch < 12; epoch++)
      streamEpoch(w, H, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0.05, rng, step: (loss) => clippedAdamStep(optimizer, w, names, loss, 1), progress: () => {} });
    const afterTraining = evaluateStream(w, H, pieces, composerIndex, COMPOSERS, 2).loss;
    assert.ok(afterTraining < before - 1, `loss ${before.toFixed(3)} → ${afterTraining.toFixed(3)}`);
    optimizer.dispose();
    tf.dispose(Object.values(w));
  });

  test('return weighting: the notes of a figure brought back from afar count 1 + w times in the likelihood loss', () => {
    const w = createLongContextWeights(H, D, 12);
    // Notes 5..12 come back at 40..47 (further than a loop): distantReturns marks 41..47.
    const tokens = melody(64, 9);
    for (let i = 0; i < 8; i++) tokens[40 + i] = { ...tokens[5 + i] };
    const returns = distantReturns(tokens);
    assert.deepEqual([...returns.keys()].filter((i) => returns[i]), [41, 42, 43, 44, 45, 46, 47]);
    const piece: StreamPiece = { composer: 'Chopin', tokens, keys: new Uint8Array(64).fill(0), returns };
    // The chunk losses of the piece at return weights 0, 1 and 2, and whether each chunk holds a return.
    const losses = (weight: number) => {
      const stream = new PieceStream([piece], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS, marks: true });
      let memory = emptyMemory(H, 1);
      const out: { loss: number; returned: number }[] = [];
      for (let chunk = stream.next(); chunk; chunk = stream.next()) {
        const mask = memoryMaskFor(chunk.memory, H.memory!);
        const keep = tf.tensor2d(chunk.keep, [1, 1]);
        let carried: ChunkCarry | undefined;
        const loss = chunkLoss(w, H, chunk.batch, memory, mask, keep, 0, (c) => (carried = c), weight);
        out.push({ loss: loss.total.dataSync()[0], returned: chunk.batch.returnTargets ?? 0 });
        memory = advanceMemory(H, memory, carried!);
        tf.dispose([loss.total, ...loss.perHead, mask, keep]);
        disposeChunk(chunk.batch);
      }
      disposeMemory(memory);
      return out;
    };
    const [l0, l1, l2] = [0, 1, 2].map(losses);
    assert.deepEqual(l0.map((c) => c.returned), [0, 0, 7, 0]);
    l0.forEach((c, i) => {
      if (c.returned === 0) {
        assert.ok(Math.abs(l1[i].loss - c.loss) < 1e-6, `chunk ${i} has no return: its loss is unchanged`);
      } else {
        assert.ok(l1[i].loss > c.loss + 1e-3, `chunk ${i}: the return's notes add their NLL (${c.loss} → ${l1[i].loss})`);
        assert.ok(Math.abs(l2[i].loss - c.loss - 2 * (l1[i].loss - c.loss)) < 1e-4, 'the added NLL scales with the weight');
      }
    });
    // Without the returns in the chunk, a weight is refused rather than ignored.
    const bare = new PieceStream([piece], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS });
    const chunk = bare.next()!;
    const mask = memoryMaskFor(chunk.memory, H.memory!);
    const keep = tf.tensor2d(chunk.keep, [1, 1]);
    const memory = emptyMemory(H, 1);
    assert.throws(() => chunkLoss(w, H, chunk.batch, memory, mask, keep, 0, undefined, 1), /return weighting needs the chunk's returns/);
    tf.dispose([mask, keep]);
    disposeMemory(memory);
    disposeChunk(chunk.batch);
    // streamEpoch finds the returns of real pieces itself: the epoch's loss (no step taken) grows with the weight only for the piece with a return.
    const epochLoss = (p: StreamPiece, returnWeight: number) =>
      streamEpoch(w, H, [{ ...p, returns: undefined }], { batchSize: 1, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng: seededRandom(5), returnWeight, step: (loss) => tf.tidy(() => loss().dataSync()[0]), progress: () => {} }).loss;
    assert.ok(epochLoss(piece, 1) > epochLoss(piece, 0) + 1e-3);
    const plain: StreamPiece = { composer: 'Chopin', tokens: melody(64, 9), keys: new Uint8Array(64).fill(0) };
    assert.equal(distantReturns(plain.tokens).reduce((a, b) => a + b, 0), 0);
    assert.ok(Math.abs(epochLoss(plain, 1) - epochLoss(plain, 0)) < 1e-6);
    tf.dispose(Object.values(w));
  });

  test('noisy teacher forcing: a displaced note is what the next step and the attention values read, across chunks', () => {
    const piece: StreamPiece = { composer: 'Chopin', tokens: melody(60, 4), keys: new Uint8Array(60).fill(0) };
    const stream = new PieceStream([piece], [[0]], { window: H.window, composerIndex, composers: COMPOSERS, keyed: true, inputNoise: 0.3, relativePitch: true, intervalValues: true, intervalMatch: 3, rng: seededRandom(2) });
    const targets: number[] = [];
    // Per real note in order: its value's interval (-1: none) and its interval context (lags 1..3).
    const valueIntervals: number[] = [];
    const contexts: number[][] = [];
    const readBack: number[] = [];
    const inputs: number[] = [];
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      const b = chunk.batch;
      assert.ok(b.noteRows, 'a noisy stream hands the values their own note rows');
      const real = b.targets[1].sum(1).arraySync() as number[];
      const t = b.targets[1].argMax(1).arraySync() as number[];
      const v = b.noteRows!.slice([0, DT_CLASSES], [b.steps * b.batch, 88]).argMax(1).arraySync() as number[];
      const x = b.inputs.slice([0, OFFSET_PITCH], [b.steps * b.batch, 88]);
      const xi = x.argMax(1).arraySync() as number[];
      const xs = x.sum(1).arraySync() as number[];
      x.dispose();
      const anchors = b.pitchAnchors!.arraySync();
      const intervalHot = b.intervalRows!.sum(1).arraySync() as number[];
      const interval = b.intervalRows!.argMax(1).arraySync() as number[];
      const context = b.intervalContext!.arraySync() as number[][];
      real.forEach((r, i) => {
        if (!r) return;
        assert.equal(anchors[i], xs[i] ? xi[i] : NO_ANCHOR, 'the relative pitch head is anchored on the pitch the step reads');
        // The value's interval: from the note this step reads to the note read back after it.
        const step = v[i] - xi[i];
        assert.equal(intervalHot[i] ? interval[i] - RELATIVE_SPAN : null, xs[i] && Math.abs(step) <= RELATIVE_SPAN ? step : null);
        valueIntervals.push(intervalHot[i] ? interval[i] : -1);
        contexts.push([0, 1, 2].map((l) => context[i].slice(l * RELATIVE_WIDTH, (l + 1) * RELATIVE_WIDTH).indexOf(1)));
        targets.push(t[i] + PITCH_MIN);
        readBack.push(v[i] + PITCH_MIN);
        inputs.push(xs[i] ? xi[i] + PITCH_MIN : -1);
      });
      disposeChunk(b);
    }
    assert.deepEqual(targets, piece.tokens.map((n) => n.pitch), 'the targets stay true');
    assert.equal(inputs[0], -1, 'the first note reads the start of the piece');
    for (let i = 1; i < 60; i++) assert.equal(inputs[i], readBack[i - 1], `step ${i} reads note ${i - 1} as the values do`);
    // Lag l of a step's interval context is the interval of the note read back l steps before (across chunks).
    for (let i = 0; i < 60; i++) for (let l = 0; l < 3; l++) assert.equal(contexts[i][l], i - 1 - l >= 0 ? valueIntervals[i - 1 - l] : -1, `step ${i}, lag ${l + 1}`);
    assert.ok(valueIntervals.filter((v) => v >= 0).length > 40);
    const moved = readBack.filter((p, i) => p !== targets[i]);
    assert.ok(moved.length >= 8 && moved.length <= 30, `${moved.length} of 60 displaced`);
    readBack.forEach((p, i) => assert.ok(Math.abs(p - targets[i]) <= 7));
    const clean = new PieceStream([piece], [[0]], { window: H.window, composerIndex, composers: COMPOSERS, keyed: true, rng: seededRandom(2) }).next()!;
    assert.equal(clean.batch.noteRows, undefined, 'without noise the values read the targets');
    disposeChunk(clean.batch);
  });

  test('the key table biases the pitch head in training and in sampling alike', () => {
    const w = createLongContextWeights(H, D, 6);
    const gMajor = new Set([7, 9, 11, 0, 2, 4, 6]);
    const table = Array.from({ length: 25 }, (_, k) => Array.from({ length: 88 }, (_, p) => (k === 7 ? (gMajor.has((p + PITCH_MIN) % 12) ? 10 : -10) : 0)));
    const inKey: StreamPiece = { composer: 'Chopin', tokens: melody(16, 5).map((n, i) => ({ ...n, pitch: [55, 57, 59, 60, 62, 64, 66, 67][i % 8] })), keys: new Uint8Array(16).fill(7) };
    const pitchLoss = () => {
      const chunk = new PieceStream([inKey], [[0]], { window: H.window, composerIndex, composers: COMPOSERS, keyed: true }).next()!;
      const memory = emptyMemory(H, 1);
      const mask = memoryMaskFor(chunk.memory, H.memory!);
      const keep = tf.tensor2d(chunk.keep, [1, 1]);
      const { total, perHead } = chunkLoss(w, H, chunk.batch, memory, mask, keep, 0);
      const loss = perHead[1].dataSync()[0];
      tf.dispose([total, ...perHead, mask, keep]);
      disposeMemory(memory);
      disposeChunk(chunk.batch);
      return loss;
    };
    const before = pitchLoss();
    w['head/keypitch'].assign(tf.tensor2d(table));
    const after = pitchLoss();
    assert.ok(after < before - 0.4, `pitch NLL of a G major tune labelled G major (51 of 88 keys in the scale): ${before.toFixed(2)} → ${after.toFixed(2)}`);
    const request = { composer: 0, notes: 80, temperature: 1, topP: 1, randomSeed: 3 };
    const [inG, anyKey] = generateTokens(w, H, COMPOSERS, [{ ...request, key: 7 }, request]);
    assert.deepEqual(inG.filter((n) => !gMajor.has(n.pitch % 12)), [], 'G major asked: only its pitch classes');
    assert.ok(anyKey.some((n) => !gMajor.has(n.pitch % 12)), 'any key: the table stays silent');
    tf.dispose(Object.values(w));
  });

  test('key guidance scales the key table against "any key" and holds a weakly learnt key', () => {
    const w = createLongContextWeights(H, D, 6);
    const gMajor = new Set([7, 9, 11, 0, 2, 4, 6]);
    const table = Array.from({ length: 25 }, (_, k) => Array.from({ length: 88 }, (_, p) => (k === 7 ? (gMajor.has((p + PITCH_MIN) % 12) ? 0.4 : -0.4) : k === ANY_KEY ? 0.1 : 0)));
    w['head/keypitch'].assign(tf.tensor2d(table));
    const [plain, guided, any] = keyPitchRows(w, H, [
      { composer: 0, notes: 1, temperature: 1, topP: 1, randomSeed: 1, key: 7 },
      { composer: 0, notes: 1, temperature: 1, topP: 1, randomSeed: 1, key: 7, keyGuidance: 4 },
      { composer: 0, notes: 1, temperature: 1, topP: 1, randomSeed: 1, keyGuidance: 4 },
    ])!;
    assert.ok(Math.abs(plain[60 - PITCH_MIN] - 0.4) < 1e-6 && Math.abs(plain[61 - PITCH_MIN] + 0.4) < 1e-6);
    assert.ok(Math.abs(guided[60 - PITCH_MIN] - (4 * 0.4 - 3 * 0.1)) < 1e-6, 'g·table[key] − (g − 1)·table[any]');
    assert.ok(Math.abs(any[60 - PITCH_MIN] - 0.1) < 1e-6, '"any key" is not guided');
    const request = { composer: 0, notes: 200, temperature: 1, topP: 1, randomSeed: 8, key: 7 };
    const [weak, firm] = generateTokens(w, H, COMPOSERS, [request, { ...request, keyGuidance: 10 }]);
    const inKey = (t: NoteToken[]) => t.filter((n) => gMajor.has(n.pitch % 12)).length / t.length;
    assert.ok(inKey(firm) > inKey(weak) + 0.15, `in G major: ${inKey(weak).toFixed(2)} unguided, ${inKey(firm).toFixed(2)} at guidance 10`);
    tf.dispose(Object.values(w));
  });

  test('composer guidance: a shadow "any composer" row, exact when the composer changes nothing, and no effect on the rest of the batch', () => {
    const w = createLongContextWeights(H, D, 9);
    const request = { composer: 0, notes: 50, temperature: 1, topP: 1, randomSeed: 21 };
    generateTokens(w, H, COMPOSERS, [request]);
    const tensors = tf.memory().numTensors;
    const [plain, guided, other] = generateTokens(w, H, COMPOSERS, [request, { ...request, composerGuidance: 2 }, { ...request, composer: 1, randomSeed: 22 }]);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor outlives a guided generation');
    assert.notDeepEqual(guided, plain, 'guidance moves away from "any composer"');
    assert.deepEqual(generateTokens(w, H, COMPOSERS, [{ ...request, composer: 1, randomSeed: 22 }])[0], other, 'an unguided row is untouched by a guided one');
    assert.deepEqual(generateTokens(w, H, COMPOSERS, [{ ...request, composerGuidance: 1 }])[0], plain, 'guidance 1 is the model as trained');
    // Make Chopin's input row the same as "any composer": then 2·logits − logits is the same logits.
    const wx = w['lstm0/wx'].arraySync() as number[][];
    wx[OFFSET_COMPOSER + 0] = [...wx[OFFSET_COMPOSER + COMPOSERS]];
    w['lstm0/wx'].assign(tf.tensor2d(wx));
    const [same, sameGuided] = generateTokens(w, H, COMPOSERS, [request, { ...request, composerGuidance: 2 }]);
    assert.deepEqual(sameGuided, same, 'the shadow row reads the same notes as its request');
    tf.dispose(Object.values(w));
  });

  test('a warm start from a local-attention model makes head 0 that model\'s attention', () => {
    const local = { ...TINY_HYPERPARAMETERS, attentionDim: 4 };
    const old = createWeights(local, D, 2);
    const w = createLongContextWeights(H, D, 2, { weights: old, hyperparameters: local });
    const same = (a: tf.Tensor, b: tf.Tensor) => assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
    same(w['lstm0/wx'], old['lstm0/wx']);
    same(w['head/wpitch'], old['head/wpitch']);
    for (const n of ['attn/wq', 'attn/wk', 'attn/wv']) same(w[n].slice([0, 0], [16, 4]), old[n]);
    same(w['head/wz'].slice([0, 0], [20, 16]), old['head/wz']);
    assert.ok(w['lstm0/wkey'].dataSync().every((v) => v === 0), 'the key input starts silent');
    assert.ok(w['attn/wnote'].slice([0, 0], [NOTE_WIDTH, 4]).dataSync().every((v) => v === 0));
    const bias = w['attn/bias'].arraySync() as number[][];
    const R = ringLength(H);
    for (let d = 1; d <= R; d++) {
      const b = relativeBucket(d, H.relativeBuckets!, R);
      if (d <= local.attentionWindow - 1) assert.equal(bias[b][0], 0, `distance ${d}`);
      else if (relativeBucket(local.attentionWindow - 1, H.relativeBuckets!, R) !== b) assert.equal(bias[b][0], -8, `distance ${d}`);
      assert.equal(bias[b][1], 0, 'the other heads start without a preference');
    }
    tf.dispose([...Object.values(old), ...Object.values(w)]);
  });

  test('generation: seeded, primed, key-conditioned, and leaves tf.memory() unchanged', async () => {
    await createTinyModel(join(dir, 'lc'), ['Chopin', 'Mozart'], 4, H);
    const { spec, weights } = await loadModelFolder(join(dir, 'lc'));
    assert.equal(spec.arch, 'lstm-long-context');
    const request = { composer: 0, notes: 60, temperature: 1, topP: 0.95, randomSeed: 5 };
    generateTokens(weights, spec.hyperparameters, 2, [request]); // warm the kernels
    const tensors = tf.memory().numTensors;
    const [a] = generateTokens(weights, spec.hyperparameters, 2, [request]);
    const [b, primed, inD, inF] = generateTokens(weights, spec.hyperparameters, 2, [request, { ...request, primer: melody(40, 8) }, { ...request, key: 2 }, { ...request, key: 17 }]);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor outlives a generation');
    assert.equal(a.length, 60);
    assert.deepEqual(a, b, 'same seed, same notes, alone or in a batch');
    assert.notDeepEqual(primed, a, 'the primer is heard');
    assert.notDeepEqual(inD, inF, 'the key input is heard');
    for (const t of [...a, ...primed]) assert.ok(t.pitch >= 21 && t.pitch <= 108 && t.dur >= 1 && t.vel >= 0 && t.vel < 8);
    tf.dispose(Object.values(weights));
  });

  test('no onset holds more than two hands can play, however much the gap head wants a chord', async () => {
    assert.equal(chordAtEnd([]), 0);
    const single: NoteToken[] = [60, 62, 64].map((pitch, i) => ({ dt: i ? 6 : 0, pitch, dur: 4, vel: 3 }));
    assert.equal(chordAtEnd(single), 1);
    assert.equal(chordAtEnd([...single, { dt: 0, pitch: 80, dur: 4, vel: 3 }, { dt: 0, pitch: 84, dur: 4, vel: 3 }]), 3, 'two notes with no gap and the one they follow');
    assert.equal(chordAtEnd([{ dt: 0, pitch: 60, dur: 4, vel: 3 }, { dt: 0, pitch: 64, dur: 4, vel: 3 }]), 2, 'a piece that opens with a chord');
    const onsets = (tokens: readonly NoteToken[]) => {
      const sizes: number[] = [];
      tokens.forEach((t, i) => (i > 0 && t.dt === 0 ? sizes[sizes.length - 1]++ : sizes.push(1)));
      return sizes;
    };
    for (const [name, h] of [['long context', H], ['local attention', TINY_HYPERPARAMETERS]] as const) {
      await createTinyModel(join(dir, `chords-${name}`), ['Chopin', 'Mozart'], 4, h);
      const { spec, weights } = await loadModelFolder(join(dir, `chords-${name}`));
      const bias = weights['head/bdt'] as tf.Variable;
      const values = bias.dataSync().slice();
      values[0] += 30; // the gap head all but certain of "no gap": a chord that never ends
      bias.assign(tf.tensor(values, bias.shape));
      // and the pitch head leaning low, so that a chord climbs a key or two at a time and does not reach the top key first
      const pitchBias = weights['head/bpitch'] as tf.Variable;
      pitchBias.assign(tf.tensor(pitchBias.dataSync().map((v, i) => v - 2 * i), pitchBias.shape));
      // A primer that ends in a chord of MAX_CHORD_NOTES − 1: the first note may complete it, the next must move on.
      const primer: NoteToken[] = [...single, ...Array.from({ length: MAX_CHORD_NOTES - 2 }, (_, k) => ({ dt: 0, pitch: 40 + 3 * k, dur: 4, vel: 3 }))];
      assert.equal(chordAtEnd(primer), MAX_CHORD_NOTES - 1);
      const [alone, primed] = generateTokens(weights, spec.hyperparameters, 2, [
        { composer: 0, notes: 80, temperature: 1, topP: 1, randomSeed: 7 },
        { composer: 1, notes: 40, temperature: 1, topP: 1, randomSeed: 8, primer },
      ]);
      const sizes = onsets(alone);
      assert.ok(Math.max(...sizes) <= MAX_CHORD_NOTES, `${name}: onsets of ${Math.max(...sizes)} notes`);
      assert.ok(sizes.filter((n) => n === MAX_CHORD_NOTES).length >= 3, `${name}: the cap is what ends the chords (${sizes.join(' ')})`);
      assert.equal(primed[0].dt, 0, `${name}: the primer's chord is completed`);
      assert.ok(primed[1].dt > 0, `${name}: and then the next note moves on`);
      tf.dispose(Object.values(weights));
    }
  });

  test('a prepared decoder gives the same notes as a per-call one, lives across calls, and the engine frees it on dispose', async () => {
    await createTinyModel(join(dir, 'lc-prepared'), ['Chopin', 'Mozart'], 4, { ...H, intervalValues: true, intervalMatch: 3, beatClock: true });
    const { spec, weights } = await loadModelFolder(join(dir, 'lc-prepared'));
    const h = spec.hyperparameters;
    const requests = [
      { composer: 0, notes: 50, temperature: 1, topP: 1, randomSeed: 4, composerGuidance: 2 },
      { composer: 1, notes: 30, temperature: 0.9, topP: 0.95, randomSeed: 8, primer: melody(20, 3) },
    ];
    const perCall = generateTokens(weights, h, 2, requests);
    const before = tf.memory().numTensors;
    const prepared = prepareDecoder(weights, h);
    assert.ok(prepared, 'a long-context model has a ring decoder to prepare');
    const made = tf.memory().numTensors - before;
    assert.ok(made > 0, 'the prepared decoder holds its fused products');
    assert.deepEqual(generateTokens(weights, h, 2, requests, prepared), perCall, 'same seeds, same notes');
    assert.deepEqual(generateTokens(weights, h, 2, requests, prepared), perCall, 'and again: the call left the decoder intact');
    assert.equal(tf.memory().numTensors, before + made, 'generation neither frees the prepared decoder nor leaks beside it');
    disposePreparedDecoder(prepared);
    assert.equal(tf.memory().numTensors, before);
    tf.dispose(Object.values(weights));

    const opened = tf.memory().numTensors;
    const engine = await Engine.open(join(dir, 'lc-prepared'), 'wasm');
    const [fromEngine] = engine.sample([engine.resolve({ outDir: dir, composer: 'chopin', notes: 40, randomSeed: 2 })]);
    assert.equal(fromEngine.length, 40);
    engine.dispose();
    assert.equal(tf.memory().numTensors, opened, 'the engine frees its weights and its decoder');
  });

  test('generation with interval matching and a beat clock: a primed row gives the same notes alone or batched after another row, and the match and clock weights are heard', async () => {
    const h = { ...H, intervalValues: true, intervalMatch: 3, beatClock: true };
    await createTinyModel(join(dir, 'lc-match'), ['Chopin', 'Mozart'], 4, h);
    const { spec, weights } = await loadModelFolder(join(dir, 'lc-match'));
    assert.equal(spec.hyperparameters.intervalMatch, 3);
    const request = { composer: 0, notes: 40, temperature: 1, topP: 1, randomSeed: 9, primer: sequence(30, 2) };
    const plain = generateTokens(weights, spec.hyperparameters, 2, [request])[0];
    weights['attn/match'].assign(tf.fill([3, H.heads!], 2));
    const matchedOnly = generateTokens(weights, spec.hyperparameters, 2, [request])[0];
    weights['attn/clock'].assign(tf.randomUniform([CLOCK_PERIODS.length, H.heads!], -2, 2, 'float32', 4));
    const tensors = tf.memory().numTensors;
    const [alone] = generateTokens(weights, spec.hyperparameters, 2, [request]);
    const [, batched] = generateTokens(weights, spec.hyperparameters, 2, [{ ...request, primer: undefined, randomSeed: 3 }, request]);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor outlives a generation');
    assert.deepEqual(batched, alone, 'each row keeps its own slots\' interval contexts and clocks when rows are joined');
    assert.notDeepEqual(matchedOnly, plain, 'the match weights change what is played');
    assert.notDeepEqual(alone, matchedOnly, 'and so do the clock weights');
    tf.dispose(Object.values(weights));
  });

  test('the loader refuses a long-context folder whose spec does not match its weights or architecture', async () => {
    await createTinyModel(join(dir, 'lc-bad'), ['Chopin', 'Mozart'], 4, H);
    const path = join(dir, 'lc-bad', 'model.json');
    const spec = JSON.parse(await readFile(path, 'utf8'));
    await writeFile(path, JSON.stringify({ ...spec, arch: 'lstm-attention' }));
    await assert.rejects(loadModelFolder(join(dir, 'lc-bad')), /architecture lstm-attention does not fit its hyperparameters/);
    await writeFile(path, JSON.stringify({ ...spec, hyperparameters: { ...spec.hyperparameters, heads: 4 } }));
    await assert.rejects(loadModelFolder(join(dir, 'lc-bad')), /weight attn\/bias is 8x2, expected 8x4/);
  });
});

describe('keys', () => {
  test('key adherence counts exact, top-three and relative/parallel estimates', () => {
    const scale = (tonic: number, minor: boolean) =>
      Array.from({ length: 64 }, (_, i) => ({ dt: 6, pitch: 60 + tonic + (minor ? [0, 2, 3, 5, 7, 8, 11, 12] : [0, 2, 4, 5, 7, 9, 11, 12])[i % 8], dur: 6, vel: 4 }));
    assert.equal(keyName(relativeKey(parseKey('C major')!)), 'A minor');
    assert.equal(keyName(relativeKey(parseKey('F# minor')!)), 'A major');
    assert.equal(keyName(parallelKey(parseKey('Eb major')!)), 'Eb minor');
    const requests = keyRequests(['Chopin', 'Mozart'], 64, [parseKey('D major')!, parseKey('G minor')!, parseKey('E major')!]);
    assert.deepEqual(requests.map((r) => r.composer), ['Chopin', 'Mozart', 'Chopin']);
    // D major and G minor played as asked; "E major" answered in C major.
    const k = measureKeyAdherence(requests, [scale(2, false), scale(7, true), scale(0, false)]);
    assert.equal(k.pieces, 3);
    assert.equal(k.agreed, 2);
    assert.deepEqual(k.results.map((r) => r.estimated), ['D major', 'G minor', 'C major']);
    assert.ok(k.topThree >= 2 && k.topThree <= 3);
    assert.equal(k.relativeOrParallel, 0);
  });

  test('names in several spellings parse to one of 24 keys or "any"', () => {
    assert.equal(parseKey('C major'), 0);
    assert.equal(parseKey('D minor'), 14);
    assert.equal(parseKey('f#m'), 18);
    assert.equal(parseKey('Gb major'), 6);
    assert.equal(parseKey('Bb'), 10);
    assert.equal(parseKey('c sharp minor'), 13);
    assert.equal(parseKey('any'), ANY_KEY);
    assert.equal(parseKey('H major'), undefined);
    assert.equal(parseKey('D dorian'), undefined);
    assert.equal(keyName(parseKey('d# minor')!), 'Eb minor');
  });

  test('transposing a key moves its tonic and keeps its mode; "any" stays "any"', () => {
    assert.equal(transposeKey(0, 2), 2);
    assert.equal(transposeKey(23, 1), 12);
    assert.equal(transposeKey(2, -5), 9);
    assert.equal(transposeKey(ANY_KEY, 3), ANY_KEY);
  });

  test('segment labels follow a modulation', () => {
    const scale = (tonic: number, steps: number[]) => Array.from({ length: 128 }, (_, i) => ({ dt: 6, pitch: 60 + tonic + steps[i % steps.length], dur: 6, vel: 4 }));
    const major = [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0, 7];
    const labels = segmentKeys([...scale(0, major), ...scale(7, major)], 64, 0);
    assert.equal(labels[0], 0, 'C major');
    assert.equal(labels[200], 7, 'G major');
    assert.equal(estimateKey(scale(2, [0, 2, 3, 5, 7, 8, 10, 12, 7, 3, 0, 7]))!.name, 'D minor');
  });
});

describe('attention reach', () => {
  test('counts where each head looks: near, far, or at nothing', () => {
    const w = createLongContextWeights(H, D, 21);
    // Queries of zero: only the relative bias decides. Head 0 looks one note back, head 1 at nothing.
    w['attn/wq'].assign(tf.zeros(w['attn/wq'].shape));
    const buckets = H.relativeBuckets!;
    const bias = Array.from({ length: buckets }, (_, b) => [b === 0 ? 30 : -30, -30]);
    w['attn/bias'].assign(tf.tensor2d(bias));
    const spec = { hyperparameters: H, composers: [{ name: 'Chopin', pieces: 1, tempoBpm: 100 }, { name: 'Mozart', pieces: 1, tempoBpm: 100 }] };
    const pieces = [
      { composer: 'Chopin', tokens: melody(60, 1) },
      { composer: 'Mozart', tokens: melody(40, 2) },
      { composer: 'Liszt', tokens: melody(40, 3) },
    ];
    const reach = measureAttentionReach(w, spec, pieces)!;
    assert.equal(reach.pieces, 2, 'a composer the model does not know is not read');
    assert.equal(reach.notes, 100);
    assert.deepEqual(reach.bands, [8, 32, 128, null]);
    // The first note of a piece has only the null slot; afterwards head 0 is all on the note before.
    assert.ok(Math.abs(reach.heads[0][0] - 98 / 100) < 1e-6, `head 0: ${reach.heads[0]}`);
    assert.ok(Math.abs(reach.heads[0][4] - 2 / 100) < 1e-6);
    assert.ok(reach.heads[1][4] > 0.999, `head 1: ${reach.heads[1]}`);
    assert.ok(reach.beyond32 < 1e-9);
    for (const shares of reach.heads) assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9, 'each head\'s shares sum to 1');
    assert.equal(measureAttentionReach(w, { ...spec, hyperparameters: TINY_HYPERPARAMETERS }, pieces), null, 'a local-attention model has no reach to measure');
    tf.dispose(Object.values(w));
  });
});

describe('decoding carried by the model', () => {
  test('the engine plays a model at its own decoding unless the request sets temperature or top-p', async () => {
    const folder = join(dir, 'decoding');
    await createTinyModel(folder, ['Chopin', 'Mozart'], 4, H);
    const path = join(folder, 'model.json');
    const spec = JSON.parse(await readFile(path, 'utf8'));
    const decoding = { temperature: 1, topP: 0.98, heads: { dt: { temperature: 1, topP: 1 } }, composerGuidance: 2, chosenBy: 'test' };
    await writeFile(path, JSON.stringify({ ...spec, decoding }));
    const engine = await Engine.open(folder, 'wasm');
    try {
      const own = engine.resolve({ outDir: dir, composer: 'chopin', notes: 50, randomSeed: 1 }).sample;
      assert.equal(own.topP, 0.98);
      assert.deepEqual(own.heads, decoding.heads);
      const asked = engine.resolve({ outDir: dir, composer: 'chopin', notes: 50, randomSeed: 1, temperature: 0.8 }).sample;
      assert.equal(asked.temperature, 0.8);
      assert.equal(asked.topP, 0.98, 'the unset knob keeps the model\'s value');
      assert.equal(asked.heads, undefined, 'a request\'s knob applies to every head');
      // Per-head decoding changes what is drawn.
      const [a, b] = engine.sample([engine.resolve({ outDir: dir, composer: 'chopin', notes: 60, randomSeed: 2 }), engine.resolve({ outDir: dir, composer: 'chopin', notes: 60, randomSeed: 2, topP: 0.98 })]);
      assert.notDeepEqual(a, b);
      // What a piece reports is the whole decoding it was drawn with; guidance only where it applied.
      const piece = await engine.compose({ outDir: join(dir, 'decoding-piece'), composer: 'chopin', notes: 20, randomSeed: 3 });
      assert.equal(piece.params.decoding, 'temperature 1, top-p 0.98 (per head: dt 1/1), composer guidance 2');
      const anyone = await engine.compose({ outDir: join(dir, 'decoding-any'), composer: 'any', notes: 20, randomSeed: 3, temperature: 0.9 });
      assert.equal(anyone.params.decoding, 'temperature 0.9, top-p 0.98', 'no per-head settings once the request sets a knob, no composer guidance for "any"');
    } finally {
      engine.dispose();
    }
  });

  test('a request\'s decoding names guidance only where the sampler applies it', () => {
    const r = { composer: 0, notes: 10, temperature: 1, topP: 0.9, randomSeed: 1, composerGuidance: 2, keyGuidance: 4 };
    assert.equal(describeRequestDecoding(H, 2, r), 'temperature 1, top-p 0.9, composer guidance 2', 'no key asked: no key guidance');
    assert.equal(describeRequestDecoding(H, 2, { ...r, key: 3 }), 'temperature 1, top-p 0.9, composer guidance 2, key guidance 4');
    assert.equal(describeRequestDecoding(H, 2, { ...r, composer: 2, key: 3 }), 'temperature 1, top-p 0.9, key guidance 4', '"any composer" has no shadow row');
    assert.equal(describeRequestDecoding(TINY_HYPERPARAMETERS, 2, { ...r, key: 3 }), 'temperature 1, top-p 0.9', 'a local-attention model is guided by neither');
  });

  test('head decodings parse from "head=temperature/top-p" lists and refuse anything else', () => {
    assert.deepEqual(parseHeadDecodings('dt=1/1, vel=1.1/0.9'), { dt: { temperature: 1, topP: 1 }, vel: { temperature: 1.1, topP: 0.9 } });
    assert.throws(() => parseHeadDecodings('rhythm=1/1'), /HEAD=TEMPERATURE\/TOP_P/);
    assert.throws(() => parseHeadDecodings('dt=1/0'), /top-p must be in/);
    assert.throws(() => parseHeadDecodings('dt=9/1'), /temperature must be 0..5/);
  });
});
