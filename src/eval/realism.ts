/**
 * Realism: how far generated music is from real music, excerpt by excerpt (issue 8, "Measure
 * first"). Pure functions over note-tuple tokens (src/tokens/tokenize.ts), so real and generated
 * pieces are measured after the same quantisation: onsets and lengths on the 1/12-beat grid,
 * velocities as the centres of their 8 buckets (what the MIDI writer plays).
 *
 * Per 250-note excerpt, a fixed vector of features (REALISM_FEATURES):
 *   - repetition: share of the pitch n-grams (n = 4, 8, 16 notes) that occurred earlier in the
 *     excerpt, and the same on interval n-grams (the n − 1 steps between n notes), which a
 *     transposed repeat also counts as a repeat;
 *   - rhythm: std of ln(inter-onset interval) over the non-zero onset gaps, share of gaps that are
 *     exactly a quarter note (12 steps), share of gaps off the sixteenth grid (not a multiple of
 *     3 steps: 4 and 8 are eighth- and quarter-note triplets, 2 a sixteenth triplet);
 *   - texture: share of the time (first onset to last release) with two or more notes sounding;
 *   - harmony: scale consistency (duration share of the best of 24 scales: 12 major, 12 harmonic
 *     minor; natural minor has the same notes as its relative major), key clarity (mean over
 *     8-beat windows of the best Krumhansl–Kessler key correlation), bigram entropy of the
 *     pitch-class sets struck together;
 *   - velocity mean (MIDI units) and number of distinct velocities; pitch range.
 *
 * Then three comparisons of generated with real excerpts, each beside a real-vs-real ceiling
 * (the real pieces split into two halves by piece):
 *   - per feature: real mean and 5–95 % band, generated mean, pass when inside the band (and for
 *     repetition, generated/real within 0.5–1.5);
 *   - a classifier two-sample test: L2 logistic regression on standardised features, grouped
 *     cross-validation (all excerpts of a piece in one fold), ROC-AUC of the out-of-fold scores;
 *   - composer recognition: softmax regression on the same features, grouped cross-validated
 *     accuracy on real pieces, and accuracy on generated pieces labelled by the composer asked for.
 * Everything is deterministic (seeded folds and splits, fixed-step gradient descent).
 */
import { seededRandom, shuffleInPlace } from '../model/random.ts';
import { bestKey, pitchClassWeights } from '../tokens/key.ts';
import { distantReturns, longestLoop, loopProfile, type LoopProfile } from '../tokens/loops.ts';
import { STEPS_PER_BEAT, type NoteToken } from '../tokens/tokenize.ts';
import { musicDistributions, repeatedNgramShare } from './musicStats.ts';
import { histogram } from './wasserstein.ts';

// ---------------------------------------------------------------------------------------------
// Excerpts

export const EXCERPT_NOTES = 250;

/** Consecutive non-overlapping excerpts of `size` notes; a remainder shorter than `size` is dropped. */
export function excerpts(tokens: readonly NoteToken[], size = EXCERPT_NOTES): NoteToken[][] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`excerpts: size must be a whole number ≥ 1, got ${size}`);
  const out: NoteToken[][] = [];
  for (let s = 0; s + size <= tokens.length; s += size) out.push(tokens.slice(s, s + size));
  return out;
}

/** Onset of every token in grid steps from the first (the first token's dt is time before the excerpt). */
export function onsets(tokens: readonly NoteToken[]): Int32Array {
  const out = new Int32Array(tokens.length);
  for (let i = 1; i < tokens.length; i++) out[i] = out[i - 1] + tokens[i].dt;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Repetition

export const REPETITION_LENGTHS = [4, 8, 16] as const;

/** Share of the n-note pitch sequences of the excerpt that occurred earlier in it. */
export function pitchRepetition(tokens: readonly NoteToken[], n: number): number {
  return repeatedNgramShare(tokens.map((t) => t.pitch), n);
}

/**
 * The same on intervals: an n-note window is its n − 1 successive pitch steps, so a motif played
 * again a fifth higher repeats. n = 1 has no steps and gives 0.
 */
export function intervalRepetition(tokens: readonly NoteToken[], n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`intervalRepetition: n must be a whole number ≥ 1, got ${n}`);
  if (n === 1) return 0;
  // Steps lie in −87..87; shifted to stay non-negative like every other key.
  const steps = tokens.slice(1).map((t, i) => t.pitch - tokens[i].pitch + 128);
  return repeatedNgramShare(steps, n - 1);
}

/**
 * Share of the notes that lie in an 8-note figure (transposed or not) coming back from further
 * than a loop reaches (distantReturns: more than 16 notes since it was last played): motifs
 * returning, told apart from figures circling on the spot, which the n-gram repeats above count
 * alike.
 */
export function distantRepetition(tokens: readonly NoteToken[]): number {
  return tokens.length ? distantReturns(tokens).reduce((s, m) => s + m, 0) / tokens.length : 0;
}

