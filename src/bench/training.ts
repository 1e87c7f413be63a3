/**
 * Training throughput on real batches of the dataset: many-to-many (ours: a target at every
 * position of a 128-note chunk, fit.ts's own trainStep) against many-to-one (the original
 * study: a 100-note window, one target per window), same network, same Adam and clipping.
 * A long-context model (src/model/note/longContext.ts) gets its own step instead: one streamed
 * chunk with the carried memory, as fitLongContext.ts's streamEpoch runs it.
 */
import * as tf from '@tensorflow/tfjs';
import { inputWidth } from '../model/note/features.ts';
import { conditionOn, headLogits, sequenceHidden, type Hyperparameters, type SequenceBatch } from '../model/note/network.ts';
import type { Weights } from '../model/layers.ts';
import { advanceMemory, chunkLoss, disposeMemory, emptyMemory, memoryMaskFor, type ChunkCarry } from '../model/note/longContext.ts';
import { seededRandom, shuffleInPlace } from '../model/random.ts';
import { buildBatch, chunkPieces, disposeBatch, type Chunk, type TokenPiece } from '../model/note/train/batches.ts';
import { trainStep } from '../model/note/train/fit.ts';
import { clippedAdamStep } from '../model/training.ts';
import { withKeyLabels } from '../model/note/train/fitLongContext.ts';
import { DEFAULT_INPUT_NOISE, disposeChunk, modelStreamOptions, PieceStream, planRows } from '../model/note/train/stream.ts';
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
    const loss = trainStep([{ optimizer, names }], input.weights, h, batch, CLIP_NORM);
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

export interface LongContextStepFigures {
  stepMs: number;
  /** Supervised targets per step (real notes, padding excluded). */
  targets: number;
  targetsPerSecond: number;
  /** Rows of the batch (the requested batch size, or fewer when the sample has fewer pieces). */
  batch: number;
  window: number;
  memory: number;
}

// `nocturne train --arch long-context`'s defaults (src/cli/train.ts): they change what the
// chunks hold, not the work of a step, but the bench feeds what training feeds.
const LONG_CONTEXT_LEARNING_RATE = 0.002;
const LONG_CONTEXT_AUGMENTATION = { transpose: 6, composerDropout: 0.1, keyDropout: 0.2, inputNoise: DEFAULT_INPUT_NOISE };

/**
 * The long-context training step, as streamEpoch runs it for each chunk: whole pieces streamed
 * on `batchSize` rows (planRows, PieceStream), chunkLoss over the chunk and the carried memory
 * with the model's dropout, fit.ts's clipped Adam step, then advanceMemory. The timer covers
 * the step and the memory update, not the host-side chunk building (as buildBatch is left out
 * of the many-to-many figure). The memory tensors have a fixed size (empty slots are masked),
 * so a step costs the same at a piece's first chunk as later on.
 */
export function benchLongContext(input: Omit<TrainBenchInput, 'm2oWindow'>): LongContextStepFigures {
  const { h, weights } = input;
  const M = h.memory ?? 0;
  const rng = seededRandom(11);
  const pieces = h.keys ? withKeyLabels(input.pieces) : input.pieces;
  const queues = planRows(pieces, input.batchSize, rng);
  const stream = new PieceStream(pieces, queues, { ...modelStreamOptions(h), composerIndex: input.composerIndex, composers: input.composers, rng, ...LONG_CONTEXT_AUGMENTATION });
  const names = Object.keys(weights);
  const optimizer = tf.train.adam(LONG_CONTEXT_LEARNING_RATE);
  let memory = emptyMemory(h, stream.rows);
  const times: number[] = [];
  let targets = 0;
  const steps = input.warmup + input.reps;
  input.log(`training: long-context, ${stream.rows} rows × ${h.window}-note chunks with ${M} notes of memory (${input.warmup} warm-up + ${input.reps} steps)`);
  try {
    for (let i = 0; i < steps; i++) {
      const chunk = stream.next();
      if (!chunk) throw new Error(`training bench (long-context): the dataset sample gives ${i} chunks of ${stream.rows} × ${h.window} notes, ${steps} needed`);
      const { batch } = chunk;
      const mask = memoryMaskFor(chunk.memory, M);
      const keep = tf.tensor2d(chunk.keep, [batch.batch, 1]);
      let carried: ChunkCarry | undefined;
      const scale = (batch.batch * batch.steps) / Math.max(1, batch.realTargets);
      const t0 = performance.now();
      const loss = clippedAdamStep(optimizer, weights, names, () => tf.mul(chunkLoss(weights, h, batch, memory, mask, keep, h.dropout ?? 0, (c) => (carried = c)).total, scale) as tf.Scalar, CLIP_NORM);
      memory = advanceMemory(h, memory, carried!);
      const ms = performance.now() - t0;
      tf.dispose([mask, keep]);
      disposeChunk(batch);
      if (!Number.isFinite(loss)) throw new Error(`training bench (long-context): loss is ${loss}`);
      if (i >= input.warmup) {
        times.push(ms);
        targets += batch.realTargets;
      }
    }
  } finally {
    disposeMemory(memory);
    optimizer.dispose();
  }
  const stepMs = median(times);
  const perStep = targets / times.length;
  return { stepMs, targets: perStep, targetsPerSecond: perStep / (stepMs / 1000), batch: stream.rows, window: h.window, memory: M };
}
