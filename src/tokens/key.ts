/**
 * Musical keys: the 24 major and minor keys, their names (with enharmonic spellings accepted
 * when parsing), and a key estimate of a run of notes with the Krumhansl–Kessler profiles
 * (duration-weighted pitch-class histogram, Pearson correlation with the 24 rotated profiles).
 *
 * Key index k: 0..11 are C major .. B major (tonic = k), 12..23 are C minor .. B minor
 * (tonic = k - 12). ANY_KEY (24) is "any key", the model's unconditioned slot.
 */
import type { NoteToken } from './tokenize.ts';

export const KEY_COUNT = 24;
export const ANY_KEY = 24;
/** Key slots of a key-conditioned model's input: 24 keys and "any". */
export const KEY_SLOTS = KEY_COUNT + 1;

const MAJOR_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'Ab', 'A', 'Bb', 'B'] as const;
const MINOR_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'G#', 'A', 'Bb', 'B'] as const;

/** Krumhansl & Kessler (1982) probe-tone ratings, from the tonic upwards. */
export const KK_MAJOR_PROFILE = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88] as const;
export const KK_MINOR_PROFILE = [6.33, 2.68, 3.52, 5.38, 2.6, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17] as const;

export type KeyMode = 'major' | 'minor';

export interface Key {
  /** 0..23, see the file header. */
  index: number;
  /** Pitch class of the tonic, 0 = C. */
  tonic: number;
  mode: KeyMode;
  /** "D minor", "Eb major". */
  name: string;
}

export interface KeyEstimate extends Key {
  /** Pearson correlation of the pitch-class profile with this key's profile, −1..1. */
  correlation: number;
}

export function keyOf(index: number): Key {
  if (!Number.isInteger(index) || index < 0 || index >= KEY_COUNT) throw new Error(`key index must be 0..23, got ${index}`);
  return KEYS[index];
}

/** The 24 keys in index order: C major … B major, then C minor … B minor. */
export const KEYS: readonly Key[] = (['major', 'minor'] as const).flatMap((mode, m) =>
  Array.from({ length: 12 }, (_, tonic) => ({ index: m * 12 + tonic, tonic, mode, name: `${(mode === 'major' ? MAJOR_NAMES : MINOR_NAMES)[tonic]} ${mode}` })),
);

export const keyName = (index: number): string => (index === ANY_KEY ? 'any' : keyOf(index).name);

/** The key `semitones` higher (a transposed piece's key). ANY_KEY stays ANY_KEY. */
export function transposeKey(index: number, semitones: number): number {
  if (index === ANY_KEY) return ANY_KEY;
  const base = index >= 12 ? 12 : 0;
  return base + ((((index % 12) + semitones) % 12) + 12) % 12;
}

const LETTERS: Record<string, number> = { c: 0, d: 2, e: 4, f: 5, g: 7, a: 9, b: 11 };

/** What parseKey reads, for messages that refuse a key: "… must be " + KEY_EXPECTED. */
export const KEY_EXPECTED = 'a major or minor key such as "D minor", "C# minor", "Db major", "f#m" or "Bb" (sharps #, flats b; a bare letter is major), or "any"';

/**
 * "D minor", "C# minor", "Db major", "f#m", "Bb", "any" → a key index (ANY_KEY for "any");
 * undefined when the text names no key. A bare tonic means major; "m"/"min"/"minor" minor.
 */
export function parseKey(text: string): number | undefined {
  const t = text.trim().toLowerCase().replace(/\s+/g, ' ');
  if (t === 'any' || t === '') return t === 'any' ? ANY_KEY : undefined;
  const m = /^([a-g])\s*(#|♯|sharp|b|♭|flat)?\s*(major|maj|minor|min|m)?$/.exec(t.replace(/-/g, ' ').replace(/ /g, ''));
  if (!m) return undefined;
  let tonic = LETTERS[m[1]];
  if (m[2] === '#' || m[2] === '♯' || m[2] === 'sharp') tonic += 1;
  else if (m[2]) tonic -= 1;
  tonic = (tonic + 12) % 12;
  const minor = m[3] === 'minor' || m[3] === 'min' || m[3] === 'm';
  return (minor ? 12 : 0) + tonic;
}

/**
 * Duration-weighted pitch-class profile: how many grid steps each of the 12 pitch classes sounds,
 * counting only the part of each note inside [from, to) (in steps from the first onset).
 */
export function pitchClassWeights(tokens: readonly NoteToken[], from = 0, to = Infinity): Float64Array {
  const out = new Float64Array(12);
  let onset = 0;
  tokens.forEach((t, i) => {
    if (i > 0) onset += t.dt;
    const overlap = Math.min(to, onset + t.dur) - Math.max(from, onset);
    if (overlap > 0) out[t.pitch % 12] += overlap;
  });
  return out;
}

function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let mx = 0;
  let my = 0;
  for (let i = 0; i < x.length; i++) {
    mx += x[i] / x.length;
    my += y[i] / y.length;
  }
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  // A flat profile (every pitch class equally long, or none) says nothing about the key.
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}

/** Correlation of a 12-bin pitch-class profile with each of the 24 keys, in index order. */
export function keyCorrelations(profile: ArrayLike<number>): number[] {
  if (profile.length !== 12) throw new Error(`keyCorrelations: a pitch-class profile has 12 values, got ${profile.length}`);
  return KEYS.map((key) => {
    const template = key.mode === 'major' ? KK_MAJOR_PROFILE : KK_MINOR_PROFILE;
    // The profile rotated so that index 0 is this key's tonic.
    const rotated = Array.from({ length: 12 }, (_, d) => profile[(key.tonic + d) % 12]);
    return pearson(rotated, template);
  });
}

/** The best-correlating key of a pitch-class profile (ties: the lower index). */
export function bestKey(profile: ArrayLike<number>): KeyEstimate {
  const correlations = keyCorrelations(profile);
  let best = 0;
  for (let k = 1; k < correlations.length; k++) if (correlations[k] > correlations[best]) best = k;
  return { ...KEYS[best], correlation: correlations[best] };
}

/**
 * The key of a passage (Krumhansl–Schmuckler): the one of the 24 major and minor keys whose
 * Krumhansl–Kessler profile correlates best with the duration-weighted pitch-class profile.
 * Ties go to the earlier key. Throws for a passage without notes.
 */
export function estimateKey(tokens: readonly NoteToken[]): KeyEstimate {
  if (tokens.length === 0) throw new Error('estimateKey: no notes');
  return bestKey(pitchClassWeights(tokens));
}

/**
 * A key label for every note, for training a key-conditioned model: the piece is cut into
 * segments of `segment` notes, and each segment is labelled with the key estimated over it and
 * `context` notes either side (music in one key for a while reads as that key, and a
 * modulation moves the label with it).
 */
export function segmentKeys(tokens: readonly NoteToken[], segment = 64, context = 64): Uint8Array {
  const labels = new Uint8Array(tokens.length);
  for (let s = 0; s < tokens.length; s += segment) {
    const { index } = bestKey(pitchClassWeights(tokens.slice(Math.max(0, s - context), s + segment + context)));
    labels.fill(index, s, Math.min(tokens.length, s + segment));
  }
  return labels;
}
