/**
 * The original study's network: a window of `window` events → one prediction of the next
 * event (many-to-one). Stacked LSTM, the last layer's final output through a dense layer to a
 * softmax over the vocabulary. Plain tf ops (as in ../network.ts), so it trains on wasm:
 *   - the input is a one-hot row per event times an embedding matrix (a gather's gradient
 *     needs UnsortedSegmentSum, which wasm lacks). The study fed the vocabulary index divided
 *     by the vocabulary size as one scalar; a learned embedding can only help the baseline.
 *   - no dropout (its budget is a few thousand steps, far from over-fitting).
 */
import * as tf from '@tensorflow/tfjs';
import { lstmLayer, uniqueVariableName, type Weights } from '../layers.ts';

export interface StudyHyperparameters {
  /** Vocabulary size (the softmax width). */
  vocabulary: number;
  /** Width of the learned input embedding. */
  embedding: number;
  /** LSTM units per layer. */
  hidden: number;
  layers: number;
  /** Width of the dense layer under the softmax. */
  dense: number;
  /** Events per input window (the study: 100). */
  window: number;
}

/**
 * The study stacked 3 × 512 LSTM units. Measured here (wasm, one thread, batch 64, window 100):
 * 2 × 256 trains about 25 windows/s, 2 × 128 about 105 windows/s, so within a 12-minute
 * budget 2 × 128 sees about four times as many windows (close to one epoch at stride 1).
 */
export const DEFAULT_STUDY_HYPERPARAMETERS: Omit<StudyHyperparameters, 'vocabulary'> = {
  embedding: 32,
  hidden: 128,
  layers: 2,
  dense: 256,
  window: 100,
};

/** Weight names and shapes: the manifest a saved study model must match. */
export function studyWeightShapes(h: StudyHyperparameters): Record<string, number[]> {
  const s: Record<string, number[]> = { embedding: [h.vocabulary, h.embedding] };
  for (let l = 0; l < h.layers; l++) {
    s[`lstm${l}/wx`] = [l === 0 ? h.embedding : h.hidden, 4 * h.hidden];
    s[`lstm${l}/wh`] = [h.hidden, 4 * h.hidden];
    s[`lstm${l}/b`] = [4 * h.hidden];
  }
  s['dense/w'] = [h.hidden, h.dense];
  s['dense/b'] = [h.dense];
  s['out/w'] = [h.dense, h.vocabulary];
  s['out/b'] = [h.vocabulary];
  return s;
}

/** Glorot-uniform matrices from a seeded generator, zero biases (forget gate biased to 1). */
export function createStudyWeights(h: StudyHyperparameters, seed = 1): Weights {
  const weights: Weights = {};
  let n = 0;
  for (const [name, shape] of Object.entries(studyWeightShapes(h))) {
    n++;
    let init: tf.Tensor;
    if (shape.length === 1) {
      const values = new Float32Array(shape[0]);
      if (name.startsWith('lstm')) values.fill(1, h.hidden, 2 * h.hidden);
      init = tf.tensor1d(values);
    } else {
      const limit = Math.sqrt(6 / (shape[0] + shape[1]));
      init = tf.randomUniform(shape, -limit, limit, 'float32', seed * 1000 + n);
    }
    weights[name] = tf.variable(init, true, uniqueVariableName(`study/${name}`));
    init.dispose();
  }
  return weights;
}

/** A many-to-one batch: B windows of T events, one target each. */
export interface StudyBatch {
  /** Time-major one-hot inputs [T*B, V]: row t*B + b is event t of window b. */
  inputs: tf.Tensor2D;
  /** Target vocabulary index of each window. */
  targets: Int32Array;
  batch: number;
  steps: number;
}

/** One input window: the `window` events before `target` in `sequence`. */
export interface StudyWindow {
  sequence: number;
  target: number;
}

/**
 * Builds the batch for `windows` over encoded sequences. Every window must have `steps`
 * events of history (target ≥ steps).
 */
