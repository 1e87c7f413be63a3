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
export const HEAD_NAMES = ['dt', 'pitch', 'dur', 'vel'] as const;
