/**
 * Key adherence of a key-conditioned model: one piece per requested key (all 24 by default,
 * composers in turn), each estimated afterwards with the Krumhansl–Kessler profiles of the whole
 * piece (src/tokens/key.ts). Reports how often the requested key is the estimate, how often it
 * is among the three best, and how often the estimate is its relative or parallel key (the
 * usual confusions of a key estimate, which say the music is close).
 */
import { KEY_COUNT, keyCorrelations, keyName, keyOf, pitchClassWeights } from '../tokens/key.ts';
import type { NoteToken } from '../tokens/tokenize.ts';

export interface KeyRequest {
  composer: string;
  key: number;
  notes: number;
  randomSeed: number;
}

export interface KeyAdherence {
  pieces: number;
  notesPerPiece: number;
  /** Requested key = estimated key. */
  agreed: number;
  /** Requested key among the three best-correlated. */
  topThree: number;
  /** Estimated key is the requested key's relative (same signature) or parallel (same tonic) key. */
  relativeOrParallel: number;
  /** Each piece: requested, estimated. */
  results: { composer: string; requested: string; estimated: string }[];
}

/** The relative key of a key index (C major ↔ A minor). */
export function relativeKey(index: number): number {
  const k = keyOf(index);
  return k.mode === 'major' ? 12 + ((k.tonic + 9) % 12) : (k.tonic + 3) % 12;
}

/** The parallel key (C major ↔ C minor). */
export function parallelKey(index: number): number {
  return index < 12 ? index + 12 : index - 12;
}

export function keyRequests(composers: readonly string[], notes: number, keys: readonly number[] = Array.from({ length: KEY_COUNT }, (_, k) => k)): KeyRequest[] {
  return keys.map((key, i) => ({ composer: composers[i % composers.length], key, notes, randomSeed: 7001 + i }));
}

export function measureKeyAdherence(requests: readonly KeyRequest[], generated: readonly NoteToken[][]): KeyAdherence {
  let agreed = 0;
  let topThree = 0;
  let relativeOrParallel = 0;
  const results = requests.map((r, i) => {
    const correlations = keyCorrelations(pitchClassWeights(generated[i]));
    const ranked = correlations.map((c, k) => [c, k] as const).sort((a, b) => b[0] - a[0]).map(([, k]) => k);
    if (ranked[0] === r.key) agreed++;
    if (ranked.slice(0, 3).includes(r.key)) topThree++;
    if (ranked[0] === relativeKey(r.key) || ranked[0] === parallelKey(r.key)) relativeOrParallel++;
    return { composer: r.composer, requested: keyName(r.key), estimated: keyName(ranked[0]) };
  });
  return { pieces: requests.length, notesPerPiece: requests[0]?.notes ?? 0, agreed, topThree, relativeOrParallel, results };
}

export function keyAdherenceLines(k: KeyAdherence): string[] {
  const pct = (n: number) => `${Math.round((100 * n) / k.pieces)} %`;
  return [
    '',
    `key adherence: ${k.pieces} pieces × ${k.notesPerPiece} notes, one per requested key, composers in turn; the key estimated from each whole piece (Krumhansl–Kessler)`,
    `  requested key estimated: ${k.agreed} of ${k.pieces} (${pct(k.agreed)}); among the best three: ${k.topThree} (${pct(k.topThree)}); relative or parallel key instead: ${k.relativeOrParallel}`,
  ];
}