// ---------------------------------------------------------------------------------------------
// Rhythm and texture

/** Non-zero onset gaps in grid steps (chord notes share an onset and add none). */
function onsetGapSteps(tokens: readonly NoteToken[]): number[] {
  return musicDistributions(tokens).ioi.map((beats) => Math.round(beats * STEPS_PER_BEAT));
}

const mean = (xs: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return xs.length ? s / xs.length : 0;
};

/** Population standard deviation of ln(IOI) over the non-zero onset gaps; 0 with fewer than two. */
export function logIoiStd(tokens: readonly NoteToken[]): number {
  const logs = musicDistributions(tokens).ioi.map(Math.log);
  if (logs.length < 2) return 0;
  const m = mean(logs);
  return Math.sqrt(mean(logs.map((x) => (x - m) ** 2)));
}

/** Share of the non-zero onset gaps that are exactly one beat (a quarter note); 0 without gaps. */
export function quarterGapShare(tokens: readonly NoteToken[]): number {
  const gaps = onsetGapSteps(tokens);
  return gaps.length ? gaps.filter((g) => g === STEPS_PER_BEAT).length / gaps.length : 0;
}

/**
 * Share of the non-zero onset gaps off the sixteenth-note grid (not a multiple of 3 steps): the
 * triplet subdivisions 4 and 8 (eighth- and quarter-note triplets) and 2 (sixteenth triplet),
 * with the rare odd steps. 0 without gaps.
 */
export function tripletGapShare(tokens: readonly NoteToken[]): number {
  const gaps = onsetGapSteps(tokens);
  return gaps.length ? gaps.filter((g) => g % 3 !== 0).length / gaps.length : 0;
}

/**
 * Share of the time, from the first onset to the last release, during which two or more notes
 * sound (silence counts as fewer than two). 0 for an empty excerpt.
 */
export function polyphony(tokens: readonly NoteToken[]): number {
  if (tokens.length === 0) return 0;
  const on = onsets(tokens);
  let end = 0;
  tokens.forEach((t, i) => (end = Math.max(end, on[i] + t.dur)));
  // Notes sounding per grid step, from a difference array over the span.
  const change = new Int32Array(end + 1);
  tokens.forEach((t, i) => {
    change[on[i]]++;
    change[on[i] + t.dur]--;
  });
  let sounding = 0;
  let several = 0;
  for (let step = 0; step < end; step++) {
    sounding += change[step];
    if (sounding >= 2) several++;
  }
  return several / end;
}

// ---------------------------------------------------------------------------------------------
// Pitch classes, scales and keys

const MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11];
const HARMONIC_MINOR_SCALE = [0, 2, 3, 5, 7, 8, 11];

/**
 * Duration share of the notes that belong to the best-fitting of 24 scales (12 major, 12 harmonic
 * minor): 1 for music that stays in one scale. 0 for an empty excerpt.
 */
export function scaleConsistency(tokens: readonly NoteToken[]): number {
  const w = pitchClassWeights(tokens);
  const total = w.reduce((s, x) => s + x, 0);
  if (total === 0) return 0;
  let best = 0;
  for (const scale of [MAJOR_SCALE, HARMONIC_MINOR_SCALE])
    for (let tonic = 0; tonic < 12; tonic++) best = Math.max(best, scale.reduce((s, d) => s + w[(tonic + d) % 12], 0));
  return best / total;
}

// The key estimate lives with the tokens (src/tokens/key.ts), where training's key labels use it.
export { estimateKey, keyCorrelations, KEYS, KK_MAJOR_PROFILE, KK_MINOR_PROFILE, pitchClassWeights, type Key, type KeyEstimate, type KeyMode } from '../tokens/key.ts';

export const KEY_WINDOW_BEATS = 8;

/**
 * Mean, over consecutive windows of `windowBeats` beats from the first onset, of the best key
 * correlation within the window: near 1 when each stretch clearly sits in one key. Windows in
 * which nothing sounds are skipped; 0 when none is left.
 */
export function keyClarity(tokens: readonly NoteToken[], windowBeats = KEY_WINDOW_BEATS): number {
  if (tokens.length === 0) return 0;
  const width = windowBeats * STEPS_PER_BEAT;
  const last = onsets(tokens)[tokens.length - 1];
  const values: number[] = [];
  for (let from = 0; from <= last; from += width) {
    const profile = pitchClassWeights(tokens, from, from + width);
    if (profile.some((x) => x > 0)) values.push(bestKey(profile).correlation);
  }
  return values.length ? mean(values) : 0;
}

/**
 * Entropy in bits of the successions of pitch-class sets: the notes struck at one onset form a
 * set (a 12-bit mask), and the distribution of (set, next set) pairs is measured. Higher means
 * less predictable harmony; 0 with fewer than two onsets.
 */
