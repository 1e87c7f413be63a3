/**
 * The score's view of a piece: notes on an absolute timeline of token-grid steps
 * (STEPS_PER_BEAT = 12 per quarter note), with their onset, end, pitch and velocity bucket.
 */
import { STEPS_PER_BEAT, type NoteToken } from '../../tokens/tokenize.ts';

export const STEPS = STEPS_PER_BEAT;

export interface TimedNote {
  /** Onset in grid steps from the start of the score. */
  onset: number;
  /** End in grid steps (exclusive), > onset. */
  end: number;
  /** MIDI pitch. */
  pitch: number;
  /** Velocity bucket of the token (0..7). */
  vel: number;
}

/** Tokens → notes on an absolute step timeline; the first note starts at 0 (its dt is ignored, as in detokenize). */
export function timedNotes(tokens: readonly NoteToken[]): TimedNote[] {
  const out: TimedNote[] = [];
  let onset = 0;
  tokens.forEach((t, i) => {
    if (i > 0) onset += t.dt;
    out.push({ onset, end: onset + Math.max(1, t.dur), pitch: t.pitch, vel: t.vel });
  });
  return out.sort(byOnsetThenPitch);
}

export function byOnsetThenPitch(a: TimedNote, b: TimedNote): number {
  return a.onset - b.onset || a.pitch - b.pitch;
}

/** Notes grouped by onset (a chord is one group), in onset order. */
export function onsetGroups<T extends { onset: number }>(notes: readonly T[]): T[][] {
  const groups: T[][] = [];
  for (const n of notes) {
    const last = groups[groups.length - 1];
    if (last && last[0].onset === n.onset) last.push(n);
    else groups.push([n]);
  }
  return groups;
}
