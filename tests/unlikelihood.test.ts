import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { inputWidth, LOOP_INPUT_SLOTS, LOOP_LENGTH_STEPS, loopInputColumns } from '../src/model/note/features.ts';
import { chunkUnlikelihood, createLongContextWeights, disposeMemory, emptyMemory, advanceMemory, memoryMaskFor, type ChunkCarry } from '../src/model/note/longContext.ts';
import { loopHazardLoss, pitchLikelihood, pitchUnlikelihood, timingPull, type Hyperparameters } from '../src/model/note/network.ts';
import type { Weights } from '../src/model/layers.ts';
import { seededRandom } from '../src/model/random.ts';
import { clippedAdamStep } from '../src/model/training.ts';
import { streamEpoch } from '../src/model/note/train/fitLongContext.ts';
import { disposeChunk, modelStreamOptions, PieceStream, type StreamPiece } from '../src/model/note/train/stream.ts';
import { generateTokens, type HeadName } from '../src/model/note/sampling.ts';
import { fitRealismCritic, realismLogOdds } from '../src/eval/realism.ts';
import { bestOfGroups, composerHazardShares, excerptLongestLoop, hazardShares, ownPieceScore, sampleMarkedPieces } from '../src/model/note/train/unlikelihood.ts';
import { timingBin, timingBinMatrix, TIMING_BIN_EDGES, timingMarginals } from '../src/tokens/timing.ts';
import { advanceLoop, distantReturns, hazardBandCount, LOOP_PROFILE_BANDS, loopContinuations, loopHazardProfile, loopHazardRows, loopLengths, loopProfile, loopRuns, nearReturns, RETURN_HAZARD_BANDS, startLoopTracker } from '../src/tokens/loops.ts';
import { PITCH_MIN, type NoteToken } from '../src/tokens/tokenize.ts';
import { TINY_LONG_CONTEXT_HYPERPARAMETERS as H } from './support/tinyModel.ts';

before(async () => {
  await initBackend('wasm', () => {});
});

const COMPOSERS = 2;
const D = inputWidth(COMPOSERS);
const composerIndex = new Map([
  ['Chopin', 0],
  ['Mozart', 1],
]);
/** Raises the dt head's bias for gap 3 and the pitch head's for middle C by `by`: a model that hammers one note. */
function hammerOneNote(w: Weights, by: number): void {
  for (const [name, cls] of [
    ['head/bdt', 3],
    ['head/bpitch', 60 - PITCH_MIN],
  ] as const) {
    const v = w[name] as tf.Variable;
    const values = v.dataSync().slice();
    values[cls] += by;
    v.assign(tf.tensor(values, v.shape));
  }
}
const close = (a: number, b: number, eps: number) => assert.ok(Math.abs(a - b) <= eps, `${a} is not ${b}`);
/** 20 pitches in which no 8-note figure comes back, near or far. */
const WANDERING = [48, 55, 51, 58, 50, 57, 47, 53, 60, 49, 56, 52, 59, 46, 54, 61, 45, 50, 57, 44];
const notes = (pitches: number[], dt = 3): NoteToken[] => pitches.map((pitch, i) => ({ dt: i === 0 ? 0 : dt, pitch, dur: 4, vel: 3 }));

describe('loops', () => {
  test('each note knows the longest loop run up to it, and notes past the limit are marked', () => {
    const figure = [60, 64, 67, 64];
    const tokens = notes([50, ...figure, ...figure, ...figure, 71]);
    const lengths = loopLengths(tokens);
    // The figure comes round twice at its 8th note (index 8), then every note adds one.
    assert.deepEqual([...lengths], [0, 0, 0, 0, 0, 0, 0, 0, 8, 9, 10, 11, 12, 0]);
    assert.deepEqual([...loopContinuations(tokens, 10)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]);
    const hammered = loopLengths(notes(Array(6).fill(60)));
    assert.deepEqual([...hammered], [0, 0, 2, 3, 4, 5], 'one note again and again loops with period 1 (the first note has no gap before it)');
    assert.deepEqual([...loopLengths(notes([60, 62, 60, 62].concat([60, 62]), 3).map((t, i) => ({ ...t, dt: i % 2 ? 2 : 3 })))], [0, 0, 0, 4, 5, 6], 'pitch and gap both repeat');
    assert.deepEqual([...loopLengths([...notes([60, 62]), ...notes([60, 62], 6)])], [0, 0, 0, 0], 'the same pitches in another rhythm do not loop');
    assert.throws(() => loopContinuations(tokens, 1), /limit must be a whole number ≥ 2, got 1/);
  });

  test('a loop profile counts the loops started and how often a loop of each length goes on', () => {
    const figure = [60, 64, 67, 64];
    const profile = loopProfile([notes([50, ...figure, ...figure, ...figure, 71])]);
    // One loop starts at the figure's 8th note; read with 8..12 notes of loop behind, 4 of 5 notes carry it on.
    assert.equal(profile.notes, 13);
    assert.ok(Math.abs(profile.startsPer100 - 100 / 13) < 1e-9);
    assert.deepEqual(profile.goesOn.map((g) => [g.from, g.notes, g.share]), [[2, 0, 0], [4, 0, 0], [8, 5, 0.8], [16, 0, 0], [32, 0, 0]]);
    assert.deepEqual(loopProfile([]).goesOn.map((g) => g.notes), [0, 0, 0, 0, 0]);
  });

  test('the loop input: one note at a time as over the whole piece, a thermometer of its length and its period band, read by the next row', () => {
    const figure = [60, 64, 67, 64];
    const tokens = notes([50, ...figure, ...figure, ...figure, 71, 71, 71]);
    const runs = loopRuns(tokens);
    assert.deepEqual(runs.map((r) => r.period), [0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 0, 1, 1]);
    const tracker = startLoopTracker();
    assert.deepEqual(tokens.map((t) => advanceLoop(tracker, t)), runs, 'the sampler, one note at a time, reads what training reads');
    assert.deepEqual(loopInputColumns({ length: 0, period: 0 }), []);
    // Length 9 reaches the steps 2, 4, 6, 8; period 4 is the band 3-4 (the third).
    assert.deepEqual(loopInputColumns(runs[9]), [0, 1, 2, 3, LOOP_LENGTH_STEPS.length + 2]);
    assert.deepEqual(loopInputColumns({ length: 200, period: 16 }), [...LOOP_LENGTH_STEPS.keys(), LOOP_INPUT_SLOTS - 1]);
    assert.deepEqual(loopInputColumns(runs[15]), [0, LOOP_LENGTH_STEPS.length], 'a note hammered three times: length 3, period 1');
    // The stream hands row i the loop through note i - 1, the note it reads.
    const h = { ...H, loopInput: true, window: tokens.length };
    const chunk = new PieceStream([{ composer: 'Chopin', tokens }], [[0]], { ...modelStreamOptions(h), composerIndex, composers: COMPOSERS }).next()!;
    const rows = chunk.batch.loopInputs!.arraySync();
    rows.forEach((row, i) => {
      const expected = new Array(LOOP_INPUT_SLOTS).fill(0);
      if (i > 0) for (const c of loopInputColumns(runs[i - 1])) expected[c] = 1;
      assert.deepEqual(row, expected, `row ${i}`);
    });
    disposeChunk(chunk.batch);
  });

  test('a figure that comes back from further than a loop reaches is a distant return, transposed or not', () => {
    const figure = [60, 62, 64, 65, 67, 65, 64, 62];
    const filler = Array.from({ length: 20 }, (_, i) => 40 + ((i * 7) % 23));
    const tokens = notes([...figure, ...filler, ...figure.map((p) => p + 5), 70]);
    const marks = distantReturns(tokens, 8, 16);
    // The transposed figure (indices 28..35) completes the figure 28 notes after its first playing; its steps are notes 29..35.
    const returned = [29, 30, 31, 32, 33, 34, 35];
    assert.deepEqual([...marks.keys()].filter((i) => marks[i]), returned);
    const looped = distantReturns(notes([...figure, ...figure, ...figure]), 8, 16);
    assert.ok(looped.every((m) => m === 0), 'the same figure round and round, 8 notes apart, is a loop and not a return');
    const nearAndFar = distantReturns(notes([...figure, ...filler, ...figure, ...figure]), 8, 16);
    assert.deepEqual([...nearAndFar.keys()].filter((i) => nearAndFar[i]), returned, 'only the nearest earlier playing counts');
    assert.throws(() => distantReturns(tokens, 1), /length must be a whole number ≥ 2, got 1/);
  });

  test('a figure played again within 16 notes is a near repeat, and one from afar is not', () => {
    const figure = [60, 62, 64, 65, 67, 65, 64, 62];
    const filler = WANDERING;
    const far = nearReturns(notes([...figure, ...filler, ...figure.map((p) => p + 5)]));
    assert.ok(far.every((m) => m === 0), 'a return from 28 notes back is not near');
    const twice = nearReturns(notes([...figure, ...figure.map((p) => p - 2)]));
    // The second playing (transposed) ends 8 notes after the first: its steps, notes 9..15, are marked; so are the
    // figures that straddle the two playings, which recur one playing later, and none of them earlier.
    assert.deepEqual([...twice.keys()].filter((i) => twice[i]), [9, 10, 11, 12, 13, 14, 15]);
    const nearAndFar = nearReturns(notes([...figure, ...filler, ...figure, ...figure]));
    assert.deepEqual([...nearAndFar.keys()].filter((i) => nearAndFar[i]).slice(0, 7), [37, 38, 39, 40, 41, 42, 43], 'the third playing, 8 notes after the second, is near');
    assert.throws(() => nearReturns(notes(figure), 1), /length must be a whole number ≥ 2, got 1/);
  });

  test('the longest loop per 250-note excerpt counts only inside the excerpt', () => {
    const hammered = notes(Array(600).fill(60)).map((t) => ({ ...t, dt: 3 }));
    assert.equal(excerptLongestLoop(hammered), 250, 'two excerpts, each one long loop of its own 250 notes');
    assert.equal(excerptLongestLoop(notes([60, 61, 62])), 1, 'a short piece without a loop');
  });
});

