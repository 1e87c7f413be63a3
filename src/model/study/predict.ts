/**
 * Using a trained study model: scoring held-out events (NLL per event) and generating by argmax,
 * as the study did: every new event re-runs the whole window of the last `window` events (the
 * network was trained from a zero state per window, so carrying state would change it).
 */
import * as tf from '@tensorflow/tfjs';
import type { Weights } from '../layers.ts';
import { buildStudyBatch, oneHotWindows, studyLogits, type StudyHyperparameters, type StudyWindow } from './network.ts';

/** Summed NLL (nats) and argmax hits over the given windows. */
export interface StudyScore {
  nll: number;
  correct: number;
  targets: number;
}

/**
 * Scores `windows` (each: the `window` events before a target) in batches. Returns sums, so
 * callers can pool pieces and composers; divide by `targets` for per-event values.
 */
export function scoreStudyWindows(w: Weights, h: StudyHyperparameters, sequences: readonly Int32Array[], windows: readonly StudyWindow[], batchSize = 64, onBatch?: (done: number) => void): StudyScore {
  let nll = 0;
  let correct = 0;
  for (let i = 0; i < windows.length; i += batchSize) {
    const batch = buildStudyBatch(sequences, windows.slice(i, i + batchSize), h.window, h.vocabulary);
    const logProbs = tf.tidy(() => tf.logSoftmax(studyLogits(w, h, batch.inputs, batch.batch, batch.steps)));
    const values = logProbs.dataSync();
    tf.dispose([logProbs, batch.inputs]);
    for (let b = 0; b < batch.batch; b++) {
      const row = values.subarray(b * h.vocabulary, (b + 1) * h.vocabulary);
      nll -= row[batch.targets[b]];
      if (argmax(row, 0) === batch.targets[b]) correct++;
    }
    onBatch?.(Math.min(windows.length, i + batchSize));
  }
  return { nll, correct, targets: windows.length };
}

/** Index of the largest value, skipping index `skip` (the unknown token) when ≥ 0. */
export function argmax(values: ArrayLike<number>, skip = -1): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) if (i !== skip && (best < 0 || values[i] > values[best])) best = i;
  return best;
}

/**
 * Continues each primer (exactly `window` events) by `events` events, greedily (argmax; the
 * unknown token is never chosen), all primers batched in one pass per step. Deterministic.
 */
export function generateStudyEvents(w: Weights, h: StudyHyperparameters, primers: readonly ArrayLike<number>[], events: number, unknownIndex = 0): Int32Array[] {
  for (const p of primers) if (p.length !== h.window) throw new Error(`study model: a primer needs exactly ${h.window} events, got ${p.length}`);
  if (primers.length === 0) return [];
  const windows = primers.map((p) => Array.from(p));
  const outputs = primers.map(() => new Int32Array(events));
  for (let step = 0; step < events; step++) {
    const inputs = oneHotWindows(windows, h.window, h.vocabulary);
    const logits = tf.tidy(() => studyLogits(w, h, inputs, windows.length, h.window));
    const values = logits.dataSync();
    tf.dispose([logits, inputs]);
    windows.forEach((win, b) => {
      const next = argmax(values.subarray(b * h.vocabulary, (b + 1) * h.vocabulary), unknownIndex);
      outputs[b][step] = next;
      win.shift();
      win.push(next);
    });
  }
  return outputs;
}
