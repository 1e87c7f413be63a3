/**
 * Notation grid. The token grid (12 steps a beat) holds sixteenths (3 steps), eighth triplets (4)
 * and sixteenth triplets (2), but a score reads badly when they mix freely. Each rhythm window
 * (a beat in simple metres, an eighth in 6/8) gets one grid from the onsets that fall in it:
 * 3 (straight sixteenths) unless more onsets sit on 4 (eighth triplets) or on 2 (sixteenth
 * triplets); onsets off that grid move to its nearest point, and note ends snap to the grid of the
 * window they end in. Legato ends close up to the next onset of the same hand (see staffEvents).
 */
import type { Metre } from './metre.ts';
import type { TimedNote } from './notes.ts';

export type GridUnit = 2 | 3 | 4;

/** The grid of one window from the positions (0..window-1) of the onsets in it. */
export function windowGrid(positions: readonly number[], windowSteps: number): GridUnit {
  const on = (unit: number) => positions.filter((p) => p % unit === 0).length;
  const straight = on(3);
  const triplet8 = windowSteps % 4 === 0 ? on(4) : -1;
  const triplet16 = on(2);
  if (straight >= triplet8 && straight >= triplet16) return 3;
  return triplet8 >= triplet16 ? 4 : 2;
}

/** Grid unit of every window of the score (index = floor(step / windowSteps)). */
export function windowGrids(onsets: readonly number[], windowSteps: number): GridUnit[] {
  const positions: number[][] = [];
  for (const t of onsets) (positions[Math.floor(t / windowSteps)] ??= []).push(t % windowSteps);
  return Array.from(positions, (p) => windowGrid(p ?? [], windowSteps));
}

/** Moves a step to the nearest point of its window's grid (halfway: `roundUp` decides). */
export function snapStep(step: number, grids: readonly GridUnit[], windowSteps: number, roundUp: boolean): number {
  const w = Math.floor(step / windowSteps);
  const r = step - w * windowSteps;
  const unit = grids[w] ?? 3;
  if (r % unit === 0) return step;
  const down = r - (r % unit);
  const up = Math.min(down + unit, windowSteps);
  const pick = r - down < up - r || (r - down === up - r && !roundUp) ? down : up;
  return w * windowSteps + pick;
}

/**
 * Shifts the notes by the bar-line offset and snaps onsets and ends to the notation grid;
 * a note that would vanish keeps one grid unit. Same-pitch notes that land on one onset merge.
 */
export function quantiseNotes(notes: readonly TimedNote[], metre: Metre, offset: number): TimedNote[] {
  const W = metre.windowSteps;
  const grids = windowGrids(notes.map((n) => n.onset + offset), W);
  const byKey = new Map<number, TimedNote>();
  for (const n of notes) {
    const onset = snapStep(n.onset + offset, grids, W, false);
    const unit = grids[Math.floor(onset / W)] ?? 3;
    const end = Math.max(onset + unit, snapStep(n.end + offset, grids, W, true));
    const key = onset * 128 + n.pitch;
    const seen = byKey.get(key);
    if (!seen || seen.end < end) byKey.set(key, { onset, end, pitch: n.pitch, vel: n.vel });
  }
  return [...byKey.values()].sort((a, b) => a.onset - b.onset || a.pitch - b.pitch);
}