describe('unlikelihood', () => {
  test('pitchUnlikelihood is −log(1 − p) of the marked rows\' target pitch, per marked row', () => {
    const logits = tf.tensor2d([
      [0, Math.log(3)],
      [Math.log(3), 0],
      [0, 0],
    ]);
    const targets = tf.tensor2d([
      [0, 1],
      [0, 1],
      [1, 0],
    ]);
    const value = (marks: number[]) => tf.tidy(() => pitchUnlikelihood(logits, targets, tf.tensor1d(marks)).dataSync()[0]);
    assert.ok(Math.abs(value([1, 0, 0]) - -Math.log(0.25)) < 1e-5, 'p = 0.75: −log 0.25');
    assert.ok(Math.abs(value([1, 1, 0]) - (-Math.log(0.25) - Math.log(0.75)) / 2) < 1e-5, 'mean over the marked rows');
    assert.equal(value([0, 0, 0]), 0, 'nothing marked: nothing to lower');
    const nll = (rows: number[]) => tf.tidy(() => pitchLikelihood(logits, targets, tf.tensor1d(rows)).dataSync()[0]);
    assert.ok(Math.abs(nll([1, 1, 0]) - (-Math.log(0.75) - Math.log(0.25)) / 2) < 1e-5, 'the return bonus: −log p, per marked row');
    assert.equal(nll([0, 0, 0]), 0);
    tf.dispose([logits, targets]);
  });

  test('the stream hands each row its mark and return; unlikelihood steps lower the marked pitches\' probability, bonus steps raise the returns\'', () => {
    const w = createLongContextWeights(H, D, 5);
    const tokens = notes(Array.from({ length: 40 }, (_, i) => 60 + (i % 4)));
    const marks = loopContinuations(tokens, 12);
    const returns = Uint8Array.from({ length: 40 }, (_, i) => (i >= 3 && i < 9 ? 1 : 0));
    const piece: StreamPiece = { composer: 'Chopin', tokens, marks, returns };
    /** Mean loss per marked (or return) note over the piece; with `optimizer`, a step on each chunk. */
    const pass = (part: 'unlikelihood' | 'returnNll', optimizer?: tf.AdamOptimizer): { value: number; marked: number; rows: number[]; returnRows: number[] } => {
      const stream = new PieceStream([piece], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS, marks: true });
      let memory = emptyMemory(H, 1);
      let sum = 0;
      let marked = 0;
      const rows: number[] = [];
      const returnRows: number[] = [];
      for (let chunk = stream.next(); chunk; chunk = stream.next()) {
        const mask = memoryMaskFor(chunk.memory, H.memory!);
        const keep = tf.tensor2d(chunk.keep, [1, 1]);
        let carried: ChunkCarry | undefined;
        const loss = () => chunkUnlikelihood(w, H, chunk.batch, memory, mask, keep, 0, (c) => (carried = c))[part];
        const count = part === 'unlikelihood' ? chunk.batch.markedTargets! : chunk.batch.returnTargets!;
        // As a round does, a chunk with nothing marked only runs forward.
        const value = optimizer && count ? clippedAdamStep(optimizer, w, Object.keys(w), loss, 1) : tf.tidy(() => loss().dataSync()[0]);
        rows.push(...chunk.batch.marks!.dataSync());
        returnRows.push(...chunk.batch.returns!.dataSync());
        sum += value * count;
        marked += count;
        memory = advanceMemory(H, memory, carried!);
        tf.dispose([mask, keep]);
        disposeChunk(chunk.batch);
      }
      disposeMemory(memory);
      return { value: sum / marked, marked, rows, returnRows };
    };
    const start = pass('unlikelihood');
    assert.equal(start.marked, 40 - 13, 'every note that carries the loop (from the second note on) past 12 notes is marked');
    assert.deepEqual(start.rows.slice(0, 40), [...marks], 'rows carry the piece\'s marks in order');
    assert.deepEqual(start.returnRows.slice(0, 40), [...returns], 'and its returns');
    assert.ok(start.rows.slice(40).every((m) => m === 0) && start.returnRows.slice(40).every((m) => m === 0), 'padding is neither');
    const optimizer = tf.train.adam(0.02);
    for (let k = 0; k < 6; k++) pass('unlikelihood', optimizer);
    const end = pass('unlikelihood');
    assert.ok(end.value < start.value * 0.7, `unlikelihood ${start.value.toFixed(3)} → ${end.value.toFixed(3)}`);
    const returnStart = pass('returnNll');
    assert.equal(returnStart.marked, 6);
    for (let k = 0; k < 12; k++) pass('returnNll', optimizer);
    const returnEnd = pass('returnNll');
    assert.ok(returnEnd.value < returnStart.value * 0.7, `return NLL ${returnStart.value.toFixed(3)} → ${returnEnd.value.toFixed(3)}`);
    optimizer.dispose();
    tf.dispose(Object.values(w));
  });

  test('a step whose loss does not reach a weight leaves that weight where it was', () => {
    const a = tf.variable(tf.tensor1d([1, 2]), true, 'ul-test-a');
    const b = tf.variable(tf.tensor1d([3, 4]), true, 'ul-test-b');
    const w: Weights = { a, b };
    const optimizer = tf.train.adam(0.1);
    clippedAdamStep(optimizer, w, ['a', 'b'], () => tf.sum(tf.square(a)) as tf.Scalar, 10);
    assert.deepEqual([...b.dataSync()], [3, 4]);
    assert.ok(a.dataSync()[0] < 1, 'the weight the loss reaches moves');
    optimizer.dispose();
    tf.dispose([a, b]);
  });

  test('an epoch with unlikelihood rounds: the model writes pieces as it samples, marks its loops, learns from them, and leaks nothing', () => {
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    // A model that hammers one note: its dt and pitch biases favour one class by far, so there are loops to mark.
    hammerOneNote(w, 12);
    const pieces: StreamPiece[] = [0, 1, 2, 3].map((i) => ({ composer: i % 2 ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 40 }, (_, k) => 55 + ((k * (i + 3)) % 17))), keys: new Uint8Array(40).fill(i) }));
    // Loops are marked from their 21st note on: each piece's first chunk (16 notes) has none and runs forward only.
    const unlikelihood = { weight: 1, every: 2, pieces: 3, notes: 48, limit: 20, returnBonus: 0.5, decoding: { temperature: 1, topP: 1 } };
    const { pieces: own, stats } = sampleMarkedPieces(w, h, composerIndex, ['Chopin'], unlikelihood.decoding, unlikelihood, seededRandom(4));
    assert.equal(own.length, 3);
    assert.ok(own.every((p) => p.tokens.length === 48 && p.composer === 'Chopin' && p.marks!.length === 48 && p.returns!.length === 48));
    assert.equal(stats.returned, own.reduce((s, p) => s + p.returns!.reduce((m, x) => m + x, 0), 0));
    assert.equal(stats.marked, own.reduce((s, p) => s + p.marks!.reduce((m, x) => m + x, 0), 0));
    assert.ok(stats.marked > 0, 'a model that hammers one note loops');
    const optimizer = tf.train.adam(0.01);
    const rng = seededRandom(2);
    const epoch = () => streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng, step: (loss) => clippedAdamStep(optimizer, w, Object.keys(w), loss, 1), progress: () => {}, unlikelihood });
    epoch(); // the optimizer makes its moments on the first step
    const tensors = tf.memory().numTensors;
    const r = epoch();
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.equal(r.unlikelihood!.rounds, Math.floor(r.steps / 2));
    assert.equal(r.unlikelihood!.pieces, 3 * r.unlikelihood!.rounds);
    assert.ok(r.unlikelihood!.marked > 0 && r.unlikelihood!.loss > 0, JSON.stringify(r.unlikelihood));
    optimizer.dispose();
    tf.dispose(Object.values(w));
  });
});

