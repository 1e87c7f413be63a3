/**
 * LSTM + local causal attention over recent LSTM outputs, with four chained output heads
 * (dt → pitch → duration, velocity), written as plain tf ops so that the same weights run
 * both over whole chunks (training, many-to-many) and one step at a time (sampling).
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_SIZES } from './features.ts';
import { STEPS_PER_BEAT } from '../../tokens/tokenize.ts';
import { lstmCell, lstmLayer, uniqueVariableName, type Weights } from '../layers.ts';

export interface Hyperparameters {
  /** LSTM units per layer. */
  hidden: number;
  layers: number;
  /** Width of the attention keys/values. */
  attentionDim: number;
  /** How many recent outputs (including the current one) attention sees. */
  attentionWindow: number;
  /** Width of the shared layer under the heads. */
  headDim: number;
  /** Training chunk length in notes (the "window"). */
  window: number;
  /**
   * Long-context models only (src/model/note/longContext.ts); absent in the local-attention model.
   * `memory`: notes of attention memory carried from chunk to chunk (Transformer-XL style);
   * `heads`: attention heads (attentionDim is split between them); `relativeBuckets`: learned
   * relative-position bias buckets; `keys`: a key-conditioning input; `dropout`: training rate;
   * `keyPitch` (with `keys`): the key also biases the pitch head directly (a learned [key, pitch]
   * table), so that a requested key holds from the first note.
   */
  memory?: number;
  heads?: number;
  relativeBuckets?: number;
  keys?: boolean;
  dropout?: number;
  keyPitch?: boolean;
  /** Long-context models with several layers: residual gated layers (see longContext.ts). */
  residual?: boolean;
  /**
   * Long-context models: a relative pitch head (`head/wrel`) scores the interval from the note
   * just read (−RELATIVE_SPAN..+RELATIVE_SPAN semitones) and adds each score to the pitch it
   * lands on, so a figure can come back transposed as easily as at its own pitch.
   */
  relativePitch?: boolean;
  /**
   * Long-context models: each note's attention value also carries its interval from the note
   * before it (`attn/winterval`, one row per interval −RELATIVE_SPAN..+RELATIVE_SPAN), so that
   * attending to an earlier passage reads its intervals directly, not only its absolute pitches.
   */
  intervalValues?: boolean;
  /**
   * Long-context models: interval matching over the last `intervalMatch` intervals (0: none).
   * Each head's score of an earlier slot gains MATCH_SCALE · `attn/match`[l, head] for every lag
   * l at which the interval read l notes before that slot equals the one read l notes before
   * now (the same steps, at any pitch). A head can then find where the last few steps were
   * played before and, with interval values and the relative pitch head, carry on from there at
   * the current pitch: a sequence. `attn/match` starts at zero.
   */
  intervalMatch?: number;
  /**
   * Long-context models: a beat clock in the attention. Each head's score of an earlier slot
   * gains CLOCK_SCALE · Σ_p `attn/clock`[p, head] · cos(2π·δ/CLOCK_PERIODS[p]), where δ is how
   * far apart in time (grid steps) the notes read at the two steps lie. The relative bias counts
   * distance in notes; this one counts it in beats, so a head can look one, two or four bars
   * back however many notes those bars hold. No time signature is needed: a period that fits the
   * bar (4 beats, 3 beats, …) is learnt. `attn/clock` starts at zero.
   */
  beatClock?: boolean;
  /**
   * Long-context models: the LSTM also reads how long the loop running through the note just
   * read has gone, and its period (advanceLoop, loopInputColumns; `lstm0/wloop`, zero at the
   * start). A model that only copies cannot tell the 30th note of a figure circling on the spot
   * from the 5th note of a motif coming back; with the count, teacher forcing on real music
   * teaches it how long real loops run before they change.
   */
  loopInput?: boolean;
}