export function buildStudyBatch(sequences: readonly Int32Array[], windows: readonly StudyWindow[], steps: number, vocabulary: number): StudyBatch {
  const B = windows.length;
  const data = new Float32Array(steps * B * vocabulary);
  const targets = new Int32Array(B);
  windows.forEach((w, b) => {
    const seq = sequences[w.sequence];
    if (w.target < steps || w.target >= seq.length) throw new Error(`study batch: target ${w.target} of sequence ${w.sequence} needs ${steps} events before it (sequence has ${seq.length})`);
    for (let t = 0; t < steps; t++) data[(t * B + b) * vocabulary + seq[w.target - steps + t]] = 1;
    targets[b] = seq[w.target];
  });
  return { inputs: tf.tensor2d(data, [steps * B, vocabulary]), targets, batch: B, steps };
}

/** Windows given directly as event indices (each of length `steps`): for generation. */
export function oneHotWindows(windows: readonly ArrayLike<number>[], steps: number, vocabulary: number): tf.Tensor2D {
  const B = windows.length;
  const data = new Float32Array(steps * B * vocabulary);
  windows.forEach((w, b) => {
    if (w.length !== steps) throw new Error(`study model: a window needs ${steps} events, got ${w.length}`);
    for (let t = 0; t < steps; t++) data[(t * B + b) * vocabulary + w[t]] = 1;
  });
  return tf.tensor2d(data, [steps * B, vocabulary]);
}

/** Time-major one-hot windows [T*B, V] → next-event logits [B, V]. Call inside tf.tidy. */
export function studyLogits(w: Weights, h: StudyHyperparameters, inputs: tf.Tensor2D, B: number, T: number): tf.Tensor2D {
  let layerInput: tf.Tensor2D = tf.matMul(inputs, w.embedding as tf.Tensor2D);
  let last: tf.Tensor2D | undefined;
  for (let l = 0; l < h.layers; l++) {
    // Only the last layer's final output feeds the head; lower layers pass whole sequences up.
    const layer = lstmLayer(w, l, h.hidden, layerInput, B, T);
    last = layer.last;
    layerInput = layer.outputs;
  }
  const dense = tf.add(tf.matMul(last!, w['dense/w'] as tf.Tensor2D), w['dense/b']) as tf.Tensor2D;
  return tf.add(tf.matMul(dense, w['out/w'] as tf.Tensor2D), w['out/b']) as tf.Tensor2D;
}

/** One-hot [B, V] of target indices. */
export function oneHotTargets(targets: ArrayLike<number>, vocabulary: number): tf.Tensor2D {
  const data = new Float32Array(targets.length * vocabulary);
  for (let b = 0; b < targets.length; b++) data[b * vocabulary + targets[b]] = 1;
  return tf.tensor2d(data, [targets.length, vocabulary]);
}

/** Mean NLL (nats) of the batch's targets. Call inside tf.tidy / variableGrads. */
export function studyLoss(w: Weights, h: StudyHyperparameters, batch: StudyBatch): tf.Scalar {
  const logits = studyLogits(w, h, batch.inputs, batch.batch, batch.steps);
  const target = oneHotTargets(batch.targets, h.vocabulary);
  return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

/**
 * Every target position of every sequence that has a full window of history: targets at
 * window + phase, window + phase + stride, ... (phase per sequence, default 0).
 */
export function studyWindows(sequences: readonly ArrayLike<number>[], window: number, stride = 1, phase: (sequence: number) => number = () => 0): StudyWindow[] {
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`study windows: stride must be a whole number ≥ 1, got ${stride}`);
  const out: StudyWindow[] = [];
  sequences.forEach((s, sequence) => {
    for (let target = window + phase(sequence); target < s.length; target += stride) out.push({ sequence, target });
  });
  return out;
}

/** At most `max` items, evenly spread over the list (all of them when it is short enough). */
export function evenlySpread<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  return Array.from({ length: max }, (_, i) => items[Math.floor(((i + 0.5) * items.length) / max)]);
}
