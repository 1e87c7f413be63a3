/**
 * The five musical quantities of a set of pieces (musicStats: pitch, inter-onset interval,
 * duration, velocity, chord size) kept as histograms: distinct values and their counts.
 * Compact enough to store per piece and to cache for a whole corpus, additive (a pool is the
 * sum of its members) and exactly equivalent to the raw samples for the Wasserstein distance.
 * `nocturne evaluate` compares generated music with real music through them, and the community's
 * drift monitor (src/community/distributions.ts) compares contributions and outputs with the corpus.
 */
import { DISTRIBUTION_NAMES, pooledDistributions } from './musicStats.ts';
import { histogram } from './wasserstein.ts';
import type { NoteToken } from '../tokens/tokenize.ts';

export type Quantity = (typeof DISTRIBUTION_NAMES)[number];
export const QUANTITIES: readonly Quantity[] = DISTRIBUTION_NAMES;

export interface Histogram {
  values: number[];
  weights: number[];
}

/** One histogram per quantity; a quantity with no samples has empty arrays. */
export type Histograms = Record<Quantity, Histogram>;

function emptyHistograms(): Histograms {
  return { pitch: { values: [], weights: [] }, ioi: { values: [], weights: [] }, duration: { values: [], weights: [] }, velocity: { values: [], weights: [] }, chordSize: { values: [], weights: [] } };
}

/** Pooled histograms of one or more pieces. */
export function histogramsOf(pieces: readonly (readonly NoteToken[])[]): Histograms {
  const pooled = pooledDistributions(pieces);
  const out = emptyHistograms();
  for (const q of QUANTITIES) {
    const h = histogram(pooled[q]);
    out[q] = { values: h.values, weights: h.weights };
  }
  return out;
}

/** The pool of several histogram sets (counts added). */
export function mergeHistograms(sets: readonly Histograms[]): Histograms {
  const out = emptyHistograms();
  for (const q of QUANTITIES) {
    const counts = new Map<number, number>();
    for (const s of sets) s[q].values.forEach((v, i) => counts.set(v, (counts.get(v) ?? 0) + s[q].weights[i]));
    const values = [...counts.keys()].sort((a, b) => a - b);
    out[q] = { values, weights: values.map((v) => counts.get(v)!) };
  }
  return out;
}

/** Notes counted in a histogram set (the pitch histogram has one entry per note). */
export function noteCount(h: Histograms): number {
  return h.pitch.weights.reduce((s, w) => s + w, 0);
}
