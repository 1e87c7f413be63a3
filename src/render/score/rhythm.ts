/**
 * Rhythm notation of one staff: events (chords and rests, one voice per staff) cut at bar
 * lines and written as notated values, tied where one value does not suffice.
 *
 * - One voice per staff: a chord lasts until its longest note ends or the staff's next onset,
 *   whichever comes first (a note held under a moving part of the same hand is shortened; the
 *   MIDI keeps its length). An end closer to the next onset than half the distance joins it;
 *   a shorter note followed within a beat by the next onset is written up to it with a
 *   staccato dot (rather than a sixteenth and rests).
 * - Straight windows are written with whole .. sixteenth values (dotted where it fits), each
 *   value starting where it shows the beat: a value shorter than the beat stays inside its
 *   beat, a half note starts on beat 1 or 3 of 4/4 and nothing that starts on beat 2 or 4
 *   crosses the middle of the bar, in 6/8 values from a dotted quarter are whole beats.
 * - A window whose boundaries are not all on the sixteenth grid is a triplet window: a beat
 *   (simple metres) or an eighth (6/8) with a 3:2 bracket; its values are 2/3 of their written
 *   value (4 steps = a triplet eighth, 2 = a triplet sixteenth, 1 = a triplet thirty-second).
 *   Events crossing its edges are cut (tied) there.
 * - Beams join the eighths and shorter notes of one beat; rests break them.
 */
import type { Metre } from './metre.ts';
import type { TimedNote } from './notes.ts';

export interface StaffEvent {
  start: number;
  end: number;
  /** Ascending; empty for a rest. */
  pitches: number[];
  /** Loudest velocity bucket in the chord (0 for a rest). */
  vel: number;
  staccato?: boolean;
}

export type NoteType = 'whole' | 'half' | 'quarter' | 'eighth' | '16th' | '32nd';
export type BeamValue = 'begin' | 'continue' | 'end' | 'forward hook' | 'backward hook';

export interface Tuplet {
  /** 3:2 with this normal type (the bracket's unit). */
  normalType: 'eighth' | '16th';
  start: boolean;
  stop: boolean;
}

/** One notated note, chord or rest inside a bar. */
export interface NotatedPiece {
  /** Position in the bar and sounding length, in grid steps. */
  start: number;
  dur: number;
  pitches: number[];
  vel: number;
  /** A rest filling the whole bar (<rest measure="yes"/>, no type). */
  measureRest: boolean;
  type: NoteType;
  dots: number;
  tuplet?: Tuplet;
  tieStart: boolean;
  tieStop: boolean;
  /** Beam values for levels 1.. (eighth, sixteenth, thirty-second). */
  beams: BeamValue[];
  staccato: boolean;
}

/** Written values in grid steps (sounding steps outside tuplets), longest first. */
const WRITTEN: readonly { steps: number; type: NoteType; dots: number }[] = [
  { steps: 48, type: 'whole', dots: 0 },
  { steps: 36, type: 'half', dots: 1 },
  { steps: 24, type: 'half', dots: 0 },
  { steps: 18, type: 'quarter', dots: 1 },
  { steps: 12, type: 'quarter', dots: 0 },
  { steps: 9, type: 'eighth', dots: 1 },
  { steps: 6, type: 'eighth', dots: 0 },
  { steps: 4.5, type: '16th', dots: 1 },
  { steps: 3, type: '16th', dots: 0 },
  { steps: 1.5, type: '32nd', dots: 0 },
];
const BEAM_COUNT: Readonly<Partial<Record<NoteType, number>>> = { eighth: 1, '16th': 2, '32nd': 3 };
/** Sounding lengths inside a triplet window, longest first (written = 3/2 of these). */
const TRIPLET_STEPS = [8, 6, 4, 3, 2, 1] as const;
const STRAIGHT_STEPS = [48, 36, 24, 18, 12, 9, 6, 3] as const;

function written(steps: number): { type: NoteType; dots: number } {
  const w = WRITTEN.find((v) => v.steps === steps);
  if (!w) throw new Error(`no notated value of ${steps} steps`);
  return w;
}

