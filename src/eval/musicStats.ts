/**
 * Descriptive statistics of note sequences, for comparing generated music with real music.
 * Everything works on note-tuple tokens (tokenize() turns notes into them), so real and
 * generated pieces are measured after the same quantisation.
 */
import { STEPS_PER_BEAT, VELOCITY_CENTRES, type NoteToken } from '../tokens/tokenize.ts';

/** Samples of five musical quantities of one or more pieces. */
export interface MusicDistributions {
  /** MIDI pitch of every note. */
  pitch: number[];
  /** Beats between successive distinct onsets (chord notes share an onset and add nothing). */
  ioi: number[];
  /** Length of every note in beats. */
  duration: number[];
  /** Velocity of every note (the centre of its bucket). */
  velocity: number[];
  /** Notes per distinct onset (1 = a single note). */
  chordSize: number[];
}

export const DISTRIBUTION_NAMES = ['pitch', 'ioi', 'duration', 'velocity', 'chordSize'] as const;

/** Distributions of one piece. The first token's dt (time before the piece) is not an IOI. */
export function musicDistributions(tokens: readonly NoteToken[]): MusicDistributions {
  const d: MusicDistributions = { pitch: [], ioi: [], duration: [], velocity: [], chordSize: [] };
  let chord = 0;
  tokens.forEach((t, i) => {
    d.pitch.push(t.pitch);
    d.duration.push(t.dur / STEPS_PER_BEAT);
    d.velocity.push(VELOCITY_CENTRES[t.vel]);
    if (i > 0 && t.dt > 0) {
      d.ioi.push(t.dt / STEPS_PER_BEAT);
      d.chordSize.push(chord);
      chord = 0;
    }
    chord++;
  });
  if (chord > 0) d.chordSize.push(chord);
  return d;
}

/** Pools the distributions of several pieces. */
export function pooledDistributions(pieces: readonly (readonly NoteToken[])[]): MusicDistributions {
  const all: MusicDistributions = { pitch: [], ioi: [], duration: [], velocity: [], chordSize: [] };
  for (const p of pieces) {
    const d = musicDistributions(p);
    for (const name of DISTRIBUTION_NAMES) for (const x of d[name]) all[name].push(x);
  }
  return all;
}

/** Which fields make two notes "the same" when looking for repeats and copies. */
export type NoteKey = 'dt-pitch-dur' | 'dt-pitch';

/**
 * One integer per note for the chosen fields (exact, no collisions: fields are small). The
 * first note's dt is time before the piece, not part of its music, so it counts as 0.
 */
export function noteKeys(tokens: readonly NoteToken[], key: NoteKey = 'dt-pitch-dur'): Int32Array {
  const out = new Int32Array(tokens.length);
  tokens.forEach((t, i) => {
    const dt = i === 0 ? 0 : t.dt;
    out[i] = key === 'dt-pitch' ? dt * 128 + t.pitch : (dt * 128 + t.pitch) * 128 + t.dur;
  });
  return out;
}

const BASE_A = 0x01000193;
const BASE_B = 0x5bd1e995;

/** Power of a base modulo 2^32. */
function power32(base: number, exponent: number): number {
  let r = 1;
  for (let i = 0; i < exponent; i++) r = Math.imul(r, base);
  return r;
}

/**
 * Rolling hashes of every n-gram of `keys`, as numbers below 2^53 (two 32-bit polynomial hashes
 * combined), calling `visit(hash, start)` for each n-gram in order.
 */
function forEachNgramHash(keys: ArrayLike<number>, n: number, visit: (hash: number, start: number) => void): void {
  if (keys.length < n || n < 1) return;
  const dropA = power32(BASE_A, n);
  const dropB = power32(BASE_B, n);
  let a = 0;
  let b = 0;
  for (let i = 0; i < keys.length; i++) {
    const x = keys[i] + 1;
    a = (Math.imul(a, BASE_A) + x) | 0;
    b = (Math.imul(b, BASE_B) + (x ^ 0x2545f491)) | 0;
    if (i >= n) {
      const old = keys[i - n] + 1;
      a = (a - Math.imul(old, dropA)) | 0;
      b = (b - Math.imul(old ^ 0x2545f491, dropB)) | 0;
    }
    if (i >= n - 1) visit((a >>> 0) * 2 ** 21 + (b >>> 11), i - n + 1);
  }
}

function sameRun(x: ArrayLike<number>, i: number, y: ArrayLike<number>, j: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (x[i + k] !== y[j + k]) return false;
  return true;
}

/**
 * Share of the n-grams of a piece (n consecutive notes, compared on `key`) that repeat an
 * n-gram seen earlier in the same piece: 0 for music that never repeats itself, near 1 for a
 * loop. A piece shorter than n notes has no n-grams and a loop rate of 0.
 */
