/**
 * Key signatures and pitch spelling. A key's signature comes from its tonic on the line of
 * fifths (C# major is written as Db major, Eb minor with six flats). A pitch is spelled as a
 * degree of the key: the seven scale notes as the signature has them, and the five others as
 * the usual chromatic degrees: in major #1, b3, #4, b6, b7 (D major: D#, F, G#, Bb, C); in minor
 * b2, #3, #4, #6, #7 (the raised sixth and leading tone: D minor has B and C#). Accidentals
 * are then printed where a note differs from the signature or from an earlier accidental on the
 * same staff line in the bar.
 */
import { keyOf } from '../../tokens/key.ts';

export type Step = 'C' | 'D' | 'E' | 'F' | 'G' | 'A' | 'B';
export interface Spelled {
  step: Step;
  /** -2..2 semitones. */
  alter: number;
  octave: number;
}

const STEPS_ORDER: readonly Step[] = ['C', 'D', 'E', 'F', 'G', 'A', 'B'];
const STEP_PC: Readonly<Record<Step, number>> = { C: 0, D: 2, E: 4, F: 5, G: 7, A: 9, B: 11 };
const FIFTHS_ORDER = 'FCGDAEB';
/** Signature of the major key on each tonic pitch class (Db, Eb, F#, Ab, Bb spellings). */
const MAJOR_FIFTHS = [0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5] as const;
const MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11] as const;
const MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10] as const;
/** Chromatic offsets from the tonic → [scale degree, change from the diatonic note]. */
const MAJOR_CHROMATIC: Readonly<Record<number, [number, number]>> = { 1: [0, 1], 3: [2, -1], 6: [3, 1], 8: [5, -1], 10: [6, -1] };
const MINOR_CHROMATIC: Readonly<Record<number, [number, number]>> = { 1: [1, -1], 4: [2, 1], 6: [3, 1], 9: [5, 1], 11: [6, 1] };

/** <fifths> of a key index 0..23: sharps positive, flats negative. */
export function keyFifths(keyIndex: number): number {
  const key = keyOf(keyIndex);
  if (key.mode === 'major') return MAJOR_FIFTHS[key.tonic];
  return key.tonic === 3 ? -6 : MAJOR_FIFTHS[(key.tonic + 3) % 12];
}

/** The note at position q on the line of fifths (0 = C, 1 = G, -1 = F ...). */
function noteOnFifths(q: number): { step: Step; alter: number } {
  const i = q + 1;
  return { step: FIFTHS_ORDER[((i % 7) + 7) % 7] as Step, alter: Math.floor(i / 7) };
}

/** The alteration a key signature gives a step (+1 sharp, -1 flat, 0). */
export function signatureAlter(fifths: number, step: Step): number {
  if (fifths > 0) return FIFTHS_ORDER.slice(0, fifths).includes(step) ? 1 : 0;
  if (fifths < 0) return [...FIFTHS_ORDER].reverse().slice(0, -fifths).includes(step) ? -1 : 0;
  return 0;
}

/** Spells a MIDI pitch in a key (index 0..23). */
export function spellPitch(pitch: number, keyIndex: number): Spelled {
  const key = keyOf(keyIndex);
  const fifths = keyFifths(keyIndex);
  const tonic = noteOnFifths(key.mode === 'major' ? fifths : fifths + 3);
  const offset = (((pitch - key.tonic) % 12) + 12) % 12;
  const scale = key.mode === 'major' ? MAJOR_SCALE : MINOR_SCALE;
  const diatonic = scale.indexOf(offset as never);
  const [degree, change] = diatonic >= 0 ? [diatonic, 0] : (key.mode === 'major' ? MAJOR_CHROMATIC : MINOR_CHROMATIC)[offset];
  const step = STEPS_ORDER[(STEPS_ORDER.indexOf(tonic.step) + degree) % 7];
  const alter = signatureAlter(fifths, step) + change;
  const octave = Math.floor((pitch - alter - STEP_PC[step]) / 12) - 1;
  return { step, alter, octave };
}

export type AccidentalName = 'sharp' | 'flat' | 'natural' | 'double-sharp' | 'flat-flat';
const ACCIDENTAL_NAMES: Readonly<Record<number, AccidentalName>> = { [-2]: 'flat-flat', [-1]: 'flat', 0: 'natural', 1: 'sharp', 2: 'double-sharp' };

/** Which accidentals to print in one bar of one staff: call `accidental` in the order notes appear. */
export class BarAccidentals {
  private readonly inForce = new Map<string, number>();
  constructor(private readonly fifths: number) {}

  /** The accidental to print for this note, or undefined; a tied continuation prints none and changes nothing. */
  accidental(note: Spelled, tiedFromBefore: boolean): AccidentalName | undefined {
    if (tiedFromBefore) return undefined;
    const line = `${note.step}${note.octave}`;
    const current = this.inForce.get(line) ?? signatureAlter(this.fifths, note.step);
    if (current === note.alter) return undefined;
    this.inForce.set(line, note.alter);
    return ACCIDENTAL_NAMES[note.alter];
  }
}
