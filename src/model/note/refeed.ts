/**
 * Whole-window re-feed decoding, the original study's way of generating: for every new note
 * the network is run again over the last `window` inputs from a zero state, and only the last
 * position's output is used. It exists as the baseline that stateful decoding
 * (generateTokens) is measured against (`nocturne bench`), and as a cross-check: while the
 * history fits in the window, both decoders compute the same activations and so, for the same
 * seeds, the same notes.
 *
 * It reuses sequenceHidden (the training forward pass) and the stateful decoder's head
 * sampling (sampleNotes), so the only difference between the two decoders is how z is made.
 */
import * as tf from '@tensorflow/tfjs';
import { inputWidth, writeInputRow } from './features.ts';
import { sequenceHidden, type Hyperparameters } from './network.ts';
import type { Weights } from '../layers.ts';
import { advanceRows, sampleNotes, startRows, type SampleRequest } from './sampling.ts';
import { STEPS_PER_BEAT, beatPositions, type NoteToken } from '../../tokens/tokenize.ts';

/**
 * Time-major inputs for the last `T` steps of every row, right-padded with zero rows when a
 * row's history is shorter (later rows never affect earlier ones: the model is causal).
 * `histories[r]` holds row r's input rows, oldest first. Returns the tensor and, per row, the
 * index of its last real step.
 */
export function windowInputs(histories: readonly Float32Array[][], D: number, T: number): { inputs: tf.Tensor2D; last: number[] } {
  const B = histories.length;
  const data = new Float32Array(T * B * D);
  const last = histories.map((rows, b) => {
    const from = Math.max(0, rows.length - T);
    for (let t = from; t < rows.length; t++) data.set(rows[t], ((t - from) * B + b) * D);
    return rows.length - from - 1;
  });
  return { inputs: tf.tensor2d(data, [T * B, D]), last };
}

/** The window length for a history of `length` steps: whole attention blocks, at most `window`. */
export function refeedSteps(h: Hyperparameters, length: number, window: number): number {
  const W = h.attentionWindow;
  if (window % W !== 0) throw new Error(`re-feed window ${window} must be a multiple of the attention window ${W}`);
  return Math.min(window, Math.ceil(Math.max(1, length) / W) * W);
}

/**
 * Generates like generateTokens, but re-runs sequenceHidden over each row's last `window`
 * inputs for every note (default: the model's training window). A primer's notes only fill the
 * history (re-feed needs no state); with a primer of at least `window` notes every step runs a
 * full window, which is the steady-state cost.
 */
export function generateTokensRefeed(w: Weights, h: Hyperparameters, composerCount: number, requests: SampleRequest[], window = h.window): NoteToken[][] {
  if (requests.length === 0) return [];
  const D = inputWidth(composerCount);
  const rows = startRows(requests);
  const row = (previous: NoteToken | undefined, position: number, composer: number) => {
    const x = new Float32Array(D);
    writeInputRow(x, 0, previous, position, composer);
    return x;
  };
  const histories = requests.map((req) => {
    const primer = (req.primer ?? []).slice(-window);
    const positions = beatPositions(primer);
    return primer.map((_, i) => row(i === 0 ? undefined : primer[i - 1], i === 0 ? 0 : positions[i - 1] % STEPS_PER_BEAT, req.composer));
  });
  const total = Math.max(...requests.map((r) => r.notes));
  for (let step = 0; step < total; step++) {
    requests.forEach((req, r) => {
      histories[r].push(row(rows.previous[r], rows.onset[r] % STEPS_PER_BEAT, req.composer));
      if (histories[r].length > window) histories[r].shift();
    });
    const T = refeedSteps(h, Math.max(...histories.map((x) => x.length)), window);
    const { inputs, last } = windowInputs(histories, D, T);
    const B = requests.length;
    const z = tf.tidy(() => {
      const all = sequenceHidden(w, h, inputs, B, T);
      return tf.gather(all, tf.tensor1d(last.map((t, b) => t * B + b), 'int32')) as tf.Tensor2D;
    });
    inputs.dispose();
    let tokens: NoteToken[];
    try {
      tokens = sampleNotes(w, z, requests, rows);
    } finally {
      z.dispose();
    }
    advanceRows(rows, requests, tokens);
  }
  return rows.outputs;
}