describe('loop hazard', () => {
  test('each note knows the loop behind it and the note that would carry it on; the profile splits carrying on into gap, then pitch', () => {
    const figure = [60, 64, 67, 64];
    const tokens = notes([50, ...figure, ...figure, ...figure, 71, 72]);
    tokens[14] = { ...tokens[14], dt: 5 };
    const rows = loopHazardRows(tokens);
    // Loops of 8..12 notes run behind notes 9..13 (band 2: 8 to 15 notes); each would copy the note 4 back.
    assert.deepEqual([...rows.band], [-1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 2, 2, 2, 2, -1]);
    assert.deepEqual([...rows.pitch.slice(9, 14)], [60, 64, 67, 64, 60]);
    assert.deepEqual([...rows.dt.slice(9, 14)], [3, 3, 3, 3, 3]);
    const hammered = loopHazardRows(notes([60, 60, 60, 60, 62]));
    assert.deepEqual([...hammered.band], [-1, -1, -1, 0, 0], 'one note hammered: a loop of 2, then 3, behind (band 0)');
    assert.deepEqual([...hammered.pitch.slice(3)], [60, 60]);
    const profile = loopHazardProfile([tokens, notes([60, 60, 60, 60, 62])]);
    assert.deepEqual(
      profile.bands.map((b) => [b.from, b.rows, b.dtShare, b.pitchRows, b.pitchShare]),
      [
        [2, 2, 1, 2, 0.5],
        [4, 0, 0, 0, 0],
        [8, 5, 1, 5, 0.8],
        [16, 0, 0, 0, 0],
        [32, 0, 0, 0, 0],
      ],
    );
    // Gap share × pitch share is the loop profile's share carried on.
    assert.equal(loopProfile([tokens]).goesOn[2].share, 0.8);
    const brokenTokens = [...tokens.slice(0, 13), { ...tokens[9], dt: 5 }];
    const broken = loopHazardProfile([brokenTokens]);
    assert.deepEqual([broken.bands[2].rows, broken.bands[2].dtShare, broken.bands[2].pitchRows], [5, 0.8, 4], 'a note in another rhythm breaks the loop at the gap and is not asked about its pitch');
    assert.deepEqual(hazardShares(profile), { dtShare: [1, 0, 1, 0, 0], pitchShare: [0.5, 0, 0.8, 0, 0] });
    assert.deepEqual(hazardShares(profile, ['pitch']), { pitchShare: [0.5, 0, 0.8, 0, 0] }, 'one head only');
    assert.deepEqual(hazardShares(profile, ['pitch'], { joint: true }), { jointShare: [0.5, 0, 0.8, 0, 0] }, 'joint: the gap share times the pitch share');
    assert.ok(Math.abs(hazardShares(broken, ['pitch'], { joint: true }).jointShare![2] - loopProfile([brokenTokens]).goesOn[2].share) < 1e-12, 'the joint share is the loop profile\'s share carried on');
    assert.throws(() => hazardShares(profile, ['dt', 'pitch'], { joint: true }), /pitch head alone/);
  });

  test('with returns, a note after a figure last played more than 16 notes back is a row of a return band, aimed at carrying the figure on where it now stands', () => {
    // A figure of five steps, 20 notes that share no step with anything (each its own gap), then
    // the figure's first four notes again, a tone higher, and a note that breaks off.
    const figure = [60, 61, 63, 66, 70, 75];
    const filler = Array.from({ length: 20 }, (_, k) => ({ dt: 10 + k, pitch: 40 + (k % 2), dur: 4, vel: 3 }));
    const back = notes([62, 63, 65, 68, 50]).map((t, i) => ({ ...t, dt: i === 0 ? 30 : 3 }));
    const tokens = [...notes(figure), ...filler, ...back];
    const start = figure.length + filler.length; // where the figure comes back
    const plain = loopHazardRows(tokens);
    assert.ok(plain.band.every((b) => b < 0), 'without returns: no loop, no row');
    const rows = loopHazardRows(tokens, { returns: true });
    const marked = [...rows.band].flatMap((b, i) => (b >= 0 ? [i] : []));
    assert.deepEqual(marked, [start + 4], 'one row: the note after three matching steps (62→63→65→68 is 60→61→63→66 a tone up)');
    assert.equal(rows.band[start + 4], LOOP_PROFILE_BANDS.length, 'the first return band (3 to 5 steps matched)');
    assert.deepEqual([rows.pitch[start + 4], rows.dt[start + 4]], [72, 3], 'carrying the figure on: +4, a tone above the earlier 70');
    assert.equal(hazardBandCount(true), LOOP_PROFILE_BANDS.length + RETURN_HAZARD_BANDS.length);
    const stream = new PieceStream([{ composer: 'Chopin', tokens, hazard: rows }], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS, marks: true, hazard: true, hazardBands: hazardBandCount(true) });
    const bands: number[][] = []; // one row per note: a single piece, chunk after chunk
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      bands.push(...(chunk.batch.hazard!.bands.arraySync() as number[][]));
      disposeChunk(chunk.batch);
    }
    assert.equal(bands[0].length, hazardBandCount(true));
    assert.deepEqual(bands.flatMap((r, i) => (r.includes(1) ? [[i, r.indexOf(1)]] : [])), [[start + 4, LOOP_PROFILE_BANDS.length]], 'the stream puts the row in its return band');
    // Played in full, the return goes on: two more rows, the second in the same band.
    const full = [...notes(figure), ...filler, ...notes([62, 63, 65, 68, 72, 77]).map((t, i) => ({ ...t, dt: i === 0 ? 30 : 3 }))];
    const profile = loopHazardProfile([full], { returns: true });
    const returned = profile.bands.filter((b) => b.kind === 'return');
    assert.deepEqual(returned.map((b) => [b.from, b.rows, b.dtShare, b.pitchShare]), [[3, 2, 1, 1], [6, 0, 0, 0], [12, 0, 0, 0]]);
    assert.deepEqual(profile.bands.slice(0, LOOP_PROFILE_BANDS.length), loopHazardProfile([full]).bands, 'the loop bands are as without returns');
    // Within 16 notes it is a loop's business, not a return.
    const near = [...notes(figure), ...filler.slice(0, 5), ...notes([62, 63, 65, 68, 50]).map((t, i) => ({ ...t, dt: i === 0 ? 30 : 3 }))];
    assert.ok(loopHazardRows(near, { returns: true }).band.every((b) => b < 0), 'a figure back after 9 notes is no return');
  });

  test('loopHazardLoss is 0 where each band carries loops on as real music does, and pulls the band mean, not each row', () => {
    const rows = 3;
    const logitsDt = tf.tensor2d([[0, Math.log(3)], [0, 0], [Math.log(3), 0]]); // p(dt 1) = 0.75, 0.5, 0.25
    const logitsPitch = tf.tensor2d([[0, 0], [Math.log(9), 0], [0, 0]]); // p(pitch 0) = 0.5, 0.9, 0.5
    const bands = tf.tensor2d([[1, 0], [1, 0], [0, 1]]);
    const dtTargets = tf.tensor2d([[0, 1], [0, 1], [0, 1]]);
    const pitchTargets = tf.tensor2d([[1, 0], [1, 0], [1, 0]]);
    const matched = tf.tensor1d([1, 1, 0]);
    const value = (dtShare: number[], pitchShare: number[]) => tf.tidy(() => loopHazardLoss(logitsDt, logitsPitch, bands, dtTargets, pitchTargets, matched, { dtShare, pitchShare }).dataSync()[0]);
    // Band 0: dt mean 0.625 over 2 rows, pitch mean 0.7 over its 2 matched rows; band 1: dt 0.25, no matched row.
    assert.ok(Math.abs(value([0.625, 0.25], [0.7, 0.3])) < 1e-5, 'every mean at its real share: nothing to pull');
    const kl = (q: number, p: number) => q * Math.log(q / p) + (1 - q) * Math.log((1 - q) / (1 - p));
    const expected = (2 / rows) * kl(0.4, 0.625) + (1 / rows) * kl(0.5, 0.25) + kl(0.6, 0.7);
    assert.ok(Math.abs(value([0.4, 0.5], [0.6, 0.3]) - expected) < 1e-4, `${value([0.4, 0.5], [0.6, 0.3])} against ${expected}`);
    const pitchOnly = tf.tidy(() => loopHazardLoss(logitsDt, logitsPitch, bands, dtTargets, pitchTargets, matched, { pitchShare: [0.6, 0.3] }).dataSync()[0]);
    assert.ok(Math.abs(pitchOnly - kl(0.6, 0.7)) < 1e-4, 'without the gap shares only the pitch head is pulled');
    // The gradient lowers a band whose loops go on too often: every row of it, the surest most in logit terms alike.
    const grad = tf.grad((l: tf.Tensor) => loopHazardLoss(logitsDt, l as tf.Tensor2D, bands, dtTargets, pitchTargets, matched, { dtShare: [0.625, 0.25], pitchShare: [0.2, 0.3] }))(logitsPitch);
    const g = grad.arraySync() as number[][];
    assert.ok(g[0][0] > 0 && g[1][0] > 0, 'both matched rows of band 0 are pushed off the loop pitch');
    assert.equal(Math.abs(g[2][0]), 0, 'a row whose gap broke the loop is not asked about its pitch');
    // Joint: the pitch is pulled toward the real joint share over the gap head's own band mean.
    const joint = (jointShare: number[]) => tf.tidy(() => loopHazardLoss(logitsDt, logitsPitch, bands, dtTargets, pitchTargets, matched, { jointShare }).dataSync()[0]);
    assert.ok(Math.abs(joint([0.625 * 0.7, 0.3])) < 1e-5, 'a band carrying loops on in gap and pitch as often as real: nothing to pull');
    assert.ok(Math.abs(joint([0.25, 0.3]) - kl(0.4, 0.7)) < 1e-4, 'real joint 0.25 at a gap mean of 0.625: the pitch is pulled toward 0.4, not toward 0.25');
    const jointGrad = tf.grad((d: tf.Tensor) => tf.add(loopHazardLoss(d as tf.Tensor2D, logitsPitch, bands, dtTargets, pitchTargets, matched, { jointShare: [0.25, 0.3] }), tf.mul(0, tf.sum(d))))(logitsDt); // + 0·Σd: a path for the gradient to exist at all
    assert.ok((jointGrad.arraySync() as number[][]).flat().every((v) => v === 0), 'the gap head is held where it is');
    tf.dispose([logitsDt, logitsPitch, bands, dtTargets, pitchTargets, matched, grad, jointGrad]);
  });

  test('the stream hands each row its loop band and loop values; an epoch of loop hazard rounds lowers the own pieces\' loops toward the real share and leaks nothing', () => {
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    const figure = [60, 64, 67, 64];
    const tokens = notes([50, ...figure, ...figure, ...figure, 71]);
    const stream = new PieceStream([{ composer: 'Chopin', tokens, hazard: loopHazardRows(tokens) }], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS, marks: true, hazard: true });
    const chunk = stream.next()!;
    const z = chunk.batch.hazard!;
    assert.equal(z.rows, 5);
    assert.deepEqual((z.bands.arraySync() as number[][]).slice(8, 14).map((r) => r.indexOf(1)), [-1, 2, 2, 2, 2, 2]);
    assert.deepEqual((z.pitchTargets.arraySync() as number[][]).slice(9, 14).map((r) => r.indexOf(1) + PITCH_MIN), [60, 64, 67, 64, 60]);
    assert.deepEqual((z.dtTargets.arraySync() as number[][]).slice(9, 14).map((r) => r.indexOf(1)), [3, 3, 3, 3, 3]);
    assert.deepEqual([...z.dtMatched.dataSync()].slice(8, 14), [0, 1, 1, 1, 1, 1]);
    disposeChunk(chunk.batch);
    tf.dispose(Object.values(w));
    // A model that hammers one note, trained on pieces that never repeat a note: with loop hazard
    // rounds its own loops go on less than with the likelihood steps alone.
    const pieces: StreamPiece[] = [0, 1, 2, 3].map((i) => ({ composer: i % 2 ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 40 }, (_, k) => 48 + ((k * 7 + i) % 37))), keys: new Uint8Array(40).fill(i) }));
    assert.ok(loopHazardProfile(pieces.map((p) => p.tokens)).bands.every((b) => b.rows === 0), 'the real pieces never loop');
    const train = (hazard: number) => {
      const w = createLongContextWeights(h, D, 9);
      hammerOneNote(w, 8);
      const unlikelihood = { weight: 0, every: 1, pieces: 3, notes: 48, limit: 20, hazard, decoding: { temperature: 1, topP: 1 } };
      const optimizer = tf.train.adam(0.01);
      const rng = seededRandom(2);
      const epoch = () => streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng, step: (loss) => clippedAdamStep(optimizer, w, Object.keys(w), loss, 1), progress: () => {}, unlikelihood });
      epoch(); // the optimizer makes its moments on the first step
      const tensors = tf.memory().numTensors;
      const records = [epoch(), epoch(), epoch()].map((r) => r.unlikelihood!);
      assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
      optimizer.dispose();
      tf.dispose(Object.values(w));
      return { records };
    };
    const pulled = train(1);
    const plain = train(0);
    assert.ok(pulled.records.every((r) => r.hazardSteps > 0 && r.hazard > 0 && r.loss === 0), JSON.stringify(pulled.records[0]));
    assert.ok(plain.records.every((r) => r.hazardSteps === 0 && r.hazard === 0), 'without the hazard weight the round only samples');
    const loops = (records: typeof plain.records) => records.reduce((s, r) => s + r.longestLoopSum / r.pieces, 0) / records.length;
    assert.ok(loops(pulled.records) < loops(plain.records) / 2, `own longest loop ${loops(pulled.records).toFixed(1)} with loop hazard steps, ${loops(plain.records).toFixed(1)} without`);
  });
  test('per composer, the loop hazard pulls each composer toward its own shares, shrunk toward the corpus\'s, and the stream groups each row by its composer', () => {
    const figure = [60, 64, 67, 64];
    const looping = notes([50, ...figure, ...figure, ...figure, 71]); // band 2 (8+): 5 rows, 4 carry the pitch on
    const broken = notes([50, 60, 60, 62, 60, 60, 63]); // band 0 (2+) and 1 (4+) rows that break
    const pieces = [
      { composer: 'Chopin', tokens: looping },
      { composer: 'Mozart', tokens: broken },
    ];
    const all = loopHazardProfile(pieces.map((p) => p.tokens)).bands;
    const chopin = loopHazardProfile([looping]).bands;
    const shares = composerHazardShares(pieces, composerIndex, COMPOSERS, ['dt', 'pitch'], 0);
    const NB = all.length;
    assert.equal(shares.pitchShare!.length, (COMPOSERS + 1) * NB, 'one share per composer and band, and the corpus\'s for "any composer"');
    assert.deepEqual(shares.pitchShare!.slice(0, NB), chopin.map((b, i) => (b.pitchRows ? b.pitchShare : all[i].pitchShare)), 'without a prior, a composer\'s own share where it has rows');
    assert.deepEqual(shares.pitchShare!.slice(COMPOSERS * NB), all.map((b) => b.pitchShare), '"any composer" reads the corpus');
    assert.deepEqual(composerHazardShares(pieces, composerIndex, COMPOSERS, ['pitch'], 0).dtShare, undefined, 'one head only');
    // A prior of as many rows as Chopin's band 2 has lands halfway between its share and the corpus's.
    const halfway = composerHazardShares(pieces, composerIndex, COMPOSERS, ['pitch'], chopin[2].pitchRows).pitchShare!;
    assert.ok(Math.abs(halfway[2] - (chopin[2].pitchShare + all[2].pitchShare) / 2) < 1e-9);
    const missing = composerHazardShares(pieces, new Map([['Chopin', 0], ['Schubert', 1]]), COMPOSERS, ['dt'], 0).dtShare!;
    assert.deepEqual(missing.slice(NB, 2 * NB), all.map((b) => b.dtShare), 'a composer without pieces takes the corpus\'s shares');
    // The stream puts Mozart's rows in Mozart's slots.
    const stream = new PieceStream([{ composer: 'Mozart', tokens: looping, hazard: loopHazardRows(looping) }], [[0]], { ...modelStreamOptions(H), composerIndex, composers: COMPOSERS, marks: true, hazard: true, hazardByComposer: true });
    const chunk = stream.next()!;
    const bands = chunk.batch.hazard!.bands;
    assert.equal(bands.shape[1], (COMPOSERS + 1) * NB);
    assert.deepEqual((bands.arraySync() as number[][]).slice(8, 14).map((r) => r.indexOf(1)), [-1, NB + 2, NB + 2, NB + 2, NB + 2, NB + 2]);
    disposeChunk(chunk.batch);
    // An epoch of per-composer loop hazard rounds takes its steps and leaves nothing behind.
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    hammerOneNote(w, 8);
    const optimizer = tf.train.adam(0.01);
    const rng = seededRandom(3);
    const epoch = () => streamEpoch(w, h, [...pieces, ...pieces], { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng, step: (loss) => clippedAdamStep(optimizer, w, Object.keys(w), loss, 1), progress: () => {}, unlikelihood: { weight: 0, every: 1, pieces: 3, notes: 48, limit: 20, hazard: 1, hazardByComposer: true, decoding: { temperature: 1, topP: 1 } } });
    epoch();
    const tensors = tf.memory().numTensors;
    const record = epoch().unlikelihood!;
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.ok(record.hazardSteps > 0 && record.hazard > 0, JSON.stringify(record));
    optimizer.dispose();
    tf.dispose(Object.values(w));
  });
});