export function loopRate(tokens: readonly NoteToken[], n = 16, key: NoteKey = 'dt-pitch-dur'): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`loopRate: n must be a whole number ≥ 1, got ${n}`);
  return repeatedNgramShare(noteKeys(tokens, key), n);
}

/**
 * Share of the n-grams of any integer sequence that repeat an n-gram seen earlier in it (every
 * hash hit verified item by item). 0 when the sequence has no n-grams. loopRate is this on note
 * keys; src/eval/realism.ts uses it on pitches and on intervals.
 */
export function repeatedNgramShare(keys: ArrayLike<number>, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`repeatedNgramShare: n must be a whole number ≥ 1, got ${n}`);
  const seen = new Map<number, number[]>();
  let total = 0;
  let repeats = 0;
  forEachNgramHash(keys, n, (hash, start) => {
    total++;
    const earlier = seen.get(hash);
    if (earlier?.some((s) => sameRun(keys, s, keys, start, n))) repeats++;
    else if (earlier) earlier.push(start);
    else seen.set(hash, [start]);
  });
  return total === 0 ? 0 : repeats / total;
}

/** Where the longest copied run was found. */
export interface CopiedRun {
  /** Consecutive items copied verbatim (0 when not even one matches). */
  length: number;
  /** Index of the training sequence holding the copy (−1 for none), and where the run starts in each. */
  piece: number;
  trainingStart: number;
  generatedStart: number;
}

/**
 * For each generated sequence, the longest run of consecutive items that occurs verbatim,
 * consecutively, in any training sequence. Exact: a binary search on the run length per
 * sequence, all sequences probed together round by round. A probe of length L hashes the
 * generated L-grams into a small map and streams the rolling L-gram hashes of the training
 * data past it; every hash hit is verified item by item and then extended left and right as
 * far as it matches, which lifts the search's lower bound. Cost: O(T) per distinct probe
 * length per round, about log2(G) rounds, for T training and G generated items; no index of
 * the training data is kept.
 */
export function longestCopiedRuns(generated: readonly ArrayLike<number>[], training: readonly ArrayLike<number>[]): CopiedRun[] {
  const best: CopiedRun[] = generated.map(() => ({ length: 0, piece: -1, trainingStart: -1, generatedStart: -1 }));
  const lo = generated.map(() => 1);
  const hi = generated.map((g) => g.length);
  for (;;) {
    // This round's probe length per open search, grouped by length.
    const probes = new Map<number, number[]>();
    generated.forEach((_, g) => {
      if (lo[g] > hi[g]) return;
      const mid = (lo[g] + hi[g]) >> 1;
      probes.set(mid, [...(probes.get(mid) ?? []), g]);
    });
    if (probes.size === 0) return best;
    for (const [n, searches] of probes) {
      const wanted = new Map<number, { g: number; start: number }[]>();
      for (const g of searches)
        forEachNgramHash(generated[g], n, (hash, start) => {
          const list = wanted.get(hash);
          if (list) list.push({ g, start });
          else wanted.set(hash, [{ g, start }]);
        });
      const found = new Map<number, CopiedRun>();
      training.forEach((keys, piece) =>
        forEachNgramHash(keys, n, (hash, trainingStart) => {
          const hits = wanted.get(hash);
          if (!hits) return;
          for (const { g, start } of hits) {
            if (found.has(g) || !sameRun(generated[g], start, keys, trainingStart, n)) continue;
            // Extend the verified match as far as it goes in both directions.
            let before = 0;
            while (start - before > 0 && trainingStart - before > 0 && generated[g][start - before - 1] === keys[trainingStart - before - 1]) before++;
            let after = 0;
            const gen = generated[g];
            while (start + n + after < gen.length && trainingStart + n + after < keys.length && gen[start + n + after] === keys[trainingStart + n + after]) after++;
            found.set(g, { length: n + before + after, piece, trainingStart: trainingStart - before, generatedStart: start - before });
          }
        }),
      );
      for (const g of searches) {
        const run = found.get(g);
        if (run) {
          if (run.length > best[g].length) best[g] = run;
          lo[g] = run.length + 1;
        } else hi[g] = n - 1;
      }
    }
  }
}

/**
 * Longest run of consecutive generated notes copied verbatim from any training piece, notes
 * compared on `key` ((dt, pitch, dur) by default: the rhythm and the keys, not the dynamics).
 */
export function longestCopiedRun(generated: readonly NoteToken[], trainingPieces: readonly (readonly NoteToken[])[], key: NoteKey = 'dt-pitch-dur'): CopiedRun {
  return longestCopiedRuns([noteKeys(generated, key)], trainingPieces.map((p) => noteKeys(p, key)))[0];
}