/** Periods of the beat clock, in grid steps: 1, 2, 3, 4, 6, 8, 12, 16, 24 and 32 beats. */
export const CLOCK_PERIODS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32].map((beats) => beats * STEPS_PER_BEAT);
/** One full turn of every clock period (their least common multiple, in grid steps): δ matters only modulo this. */
export const CLOCK_CYCLE = 96 * STEPS_PER_BEAT;
/** Columns of a row's clock (cos and sin per period; ChunkBatch.clockRows). */
export const CLOCK_WIDTH = 2 * CLOCK_PERIODS.length;
/** `attn/clock` enters the scores times this (as MATCH_SCALE, so that Adam can move it within an epoch). */
export const CLOCK_SCALE = 4;

/** Phase (radians) of a time of `steps` grid steps in a clock period of `period` steps, reduced first so that it stays exact for any length of piece. */
export function clockPhase(steps: number, period: number): number {
  return (2 * Math.PI * (steps % period)) / period;
}

/**
 * The clock row of a note at `onset` grid steps: cos and sin of its phase in every period
 * (the product of two rows is Σ_p cos(2π·δ/P)). Written at `offset` of `out`.
 */
export function writeClockRow(out: Float32Array, offset: number, onset: number): void {
  CLOCK_PERIODS.forEach((period, p) => {
    const phase = clockPhase(onset, period);
    out[offset + 2 * p] = Math.cos(phase);
    out[offset + 2 * p + 1] = Math.sin(phase);
  });
}

/** Most lags `intervalMatch` may compare. */
export const MAX_INTERVAL_MATCH = 8;
/**
 * `attn/match` enters the scores times this: with Adam each weight moves about the learning
 * rate per step whatever its gradient, and a match must be able to outweigh the learned keys'
 * scores (several units) within an epoch or two.
 */
export const MATCH_SCALE = 4;

/** Widest interval, in semitones either way, that the relative pitch head scores. */
export const RELATIVE_SPAN = 24;
/** Intervals the relative pitch head scores: −RELATIVE_SPAN..+RELATIVE_SPAN. */
export const RELATIVE_WIDTH = 2 * RELATIVE_SPAN + 1;
/** The anchor of a row that has no previous note (the start of a piece, padding): lands nowhere. */
export const NO_ANCHOR = -1000;

/** Row of `attn/winterval` for a step from pitch `from` to `to` (MIDI numbers), or -1: none (no previous note, or a leap wider than RELATIVE_SPAN). */
export function intervalIndex(from: number | undefined, to: number): number {
  if (from === undefined) return -1;
  const d = to - from;
  return Math.abs(d) > RELATIVE_SPAN ? -1 : d + RELATIVE_SPAN;
}

/**
 * Puts the interval just read first in `recent` (newest first) and keeps at most `lags`: the
 * interval context of the next step. Training's stream and the sampling ring both keep it so.
 */
export function rememberInterval(recent: number[], interval: number, lags: number): void {
  recent.unshift(interval);
  if (recent.length > lags) recent.pop();
}

/**
 * Relative pitch logits [R, pitch]: `rel` [R, RELATIVE_WIDTH] scores intervals from each row's
 * anchor (the pitch index of the note it read, NO_ANCHOR for none); interval j − RELATIVE_SPAN
 * lands on pitch anchor + j − RELATIVE_SPAN, and a landing off the keyboard is dropped. Built as
 * a sum over intervals of score × (the anchor's one-hot, shifted by the interval): no gather
 * (the wasm backend has no gradient for it), and 25× faster on wasm than one mask product.
 */
export function relativePitchLogits(rel: tf.Tensor2D, anchors: tf.Tensor1D): tf.Tensor2D {
  const R = rel.shape[0];
  const P = HEAD_SIZES[1];
  // hot[r, a + SPAN] = 1 for anchor a; a row without an anchor (out of range) stays zero.
  const hot = tf.pad(tf.oneHot(tf.cast(anchors, 'int32'), P), [
    [0, 0],
    [RELATIVE_SPAN, RELATIVE_SPAN],
  ]).cast('float32') as tf.Tensor2D;
  const terms: tf.Tensor2D[] = [];
  // Interval j lands on p where p = a + j − SPAN, that is where hot[r, p + 2·SPAN − j] = 1.
  for (let j = 0; j < RELATIVE_WIDTH; j++) terms.push(tf.mul(rel.slice([0, j], [R, 1]), hot.slice([0, 2 * RELATIVE_SPAN - j], [R, P])) as tf.Tensor2D);
  return tf.addN(terms) as tf.Tensor2D;
}