describe('timing pull', () => {
  test('timing marginals count gaps and durations per bin of beat fractions', () => {
    assert.deepEqual(TIMING_BIN_EDGES.map((e) => timingBin(e)), TIMING_BIN_EDGES.map((_, b) => b), 'each edge opens its bin');
    assert.deepEqual([timingBin(2), timingBin(5), timingBin(11), timingBin(23), timingBin(96)], [1, 3, 5, 7, 8]);
    const tokens: NoteToken[] = [
      { dt: 0, pitch: 60, dur: 12, vel: 3 },
      { dt: 0, pitch: 64, dur: 12, vel: 3 },
      { dt: 12, pitch: 62, dur: 6, vel: 3 },
      { dt: 6, pitch: 60, dur: 30, vel: 3 },
    ];
    const m = timingMarginals([tokens]);
    const at = (bin: number, share: number) => Object.assign(new Array(TIMING_BIN_EDGES.length).fill(0), { [bin]: share });
    assert.deepEqual(m.dt, TIMING_BIN_EDGES.map((_, b) => [at(0, 1 / 3), at(6, 1 / 3), at(4, 1 / 3)].reduce((s, v) => s + v[b], 0)), 'the first note\'s gap is not counted');
    assert.deepEqual(m.dur, TIMING_BIN_EDGES.map((_, b) => [at(6, 0.5), at(4, 0.25), at(8, 0.25)].reduce((s, v) => s + v[b], 0)));
    const matrix = timingBinMatrix(4, (c) => c + 11); // values 11..14: bins 5, 6, 7, 7
    assert.deepEqual(Array.from({ length: 4 }, (_, c) => [...matrix.slice(c * TIMING_BIN_EDGES.length, (c + 1) * TIMING_BIN_EDGES.length)].indexOf(1)), [5, 6, 7, 7]);
  });

  test('timingPull is the KL from the real shares to the own rows\' mean, 0 where they agree, and lowers an over-used bin on every row', () => {
    const logits = tf.tensor2d([[0, Math.log(3)], [0, 0], [9, 9]]); // p(class 1) = 0.75, 0.5; the third row is padding
    const targets = tf.tensor2d([[0, 1], [1, 0], [0, 0]]);
    const bins = tf.tensor2d([[1, 0], [0, 1]]);
    const value = (real: number[]) => tf.tidy(() => timingPull(logits, targets, bins, real).dataSync()[0]);
    assert.ok(Math.abs(value([0.375, 0.625])) < 1e-6, 'the mean of the real rows (padding left out) is the real marginal');
    const expected = 0.5 * Math.log(0.5 / 0.375) + 0.5 * Math.log(0.5 / 0.625);
    assert.ok(Math.abs(value([0.5, 0.5]) - expected) < 1e-5, `${value([0.5, 0.5])} against ${expected}`);
    const grad = tf.grad((l: tf.Tensor) => timingPull(l as tf.Tensor2D, targets, bins, [0.5, 0.5]))(logits);
    const g = grad.arraySync() as number[][];
    assert.ok(g[0][1] > 0 && g[1][1] > 0, 'class 1 is used more than real music does: both rows lower it');
    assert.deepEqual(g[2].map(Math.abs), [0, 0], 'a padding row is not pulled');
    tf.dispose([logits, targets, bins, grad]);
  });

  test('an epoch of timing pull rounds takes a model that leaves long gaps toward the real gaps, and leaks nothing', () => {
    const h: Hyperparameters = { ...H };
    // Real pieces: a note every sixteenth. The model starts out leaving 2 beats between notes.
    const pieces: StreamPiece[] = [0, 1, 2, 3].map((i) => ({ composer: i % 2 ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 40 }, (_, k) => 48 + ((k * 7 + i) % 37))), keys: new Uint8Array(40).fill(i) }));
    const train = (timingPull: number) => {
      const w = createLongContextWeights(h, D, 9);
      const v = w['head/bdt'] as tf.Variable;
      const values = v.dataSync().slice();
      values[24] += 6;
      v.assign(tf.tensor(values, v.shape));
      const unlikelihood = { weight: 0, every: 1, pieces: 3, notes: 48, limit: 20, hazard: 0, timingPull, decoding: { temperature: 1, topP: 1 } };
      const optimizer = tf.train.adam(0.01);
      const rng = seededRandom(3);
      const epoch = () => streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng, step: (loss) => clippedAdamStep(optimizer, w, Object.keys(w), loss, 1), progress: () => {}, unlikelihood });
      epoch();
      const tensors = tf.memory().numTensors;
      const records = [epoch(), epoch()].map((r) => r.unlikelihood!);
      assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
      // What the model writes now: its share of gaps of 2 beats or more.
      const written = sampleMarkedPieces(w, h, composerIndex, ['Chopin', 'Mozart'], { temperature: 1, topP: 1 }, { ...unlikelihood, pieces: 6 }, seededRandom(9)).pieces.map((p) => p.tokens);
      optimizer.dispose();
      tf.dispose(Object.values(w));
      return { records, longGaps: timingMarginals(written).dt[TIMING_BIN_EDGES.length - 1] };
    };
    const pulled = train(2);
    const plain = train(0);
    assert.ok(pulled.records.every((r) => r.timingSteps > 0 && r.timing > 0), JSON.stringify(pulled.records[0]));
    assert.ok(plain.records.every((r) => r.timingSteps === 0 && r.timing === 0), 'without the weight the round only samples');
    assert.ok(pulled.longGaps < plain.longGaps / 2, `gaps of 2 beats or more: ${pulled.longGaps.toFixed(2)} with the timing pull, ${plain.longGaps.toFixed(2)} without`);
  });
});

