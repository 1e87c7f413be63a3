/**
 * The model's input at step t describes the previous note (t-1) and the composer, as a
 * multi-hot vector. A dense layer on a multi-hot vector is exactly a sum of embeddings, and it
 * needs no gather (whose gradient, UnsortedSegmentSum, the wasm backend lacks).
 */
import { DT_CLASSES, DUR_CLASSES, PITCH_CLASSES, PITCH_MIN, STEPS_PER_BEAT, VEL_CLASSES, type NoteToken } from '../../tokens/tokenize.ts';

export const OFFSET_DT = 0;
export const OFFSET_PITCH = OFFSET_DT + DT_CLASSES;
export const OFFSET_DUR = OFFSET_PITCH + PITCH_CLASSES;
export const OFFSET_VEL = OFFSET_DUR + DUR_CLASSES;
export const OFFSET_BEATPOS = OFFSET_VEL + VEL_CLASSES;
export const OFFSET_START = OFFSET_BEATPOS + STEPS_PER_BEAT;
export const OFFSET_COMPOSER = OFFSET_START + 1;

/** Input width for a model that knows `composers` composers (plus one "any" slot). */
export function inputWidth(composers: number): number {
  return OFFSET_COMPOSER + composers + 1;
}

/**
 * Writes the input row for one step into `out` at `rowOffset` (the row must be zero).
 * `previous` undefined means the start of a piece. `composer` is an index; composers = "any".
 */
export function writeInputRow(out: Float32Array, rowOffset: number, previous: NoteToken | undefined, previousBeatPos: number, composer: number): void {
  if (previous === undefined) {
    out[rowOffset + OFFSET_START] = 1;
  } else {
    out[rowOffset + OFFSET_DT + previous.dt] = 1;
    out[rowOffset + OFFSET_PITCH + previous.pitch - PITCH_MIN] = 1;
    out[rowOffset + OFFSET_DUR + previous.dur - 1] = 1;
    out[rowOffset + OFFSET_VEL + previous.vel] = 1;
    out[rowOffset + OFFSET_BEATPOS + previousBeatPos] = 1;
  }
  out[rowOffset + OFFSET_COMPOSER + composer] = 1;
}

/** Class index of each field of a token, as the output heads number them. */
export function targetIndices(t: NoteToken): [number, number, number, number] {
  return [t.dt, t.pitch - PITCH_MIN, t.dur - 1, t.vel];
}

export const HEAD_SIZES = [DT_CLASSES, PITCH_CLASSES, DUR_CLASSES, VEL_CLASSES] as const;
/** The four heads, in the order they are sampled. */
export const HEAD_NAMES = ['dt', 'pitch', 'dur', 'vel'] as const;

/** Loop input (Hyperparameters.loopInput): a column for each of these lengths (in notes) that the loop reaches. */
export const LOOP_LENGTH_STEPS = [2, 4, 6, 8, 12, 16, 24, 32, 48, 64] as const;
/** Loop input: the loop's period in one of these bands (1, 2, 3–4, 5–8, 9–16 notes), by its upper bound. */
export const LOOP_PERIOD_BANDS = [1, 2, 4, 8, 16] as const;
/** Columns of the loop input: the length steps, then the period bands. */
export const LOOP_INPUT_SLOTS = LOOP_LENGTH_STEPS.length + LOOP_PERIOD_BANDS.length;

/**
 * The loop-input columns that are 1 for a note through which a loop of `length` notes and
 * `period` runs (advanceLoop): one per length step reached (a thermometer, so that the rare long
 * loops share the rows of the shorter ones) and the period's band; none for no loop.
 */
export function loopInputColumns(run: { length: number; period: number }): number[] {
  if (run.length < LOOP_LENGTH_STEPS[0]) return [];
  const columns: number[] = [];
  LOOP_LENGTH_STEPS.forEach((step, i) => run.length >= step && columns.push(i));
  const band = LOOP_PERIOD_BANDS.findIndex((upper) => run.period <= upper);
  columns.push(LOOP_LENGTH_STEPS.length + (band < 0 ? LOOP_PERIOD_BANDS.length - 1 : band));
  return columns;
}