/**
 * The events of one staff over [0, total): a chord per onset, rests in the gaps.
 * `notes` are this staff's, sorted by onset.
 */
export function staffEvents(notes: readonly TimedNote[], total: number, beatSteps: number): StaffEvent[] {
  const events: StaffEvent[] = [];
  let cursor = 0;
  for (let i = 0; i < notes.length; ) {
    let j = i;
    while (j < notes.length && notes[j].onset === notes[i].onset) j++;
    const chord = notes.slice(i, j);
    const start = chord[0].onset;
    const next = j < notes.length ? notes[j].onset : total;
    let end = Math.min(next, Math.max(...chord.map((n) => n.end)));
    const followed = j < notes.length;
    const staccato = followed && next - start <= beatSteps && next - end >= (next - start) / 2;
    if (followed && (staccato || next - end < (next - start) / 2)) end = next;
    if (start > cursor) events.push({ start: cursor, end: start, pitches: [], vel: 0 });
    events.push({ start, end, pitches: chord.map((n) => n.pitch), vel: Math.max(...chord.map((n) => n.vel)), staccato });
    cursor = end;
    i = j;
  }
  if (cursor < total) events.push({ start: cursor, end: total, pitches: [], vel: 0 });
  return events;
}

interface BarEvent extends StaffEvent {
  tiedIn: boolean;
  tiedOut: boolean;
}

/** The events overlapping bar `bar`, clipped to it and made relative to its start. */
export function barSlice(events: readonly StaffEvent[], metre: Metre, bar: number): BarEvent[] {
  const from = bar * metre.barSteps;
  const to = from + metre.barSteps;
  return events
    .filter((e) => e.end > from && e.start < to)
    .map((e) => ({ ...e, start: Math.max(e.start, from) - from, end: Math.min(e.end, to) - from, tiedIn: e.start < from && e.pitches.length > 0, tiedOut: e.end > to && e.pitches.length > 0 }));
}

/** Whether each rhythm window of the bar needs a triplet bracket (some boundary off the sixteenth grid). */
export function tripletWindows(events: readonly BarEvent[], metre: Metre): boolean[] {
  const W = metre.windowSteps;
  const out = new Array<boolean>(metre.barSteps / W).fill(false);
  for (const e of events) for (const t of [e.start, e.end]) if (t % 3 !== 0) out[Math.floor(t / W)] = true;
  return out;
}

/** Whether a straight value may start at `s` (in the bar) without hiding the beat. */
export function straightValueFits(v: number, s: number, metre: Metre): boolean {
  const beat = metre.beatSteps;
  const sameBeat = Math.floor(s / beat) === Math.floor((s + v - 1) / beat);
  if (metre.compound) {
    if (v >= beat) return v % beat === 0 && s % beat === 0;
    return s % (v >= 6 ? 6 : 3) === 0 && sameBeat;
  }
  if (v === 48) return s === 0;
  if (v === 24) return s % (metre.barSteps === 48 ? 24 : 12) === 0;
  // 4/4: a value that starts off the half-bar does not cross it.
  if (v >= 12) return s % 12 === 0 && (metre.barSteps !== 48 || s % 24 === 0 || (s % 24) + v <= 24);
  return s % (v === 3 ? 3 : 6) === 0 && sameBeat;
}

/** Cuts [start, end) of a straight stretch into notated values (greedy, longest fitting first). */
export function straightValues(start: number, end: number, metre: Metre): { start: number; dur: number }[] {
  const out: { start: number; dur: number }[] = [];
  for (let s = start; s < end; ) {
    const v = STRAIGHT_STEPS.find((d) => s + d <= end && straightValueFits(d, s, metre));
    if (v === undefined) throw new Error(`straightValues: no value fits at ${s} (end ${end})`);
    out.push({ start: s, dur: v });
    s += v;
  }
  return out;
}

/** Cuts [start, end) inside one triplet window into triplet values (greedy, longest first). */
export function tripletValues(start: number, end: number): { start: number; dur: number }[] {
  const out: { start: number; dur: number }[] = [];
  for (let s = start; s < end; ) {
    const v = TRIPLET_STEPS.find((d) => s + d <= end)!;
    out.push({ start: s, dur: v });
    s += v;
  }
  return out;
}

