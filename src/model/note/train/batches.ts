/**
 * Many-to-many training batches: a chunk of `window` consecutive notes gives `window` targets
 * (every position predicts its note from the ones before), instead of one target per window.
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_SIZES, inputWidth, targetIndices, writeInputRow } from '../features.ts';
import type { SequenceBatch } from '../network.ts';
import { PITCH_MAX, PITCH_MIN, STEPS_PER_BEAT, beatPositions, type NoteToken } from '../../../tokens/tokenize.ts';
import type { Random } from '../../random.ts';

export interface Chunk {
  piece: number;
  start: number;
}

export interface TokenPiece {
  composer: string;
  tokens: NoteToken[];
}

/**
 * Chunks covering every note of every piece. Training (`rng` given) starts each piece at a
 * random phase and keeps every chunk full, so a piece's last chunk may overlap the one before.
 * Evaluation (no `rng`) covers each note exactly once: the last chunk is short instead.
 */
export function chunkPieces(pieces: readonly TokenPiece[], window: number, rng?: Random): Chunk[] {
  const chunks: Chunk[] = [];
  pieces.forEach((p, i) => {
    const n = p.tokens.length;
    if (n < 2) return;
    if (n <= window) {
      chunks.push({ piece: i, start: 0 });
      return;
    }
    if (!rng) {
      for (let s = 0; s < n; s += window) chunks.push({ piece: i, start: s });
      return;
    }
    const phase = Math.floor(rng.next() * window);
    if (phase > 0) chunks.push({ piece: i, start: 0 });
    for (let s = phase; s < n; s += window) chunks.push({ piece: i, start: Math.min(s, n - window) });
  });
  return chunks;
}

export interface BatchOptions {
  window: number;
  composerIndex: Map<string, number>;
  composers: number;
  /** Random transposition range in semitones (0 = none). */
  transpose?: number;
  /** Probability of replacing the composer by the "any" slot. */
  composerDropout?: number;
  rng?: Random;
}

/**
 * Builds a time-major batch. Short pieces are padded with rows whose targets are all zero,
 * which contributes nothing to the loss; `weight` is the number of real targets.
 */
export function buildBatch(pieces: readonly TokenPiece[], chunks: readonly Chunk[], o: BatchOptions): SequenceBatch & { realTargets: number } {
  const B = chunks.length;
  const T = o.window;
  const D = inputWidth(o.composers);
  const inputs = new Float32Array(T * B * D);
  const targets = HEAD_SIZES.map((n) => new Float32Array(T * B * n));
  let real = 0;
  chunks.forEach((chunk, b) => {
    const piece = pieces[chunk.piece];
    let composer = o.composerIndex.get(piece.composer) ?? o.composers;
    if (o.rng && o.composerDropout && o.rng.next() < o.composerDropout) composer = o.composers;
    const from = chunk.start;
    const to = Math.min(piece.tokens.length, from + T);
    let shift = 0;
    if (o.rng && o.transpose) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = Math.max(0, from - 1); i < to; i++) {
        lo = Math.min(lo, piece.tokens[i].pitch);
        hi = Math.max(hi, piece.tokens[i].pitch);
      }
      const down = Math.max(-o.transpose, PITCH_MIN - lo);
      const up = Math.min(o.transpose, PITCH_MAX - hi);
      if (up >= down) shift = down + Math.floor(o.rng.next() * (up - down + 1));
    }
    const moved = (t: NoteToken): NoteToken => (shift ? { ...t, pitch: t.pitch + shift } : t);
    const positions = beatPositions(piece.tokens.slice(0, to));
    for (let t = 0; t < to - from; t++) {
      const row = t * B + b;
      const index = from + t;
      const previous = index > 0 ? moved(piece.tokens[index - 1]) : undefined;
      writeInputRow(inputs, row * D, previous, index > 0 ? positions[index - 1] % STEPS_PER_BEAT : 0, composer);
      const target = targetIndices(moved(piece.tokens[index]));
      target.forEach((cls, h) => (targets[h][row * HEAD_SIZES[h] + cls] = 1));
      real++;
    }
  });
  return {
    inputs: tf.tensor2d(inputs, [T * B, D]),
    targets: targets.map((t, h) => tf.tensor2d(t, [T * B, HEAD_SIZES[h]])) as SequenceBatch['targets'],
    batch: B,
    steps: T,
    realTargets: real,
  };
}

export function disposeBatch(b: SequenceBatch): void {
  tf.dispose([b.inputs, ...b.targets]);
}