export function pitchClassSetEntropy(tokens: readonly NoteToken[]): number {
  const sets: number[] = [];
  tokens.forEach((t, i) => {
    const bit = 1 << t.pitch % 12;
    if (i === 0 || t.dt > 0) sets.push(bit);
    else sets[sets.length - 1] |= bit;
  });
  const pairs = sets.slice(1).map((s, i) => sets[i] * 4096 + s);
  if (pairs.length === 0) return 0;
  const { weights } = histogram(pairs);
  return -weights.reduce((h, count) => h + (count / pairs.length) * Math.log2(count / pairs.length), 0);
}

// ---------------------------------------------------------------------------------------------
// The feature vector

export const REALISM_FEATURES = [
  'pitchRepetition4',
  'pitchRepetition8',
  'pitchRepetition16',
  'intervalRepetition4',
  'intervalRepetition8',
  'intervalRepetition16',
  'distantRepetition8',
  'longestLoop',
  'logIoiStd',
  'quarterGapShare',
  'tripletGapShare',
  'polyphony',
  'scaleConsistency',
  'keyClarity',
  'pitchClassSetEntropy',
  'velocityMean',
  'velocityValues',
  'pitchRange',
] as const;
export type RealismFeature = (typeof REALISM_FEATURES)[number];

/** The features judged by the repetition rule (generated/real within 0.5–1.5) as well as the band. */
export const REPETITION_FEATURES: readonly RealismFeature[] = REALISM_FEATURES.filter((f) => f.includes('Repetition'));

/** Short labels for reports. */
export const FEATURE_LABELS: Readonly<Record<RealismFeature, string>> = {
  pitchRepetition4: 'pitch 4-gram repeats',
  pitchRepetition8: 'pitch 8-gram repeats',
  pitchRepetition16: 'pitch 16-gram repeats',
  intervalRepetition4: 'interval 4-note repeats',
  intervalRepetition8: 'interval 8-note repeats',
  intervalRepetition16: 'interval 16-note repeats',
  distantRepetition8: 'returns from afar (8 notes)',
  longestLoop: 'longest loop (notes)',
  logIoiStd: 'std of ln IOI',
  quarterGapShare: 'quarter-note gaps',
  tripletGapShare: 'triplet gaps',
  polyphony: '≥2 notes sounding',
  scaleConsistency: 'scale consistency',
  keyClarity: 'key clarity (8 beats)',
  pitchClassSetEntropy: 'pc-set bigram entropy',
  velocityMean: 'velocity mean',
  velocityValues: 'distinct velocities',
  pitchRange: 'pitch range',
};

/** Every realism feature of one excerpt. */
export function realismFeatures(tokens: readonly NoteToken[]): Record<RealismFeature, number> {
  const d = musicDistributions(tokens);
  return {
    pitchRepetition4: pitchRepetition(tokens, 4),
    pitchRepetition8: pitchRepetition(tokens, 8),
    pitchRepetition16: pitchRepetition(tokens, 16),
    intervalRepetition4: intervalRepetition(tokens, 4),
    intervalRepetition8: intervalRepetition(tokens, 8),
    intervalRepetition16: intervalRepetition(tokens, 16),
    distantRepetition8: distantRepetition(tokens),
    longestLoop: longestLoop(tokens),
    logIoiStd: logIoiStd(tokens),
    quarterGapShare: quarterGapShare(tokens),
    tripletGapShare: tripletGapShare(tokens),
    polyphony: polyphony(tokens),
    scaleConsistency: scaleConsistency(tokens),
    keyClarity: keyClarity(tokens),
    pitchClassSetEntropy: pitchClassSetEntropy(tokens),
    velocityMean: mean(d.velocity),
    velocityValues: histogram(d.velocity).values.length,
    pitchRange: d.pitch.length ? Math.max(...d.pitch) - Math.min(...d.pitch) : 0,
  };
}

export const featureVector = (f: Record<RealismFeature, number>): number[] => REALISM_FEATURES.map((name) => f[name]);

// ---------------------------------------------------------------------------------------------
// Classifiers

/** One excerpt for a classifier: its piece (the CV group), its class and its features. */
export interface LabelledExcerpt {
  group: string;
  label: number;
  features: number[];
}

/**
 * ROC-AUC of `scores` for telling label 1 from label 0: the probability that a random positive
 * scores above a random negative, ties counting one half (Mann–Whitney U from average ranks).
 * Throws when either class is missing.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (scores.length !== labels.length) throw new Error(`rocAuc: ${scores.length} scores but ${labels.length} labels`);
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    const rank = (i + j) / 2 + 1; // ranks are 1-based; tied scores share their average rank
    for (let k = i; k <= j; k++)
      if (labels[order[k]] === 1) {
        positives++;
        rankSum += rank;
      }
    i = j + 1;
  }
  const negatives = scores.length - positives;
  if (positives === 0 || negatives === 0) throw new Error('rocAuc: needs at least one example of each class');
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/**
 * A fold (0..k−1) for every row such that all rows of a group share a fold, and each class's
 * groups are spread over the folds (shuffled with `seed`, then each to the fold holding fewest of
 * that class's rows). A group's class is that of its first row. k is lowered to the number of
 * groups of the smallest class; throws when a class has fewer than 2 groups.
 */
