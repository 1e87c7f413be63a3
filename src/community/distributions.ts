/**
 * Drift as a number: how similar a set of pieces is to a reference corpus, from exact 1-D
 * Wasserstein distances over five musical quantities (src/eval: musicDistributions, wasserstein1).
 *
 * Distributions are kept as histograms (src/eval/histograms.ts: distinct values + counts): compact
 * enough to store per contribution and to cache for the whole corpus, additive (a pool is the sum
 * of its members) and exactly equivalent to the raw samples for the distance.
 *
 * Similarity. Each quantity's distance d is divided by a scale (below) and the five ratios are
 * averaged; the similarity is exp(−mean ratio), so 1 means identical distributions and every
 * quantity at its scale gives 1/e ≈ 0.37. It is the geometric mean of the per-quantity
 * similarities exp(−d/scale) (similarityFromDistance).
 *
 * The scales were measured on piano-midi.de (315 pieces, each against the whole corpus): they are
 * about the 90th percentile of a single real piece's distance, so they say what "unusual for a
 * real piece" means for each quantity. Measured per piece against the corpus:
 *   pitch      median 3.7 semitones, p90 6.9     → scale 6
 *   ioi        median 0.13 beats,   p90 0.26     → scale 0.25
 *   duration   median 0.20 beats,   p90 0.40     → scale 0.4
 *   velocity   median 6.5,          p90 15       → scale 15
 *   chordSize  median 0.41 notes,   p90 0.87     → scale 0.9
 * With these, the dataset's own pieces have a median similarity of 0.58 and 5% of them are below
 * 0.34; the default flag threshold (0.35) therefore sends about one real piece in twenty to a
 * moderator. Pools are much more stable than single pieces (many notes average out), which is why
 * the pool and output numbers are the real monitor and the per-piece flag is a coarse screen.
 */
import { noteCount, QUANTITIES, type Histograms, type Quantity } from '../eval/histograms.ts';
import { similarityFromDistance, wasserstein1 } from '../eval/wasserstein.ts';

// The histograms themselves live below the community code, in src/eval/histograms.ts (evaluate
// compares generated and real music with them too); the drift monitor's modules take them from here.
export { histogramsOf, mergeHistograms, noteCount, QUANTITIES, type Histogram, type Histograms, type Quantity } from '../eval/histograms.ts';

/** Distance (in the quantity's unit) that counts as "far": see the file comment. */
export const DRIFT_SCALES: Readonly<Record<Quantity, number>> = Object.freeze({ pitch: 6, ioi: 0.25, duration: 0.4, velocity: 15, chordSize: 0.9 });

export interface QuantitySimilarity {
  /** Wasserstein-1 distance to the reference, in the quantity's unit. */
  distance: number;
  similarity: number;
}

export interface Similarity {
  /** Geometric mean of the per-quantity similarities, in [0, 1]. */
  overall: number;
  /** Quantities the sample has no data for (e.g. no IOI in a single chord) are left out. */
  perQuantity: Partial<Record<Quantity, QuantitySimilarity>>;
}

/**
 * Similarity of `sample` to `reference` in [0, 1] (1 for identical distributions).
 * Throws one clear error if the sample or the reference has no notes.
 */
export function similarityTo(reference: Histograms, sample: Histograms): Similarity {
  if (noteCount(sample) === 0) throw new Error('drift: the sample has no notes');
  if (noteCount(reference) === 0) throw new Error('drift: the reference corpus has no notes');
  const perQuantity: Partial<Record<Quantity, QuantitySimilarity>> = {};
  let ratioSum = 0;
  let used = 0;
  for (const q of QUANTITIES) {
    if (sample[q].values.length === 0 || reference[q].values.length === 0) continue;
    const distance = wasserstein1(sample[q], reference[q]);
    perQuantity[q] = { distance, similarity: similarityFromDistance(distance, DRIFT_SCALES[q]) };
    ratioSum += distance / DRIFT_SCALES[q];
    used++;
  }
  return { overall: Math.exp(-ratioSum / used), perQuantity };
}

/** "0.62 (pitch 0.71, ioi 0.55, …)" for messages. */
export function formatSimilarity(s: Similarity): string {
  const parts = QUANTITIES.filter((q) => s.perQuantity[q]).map((q) => `${q} ${s.perQuantity[q]!.similarity.toFixed(2)}`);
  return `${s.overall.toFixed(2)} (${parts.join(', ')})`;
}
