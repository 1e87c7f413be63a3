/**
 * What both models' training loops share: the options of a run, one clipped Adam step, and the
 * format of durations in the progress lines.
 */
import * as tf from '@tensorflow/tfjs';
import type { CorpusPiece } from './corpus.ts';
import type { ComposerEntry } from './folder.ts';
import type { Weights } from './layers.ts';

/** What a training run of either model (note/train/fit.ts, study/train.ts) takes. */
export interface TrainingRunOptions {
  outDir: string;
  train: CorpusPiece[];
  validation: CorpusPiece[];
  composers: ComposerEntry[];
  dataHash: string;
  dataSource: string;
  epochs: number;
  batchSize: number;
  learningRate: number;
  clipNorm: number;
  seed: number;
  /** Stop after this many minutes (when the architecture's loop checks it: see each). */
  maxMinutes?: number;
  /** Name for the model version (default: the folder name). */
  name: string;
  log: (line: string) => void;
  progress: (line: string, done: boolean) => void;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/**
 * One Adam step on `loss`'s gradients, clipped to a global norm of `clipNorm`; returns the loss.
 * Shared by both architectures' training loops.
 */
export function clippedAdamStep(optimizer: tf.AdamOptimizer, weights: Weights, names: string[], loss: () => tf.Scalar, clipNorm: number): number {
  return clippedGroupStep([{ optimizer, names }], weights, loss, clipNorm);
}

/** Weights that one optimizer (with its own learning rate) updates. */
export interface ParameterGroup {
  optimizer: tf.AdamOptimizer;
  names: string[];
}

/**
 * clippedAdamStep over several parameter groups: one gradient, clipped to one global norm over
 * all of them, each group's part applied by its own optimizer.
 */
export function clippedGroupStep(groups: readonly ParameterGroup[], weights: Weights, loss: () => tf.Scalar, clipNorm: number): number {
  return tf.tidy(() => {
    const variables = groups.flatMap((g) => g.names.map((n) => weights[n]));
    const { value, grads: found } = tf.variableGrads(loss, variables);
    // A loss that does not reach a weight (an unlikelihood step reads only the pitch head) leaves
    // its gradient null; it steps with zero, since Adam keeps its moments by the variables' order.
    const grads: tf.NamedTensorMap = Object.fromEntries(variables.map((v) => [v.name, found[v.name] ?? tf.zerosLike(v)]));
    const norm = tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
    const factor = tf.div(clipNorm, tf.maximum(norm, clipNorm));
    for (const { optimizer, names } of groups) {
      const clipped: tf.NamedTensorMap = {};
      for (const n of names) clipped[weights[n].name] = tf.mul(grads[weights[n].name], factor);
      optimizer.applyGradients(clipped as Parameters<typeof optimizer.applyGradients>[0]);
    }
    return value.dataSync()[0];
  });
}
