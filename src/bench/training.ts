/**
 * Training throughput on real batches of the dataset: many-to-many (ours: a target at every
 * position of a 128-note chunk, fit.ts's own trainStep) against many-to-one (the original
 * study: a 100-note window, one target per window), same network, same Adam and clipping.
 */
import * as tf from '@tensorflow/tfjs';
import { inputWidth } from '../model/features.ts';
import { conditionOn, headLogits, sequenceHidden, type Hyperparameters, type SequenceBatch, type Weights } from '../model/network.ts';
import { seededRandom, shuffleInPlace } from '../model/random.ts';
import { buildBatch, chunkPieces, disposeBatch, type Chunk, type TokenPiece } from '../train/batches.ts';
import { clippedAdamStep, trainStep } from '../train/fit.ts';
import { trainStepFlops } from './flops.ts';
import { median } from './stats.ts';

export interface TrainBenchInput {
  weights: Weights;
  h: Hyperparameters;
  pieces: TokenPiece[];
  composerIndex: Map<string, number>;
  composers: number;
  batchSize: number;
  /** The study's window for many-to-one. */
  m2oWindow: number;
  warmup: number;
  reps: number;
  log: (line: string) => void;
}

export interface StepFigures {
  stepMs: number;
  /** Supervised targets per step (real notes, padding excluded). */
  targets: number;
  targetsPerSecond: number;
  flopsPerStep: number;
  window: number;
  attentionWindow: number;
}

const CLIP_NORM = 1; // fit.ts's default (src/cli/train.ts)
const LEARNING_RATE = 0.003;

function batches(input: TrainBenchInput, window: number, count: number): Chunk[][] {
  const rng = seededRandom(11);
  // Full chunks only, so that both regimes supervise exactly what they claim.
  const chunks = shuffleInPlace(
    chunkPieces(input.pieces, window, rng).filter((c) => input.pieces[c.piece].tokens.length - c.start >= window),
    rng,
  );
  const out: Chunk[][] = [];
  for (let i = 0; i + input.batchSize <= chunks.length && out.length < count; i += input.batchSize) out.push(chunks.slice(i, i + input.batchSize));
  if (out.length < count) throw new Error(`training bench: the dataset sample gives ${out.length} full batches of ${input.batchSize} × ${window} notes, ${count} needed`);
  return out;
}

/** Many-to-many: fit.ts's trainStep on B × window chunks. */
export function benchManyToMany(input: TrainBenchInput): StepFigures {
  const { h } = input;
  const plan = batches(input, h.window, input.warmup + input.reps);
  const names = Object.keys(input.weights);
  const optimizer = tf.train.adam(LEARNING_RATE);
  const times: number[] = [];
  let targets = 0;
  input.log(`training: many-to-many, ${input.batchSize} × ${h.window} notes (${input.warmup} warm-up + ${input.reps} steps)`);
  plan.forEach((chunks, i) => {
    const batch = buildBatch(input.pieces, chunks, { window: h.window, composerIndex: input.composerIndex, composers: input.composers });
    const t0 = performance.now();
    const loss = trainStep(optimizer, input.weights, names, h, batch, CLIP_NORM);
    const ms = performance.now() - t0;
    if (!Number.isFinite(loss)) throw new Error(`training bench: loss is ${loss}`);
    if (i >= input.warmup) {
      times.push(ms);
      targets += batch.realTargets;
    }
    disposeBatch(batch);
  });
  optimizer.dispose();
  const stepMs = median(times);
  const perStep = targets / times.length;
  return {
    stepMs,
    targets: perStep,
    targetsPerSecond: perStep / (stepMs / 1000),
    flopsPerStep: trainStepFlops(h, inputWidth(input.composers), input.batchSize, h.window).total,
    window: h.window,
    attentionWindow: h.attentionWindow,
  };
}

/**
 * The study's many-to-one loss on the same network: only the last position of each window
 * is supervised (the heads run on those B rows only).
 */
export function lastPositionLoss(w: Weights, h: Hyperparameters, batch: SequenceBatch): tf.Scalar {
  const { batch: B, steps: T } = batch;
  const last = (x: tf.Tensor2D) => x.slice([(T - 1) * B, 0], [B, x.shape[1]]);
  const z = last(sequenceHidden(w, h, batch.inputs, B, T));
  const [dtT, pitchT, durT, velT] = batch.targets.map(last);
  const z2 = conditionOn(w, z, 'dt', dtT);
  const z3 = conditionOn(w, z2, 'pitch', pitchT);
  const nll = (logits: tf.Tensor, target: tf.Tensor) => tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  return tf.addN([nll(headLogits(w, z, 'dt'), dtT), nll(headLogits(w, z2, 'pitch'), pitchT), nll(headLogits(w, z3, 'dur'), durT), nll(headLogits(w, z3, 'vel'), velT)]) as tf.Scalar;
}

/** Many-to-one: an Adam step with fit.ts's clipping on lastPositionLoss. */
export function benchManyToOne(input: TrainBenchInput): StepFigures {
  // sequenceHidden needs whole attention blocks: a 100-note window gets 25-note blocks (the
  // weights do not depend on the block length, and the work per note is nearly the same).
  const T = input.m2oWindow;
  let W = Math.min(input.h.attentionWindow, T);
  while (T % W !== 0) W--;
  const h: Hyperparameters = { ...input.h, window: T, attentionWindow: W };
  const plan = batches(input, T, input.warmup + input.reps);
  const names = Object.keys(input.weights);
  const optimizer = tf.train.adam(LEARNING_RATE);
  const times: number[] = [];
  input.log(`training: many-to-one, ${input.batchSize} windows of ${T} notes, one target each (attention blocks of ${W})`);
  plan.forEach((chunks, i) => {
    const batch = buildBatch(input.pieces, chunks, { window: T, composerIndex: input.composerIndex, composers: input.composers });
    const t0 = performance.now();
    const loss = clippedAdamStep(optimizer, input.weights, names, () => lastPositionLoss(input.weights, h, batch), CLIP_NORM);
    const ms = performance.now() - t0;
    if (!Number.isFinite(loss)) throw new Error(`training bench (many-to-one): loss is ${loss}`);
    if (i >= input.warmup) times.push(ms);
    disposeBatch(batch);
  });
  optimizer.dispose();
  const stepMs = median(times);
  return {
    stepMs,
    targets: input.batchSize,
    targetsPerSecond: input.batchSize / (stepMs / 1000),
    flopsPerStep: trainStepFlops(h, inputWidth(input.composers), input.batchSize, T, input.batchSize).total,
    window: T,
    attentionWindow: W,
  };
}