/** Cut points of the bar: the edges of the triplet windows. */
function hardCuts(triplets: readonly boolean[], W: number): number[] {
  const cuts = new Set<number>();
  triplets.forEach((t, w) => {
    if (t) {
      cuts.add(w * W);
      cuts.add((w + 1) * W);
    }
  });
  return [...cuts].sort((a, b) => a - b);
}

/** Splits an event at the cut points into stretches, each wholly straight or inside one triplet window. */
function stretches(e: BarEvent, cuts: readonly number[]): [number, number][] {
  const points = [e.start, ...cuts.filter((c) => c > e.start && c < e.end), e.end];
  return points.slice(1).map((p, i) => [points[i], p]);
}

function notateEvent(e: BarEvent, metre: Metre, triplets: readonly boolean[], cuts: readonly number[]): NotatedPiece[] {
  const W = metre.windowSteps;
  const values = stretches(e, cuts).flatMap(([a, b]) => {
    const inTriplet = triplets[Math.floor(a / W)];
    return inTriplet ? tripletValues(a, b).map((v) => ({ ...v, triplet: true })) : straightValues(a, b, metre).map((v) => ({ ...v, triplet: false }));
  });
  const rest = e.pitches.length === 0;
  return values.map((v, i) => ({
    start: v.start,
    dur: v.dur,
    pitches: e.pitches,
    vel: e.vel,
    measureRest: false,
    ...written(v.triplet ? v.dur * 1.5 : v.dur),
    tuplet: v.triplet ? { normalType: W === 12 ? 'eighth' : '16th', start: v.start % W === 0, stop: (v.start + v.dur) % W === 0 } : undefined,
    tieStop: !rest && (i > 0 || e.tiedIn),
    tieStart: !rest && (i < values.length - 1 || e.tiedOut),
    beams: [],
    staccato: i === 0 && !e.tiedIn && e.staccato === true,
  }));
}

/** Beam values, per level, for one group of consecutive beamable pieces. */
export function beamGroup(counts: readonly number[]): BeamValue[][] {
  const out: BeamValue[][] = counts.map(() => []);
  if (counts.length < 2) return out;
  const top = Math.max(...counts);
  for (let level = 1; level <= top; level++) {
    counts.forEach((c, i) => {
      if (c < level) return;
      const prev = i > 0 && counts[i - 1] >= level;
      const next = i < counts.length - 1 && counts[i + 1] >= level;
      out[i].push(prev && next ? 'continue' : prev ? 'end' : next ? 'begin' : i === 0 ? 'forward hook' : 'backward hook');
    });
  }
  return out;
}

/** Sets the beams of a bar's pieces: eighths and shorter of one beat, not across rests. */
export function beamBar(pieces: NotatedPiece[], metre: Metre): void {
  let group: NotatedPiece[] = [];
  const flush = () => {
    beamGroup(group.map((p) => BEAM_COUNT[p.type]!)).forEach((b, i) => (group[i].beams = b));
    group = [];
  };
  for (const p of pieces) {
    const beamable = p.pitches.length > 0 && BEAM_COUNT[p.type] !== undefined;
    const sameBeat = group.length > 0 && Math.floor(group[0].start / metre.beatSteps) === Math.floor(p.start / metre.beatSteps);
    if (!beamable || !sameBeat) flush();
    if (beamable) group.push(p);
  }
  flush();
}

/** The notated pieces of one staff in one bar. */
export function notateBar(events: readonly BarEvent[], metre: Metre): NotatedPiece[] {
  if (events.length === 1 && events[0].pitches.length === 0) {
    return [{ start: 0, dur: metre.barSteps, pitches: [], vel: 0, measureRest: true, type: 'whole', dots: 0, tieStart: false, tieStop: false, beams: [], staccato: false }];
  }
  const triplets = tripletWindows(events, metre);
  const cuts = hardCuts(triplets, metre.windowSteps);
  const pieces = events.flatMap((e) => notateEvent(e, metre, triplets, cuts));
  beamBar(pieces, metre);
  return pieces;
}
