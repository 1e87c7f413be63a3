/**
 * Musical keys: the 24 major and minor keys, their names (with enharmonic spellings accepted
 * when parsing), and a key estimate of a run of notes with the Krumhansl–Kessler profiles
 * (duration-weighted pitch-class histogram, Pearson correlation with the 24 rotated profiles).
 *
 * Key index k: 0..11 are C major .. B major (tonic = k), 12..23 are C minor .. B minor
 * (tonic = k - 12). ANY_KEY (24) is "any key", the model's unconditioned slot.
 */
import { STEPS_PER_BEAT, type NoteToken } from './tokenize.ts';

export const KEY_COUNT = 24;
export const ANY_KEY = 24;
/** Key slots of a key-conditioned model's input: 24 keys and "any". */
export const KEY_SLOTS = KEY_COUNT + 1;

const TONIC_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'Ab', 'A', 'Bb', 'B'] as const;
const MINOR_TONIC_NAMES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'Bb', 'B'] as const;

/** Krumhansl–Kessler probe-tone profiles, tonic first. */
const MAJOR_PROFILE = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88];
const MINOR_PROFILE = [6.33, 2.68, 3.52, 5.38, 2.6, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17];

export interface Key {
  /** 0..23, see the file header. */
  index: number;
  tonic: number;
  mode: 'major' | 'minor';
  name: string;
}

export function keyOf(index: number): Key {
  if (!Number.isInteger(index) || index < 0 || index >= KEY_COUNT) throw new Error(`key index must be 0..23, got ${index}`);
  const minor = index >= 12;
  const tonic = index % 12;
  return { index, tonic, mode: minor ? 'minor' : 'major', name: `${minor ? MINOR_TONIC_NAMES[tonic] : TONIC_NAMES[tonic]} ${minor ? 'minor' : 'major'}` };
}

export const keyName = (index: number): string => (index === ANY_KEY ? 'any' : keyOf(index).name);

/** The key `semitones` higher (a transposed piece's key). ANY_KEY stays ANY_KEY. */
export function transposeKey(index: number, semitones: number): number {
  if (index === ANY_KEY) return ANY_KEY;
  const base = index >= 12 ? 12 : 0;
  return base + ((((index % 12) + semitones) % 12) + 12) % 12;
}

const LETTERS: Record<string, number> = { c: 0, d: 2, e: 4, f: 5, g: 7, a: 9, b: 11 };

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

/** Duration-weighted pitch-class histogram of tokens [from, to). */
export function pitchClassWeights(tokens: readonly NoteToken[], from = 0, to = tokens.length): Float64Array {
  const w = new Float64Array(12);
  for (let i = Math.max(0, from); i < Math.min(to, tokens.length); i++) w[tokens[i].pitch % 12] += Math.min(tokens[i].dur, 2 * STEPS_PER_BEAT);
  return w;
}

function pearson(x: ArrayLike<number>, y: ArrayLike<number>, shift: number): number {
  let mx = 0;
  let my = 0;
  for (let i = 0; i < 12; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= 12;
  my /= 12;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < 12; i++) {
    const a = x[(i + shift) % 12] - mx;
    const b = y[i] - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

/** Correlation of a pitch-class histogram with each of the 24 key profiles (index order). */
export function keyCorrelations(weights: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let k = 0; k < KEY_COUNT; k++) out.push(pearson(weights, k < 12 ? MAJOR_PROFILE : MINOR_PROFILE, k % 12));
  return out;
}

/** The best-correlating key of a pitch-class histogram, with its correlation. */
export function bestKey(weights: ArrayLike<number>): { key: number; correlation: number } {
  const c = keyCorrelations(weights);
  let key = 0;
  for (let k = 1; k < KEY_COUNT; k++) if (c[k] > c[key]) key = k;
  return { key, correlation: c[key] };
}

/** Key estimate of a whole run of notes; undefined for an empty run. */
export function estimateKey(tokens: readonly NoteToken[]): (Key & { correlation: number }) | undefined {
  if (tokens.length === 0) return undefined;
  const { key, correlation } = bestKey(pitchClassWeights(tokens));
  return { ...keyOf(key), correlation };
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
    const { key } = bestKey(pitchClassWeights(tokens, s - context, s + segment + context));
    labels.fill(key, s, Math.min(tokens.length, s + segment));
  }
  return labels;
}