/** The host twin of relativePitchLogits: adds `rel` [rows, RELATIVE_WIDTH] to `pitch` [rows, pitch] in place (anchor < 0: none). */
export function addRelativePitch(pitch: Float32Array, rel: Float32Array, anchors: readonly number[]): Float32Array {
  const P = HEAD_SIZES[1];
  anchors.forEach((a, r) => {
    if (a < 0) return;
    for (let j = Math.max(0, RELATIVE_SPAN - a); j < RELATIVE_WIDTH && a + j - RELATIVE_SPAN < P; j++) pitch[r * P + a + j - RELATIVE_SPAN] += rel[r * RELATIVE_WIDTH + j];
  });
  return pitch;
}

export const DEFAULT_HYPERPARAMETERS: Hyperparameters = {
  hidden: 256,
  layers: 1,
  attentionDim: 64,
  attentionWindow: 32,
  headDim: 192,
  window: 128,
};

/** Weight names and shapes for given sizes: the manifest a saved model must match. */
export function weightShapes(h: Hyperparameters, inputDim: number): Record<string, number[]> {
  const s: Record<string, number[]> = lstmShapes(h, inputDim);
  s['attn/wq'] = [h.hidden, h.attentionDim];
  s['attn/wk'] = [h.hidden, h.attentionDim];
  s['attn/wv'] = [h.hidden, h.attentionDim];
  return { ...s, ...headShapes(h, h.hidden + h.attentionDim) };
}

/** The LSTM layers' weights, shared by both architectures (in manifest order). */
export function lstmShapes(h: Hyperparameters, inputDim: number): Record<string, number[]> {
  const s: Record<string, number[]> = {};
  for (let l = 0; l < h.layers; l++) {
    s[`lstm${l}/wx`] = [l === 0 ? inputDim : h.hidden, 4 * h.hidden];
    s[`lstm${l}/wh`] = [h.hidden, 4 * h.hidden];
    s[`lstm${l}/b`] = [4 * h.hidden];
  }
  return s;
}

/** The shared tanh layer on `zInput` features and the four chained heads (in manifest order). */
export function headShapes(h: Hyperparameters, zInput: number): Record<string, number[]> {
  const [dt, pitch, dur, vel] = HEAD_SIZES;
  return {
    'head/wz': [zInput, h.headDim],
    'head/bz': [h.headDim],
    'head/wdt': [h.headDim, dt],
    'head/bdt': [dt],
    'head/edt': [dt, h.headDim],
    'head/wpitch': [h.headDim, pitch],
    'head/bpitch': [pitch],
    'head/epitch': [pitch, h.headDim],
    'head/wdur': [h.headDim, dur],
    'head/bdur': [dur],
    'head/wvel': [h.headDim, vel],
    'head/bvel': [vel],
  };
}

/** Glorot-uniform matrices, zero biases (LSTM forget gate biased to 1), from a seeded generator. */
export function createWeights(h: Hyperparameters, inputDim: number, seed = 1): Weights {
  const weights: Weights = {};
  let n = 0;
  for (const [name, shape] of Object.entries(weightShapes(h, inputDim))) {
    n++;
    let init: tf.Tensor;
    if (shape.length === 1) {
      const values = new Float32Array(shape[0]);
      if (name.startsWith('lstm') && name.endsWith('/b')) values.fill(1, h.hidden, 2 * h.hidden);
      init = tf.tensor1d(values);
    } else {
      const limit = Math.sqrt(6 / (shape[0] + shape[1]));
      init = tf.randomUniform(shape, -limit, limit, 'float32', seed * 1000 + n);
    }
    weights[name] = tf.variable(init, true, uniqueVariableName(name));
    init.dispose();
  }
  return weights;
}

