/**
 * The score of a piece as MusicXML 4.0 (score-partwise, one piano part on two staves), made from
 * the same note tokens as the MIDI. Pure: no files, no clock. The steps, each in its own module
 * under score/:
 *   metre.ts     time signature (4/4, 3/4, 6/8) and the first bar line, from the notes
 *   quantise.ts  onsets and ends on a notation grid per window (sixteenths or triplets)
 *   hands.ts     treble/bass split per chord, with continuity
 *   rhythm.ts    one voice per staff, bars, notated values, ties, triplet brackets, beams
 *   spelling.ts  key signature, pitch spelling in the key, accidentals per bar
 *   musicxml.ts  the XML text
 * docs/score.md describes the choices and the limits.
 */
import { ANY_KEY, estimateKey, keyOf } from '../tokens/key.ts';
import { VELOCITY_CENTRES, type NoteToken } from '../tokens/tokenize.ts';
import { BASS, TREBLE, splitHands } from './score/hands.ts';
import { chooseMetre, type TimeSignatureName } from './score/metre.ts';
import { musicXmlText, type ScoreLayout } from './score/musicxml.ts';
import { timedNotes, type TimedNote } from './score/notes.ts';
import { quantiseNotes } from './score/quantise.ts';
import { barSlice, notateBar, staffEvents, type StaffEvent } from './score/rhythm.ts';
import { keyFifths } from './score/spelling.ts';

export type { ScoreLayout } from './score/musicxml.ts';
export type { TimeSignatureName } from './score/metre.ts';

export interface ScoreInput {
  /** The piece's note tokens (the same as the MIDI's). */
  tokens: readonly NoteToken[];
  /** Quarter notes per minute. */
  tempoBpm: number;
  /** Key index 0..23, or ANY_KEY to estimate it from the notes. */
  key: number;
  title: string;
  /** Credit line, e.g. "nocturne, in the style of Chopin". */
  composer: string;
  /** The training data's attribution (the model's, modelAttribution), printed at the foot and in <rights>. */
  attribution: string;
  /** Fixes the time signature instead of choosing it from the piece. */
  timeSignature?: TimeSignatureName;
  /** Fixes the rest steps before the first note (a pickup), 0 .. bar - 1, a multiple of the metre's window (12, or 6 in 6/8); default: chosen with the metre. */
  barOffset?: number;
}

/** Dynamic mark for a mean MIDI velocity. */
export function dynamicMark(velocity: number): string {
  const marks: [number, string][] = [[40, 'pp'], [52, 'p'], [62, 'mp'], [75, 'mf'], [90, 'f']];
  return marks.find(([edge]) => velocity < edge)?.[1] ?? 'ff';
}

/**
 * A dynamic per bar where the level changes: each bar's mean velocity gives a mark, printed when
 * it differs from the last printed one and the next bar (if it has notes) agrees with it.
 */
export function barDynamics(notes: readonly TimedNote[], barSteps: number, bars: number): (string | undefined)[] {
  const sums = new Float64Array(bars);
  const counts = new Float64Array(bars);
  for (const n of notes) {
    const b = Math.floor(n.onset / barSteps);
    sums[b] += VELOCITY_CENTRES[n.vel];
    counts[b] += 1;
  }
  const level = (b: number) => (counts[b] ? dynamicMark(sums[b] / counts[b]) : undefined);
  let printed: string | undefined;
  return Array.from({ length: bars }, (_, b) => {
    const mark = level(b);
    const next = b + 1 < bars ? level(b + 1) : undefined;
    if (!mark || mark === printed || (next !== undefined && next !== mark && printed !== undefined)) return undefined;
    printed = mark;
    return mark;
  });
}

function checkInput(input: ScoreInput): void {
  if (input.tokens.length === 0) throw new Error('score: no notes');
  if (!(input.tempoBpm > 0 && Number.isFinite(input.tempoBpm))) throw new Error(`score: tempo must be a positive number of BPM, got ${input.tempoBpm}`);
  if (input.key !== ANY_KEY) keyOf(input.key);
}

/** Everything the XML is written from: metre, key, and the notated bars of both staves. */
export function layoutScore(input: ScoreInput): ScoreLayout {
  checkInput(input);
  const raw = timedNotes(input.tokens);
  const chosen = chooseMetre(raw, input.timeSignature);
  const { metre } = chosen;
  const offset = input.barOffset ?? chosen.offset;
  if (!(Number.isInteger(offset) && offset >= 0 && offset < metre.barSteps && offset % metre.windowSteps === 0)) throw new Error(`score: bar offset must be a multiple of ${metre.windowSteps} from 0 to ${metre.barSteps - 1} steps in ${metre.name}, got ${offset}`);
  const notes = quantiseNotes(raw, metre, offset);
  const staves = splitHands(notes);
  const lastEnd = Math.max(...notes.map((n) => n.end));
  const barCount = Math.max(1, Math.ceil(lastEnd / metre.barSteps));
  const total = barCount * metre.barSteps;
  const events = (staff: number): StaffEvent[] => staffEvents(notes.filter((_, i) => staves[i] === staff), total, metre.beatSteps);
  const treble = events(TREBLE);
  const bass = events(BASS);
  const dynamics = barDynamics(notes, metre.barSteps, barCount);
  const keyIndex = input.key === ANY_KEY ? estimateKey(input.tokens).index : input.key;
  return {
    title: input.title,
    composer: input.composer,
    attribution: input.attribution,
    tempoBpm: input.tempoBpm,
    keyIndex,
    fifths: keyFifths(keyIndex),
    mode: keyOf(keyIndex).mode,
    metre,
    offset,
    bars: Array.from({ length: barCount }, (_, b) => ({
      treble: notateBar(barSlice(treble, metre, b), metre),
      bass: notateBar(barSlice(bass, metre, b), metre),
      dynamic: dynamics[b],
    })),
  };
}

/** The MusicXML 4.0 document of a piece. */
export function scoreToMusicXml(input: ScoreInput): string {
  return musicXmlText(layoutScore(input));
}