export function groupedFolds(groups: readonly string[], labels: readonly number[], k: number, seed: number): { folds: Int32Array; k: number } {
  if (groups.length !== labels.length) throw new Error(`groupedFolds: ${groups.length} groups but ${labels.length} labels`);
  if (!Number.isInteger(k) || k < 2) throw new Error(`groupedFolds: k must be a whole number ≥ 2, got ${k}`);
  const groupLabel = new Map<string, number>();
  const groupSize = new Map<string, number>();
  groups.forEach((g, i) => {
    if (!groupLabel.has(g)) groupLabel.set(g, labels[i]);
    groupSize.set(g, (groupSize.get(g) ?? 0) + 1);
  });
  const byLabel = new Map<number, string[]>();
  for (const [g, label] of groupLabel) byLabel.set(label, [...(byLabel.get(label) ?? []), g]);
  const smallest = Math.min(...[...byLabel.values()].map((gs) => gs.length));
  if (smallest < 2) throw new Error(`groupedFolds: every class needs at least 2 groups (pieces), one has ${smallest}`);
  const folds = Math.min(k, smallest);
  const rng = seededRandom(seed);
  const foldOf = new Map<string, number>();
  for (const label of [...byLabel.keys()].sort((a, b) => a - b)) {
    const load = new Array<number>(folds).fill(0);
    for (const g of shuffleInPlace([...byLabel.get(label)!].sort(), rng)) {
      const f = load.indexOf(Math.min(...load));
      foldOf.set(g, f);
      load[f] += groupSize.get(g)!;
    }
  }
  return { folds: Int32Array.from(groups, (g) => foldOf.get(g)!), k: folds };
}

/** Mean and scale (std, 1 for a constant feature) of each column of the training rows. */
function standardiser(rows: readonly number[][]): { centre: number[]; scale: number[] } {
  const d = rows[0].length;
  const centre = Array.from({ length: d }, (_, j) => mean(rows.map((r) => r[j])));
  const scale = centre.map((m, j) => Math.sqrt(mean(rows.map((r) => (r[j] - m) ** 2))) || 1);
  return { centre, scale };
}

const standardise = (rows: readonly number[][], s: { centre: number[]; scale: number[] }) => rows.map((r) => r.map((x, j) => (x - s.centre[j]) / s.scale[j]));

/** Weights that give every class the same total (n / (classes · n_class) per row). */
function balancedWeights(labels: readonly number[]): number[] {
  const counts = new Map<number, number>();
  for (const y of labels) counts.set(y, (counts.get(y) ?? 0) + 1);
  return labels.map((y) => labels.length / (counts.size * counts.get(y)!));
}

export interface RegressionOptions {
  /** L2 penalty on the weights (not the biases), added to the mean loss as l2/2 · |w|². */
  l2: number;
  iterations: number;
}

export const DEFAULT_REGRESSION: RegressionOptions = { l2: 0.01, iterations: 1500 };

/** A linear softmax classifier over `classes` classes: scores[c] = bias[c] + w[c] · x. */
export interface LinearModel {
  weights: number[][];
  bias: number[];
}

/**
 * Multinomial logistic (softmax) regression by full-batch gradient descent, deterministic: zero
 * start and a fixed step of 1/L, L a bound on the loss's curvature (below), so every step descends.
 * Rows are weighted so that each class carries the same total weight. Two classes are logistic
 * regression (the scores' difference is the log-odds).
 */
export function fitSoftmaxRegression(x: readonly number[][], labels: readonly number[], classes: number, o: RegressionOptions = DEFAULT_REGRESSION): LinearModel {
  const n = x.length;
  const d = x[0]?.length ?? 0;
  if (n === 0) throw new Error('fitSoftmaxRegression: no rows');
  const rowWeight = balancedWeights(labels);
  const weights = Array.from({ length: classes }, () => new Array<number>(d).fill(0));
  const bias = new Array<number>(classes).fill(0);
  // The loss's curvature is at most ½ (softmax) times the largest eigenvalue of the weighted
  // second moment of the rows with a bias column, which is at most its trace.
  const trace = x.reduce((t, row, i) => t + rowWeight[i] * (row.reduce((s, v) => s + v * v, 0) + 1), 0) / n;
  const step = 1 / (0.5 * trace + o.l2);
  const p = new Array<number>(classes);
  for (let it = 0; it < o.iterations; it++) {
    const gw = Array.from({ length: classes }, () => new Array<number>(d).fill(0));
    const gb = new Array<number>(classes).fill(0);
    for (let i = 0; i < n; i++) {
      const row = x[i];
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let z = bias[c];
        for (let j = 0; j < d; j++) z += weights[c][j] * row[j];
        p[c] = z;
        max = Math.max(max, z);
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += p[c] = Math.exp(p[c] - max);
      for (let c = 0; c < classes; c++) {
        const g = (rowWeight[i] * (p[c] / sum - (labels[i] === c ? 1 : 0))) / n;
        gb[c] += g;
        for (let j = 0; j < d; j++) gw[c][j] += g * row[j];
      }
    }
    for (let c = 0; c < classes; c++) {
      bias[c] -= step * gb[c];
      for (let j = 0; j < d; j++) weights[c][j] -= step * (gw[c][j] + o.l2 * weights[c][j]);
    }
  }
  return { weights, bias };
}