/** Additive mask for block-local causal attention: [blocks, W, 2W], 0 where allowed. */
function blockMask(blocks: number, w: number): tf.Tensor3D {
  const values = new Float32Array(blocks * w * 2 * w).fill(-1e9);
  for (let j = 0; j < blocks; j++)
    for (let i = 0; i < w; i++)
      for (let m = i + 1; m <= w + i; m++) if (j > 0 || m >= w) values[(j * w + i) * 2 * w + m] = 0;
  return tf.tensor3d(values, [blocks, w, 2 * w]);
}

export interface SequenceBatch {
  /** Time-major inputs [T*B, inputDim]. */
  inputs: tf.Tensor2D;
  /** One-hot targets per head, time-major [T*B, classes]. */
  targets: [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
  batch: number;
  steps: number;
}

/**
 * Runs the LSTM and the attention over whole time-major chunks: inputs [T*B, inputDim] →
 * the shared head activation z [T*B, headDim]. Used by training and by whole-window re-feed.
 */
export function sequenceHidden(w: Weights, h: Hyperparameters, inputs: tf.Tensor2D, B: number, T: number): tf.Tensor2D {
  let layerInput: tf.Tensor2D = inputs;
  for (let l = 0; l < h.layers; l++) layerInput = lstmLayer(w, l, h.hidden, layerInput, B, T).outputs;
  const out = layerInput; // [T*B, H], time-major
  const A = h.attentionDim;
  const W = h.attentionWindow;
  if (T % W !== 0) throw new Error(`window ${T} must be a multiple of the attention window ${W}`);
  const nb = T / W;
  const toBlocks = (x: tf.Tensor2D) => x.reshape([T, B, A]).transpose([1, 0, 2]).reshape([B, nb, W, A]);
  const q = toBlocks(tf.matMul(out, w['attn/wq'] as tf.Tensor2D)).reshape([B * nb, W, A]);
  const withPrevious = (x: tf.Tensor4D) => {
    const previous = tf.concat([tf.zeros([B, 1, W, A]), x.slice([0, 0, 0, 0], [B, nb - 1, W, A])], 1);
    return tf.concat([previous, x], 2).reshape([B * nb, 2 * W, A]);
  };
  const k = withPrevious(toBlocks(tf.matMul(out, w['attn/wk'] as tf.Tensor2D)) as tf.Tensor4D);
  const v = withPrevious(toBlocks(tf.matMul(out, w['attn/wv'] as tf.Tensor2D)) as tf.Tensor4D);
  const scores = tf.matMul(q, k, false, true).mul(1 / Math.sqrt(A)).reshape([B, nb, W, 2 * W]);
  const mask = blockMask(nb, W);
  const attention = tf.softmax(tf.add(scores, mask)).reshape([B * nb, W, 2 * W]);
  const context = tf
    .matMul(attention, v)
    .reshape([B, T, A])
    .transpose([1, 0, 2])
    .reshape([T * B, A]) as tf.Tensor2D;
  return tf.tanh(tf.add(tf.matMul(tf.concat([out, context], 1), w['head/wz'] as tf.Tensor2D), w['head/bz'])) as tf.Tensor2D;
}

/**
 * Mean negative log-likelihood per note (sum over the four heads) of a batch, plus the
 * per-head means. Teacher-forced: the pitch head sees the true dt, and so on.
 */
export function sequenceLoss(w: Weights, h: Hyperparameters, b: SequenceBatch): { total: tf.Scalar; perHead: tf.Scalar[] } {
  return headsLoss(w, sequenceHidden(w, h, b.inputs, b.batch, b.steps), b.targets);
}

/** The four chained heads' logits [rows, classes] under teacher forcing (each head reads the targets of the heads before it). */
export function teacherForcedLogits(w: Weights, z: tf.Tensor2D, targets: SequenceBatch['targets'], pitchBias?: tf.Tensor2D, pitchAnchors?: tf.Tensor1D): [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D] {
  const [dtT, pitchT] = targets;
  const logitsDt = tf.add(tf.matMul(z, w['head/wdt'] as tf.Tensor2D), w['head/bdt']) as tf.Tensor2D;
  const z2 = tf.tanh(tf.add(z, tf.matMul(dtT, w['head/edt'] as tf.Tensor2D))) as tf.Tensor2D;
  const pitchLinear = tf.add(tf.matMul(z2, w['head/wpitch'] as tf.Tensor2D), w['head/bpitch']);
  const biased = pitchBias ? tf.add(pitchLinear, pitchBias) : pitchLinear;
  const logitsPitch = (pitchAnchors && w['head/wrel'] ? tf.add(biased, relativePitchLogits(tf.matMul(z2, w['head/wrel'] as tf.Tensor2D), pitchAnchors)) : biased) as tf.Tensor2D;
  const z3 = tf.tanh(tf.add(z2, tf.matMul(pitchT, w['head/epitch'] as tf.Tensor2D))) as tf.Tensor2D;
  const logitsDur = tf.add(tf.matMul(z3, w['head/wdur'] as tf.Tensor2D), w['head/bdur']) as tf.Tensor2D;
  const logitsVel = tf.add(tf.matMul(z3, w['head/wvel'] as tf.Tensor2D), w['head/bvel']) as tf.Tensor2D;
  return [logitsDt, logitsPitch, logitsDur, logitsVel];
}

/**
 * The four chained heads on the shared activation z [rows, headDim], teacher-forced (the pitch
 * head sees the true dt, and so on): mean NLL per row, in total and per head. `pitchBias`
 * [rows, pitch classes] is added to the pitch logits (a key-conditioned model's key table).
 * `rowWeights` [rows] scales each row's NLL (return weighting); absent: every row counts once.
 */
export function headsLoss(w: Weights, z: tf.Tensor2D, targets: SequenceBatch['targets'], pitchBias?: tf.Tensor2D, pitchAnchors?: tf.Tensor1D, rowWeights?: tf.Tensor1D): { total: tf.Scalar; perHead: tf.Scalar[] } {
  const logits = teacherForcedLogits(w, z, targets, pitchBias, pitchAnchors);
  const rowLogLikelihood = (l: tf.Tensor, target: tf.Tensor) => tf.sum(tf.mul(target, tf.logSoftmax(l)), 1);
  const nll = (l: tf.Tensor, target: tf.Tensor) => tf.neg(tf.mean(rowWeights ? tf.mul(rowLogLikelihood(l, target), rowWeights) : rowLogLikelihood(l, target))) as tf.Scalar;
  const perHead = logits.map((l, k) => nll(l, targets[k]));
  return { total: tf.addN(perHead) as tf.Scalar, perHead };
}

/**
 * Unlikelihood of the marked rows' target pitches (Welleck et al. 2019): the sum over rows of
 * −mark·log(1 − p(target pitch)), divided by the marked rows. Lowering it makes the model less
 * likely to write those pitches there; unmarked rows add nothing.
 */
export function pitchUnlikelihood(logitsPitch: tf.Tensor2D, pitchTargets: tf.Tensor2D, marks: tf.Tensor1D): tf.Scalar {
  const p = tf.sum(tf.mul(tf.softmax(logitsPitch), pitchTargets), 1);
  return markedMean(tf.neg(tf.log(tf.maximum(tf.sub(1, p), 1e-6))), marks);
}

/** The real shares loopHazardLoss pulls toward, per band of LOOP_PROFILE_BANDS (loopHazardProfile); a head without its shares is not pulled. */
export interface LoopHazardShares {
  dtShare?: readonly number[];
  pitchShare?: readonly number[];
  /**
   * The real share of loops carried on in gap and pitch alike (dtShare × pitchShare), per band.
   * With it and without `dtShare`, the pitch head alone is pulled toward the share that makes the
   * band's joint continuation real at the gap head's present mean (held fixed): a gap head that
   * carries loops on too often is made up for by the pitch, and the rhythm is left alone.
   */
  jointShare?: readonly number[];
}

/**
 * Loop hazard matching on the model's own pieces: for each band of loop length, the mean
 * probability that the dt head gives the loop's onset gap (over the band's rows) and that the
 * pitch head gives the loop's pitch (over the band's rows whose onset gap did carry the loop on),
 * each pulled toward the real share by a binary cross-entropy less its minimum (0 at the real
 * share), weighted by the band's share of the rows. Only the means are pulled: a row may still
 * be sure of its loop (an Alberti bass) as long as the band as a whole carries loops on as real
 * music does. `bands` [rows, B] one-hot (zero: no loop behind), `dtTargets`/`pitchTargets` the
 * loop's values one-hot, `dtMatched` [rows] 1 where the row's own onset gap is the loop's. With
 * `jointShare` (and no `pitchShare`), the pitch mean's target is the joint share over the gap
 * head's band mean, which is held fixed: only the pitch head moves.
 */
export function loopHazardLoss(logitsDt: tf.Tensor2D, logitsPitch: tf.Tensor2D, bands: tf.Tensor2D, dtTargets: tf.Tensor2D, pitchTargets: tf.Tensor2D, dtMatched: tf.Tensor1D, real: LoopHazardShares): tf.Scalar {
  const clip = (t: tf.Tensor) => tf.clipByValue(t, 1e-6, 1 - 1e-6);
  const bandMean = (p: tf.Tensor1D, rows: tf.Tensor2D) => clip(tf.div(tf.sum(tf.mul(rows, p.expandDims(1)), 0), tf.maximum(tf.sum(rows, 0), 1)));
  const pulled = (p: tf.Tensor1D, rows: tf.Tensor2D, target: tf.Tensor) => {
    const n = tf.sum(rows, 0); // [B]
    const bce = (q: tf.Tensor) => tf.neg(tf.add(tf.mul(target, tf.log(q)), tf.mul(tf.sub(1, target), tf.log(tf.sub(1, q)))));
    return tf.div(tf.sum(tf.mul(tf.sub(bce(bandMean(p, rows)), bce(target)), n)), tf.maximum(tf.sum(n), 1));
  };
  const shares = (share: readonly number[]) => clip(tf.tensor1d(share as number[]));
  const dtProbability = () => tf.sum(tf.mul(tf.softmax(logitsDt), dtTargets), 1) as tf.Tensor1D;
  const pitchRows = tf.mul(bands, dtMatched.expandDims(1)) as tf.Tensor2D;
  const pitchProbability = () => tf.sum(tf.mul(tf.softmax(logitsPitch), pitchTargets), 1) as tf.Tensor1D;
  const terms: tf.Tensor[] = [tf.scalar(0)];
  if (real.dtShare) terms.push(pulled(dtProbability(), bands, shares(real.dtShare)));
  if (real.pitchShare) terms.push(pulled(pitchProbability(), pitchRows, shares(real.pitchShare)));
  else if (real.jointShare) terms.push(pulled(pitchProbability(), pitchRows, clip(tf.div(shares(real.jointShare), heldFixed(bandMean(dtProbability(), bands))))));
  return tf.addN(terms) as tf.Scalar;
}

/**
 * Timing pull on the model's own pieces: the mean over the rows with a target (`targets` one-hot,
 * padding rows all zero) of the head's distribution, summed into bins by `bins` [classes, bins]
 * (1 where a class lies in a bin), against the real pieces' shares `real` [bins]: KL(real ‖ mean),
 * 0 where the own pieces' mean is the real marginal. Only the mean is pulled, so one row may still
 * be sure of a long gap (the end of a phrase) while the piece as a whole keeps real proportions.
 */
export function timingPull(logits: tf.Tensor2D, targets: tf.Tensor2D, bins: tf.Tensor2D, real: readonly number[]): tf.Scalar {
  const rows = tf.sum(targets, 1, true); // [R, 1]: 1 for a real row
  const mean = tf.div(tf.sum(tf.mul(tf.softmax(logits), rows), 0, true), tf.maximum(tf.sum(rows), 1)); // [1, C]
  const binned = tf.clipByValue(tf.matMul(mean, bins).squeeze([0]), 1e-6, 1);
  const q = tf.tensor1d(real as number[]);
  const safeQ = tf.clipByValue(q, 1e-6, 1);
  return tf.sum(tf.mul(q, tf.sub(tf.log(safeQ), tf.log(binned)))) as tf.Scalar;
}

/** `t`'s values as a fresh tensor that no gradient flows back through (read to the host and back: for small tensors only). */
function heldFixed(t: tf.Tensor): tf.Tensor1D {
  return tf.tensor1d(t.dataSync());
}

/** Mean −log p of the target pitch over the rows marked in `rows` (1/0); 0 when none is. */
export function pitchLikelihood(logitsPitch: tf.Tensor2D, pitchTargets: tf.Tensor2D, rows: tf.Tensor1D): tf.Scalar {
  return markedMean(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logitsPitch), pitchTargets), 1)), rows);
}

