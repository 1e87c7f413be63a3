/**
 * Note-tuple tokens: one token per note, factorised into four fields
 *   dt     onset minus the previous note's onset, on a grid of 1/12 beat (0 = same chord)
 *   pitch  the real MIDI pitch (octave kept), 21..108
 *   dur    length on the same grid, 1..96 steps (up to 8 beats)
 *   vel    velocity bucket (8 buckets)
 * Notes are ordered by onset, then by pitch from low to high, so a chord is a run of tokens
 * with dt = 0. One token is one note, so "N notes" is exactly N sampling steps.
 * The 1/12-beat grid holds sixteenths (3 steps), eighth-note triplets (4), sixteenth
 * triplets (2) and everything coarser exactly.
 */
import type { PianoNote } from '../midi/types.ts';

export const TOKEN_SCHEME = 'note-tuple-v1';
export const STEPS_PER_BEAT = 12;
export const MAX_DT = 96; // 8 beats
export const MAX_DUR = 96; // 8 beats
export const PITCH_MIN = 21;
export const PITCH_MAX = 108;
/** Upper edges (exclusive) of the velocity buckets; the last bucket runs to 127. */
export const VELOCITY_EDGES = [30, 40, 50, 60, 70, 85, 100, 128] as const;
/** Velocity written back for each bucket (its middle). */
export const VELOCITY_CENTRES = [22, 35, 45, 55, 65, 77, 92, 112] as const;

export const DT_CLASSES = MAX_DT + 1;
export const PITCH_CLASSES = PITCH_MAX - PITCH_MIN + 1;
export const DUR_CLASSES = MAX_DUR;
export const VEL_CLASSES = VELOCITY_EDGES.length;

export interface NoteToken {
  /** 0..MAX_DT grid steps since the previous onset. */
  dt: number;
  /** MIDI pitch PITCH_MIN..PITCH_MAX. */
  pitch: number;
  /** 1..MAX_DUR grid steps. */
  dur: number;
  /** 0..VEL_CLASSES-1. */
  vel: number;
}

/** Everything a model folder must agree on with this code. */
export function tokenSchemeSpec() {
  return {
    scheme: TOKEN_SCHEME,
    stepsPerBeat: STEPS_PER_BEAT,
    dtClasses: DT_CLASSES,
    pitchMin: PITCH_MIN,
    pitchMax: PITCH_MAX,
    durClasses: DUR_CLASSES,
    velocityEdges: [...VELOCITY_EDGES],
  };
}

export function velocityBucket(velocity: number): number {
  for (let b = 0; b < VELOCITY_EDGES.length; b++) if (velocity < VELOCITY_EDGES[b]) return b;
  return VELOCITY_EDGES.length - 1;
}

/** Moves a pitch by octaves into the piano range (only out-of-range seed notes need this). */
export function foldPitch(pitch: number): number {
  let p = pitch;
  while (p < PITCH_MIN) p += 12;
  while (p > PITCH_MAX) p -= 12;
  return p;
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Notes (any order) → tokens. Onsets are quantised absolutely, so errors never accumulate. */
export function tokenize(notes: readonly PianoNote[]): NoteToken[] {
  const quantised = notes
    .map((n) => ({
      onset: Math.round(n.startBeat * STEPS_PER_BEAT),
      pitch: foldPitch(n.pitch),
      dur: clamp(Math.round(n.durationBeats * STEPS_PER_BEAT), 1, MAX_DUR),
      vel: velocityBucket(n.velocity),
    }))
    .sort((a, b) => a.onset - b.onset || a.pitch - b.pitch);
  const tokens: NoteToken[] = [];
  let previous = quantised.length > 0 ? quantised[0].onset : 0;
  for (const q of quantised) {
    tokens.push({ dt: clamp(q.onset - previous, 0, MAX_DT), pitch: q.pitch, dur: q.dur, vel: q.vel });
    previous = q.onset;
  }
  return tokens;
}

/** Velocities a bucket is written back as when spread: its range (the outer buckets capped at 15 and 120). */
export const VELOCITY_RANGES: readonly (readonly [number, number])[] = VELOCITY_EDGES.map((hi, b) => [b === 0 ? 15 : VELOCITY_EDGES[b - 1], Math.min(hi - 1, 120)] as const);

/**
 * A velocity inside bucket `b`, drawn with `uniform` (two draws in [0, 1), a triangular spread
 * around the bucket's centre), so that a piece has many velocities as played music does instead
 * of eight.
 */
export function spreadVelocity(b: number, uniform: () => number): number {
  const [lo, hi] = VELOCITY_RANGES[b];
  const centre = VELOCITY_CENTRES[b];
  const u = (uniform() + uniform()) / 2; // 0..1, peaked at 1/2
  const v = u < 0.5 ? lo + (centre - lo) * 2 * u : centre + (hi - centre) * (2 * u - 1);
  return Math.round(Math.min(hi, Math.max(lo, v)));
}

/**
 * Tokens → notes, timed in beats and (at a constant tempo) seconds.
 * The first token's dt is ignored: a piece starts at its first note. Velocities are each
 * bucket's centre, or spread inside the bucket with `uniform` (spreadVelocity).
 */
export function detokenize(tokens: readonly NoteToken[], tempoBpm = 100, startBeat = 0, uniform?: () => number): PianoNote[] {
  const secondsPerBeat = 60 / tempoBpm;
  const notes: PianoNote[] = [];
  let onset = 0;
  tokens.forEach((t, i) => {
    if (i > 0) onset += t.dt;
    const beat = startBeat + onset / STEPS_PER_BEAT;
    const length = t.dur / STEPS_PER_BEAT;
    notes.push({
      pitch: t.pitch,
      velocity: uniform ? spreadVelocity(t.vel, uniform) : VELOCITY_CENTRES[t.vel],
      startBeat: beat,
      durationBeats: length,
      startSeconds: beat * secondsPerBeat,
      durationSeconds: length * secondsPerBeat,
    });
  });
  return notes;
}

/** Onset of every note in grid steps from the first note's (which is 0): the running dt sum. */
export function noteOnsets(tokens: readonly NoteToken[]): Float64Array {
  const out = new Float64Array(tokens.length);
  for (let i = 1; i < tokens.length; i++) out[i] = out[i - 1] + tokens[i].dt;
  return out;
}

/** Onset position within the beat (0..STEPS_PER_BEAT-1) of every token. */
export function beatPositions(tokens: readonly NoteToken[]): Int32Array {
  return Int32Array.from(noteOnsets(tokens), (onset) => onset % STEPS_PER_BEAT);
}

/** A stable hash of the music itself (not the bytes): FNV-1a over the token fields. */
export function tokenHash(tokens: readonly NoteToken[]): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ tokens.length;
  for (const t of tokens) {
    for (const v of [t.dt, t.pitch, t.dur, t.vel]) {
      h1 = Math.imul(h1 ^ v, 0x01000193) >>> 0;
      h2 = Math.imul(h2 ^ (v + 0x9e), 0x85ebca6b) >>> 0;
    }
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}