export function linearScores(m: LinearModel, row: readonly number[]): number[] {
  return m.bias.map((b, c) => m.weights[c].reduce((z, w, j) => z + w * row[j], b));
}

const argmax = (xs: readonly number[]) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);

/**
 * Out-of-fold class scores of every row: for each fold, a classifier fitted (on features
 * standardised with the training rows' statistics) on the other folds scores the fold's rows.
 */
export function crossValidatedScores(rows: readonly LabelledExcerpt[], classes: number, k: number, seed: number, o: RegressionOptions = DEFAULT_REGRESSION): { scores: number[][]; k: number } {
  const { folds, k: used } = groupedFolds(rows.map((r) => r.group), rows.map((r) => r.label), k, seed);
  const scores: number[][] = new Array(rows.length);
  for (let f = 0; f < used; f++) {
    const train = rows.filter((_, i) => folds[i] !== f);
    const s = standardiser(train.map((r) => r.features));
    const model = fitSoftmaxRegression(standardise(train.map((r) => r.features), s), train.map((r) => r.label), classes, o);
    rows.forEach((r, i) => {
      if (folds[i] === f) scores[i] = linearScores(model, standardise([r.features], s)[0]);
    });
  }
  return { scores, k: used };
}

export interface TwoSampleResult {
  /** Mean ROC-AUC over the repeats: 0.5 = indistinguishable, 1 = always told apart. */
  auc: number;
  /** One AUC per repeat (a different fold assignment, or real-vs-real split, each). */
  aucs: number[];
  folds: number;
  excerpts: [number, number];
  pieces: [number, number];
}

export interface TwoSampleOptions {
  folds: number;
  repeats: number;
  seed: number;
  regression?: RegressionOptions;
}

export const DEFAULT_TWO_SAMPLE: TwoSampleOptions = { folds: 5, repeats: 5, seed: 1 };

/**
 * Classifier two-sample test: can a logistic regression on the features tell excerpts of `b`
 * from excerpts of `a` on pieces it has not seen? ROC-AUC of the out-of-fold scores (grouped
 * k-fold by piece), averaged over `repeats` fold assignments. Groups are taken per side, so the
 * same piece name on both sides is two pieces.
 */
export function classifierTwoSampleTest(a: readonly { group: string; features: number[] }[], b: readonly { group: string; features: number[] }[], o: TwoSampleOptions = DEFAULT_TWO_SAMPLE): TwoSampleResult {
  const rows: LabelledExcerpt[] = [...a.map((r) => ({ group: `a:${r.group}`, label: 0, features: r.features })), ...b.map((r) => ({ group: `b:${r.group}`, label: 1, features: r.features }))];
  const aucs: number[] = [];
  let folds = 0;
  for (let rep = 0; rep < o.repeats; rep++) {
    const cv = crossValidatedScores(rows, 2, o.folds, o.seed + rep, o.regression);
    folds = cv.k;
    aucs.push(rocAuc(cv.scores.map((s) => s[1] - s[0]), rows.map((r) => r.label)));
  }
  const pieces = (side: readonly { group: string }[]) => new Set(side.map((r) => r.group)).size;
  return { auc: mean(aucs), aucs, folds, excerpts: [a.length, b.length], pieces: [pieces(a), pieces(b)] };
}

/**
 * A realism critic: the classifier of the two-sample test, fitted once on every excerpt of a set
 * of real pieces (label real) against every excerpt of a set of generated ones, so that other
 * generated pieces can be scored by how real they look to it (realismLogOdds).
 */
export interface RealismCritic {
  centre: number[];
  scale: number[];
  model: LinearModel;
  excerptNotes: number;
  /** Excerpts it was fitted on: real, generated. */
  excerpts: [number, number];
}

export function fitRealismCritic(real: readonly (readonly NoteToken[])[], generated: readonly (readonly NoteToken[])[], excerptNotes = EXCERPT_NOTES, o: RegressionOptions = DEFAULT_REGRESSION): RealismCritic {
  const rowsOf = (pieces: readonly (readonly NoteToken[])[]) => pieces.flatMap((t) => excerpts(t, excerptNotes).map((e) => featureVector(realismFeatures(e))));
  const realRows = rowsOf(real);
  const generatedRows = rowsOf(generated);
  if (realRows.length === 0 || generatedRows.length === 0) throw new Error(`fitRealismCritic: needs excerpts of ${excerptNotes} notes on both sides, got ${realRows.length} real and ${generatedRows.length} generated`);
  const rows = [...realRows, ...generatedRows];
  const s = standardiser(rows);
  const labels = [...realRows.map(() => 1), ...generatedRows.map(() => 0)];
  return { ...s, model: fitSoftmaxRegression(standardise(rows, s), labels, 2, o), excerptNotes, excerpts: [realRows.length, generatedRows.length] };
}