/** Mean of `values` over the rows marked 1 in `marks`; 0 when none is. */
function markedMean(values: tf.Tensor1D, marks: tf.Tensor1D): tf.Scalar {
  return tf.div(tf.sum(tf.mul(values, marks)), tf.maximum(tf.sum(marks), 1)) as tf.Scalar;
}

/** Recurrent state of a batch of sequences being sampled. */
export interface StepState {
  h: tf.Tensor2D[];
  c: tf.Tensor2D[];
  /** Ring of recent attention keys/values [B, W, A]; oldest first. */
  keys: tf.Tensor3D;
  values: tf.Tensor3D;
  /** How many outputs each row has produced (saturates at W); the attention's mask derives from it (maskFor). */
  filled: number[];
}

export function initialState(h: Hyperparameters, batch: number): StepState {
  return {
    h: Array.from({ length: h.layers }, () => tf.zeros([batch, h.hidden]) as tf.Tensor2D),
    c: Array.from({ length: h.layers }, () => tf.zeros([batch, h.hidden]) as tf.Tensor2D),
    keys: tf.zeros([batch, h.attentionWindow, h.attentionDim]),
    values: tf.zeros([batch, h.attentionWindow, h.attentionDim]),
    filled: new Array(batch).fill(0),
  };
}

export function disposeState(s: StepState): void {
  tf.dispose([...s.h, ...s.c, s.keys, s.values]);
}

