/**
 * Hand split: which staff (1 treble, 2 bass) each note goes to. Every chord (notes sharing an
 * onset) is cut at one place in its pitch order; the cut chosen costs least, where notes below
 * middle C in the treble and above it in the bass cost by the semitone (more once they are well
 * past it), a hand spanning more than a tenth costs, and so does a hand jumping away from where it
 * has been playing (each note's distance from a running average of its staff's pitches).
 */
import { onsetGroups, type TimedNote } from './notes.ts';

export const TREBLE = 1;
export const BASS = 2;
export type Staff = typeof TREBLE | typeof BASS;

const MIDDLE_C = 60;
const HAND_SPAN = 16;
const MEMORY = 0.7;
/** Cost per semitone of a note away from where its hand has been playing. */
const CONTINUITY = 0.15;

interface HandState {
  treble: number;
  bass: number;
}

const overStep = (distance: number) => Math.max(0, distance) + 2 * Math.max(0, distance - 7);
const spanCost = (pitches: readonly number[]) => (pitches.length < 2 ? 0 : 3 * Math.max(0, pitches[pitches.length - 1] - pitches[0] - HAND_SPAN));
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Cost of giving `pitches` (ascending) below index `cut` to the bass and the rest to the treble. */
export function splitCost(pitches: readonly number[], cut: number, state: HandState): number {
  const bass = pitches.slice(0, cut);
  const treble = pitches.slice(cut);
  let cost = spanCost(bass) + spanCost(treble);
  for (const p of treble) cost += overStep(MIDDLE_C - 1 - p);
  for (const p of bass) cost += overStep(p - MIDDLE_C);
  for (const p of treble) cost += CONTINUITY * Math.abs(p - state.treble);
  for (const p of bass) cost += CONTINUITY * Math.abs(p - state.bass);
  return cost;
}

function bestCut(pitches: readonly number[], state: HandState): number {
  let best = 0;
  let bestCost = Infinity;
  for (let cut = 0; cut <= pitches.length; cut++) {
    const cost = splitCost(pitches, cut, state);
    if (cost < bestCost) [best, bestCost] = [cut, cost];
  }
  return best;
}

/** The staff of every note, in the order of `notes` (which must be sorted by onset, then pitch). */
export function splitHands(notes: readonly TimedNote[]): Staff[] {
  const state: HandState = { treble: 67, bass: 48 };
  const staves: Staff[] = [];
  for (const group of onsetGroups(notes)) {
    const pitches = group.map((n) => n.pitch);
    const cut = bestCut(pitches, state);
    pitches.forEach((_, i) => staves.push(i < cut ? BASS : TREBLE));
    if (cut > 0) state.bass = MEMORY * state.bass + (1 - MEMORY) * mean(pitches.slice(0, cut));
    if (cut < pitches.length) state.treble = MEMORY * state.treble + (1 - MEMORY) * mean(pitches.slice(cut));
  }
  return staves;
}