/**
 * How real a piece looks to `critic`: the mean over its excerpts of the classifier's log-odds of
 * "real" (above 0: more likely real). A piece shorter than one excerpt is scored whole.
 */
export function realismLogOdds(critic: RealismCritic, tokens: readonly NoteToken[]): number {
  const parts = tokens.length >= critic.excerptNotes ? excerpts(tokens, critic.excerptNotes) : [tokens];
  const odds = parts.map((e) => {
    const [generated, real] = linearScores(critic.model, standardise([featureVector(realismFeatures(e))], critic)[0]);
    return real - generated;
  });
  return mean(odds);
}

// ---------------------------------------------------------------------------------------------
// Comparing generated with real pieces

/** A piece to compare: generated pieces carry the composer they were asked for. */
export interface PieceTokens {
  name: string;
  composer: string;
  tokens: readonly NoteToken[];
}

interface ExcerptFeatures {
  piece: string;
  composer: string;
  values: Record<RealismFeature, number>;
}

function featuresOf(pieces: readonly PieceTokens[], size: number): ExcerptFeatures[] {
  return pieces.flatMap((p) => excerpts(p.tokens, size).map((e) => ({ piece: p.name, composer: p.composer, values: realismFeatures(e) })));
}

/** Linear-interpolation quantile (q in 0..1) of a non-empty sample. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile: empty sample');
  const sorted = [...values].sort((x, y) => x - y);
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface Band {
  mean: number;
  p5: number;
  p95: number;
}

export function band(values: readonly number[]): Band {
  return { mean: mean(values), p5: quantile(values, 0.05), p95: quantile(values, 0.95) };
}

export const REPETITION_RATIO_RANGE = [0.5, 1.5] as const;

export interface FeatureVerdict {
  /** Mean of the compared excerpts inside the reference's 5–95 % band. */
  inBand: boolean;
  /** Repetition features: compared mean / reference mean (null when the reference mean is 0). */
  ratio?: number | null;
  pass: boolean;
}

export interface FeatureComparison extends FeatureVerdict {
  real: Band;
  generated: Band;
  /** The ceiling: the other half of the real pieces judged against one half's band. */
  realVsReal: { referenceHalf: Band; otherHalfMean: number } & FeatureVerdict;
  /**
   * How well this feature alone tells generated excerpts from real ones: ROC-AUC of the raw
   * value, folded to 0.5–1 (0.5: no help; the classifier combines all of them).
   */
  separation: number;
}

function verdict(feature: RealismFeature, reference: Band, compared: number): FeatureVerdict {
  // A band can shrink to a point (every excerpt alike); a mean of equal values may then differ
  // from it in the last bits, which must not count as outside.
  const slack = 1e-9 * Math.max(1, Math.abs(reference.p5), Math.abs(reference.p95));
  const inBand = compared >= reference.p5 - slack && compared <= reference.p95 + slack;
  if (!REPETITION_FEATURES.includes(feature)) return { inBand, pass: inBand };
  const ratio = reference.mean > 0 ? compared / reference.mean : null;
  const [lo, hi] = REPETITION_RATIO_RANGE;
  return { inBand, ratio, pass: inBand && ratio !== null && ratio >= lo && ratio <= hi };
}

export interface ComposerRecognition {
  composers: string[];
  /** 1 / number of composers. */
  chance: number;
  /** Grouped cross-validated on the real pieces of these composers. */
  real: { pieces: number; excerpts: number; accuracy: number; balancedAccuracy: number; folds: number };
  /** Fitted on all those real excerpts, tested on the generated ones, labelled by the composer asked for. */
  generated: { pieces: number; excerpts: number; accuracy: number; balancedAccuracy: number; perComposer: Record<string, number> };
}

export interface RealismComparison {
  excerptNotes: number;
  features: Record<RealismFeature, FeatureComparison>;
  /** Features whose generated mean passes, out of all. */
  passed: number;
  classifier: {
    generatedVsReal: TwoSampleResult;
    /** The ceiling: half the real pieces against the other half, one random split per repeat. */
    realVsReal: TwoSampleResult;
    /**
     * What gives the generated music away: the classifier on one feature, then two, … chosen
     * greedily (each step adds the feature that raises the AUC most), up to LEADING_FEATURES.
     * Alone-AUCs miss what features tell together (pitch against interval repetition is a
     * transposition rate); this says which few carry most of the full AUC.
     */
    leading: { feature: RealismFeature; auc: number }[];
  };
  composerRecognition: ComposerRecognition | null;
  /** How the whole pieces loop (loopProfile): real against generated. */
  loops: { real: LoopProfile; generated: LoopProfile };
  real: { pieces: number; excerpts: number };
  generated: { pieces: number; excerpts: number };
}