/** The additive attention mask [B, W] of rows that have produced `filled` outputs: 0 for filled slots, -1e9 for empty. */
function maskFor(filled: number[], window: number): tf.Tensor2D {
  const m = new Float32Array(filled.length * window).fill(-1e9);
  filled.forEach((f, row) => {
    for (let k = window - Math.min(f, window); k < window; k++) m[row * window + k] = 0;
  });
  return tf.tensor2d(m, [filled.length, window]);
}

/**
 * Multi-hot input rows given by their active columns (the model's inputs are 0/1 vectors with
 * about six ones in 329). Slot-major: `columns[s * rows + r]` is row r's s-th active column,
 * ascending, padded with -1. `table` is lstm0/wx on the host (sparseInputTable).
 */
export interface SparseInputs {
  table: Float32Array;
  columns: Int32Array;
  rows: number;
  slots: number;
}

/** A host copy of lstm0/wx, the table SparseInputs index into (read once per generation). */
export function sparseInputTable(w: Weights): Float32Array {
  return w['lstm0/wx'].dataSync() as Float32Array;
}

/**
 * x·W for multi-hot x without the dense product: adds the active rows of W in ascending column
 * order, rounding to float32 after each addition. The backend's product accumulates the same
 * rows in the same order (the zero columns adding exact zeros), so the two agree to the last
 * bit here (tests/refeed.test.ts checks it). At batch 16 this skips a 10-MFLOP product per note
 * (the stock wasm GatherV2 is far slower than the product, so this runs on the host).
 */