describe('own-best steps', () => {
  test('an own piece scores its share of notes in returns from afar less its share in near repeats beyond real music\'s tenth; the better of each pair is kept', () => {
    const figure = [60, 62, 64, 65, 67, 65, 64, 62];
    const returning = notes([...figure, ...WANDERING, ...figure.map((p) => p + 5)]);
    const hammered = notes(Array(36).fill(60)).map((t) => ({ ...t, dt: 3 }));
    const count = (marks: Uint8Array) => marks.reduce((s, m) => s + m, 0);
    const score = (tokens: NoteToken[]) => ownPieceScore(count(distantReturns(tokens)), count(nearReturns(tokens)), tokens.length);
    assert.equal(score(returning), 7 / 36, 'seven of its 36 notes complete a return, none repeats near');
    assert.ok(Math.abs(score(hammered) - -(34 - 3.6) / 36) < 1e-12, `the steps of every figure from the 9th note on, played one note before (notes 3 to 36), 3.6 of them allowed: ${score(hammered)}`);
    assert.equal(ownPieceScore(10, 9, 100), 0.1, 'near repeats up to a tenth of the notes cost nothing');
    assert.equal(ownPieceScore(10, 30, 100), -0.1, 'beyond it each costs what a return earns');
    assert.deepEqual(bestOfGroups([0.1, 0.3, 0.2, 0.2, -0.5]), [1, 2, 4], 'the higher of each pair, the first on a tie, an odd last piece alone');
    assert.deepEqual(bestOfGroups([0.1, 0.3, 0.2, 0.4, -0.5, 0, 0.9], 3), [1, 3, 6], 'the highest of each group of three');
    assert.deepEqual(bestOfGroups([]), []);
    assert.throws(() => bestOfGroups([1], 0), /size must be a whole number ≥ 1, got 0/);
  });

  test('an epoch with own-best steps writes pieces in pairs per composer, keeps the better of each, learns from it, and leaks nothing', () => {
    const h: Hyperparameters = { ...H };
    const pieces: StreamPiece[] = [0, 1, 2, 3].map((i) => ({ composer: i % 2 ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 40 }, (_, k) => 55 + ((k * (i + 3)) % 17))), keys: new Uint8Array(40).fill(i) }));
    const run = (ownBest: number) => {
      const w = createLongContextWeights(h, D, 9);
      hammerOneNote(w, 3); // some pieces loop, some do not: the pairs differ
      const unlikelihood = { weight: 0, every: 2, pieces: 4, notes: 48, limit: 16, ownBest, decoding: { temperature: 1, topP: 1 } };
      const { pieces: own, stats, best } = sampleMarkedPieces(w, h, composerIndex, ['Chopin', 'Mozart', 'Chopin', 'Mozart', 'Mozart'], unlikelihood.decoding, unlikelihood, seededRandom(4));
      const optimizer = tf.train.adam(0.01);
      const rng = seededRandom(2);
      const losses: number[] = [];
      const epoch = () => streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng, step: (loss) => {
        const value = clippedAdamStep(optimizer, w, Object.keys(w), loss, 1);
        losses.push(value);
        return value;
      }, progress: () => {}, unlikelihood });
      epoch();
      const tensors = tf.memory().numTensors;
      losses.length = 0;
      const r = epoch();
      assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
      optimizer.dispose();
      tf.dispose(Object.values(w));
      return { own, stats, best, r, losses };
    };
    const kept = run(1);
    const { own, stats, best, r } = kept;
    for (let k = 0; k < 4; k += 2) assert.equal(own[k].composer, own[k + 1].composer, 'a pair is written for one composer');
    assert.equal(best.length, 2);
    assert.equal(stats.kept, 2);
    const count = (marks: Uint8Array) => marks.reduce((s, m) => s + m, 0);
    const scores = own.map((p) => ownPieceScore(count(distantReturns(p.tokens)), count(nearReturns(p.tokens)), p.tokens.length));
    for (const [i, piece] of best.entries()) {
      const k = own.findIndex((p) => p.tokens === piece.tokens);
      assert.equal(Math.floor(k / 2), i, 'one piece from each pair');
      assert.equal(scores[k], Math.max(scores[2 * i], scores[2 * i + 1]), 'the better of its pair');
      assert.equal(piece.marks, undefined, 'read as a real piece, without marks');
    }
    const u = r.unlikelihood!;
    assert.equal(u.kept, 2 * u.rounds);
    assert.equal(u.keptNotes, 96 * u.rounds);
    assert.ok(u.keptNear <= u.near, `the epoch adds up its rounds' near repeats: ${JSON.stringify(u)}`);
    // Raw candidates: written apart, for the same composers, at temperature 1 without guidance, whatever the round's decoding.
    {
      const w = createLongContextWeights(h, D, 9);
      hammerOneNote(w, 3);
      const sharp = { temperature: 0.5, topP: 0.9, composerGuidance: 2 };
      const pool = ['Chopin', 'Mozart', 'Mozart'];
      const o = { weight: 0, every: 2, pieces: 4, notes: 48, limit: 16, ownBest: 1, ownBestRaw: true };
      const round = sampleMarkedPieces(w, h, composerIndex, pool, sharp, o, seededRandom(4));
      // The same draws in the same order: a composer per pair, the round's seeds, then the candidates' seeds.
      const rng = seededRandom(4);
      const names = [0, 2].flatMap(() => Array(2).fill(pool[Math.floor(rng.next() * pool.length)]) as string[]);
      for (let k = 0; k < 4; k++) rng.next();
      const raw = generateTokens(w, h, COMPOSERS, names.map((name) => ({ composer: composerIndex.get(name)!, notes: 48, temperature: 1, topP: 1, randomSeed: Math.floor(rng.next() * 2 ** 31) })));
      assert.deepEqual(round.pieces.map((p) => p.composer), names);
      for (const [i, piece] of round.best.entries()) {
        assert.ok([raw[2 * i], raw[2 * i + 1]].some((t) => JSON.stringify(t) === JSON.stringify(piece.tokens)), `kept piece ${i} is one of its pair's raw pieces`);
        assert.ok(round.pieces.every((p) => JSON.stringify(p.tokens) !== JSON.stringify(piece.tokens)), 'and not one of the round\'s own pieces');
      }
      tf.dispose(Object.values(w));
    }
    // Each round adds one likelihood step per chunk of the two kept pieces (48 notes, chunks of 16): 3 steps.
    const plain = run(0);
    assert.equal(plain.r.unlikelihood!.kept, 0);
    assert.equal(plain.losses.length, plain.r.steps, 'without the weight a round only samples');
    assert.equal(kept.losses.length, r.steps + 3 * u.rounds);
    assert.ok(kept.losses.every((l) => Number.isFinite(l) && l > 0), 'the own-best steps are likelihood steps');
  });

  test('a round counts the near repeats of its pieces and of those it keeps', () => {
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    hammerOneNote(w, 6); // long runs of one note: figures repeated on the spot
    const o = { weight: 0, every: 2, pieces: 4, notes: 48, limit: 16, ownBest: 1 };
    const { pieces, stats, best } = sampleMarkedPieces(w, h, composerIndex, ['Chopin', 'Mozart'], { temperature: 1, topP: 1 }, o, seededRandom(4));
    const count = (p: { tokens: NoteToken[] }) => nearReturns(p.tokens).reduce((s, m) => s + m, 0);
    assert.ok(stats.near > 0, 'the hammered model repeats near');
    assert.equal(stats.near, pieces.reduce((s, p) => s + count(p), 0));
    assert.equal(stats.keptNear, best.reduce((s, p) => s + count(p), 0));
    tf.dispose(Object.values(w));
  });

  test('by realism, each group keeps the piece a realism critic finds most real; without a critic the round is refused', () => {
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    hammerOneNote(w, 3); // some pieces hammer, some wander: the critic tells them apart
    const real = [0, 1, 2, 3].map((i) => notes(Array.from({ length: 48 }, (_, k) => 55 + ((k * (i + 3)) % 17))));
    const critic = fitRealismCritic(real, [notes(new Array(48).fill(60)), notes(new Array(48).fill(62), 6)], 16);
    const o = { weight: 0, every: 2, pieces: 6, notes: 48, limit: 16, ownBest: 1, ownBestOf: 3, ownBestBy: 'realism' as const };
    const { pieces, stats, best } = sampleMarkedPieces(w, h, composerIndex, ['Chopin', 'Mozart'], { temperature: 1, topP: 1 }, o, seededRandom(4), critic);
    const scores = pieces.map((p) => realismLogOdds(critic, p.tokens));
    assert.ok(Math.max(...scores) - Math.min(...scores) > 0.1, `the pieces differ to the critic: ${scores}`);
    const expected = bestOfGroups(scores, 3);
    assert.deepEqual(best.map((p) => p.tokens), expected.map((k) => pieces[k].tokens));
    close(stats.scoreSum, scores.reduce((a, b) => a + b, 0), 1e-9);
    close(stats.keptScoreSum, expected.reduce((a, k) => a + scores[k], 0), 1e-9);
    assert.throws(() => sampleMarkedPieces(w, h, composerIndex, ['Chopin'], { temperature: 1, topP: 1 }, o, seededRandom(4)), /own-best by realism needs a realism critic/);
    tf.dispose(Object.values(w));
  });

  test('an epoch with own-best by realism fits its critic on the training pieces against the model\'s own, keeps what it finds most real, and leaks nothing', () => {
    const h: Hyperparameters = { ...H };
    const w = createLongContextWeights(h, D, 9);
    hammerOneNote(w, 3);
    const pieces: StreamPiece[] = [0, 1, 2, 3].map((i) => ({ composer: i % 2 ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 40 }, (_, k) => 55 + ((k * (i + 3)) % 17))), keys: new Uint8Array(40).fill(i) }));
    const unlikelihood = { weight: 0, every: 2, pieces: 4, notes: 32, limit: 16, ownBest: 1, ownBestBy: 'realism' as const, decoding: { temperature: 1, topP: 1 } };
    const optimizer = tf.train.adam(0.01);
    const epoch = () => streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng: seededRandom(2), step: (loss) => clippedAdamStep(optimizer, w, Object.keys(w), loss, 1), progress: () => {}, unlikelihood });
    epoch();
    const tensors = tf.memory().numTensors;
    const r = epoch().unlikelihood!;
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.ok(r.rounds > 0 && r.kept === r.rounds * 2, `two kept per round: ${JSON.stringify(r)}`);
    assert.ok(Number.isFinite(r.scoreSum) && r.scoreSum !== 0, 'the candidates carry the critic\'s log-odds');
    assert.ok(r.keptScoreSum / r.kept > r.scoreSum / r.pieces, `the kept look more real than the candidates on average: ${r.keptScoreSum / r.kept} against ${r.scoreSum / r.pieces}`);
    optimizer.dispose();
    tf.dispose(Object.values(w));
  });

  test('own-best steps train only the heads they are given', () => {
    const h: Hyperparameters = { ...H };
    const pieces: StreamPiece[] = [0, 1].map((i) => ({ composer: i ? 'Mozart' : 'Chopin', tokens: notes(Array.from({ length: 32 }, (_, k) => 55 + ((k * (i + 3)) % 17))), keys: new Uint8Array(32).fill(i) }));
    const losses = (ownBestHeads?: HeadName[]) => {
      const w = createLongContextWeights(h, D, 9);
      const optimizer = tf.train.adam(0.01);
      const seen: number[] = [];
      const unlikelihood = { weight: 0, every: 1, pieces: 2, notes: 32, limit: 16, ownBest: 1, ...(ownBestHeads ? { ownBestHeads } : {}), decoding: { temperature: 1, topP: 1 } };
      streamEpoch(w, h, pieces, { batchSize: 2, composerIndex, composers: COMPOSERS, transpose: 0, composerDropout: 0, keyDropout: 0, inputNoise: 0, rng: seededRandom(2), step: (loss) => {
        const value = clippedAdamStep(optimizer, w, Object.keys(w), loss, 1);
        seen.push(value);
        return value;
      }, progress: () => {}, unlikelihood });
      optimizer.dispose();
      tf.dispose(Object.values(w));
      return seen;
    };
    const all = losses();
    assert.deepEqual(losses(['dt', 'pitch', 'dur', 'vel']), all, 'naming every head is the default');
    const pitch = losses(['pitch']);
    assert.equal(pitch.length, all.length);
    const first = all.findIndex((l, k) => l !== pitch[k]);
    assert.ok(first >= 1, `the likelihood step before the first round is the same: differs at ${first}`);
    assert.ok(pitch[first] < all[first], `the first own-best step counts the pitch head only: ${pitch[first]} against ${all[first]} for all four`);
  });
});
