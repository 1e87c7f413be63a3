/**
 * Exact 1-D Wasserstein-1 (earth mover's) distance between two empirical distributions, and a
 * mapping of a distance onto a similarity in [0, 1].
 *
 * For distributions on the real line, W1(u, v) = ∫ |F_u(x) − F_v(x)| dx, where F is the
 * cumulative distribution function. For samples, both CDFs are step functions that change only
 * at sample values, so the integral is a finite sum over the merged, sorted sample values:
 *   Σ_k |F_u(x_k) − F_v(x_k)| · (x_{k+1} − x_k).
 * This is exact (no binning), needs no equal sizes, and accepts per-value weights, so a
 * histogram (distinct values + counts) gives the same answer as the raw samples it summarises.
 * The distance is in the samples' own unit (semitones for pitch, beats for time).
 */

/** A weighted sample: `values[i]` carries weight `weights[i]` (all 1 when omitted). */
export interface WeightedSample {
  values: ArrayLike<number>;
  weights?: ArrayLike<number>;
}

function checkedSample(s: WeightedSample | ArrayLike<number>, label: string): { values: ArrayLike<number>; weights?: ArrayLike<number> } {
  const sample = isWeighted(s) ? s : { values: s };
  const n = sample.values.length;
  if (n === 0) throw new Error(`wasserstein: ${label} sample is empty`);
  if (sample.weights && sample.weights.length !== n) throw new Error(`wasserstein: ${label} has ${n} values but ${sample.weights.length} weights`);
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(sample.values[i])) throw new Error(`wasserstein: ${label} value ${i} is not finite (${sample.values[i]})`);
    const w = sample.weights ? sample.weights[i] : 1;
    if (!Number.isFinite(w) || w < 0) throw new Error(`wasserstein: ${label} weight ${i} must be finite and ≥ 0, got ${w}`);
    total += w;
  }
  if (!(total > 0)) throw new Error(`wasserstein: ${label} weights sum to zero`);
  return sample;
}

function isWeighted(s: WeightedSample | ArrayLike<number>): s is WeightedSample {
  return typeof s === 'object' && s !== null && 'values' in s && typeof (s as WeightedSample).values === 'object';
}

/** Indices of `values` in ascending order of value. */
function ascendingOrder(values: ArrayLike<number>): Uint32Array {
  const order = new Uint32Array(values.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  return order.sort((a, b) => values[a] - values[b]);
}

/**
 * W1 distance between samples `u` and `v` (plain arrays, or `{ values, weights }`).
 * Symmetric, zero for identical distributions, and equal to |c| when one sample is the
 * other shifted by c. Throws one clear error for an empty sample, a non-finite value or bad
 * weights. O((n + m) log(n + m)).
 */
export function wasserstein1(u: WeightedSample | ArrayLike<number>, v: WeightedSample | ArrayLike<number>): number {
  const a = checkedSample(u, 'first');
  const b = checkedSample(v, 'second');
  const orderA = ascendingOrder(a.values);
  const orderB = ascendingOrder(b.values);
  const weightA = (i: number) => (a.weights ? a.weights[i] : 1);
  const weightB = (i: number) => (b.weights ? b.weights[i] : 1);
  let totalA = 0;
  let totalB = 0;
  for (let i = 0; i < a.values.length; i++) totalA += weightA(i);
  for (let i = 0; i < b.values.length; i++) totalB += weightB(i);

  // Walk the merged sorted values; between consecutive breakpoints both CDFs are constant.
  let i = 0;
  let j = 0;
  let massA = 0;
  let massB = 0;
  let distance = 0;
  let x = Math.min(a.values[orderA[0]], b.values[orderB[0]]);
  while (i < orderA.length || j < orderB.length) {
    // Absorb every sample at the current breakpoint x.
    while (i < orderA.length && a.values[orderA[i]] === x) massA += weightA(orderA[i++]);
    while (j < orderB.length && b.values[orderB[j]] === x) massB += weightB(orderB[j++]);
    const nextA = i < orderA.length ? a.values[orderA[i]] : Infinity;
    const nextB = j < orderB.length ? b.values[orderB[j]] : Infinity;
    const next = Math.min(nextA, nextB);
    if (next === Infinity) break;
    distance += Math.abs(massA / totalA - massB / totalB) * (next - x);
    x = next;
  }
  return distance;
}

/**
 * Maps a distance d ≥ 0 onto a similarity in (0, 1]: exp(−d / scale). 1 means identical;
 * a distance of `scale` gives 1/e ≈ 0.37. `scale` (> 0, in the distance's unit) says what
 * counts as "far" for this quantity, e.g. 2 semitones for pitch or 0.25 beats for rhythm.
 */
export function similarityFromDistance(d: number, scale: number): number {
  if (!Number.isFinite(d) || d < 0) throw new Error(`similarityFromDistance: distance must be finite and ≥ 0, got ${d}`);
  if (!Number.isFinite(scale) || scale <= 0) throw new Error(`similarityFromDistance: scale must be finite and > 0, got ${scale}`);
  return Math.exp(-d / scale);
}

/** Distinct values and their counts: a compact weighted sample with the same distribution. */
export function histogram(samples: ArrayLike<number>): Required<WeightedSample> & { values: number[]; weights: number[] } {
  const counts = new Map<number, number>();
  for (let i = 0; i < samples.length; i++) counts.set(samples[i], (counts.get(samples[i]) ?? 0) + 1);
  const values = [...counts.keys()].sort((x, y) => x - y);
  return { values, weights: values.map((x) => counts.get(x)!) };
}