export interface CompareOptions extends TwoSampleOptions {
  excerptNotes: number;
  log?: (line: string) => void;
}

export const DEFAULT_COMPARE: CompareOptions = { ...DEFAULT_TWO_SAMPLE, excerptNotes: EXCERPT_NOTES };

/** Accuracy and class-balanced accuracy (mean of per-class recalls) of predictions. */
function accuracies(predicted: readonly number[], actual: readonly number[], classes: number): { accuracy: number; balancedAccuracy: number; perClass: (number | null)[] } {
  const hits = new Array<number>(classes).fill(0);
  const totals = new Array<number>(classes).fill(0);
  actual.forEach((y, i) => {
    totals[y]++;
    if (predicted[i] === y) hits[y]++;
  });
  const perClass = totals.map((t, c) => (t ? hits[c] / t : null));
  const present = perClass.filter((x): x is number => x !== null);
  return { accuracy: hits.reduce((s, h) => s + h, 0) / Math.max(1, actual.length), balancedAccuracy: mean(present), perClass };
}

/**
 * Composer recognition on the realism features: grouped cross-validated accuracy on `real`
 * pieces, and the accuracy on `generated` pieces of a classifier fitted on all of `real`.
 * Only composers with at least two real pieces with an excerpt and at least one generated
 * excerpt take part; null when fewer than two composers do.
 */
export function composerRecognition(real: readonly PieceTokens[], generated: readonly PieceTokens[], o: CompareOptions = DEFAULT_COMPARE): ComposerRecognition | null {
  const realRows = featuresOf(real, o.excerptNotes);
  const genRows = featuresOf(generated, o.excerptNotes);
  const realPieces = (c: string) => new Set(realRows.filter((r) => r.composer === c).map((r) => r.piece)).size;
  const composers = [...new Set(genRows.map((r) => r.composer))].filter((c) => realPieces(c) >= 2).sort();
  if (composers.length < 2) return null;
  const index = new Map(composers.map((c, i) => [c, i]));
  const labelled = (rows: ExcerptFeatures[]): LabelledExcerpt[] =>
    rows.filter((r) => index.has(r.composer)).map((r) => ({ group: r.piece, label: index.get(r.composer)!, features: featureVector(r.values) }));
  const realSet = labelled(realRows);
  const genSet = labelled(genRows);
  const cv = crossValidatedScores(realSet, composers.length, o.folds, o.seed, o.regression);
  const realScore = accuracies(cv.scores.map(argmax), realSet.map((r) => r.label), composers.length);
  const s = standardiser(realSet.map((r) => r.features));
  const model = fitSoftmaxRegression(standardise(realSet.map((r) => r.features), s), realSet.map((r) => r.label), composers.length, o.regression);
  const predicted = standardise(genSet.map((r) => r.features), s).map((x) => argmax(linearScores(model, x)));
  const genScore = accuracies(predicted, genSet.map((r) => r.label), composers.length);
  const pieces = (rows: LabelledExcerpt[]) => new Set(rows.map((r) => r.group)).size;
  return {
    composers,
    chance: 1 / composers.length,
    real: { pieces: pieces(realSet), excerpts: realSet.length, accuracy: realScore.accuracy, balancedAccuracy: realScore.balancedAccuracy, folds: cv.k },
    generated: {
      pieces: pieces(genSet),
      excerpts: genSet.length,
      accuracy: genScore.accuracy,
      balancedAccuracy: genScore.balancedAccuracy,
      perComposer: Object.fromEntries(composers.map((c, i) => [c, genScore.perClass[i] ?? 0])),
    },
  };
}

/** Steps of the forward selection in RealismComparison.classifier.leading. */
export const LEADING_FEATURES = 4;

/**
 * Greedy forward selection of the features that best tell `b` from `a` (see
 * RealismComparison.classifier.leading): `steps` features, each with the AUC of the classifier
 * on the features chosen so far. Each candidate is tried with `o.repeats` cross-validations.
 */
export function leadingFeatures(a: readonly { group: string; features: number[] }[], b: readonly { group: string; features: number[] }[], steps: number, o: TwoSampleOptions): { feature: RealismFeature; auc: number }[] {
  const pick = (rows: readonly { group: string; features: number[] }[], columns: number[]) => rows.map((r) => ({ group: r.group, features: columns.map((c) => r.features[c]) }));
  const chosen: number[] = [];
  const out: { feature: RealismFeature; auc: number }[] = [];
  for (let step = 0; step < Math.min(steps, REALISM_FEATURES.length); step++) {
    let best = { column: -1, auc: -1 };
    REALISM_FEATURES.forEach((_, column) => {
      if (chosen.includes(column)) return;
      const columns = [...chosen, column];
      const auc = classifierTwoSampleTest(pick(a, columns), pick(b, columns), o).auc;
      if (auc > best.auc) best = { column, auc };
    });
    chosen.push(best.column);
    out.push({ feature: REALISM_FEATURES[best.column], auc: best.auc });
  }
  return out;
}