export function sparseProjection(inputs: SparseInputs, n: number): tf.Tensor2D {
  const { table, columns, rows, slots } = inputs;
  const out = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const sum = out.subarray(r * n, (r + 1) * n);
    let first = true;
    for (let s = 0; s < slots; s++) {
      const c = columns[s * rows + r];
      if (c < 0) continue;
      const row = table.subarray(c * n, (c + 1) * n);
      if (first) sum.set(row); // 0 + x = x
      else for (let j = 0; j < n; j++) sum[j] += row[j]; // a float32 store rounds each sum
      first = false;
    }
  }
  return tf.tensor2d(out, [rows, n]);
}

/**
 * Advances every row one step on inputs [B, inputDim] (dense, or SparseInputs for the same
 * rows) and returns the new state and the shared head activation z [B, headDim]. The caller
 * owns and disposes both; the old state is disposed here.
 */
export function stepForward(w: Weights, h: Hyperparameters, state: StepState, inputs: tf.Tensor2D | SparseInputs): { state: StepState; z: tf.Tensor2D } {
  const filled = state.filled.map((f) => Math.min(f + 1, h.attentionWindow));
  const sparse = inputs instanceof tf.Tensor ? undefined : inputs;
  const B = sparse ? sparse.rows : (inputs as tf.Tensor2D).shape[0];
  const result = tf.tidy(() => {
    let x = inputs as tf.Tensor2D;
    const hs: tf.Tensor2D[] = [];
    const cs: tf.Tensor2D[] = [];
    for (let l = 0; l < h.layers; l++) {
      const product = l === 0 && sparse ? sparseProjection(sparse, 4 * h.hidden) : tf.matMul(x, w[`lstm${l}/wx`] as tf.Tensor2D);
      const xProj = tf.add(product, w[`lstm${l}/b`]) as tf.Tensor2D;
      const [hn, cn] = lstmCell(xProj, state.h[l], state.c[l], w[`lstm${l}/wh`] as tf.Tensor2D, h.hidden);
      hs.push(hn);
      cs.push(cn);
      x = hn;
    }
    const W = h.attentionWindow;
    const A = h.attentionDim;
    // Drop the oldest of W slots, append the newest. Done on [B, W*A] views: the 2-D slice is
    // the patched, copy-only kernel, where a 3-D one reads the whole ring through the host.
    const shift = (ring: tf.Tensor3D, item: tf.Tensor2D) =>
      tf.concat([ring.reshape([B, W * A]).slice([0, A], [B, (W - 1) * A]), item], 1).reshape([B, W, A]) as tf.Tensor3D;
    const keys = shift(state.keys, tf.matMul(x, w['attn/wk'] as tf.Tensor2D));
    const values = shift(state.values, tf.matMul(x, w['attn/wv'] as tf.Tensor2D));
    const mask = maskFor(filled, W);
    const q = tf.matMul(x, w['attn/wq'] as tf.Tensor2D).reshape([B, 1, A]);
    const scores = tf.add(tf.sum(tf.mul(keys, q), 2).mul(1 / Math.sqrt(A)), mask);
    const attention = tf.softmax(scores).reshape([B, W, 1]);
    const context = tf.sum(tf.mul(values, attention), 1) as tf.Tensor2D;
    const z = tf.tanh(tf.add(tf.matMul(tf.concat([x, context], 1), w['head/wz'] as tf.Tensor2D), w['head/bz'])) as tf.Tensor2D;
    return { hs, cs, keys, values, z };
  });
  disposeState(state);
  return { state: { h: result.hs, c: result.cs, keys: result.keys, values: result.values, filled }, z: result.z };
}

/** Logits of head `name` from the shared activation (dt) or the conditioned one (others). */
export function headLogits(w: Weights, z: tf.Tensor2D, head: 'dt' | 'pitch' | 'dur' | 'vel'): tf.Tensor2D {
  return tf.tidy(() => tf.add(tf.matMul(z, w[`head/w${head}`] as tf.Tensor2D), w[`head/b${head}`]) as tf.Tensor2D);
}

/** z → z' after feeding a sampled one-hot choice of `head` (dt or pitch) back in. */
export function conditionOn(w: Weights, z: tf.Tensor2D, head: 'dt' | 'pitch', oneHot: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.tanh(tf.add(z, tf.matMul(oneHot, w[`head/e${head}`] as tf.Tensor2D))) as tf.Tensor2D);
}
