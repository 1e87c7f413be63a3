/**
 * Timing marginals: how a set of pieces spreads its onset gaps and durations over bins of beat
 * fractions. The timing pull in training (network.ts timingPull) matches the model's own pieces
 * to the real ones with these.
 */
import { bandOf } from './bands.ts';
import type { NoteToken } from './tokenize.ts';

/**
 * Bins of onset gaps and durations (grid steps, 12 to the beat) that the timing pull matches:
 * each bin runs from its edge up to the next (the last from 2 beats up): none (a chord), under
 * a sixteenth, a sixteenth, an eighth-note triplet up to an eighth, an eighth, up to a beat, a
 * beat, up to two beats, and longer.
 */
export const TIMING_BIN_EDGES = [0, 1, 3, 4, 6, 7, 12, 13, 24] as const;

/** The TIMING_BIN_EDGES bin of a gap or duration of `steps` grid steps. */
export function timingBin(steps: number): number {
  return bandOf(TIMING_BIN_EDGES, steps);
}

/** Share of the notes in each TIMING_BIN_EDGES bin, of the onset gaps (the first note's excepted) and of the durations. */
export interface TimingMarginals {
  dt: number[];
  dur: number[];
}

export function timingMarginals(pieces: readonly (readonly NoteToken[])[]): TimingMarginals {
  const dt = new Array<number>(TIMING_BIN_EDGES.length).fill(0);
  const dur = new Array<number>(TIMING_BIN_EDGES.length).fill(0);
  let gaps = 0;
  let notes = 0;
  for (const tokens of pieces) {
    tokens.forEach((t, i) => {
      if (i > 0) {
        dt[timingBin(t.dt)]++;
        gaps++;
      }
      dur[timingBin(t.dur)]++;
      notes++;
    });
  }
  return { dt: dt.map((n) => n / Math.max(1, gaps)), dur: dur.map((n) => n / Math.max(1, notes)) };
}

/**
 * A [classes × bins] 0/1 matrix, row-major: row c has a 1 in the bin of the value class c stands
 * for (`stepsOf`: the gap head's class is its gap, the duration head's class c is duration c + 1).
 */
export function timingBinMatrix(classes: number, stepsOf: (c: number) => number): Float32Array {
  const bins = TIMING_BIN_EDGES.length;
  const m = new Float32Array(classes * bins);
  for (let c = 0; c < classes; c++) m[c * bins + timingBin(stepsOf(c))] = 1;
  return m;
}