/** Seeded split of piece names into two halves (the first holds the extra one of an odd count). */
export function splitPieces(names: readonly string[], seed: number): [Set<string>, Set<string>] {
  const shuffled = shuffleInPlace([...new Set(names)].sort(), seededRandom(seed));
  const half = Math.ceil(shuffled.length / 2);
  return [new Set(shuffled.slice(0, half)), new Set(shuffled.slice(half))];
}

/**
 * The realism comparison of generated with real pieces, excerpt by excerpt, each figure beside a
 * real-vs-real ceiling. `composerReal`: the real pieces for composer recognition (default `real`).
 * Throws when real or generated music has fewer than 2 pieces with a whole excerpt (4 for real,
 * which is also split in halves).
 */
export function compareRealism(real: readonly PieceTokens[], generated: readonly PieceTokens[], o: CompareOptions = DEFAULT_COMPARE, composerReal: readonly PieceTokens[] = real): RealismComparison {
  const log = o.log ?? (() => {});
  const realRows = featuresOf(real, o.excerptNotes);
  const genRows = featuresOf(generated, o.excerptNotes);
  const realPieces = [...new Set(realRows.map((r) => r.piece))];
  const genPieces = new Set(genRows.map((r) => r.piece)).size;
  if (realPieces.length < 4) throw new Error(`realism: needs at least 4 real pieces of ${o.excerptNotes}+ notes, got ${realPieces.length}`);
  if (genPieces < 2) throw new Error(`realism: needs at least 2 generated pieces of ${o.excerptNotes}+ notes, got ${genPieces}`);
  log(`  realism: features of ${realRows.length} real excerpts (${realPieces.length} pieces) and ${genRows.length} generated excerpts (${genPieces} pieces)`);

  // Per feature, with the first real-vs-real split as the ceiling.
  const [halfA, halfB] = splitPieces(realPieces, o.seed);
  const features = {} as Record<RealismFeature, FeatureComparison>;
  for (const f of REALISM_FEATURES) {
    const realBand = band(realRows.map((r) => r.values[f]));
    const genBand = band(genRows.map((r) => r.values[f]));
    const reference = band(realRows.filter((r) => halfA.has(r.piece)).map((r) => r.values[f]));
    const otherHalfMean = mean(realRows.filter((r) => halfB.has(r.piece)).map((r) => r.values[f]));
    const values = [...realRows, ...genRows].map((r) => r.values[f]);
    const auc = rocAuc(values, [...realRows.map(() => 0), ...genRows.map(() => 1)]);
    const separation = Math.max(auc, 1 - auc);
    features[f] = { real: realBand, generated: genBand, ...verdict(f, realBand, genBand.mean), realVsReal: { referenceHalf: reference, otherHalfMean, ...verdict(f, reference, otherHalfMean) }, separation };
  }

  log(`  realism: classifier two-sample tests (${o.folds}-fold grouped by piece, ${o.repeats} repeats)`);
  const rows = (list: ExcerptFeatures[]) => list.map((r) => ({ group: r.piece, features: featureVector(r.values) }));
  const generatedVsReal = classifierTwoSampleTest(rows(realRows), rows(genRows), o);
  const splits = Array.from({ length: o.repeats }, (_, rep) => {
    const [a, b] = splitPieces(realPieces, o.seed + rep);
    return classifierTwoSampleTest(rows(realRows.filter((r) => a.has(r.piece))), rows(realRows.filter((r) => b.has(r.piece))), { ...o, repeats: 1, seed: o.seed + rep });
  });
  const realVsReal: TwoSampleResult = { ...splits[0], auc: mean(splits.map((s) => s.auc)), aucs: splits.map((s) => s.auc) };
  log(`  realism: the ${LEADING_FEATURES} features that give generated music away most (forward selection)`);
  const leading = leadingFeatures(rows(realRows), rows(genRows), LEADING_FEATURES, { ...o, repeats: Math.min(o.repeats, 2) });

  log('  realism: composer recognition');
  const recognition = composerRecognition(composerReal, generated, o);
  return {
    excerptNotes: o.excerptNotes,
    features,
    passed: REALISM_FEATURES.filter((f) => features[f].pass).length,
    classifier: { generatedVsReal, realVsReal, leading },
    composerRecognition: recognition,
    loops: { real: loopProfile(real.map((p) => p.tokens)), generated: loopProfile(generated.map((p) => p.tokens)) },
    real: { pieces: realPieces.length, excerpts: realRows.length },
    generated: { pieces: genPieces, excerpts: genRows.length },
  };
}
