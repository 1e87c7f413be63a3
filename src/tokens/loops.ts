/**
 * Loops: stretches of notes that keep repeating themselves, every note with the pitch and onset
 * gap of the note one period before it. The realism measures (longest loop) and unlikelihood
 * training (which notes continue a loop too long) read them from here.
 */
import { bandOf } from './bands.ts';
import { PITCH_MAX, PITCH_MIN, type NoteToken } from './tokenize.ts';

/** Longest period looked at: a bar of sixteenths. */
export const LOOP_MAX_PERIOD = 16;

/** The loop running through a note: its length in notes (0: none) and its period (0: none). */
export interface LoopRun {
  length: number;
  period: number;
}

/** What advanceLoop carries from note to note: the last maxPeriod notes and, per period, the run so far. */
export interface LoopTracker {
  readonly maxPeriod: number;
  /** The last maxPeriod notes' pitch and onset gap, circular; `seen` notes so far. */
  readonly pitches: Int32Array;
  readonly dts: Int32Array;
  /** Per period (index = period), how many notes in a row have matched the note one period before. */
  readonly runs: Int32Array;
  seen: number;
}

export function startLoopTracker(maxPeriod = LOOP_MAX_PERIOD): LoopTracker {
  return { maxPeriod, pitches: new Int32Array(maxPeriod), dts: new Int32Array(maxPeriod), runs: new Int32Array(maxPeriod + 1), seen: 0 };
}

/**
 * Takes the next note into `tracker` and returns the loop that runs up to and including it: the
 * longest over periods 1..maxPeriod (the shortest period where two are as long), length 0 where
 * no loop has yet come round twice. A figure of 4 notes played twice gives 8 at its 8th note,
 * 9 at a 9th note that starts it a third time, and so on. Training (the loop input) and the
 * sampler read the same values from here, one note at a time.
 */
export function advanceLoop(tracker: LoopTracker, note: Pick<NoteToken, 'pitch' | 'dt'>): LoopRun {
  const { maxPeriod, pitches, dts, runs } = tracker;
  const i = tracker.seen;
  const run: LoopRun = { length: 0, period: 0 };
  for (let period = 1; period <= maxPeriod && period <= i; period++) {
    const back = (i - period) % maxPeriod;
    runs[period] = pitches[back] === note.pitch && dts[back] === note.dt ? runs[period] + 1 : 0;
    if (runs[period] >= period && runs[period] + period > run.length) {
      run.length = runs[period] + period; // at least twice round
      run.period = period;
    }
  }
  pitches[i % maxPeriod] = note.pitch;
  dts[i % maxPeriod] = note.dt;
  tracker.seen = i + 1;
  return run;
}

/** Per note, the loop running through it (advanceLoop over the whole sequence). */
export function loopRuns(tokens: readonly NoteToken[], maxPeriod = LOOP_MAX_PERIOD): LoopRun[] {
  const tracker = startLoopTracker(maxPeriod);
  return tokens.map((t) => advanceLoop(tracker, t));
}

/**
 * Per note, the length in notes of the longest loop that has run up to and including it, for any
 * period 1..maxPeriod; 0 where no loop has yet come round twice (advanceLoop).
 */
export function loopLengths(tokens: readonly NoteToken[], maxPeriod = LOOP_MAX_PERIOD): Int32Array {
  return Int32Array.from(loopRuns(tokens, maxPeriod), (r) => r.length);
}

/**
 * Length in notes of the longest stretch that keeps repeating itself: every note has the pitch
 * and onset gap of the note `period` before it, for one period of 1..LOOP_MAX_PERIOD. A figure
 * played twice counts two periods (a figure must come round at least twice); a single note
 * hammered 40 times counts 40; 1 when nothing loops. In the 250-note excerpts of piano-midi.de
 * the median is 10 and the 95th percentile 39 (an Alberti bass, a trill); a model that copies
 * itself into a loop runs into the hundreds.
 */
export function longestLoop(tokens: readonly NoteToken[], maxPeriod = LOOP_MAX_PERIOD): number {
  return loopLengths(tokens, maxPeriod).reduce((longest, n) => Math.max(longest, n), Math.min(tokens.length, 1));
}

/** 1 for each note that carries a loop past `limit` notes (loopLengths above `limit`), else 0. */
export function loopContinuations(tokens: readonly NoteToken[], limit: number, maxPeriod = LOOP_MAX_PERIOD): Uint8Array {
  if (!Number.isInteger(limit) || limit < 2) throw new Error(`loopContinuations: limit must be a whole number ≥ 2, got ${limit}`);
  return Uint8Array.from(loopLengths(tokens, maxPeriod), (n) => (n > limit ? 1 : 0));
}

/**
 * 1 for each note of a figure coming back from further than `minDistance` notes: the
 * `length`-note figure (its `length` − 1 pitch steps, so a figure that returns transposed counts)
 * was played before, ending more than `minDistance` notes earlier, and no nearer; its notes
 * from the second on (each a step of the figure: the first step is where the return starts)
 * are marked. Nearer returns are loops (loopLengths). In the first 512 notes of the 315
 * piano-midi.de pieces 35 % of the notes lie in such a return (8 notes, from further than 16);
 * in stage 6's own 512-note pieces 12 % (32 pieces, its shipped decoding).
 */
export function distantReturns(tokens: readonly NoteToken[], length = 8, minDistance = LOOP_MAX_PERIOD): Uint8Array {
  return returnsByDistance(tokens, length, minDistance).far;
}

/**
 * 1 for each note of a figure coming back from `maxDistance` notes or nearer: the `length`-note
 * figure (its pitch steps, as in distantReturns) was last played ending at most `maxDistance`
 * notes earlier. These are the repeats on the spot that distantReturns leaves out, a figure
 * circling or a sequence stepping on. In the first 512 notes of the 315 piano-midi.de pieces
 * 10 % of the notes lie in one (NEAR_RETURN_SHARE), against 31–35 % in returns from afar; in stage 8's own
 * 512-note pieces 26–29 %, against 14 % from afar.
 */
export function nearReturns(tokens: readonly NoteToken[], length = 8, maxDistance = LOOP_MAX_PERIOD): Uint8Array {
  return returnsByDistance(tokens, length, maxDistance).near;
}

/** Share of notes real music has in nearReturns (8 notes, 16 back): 0.104 over the first 512 notes of the 315 piano-midi.de pieces. */
export const NEAR_RETURN_SHARE = 0.1;

/**
 * Both kinds of return in one scan: the steps of each `length`-note figure whose nearest earlier
 * playing ended further than `boundary` notes back (`far`, distantReturns) or `boundary` notes
 * back or nearer (`near`, nearReturns).
 */
export function returnsByDistance(tokens: readonly NoteToken[], length = 8, boundary = LOOP_MAX_PERIOD): { far: Uint8Array; near: Uint8Array } {
  if (!Number.isInteger(length) || length < 2) throw new Error(`returnsByDistance: length must be a whole number ≥ 2, got ${length}`);
  const far = new Uint8Array(tokens.length);
  const near = new Uint8Array(tokens.length);
  const lastEnd = new Map<string, number>();
  for (let end = length - 1; end < tokens.length; end++) {
    const steps: number[] = [];
    for (let i = end - length + 2; i <= end; i++) steps.push(tokens[i].pitch - tokens[i - 1].pitch);
    const key = steps.join(',');
    const before = lastEnd.get(key);
    if (before !== undefined) (end - before > boundary ? far : near).fill(1, end - length + 2, end + 1);
    lastEnd.set(key, end);
  }
  return { far, near };
}

/** Loop lengths from which LoopProfile.goesOn is counted, each band up to the next. */
export const LOOP_PROFILE_BANDS = [2, 4, 8, 16, 32] as const;

/** The LOOP_PROFILE_BANDS index of a loop `length` notes long; −1 below the first band. */
export function loopBand(length: number): number {
  return bandOf(LOOP_PROFILE_BANDS, length);
}

/**
 * How a set of pieces loops: how often a loop starts, and once one has run so long, how often
 * its next note carries it on (the hazard's complement). A sampler that is calibrated note by
 * note on real music can still loop too long on its own notes; this says which of the two
 * (more loops, or loops that do not stop) it is.
 */
export interface LoopProfile {
  notes: number;
  /** Loops started (a note that completes a figure's second round) per 100 notes. */
  startsPer100: number;
  /** Per band of LOOP_PROFILE_BANDS: notes read with a loop of that length behind them, and the share of those that carried it on. */
  goesOn: { from: number; notes: number; share: number }[];
}

export function loopProfile(pieces: readonly (readonly NoteToken[])[]): LoopProfile {
  const seen = new Array<number>(LOOP_PROFILE_BANDS.length).fill(0);
  const carried = new Array<number>(LOOP_PROFILE_BANDS.length).fill(0);
  let notes = 0;
  let starts = 0;
  for (const tokens of pieces) {
    const runs = loopRuns(tokens);
    for (let i = 1; i < tokens.length; i++) {
      notes++;
      const behind = runs[i - 1].length;
      const band = loopBand(behind);
      if (band < 0) {
        if (runs[i].length > 0) starts++;
        continue;
      }
      seen[band]++;
      if (runs[i].length > behind) carried[band]++;
    }
  }
  return {
    notes,
    startsPer100: notes ? (100 * starts) / notes : 0,
    goesOn: LOOP_PROFILE_BANDS.map((from, b) => ({ from, notes: seen[b], share: seen[b] ? carried[b] / seen[b] : 0 })),
  };
}

/**
 * Match lengths (steps of pitch interval and onset gap) from which a return's hazard band counts,
 * each band up to the next: a figure returning from afar whose last 3–5, 6–11 or 12+ steps
 * match the earlier playing.
 */
export const RETURN_HAZARD_BANDS = [3, 6, 12] as const;

/** Hazard bands: the LOOP_PROFILE_BANDS, then with `returns` the RETURN_HAZARD_BANDS. */
export function hazardBandCount(returns = false): number {
  return LOOP_PROFILE_BANDS.length + (returns ? RETURN_HAZARD_BANDS.length : 0);
}

/**
 * Per note, the loop behind it and the note that would carry that loop on: `band` is the
 * LOOP_PROFILE_BANDS index of the loop running through the note before (−1: none, or the first
 * note), and `dt`/`pitch` are the onset gap and pitch of the note one period back, which the
 * note copies if it carries the loop on. Loop hazard training reads the model's probabilities of
 * those two values on its own pieces (loopHazardProfile gives the real shares).
 *
 * With `returns`, a note with no loop behind it whose last RETURN_HAZARD_BANDS[0] steps (pitch
 * interval and onset gap) were last played more than LOOP_MAX_PERIOD notes before (a figure
 * returning from afar, as distantReturns counts them) is a row too: its band is
 * LOOP_PROFILE_BANDS.length plus the RETURN_HAZARD_BANDS index of how many steps match (up to
 * 32), and `dt`/`pitch` carry the earlier playing on, transposed to where the return stands.
 * Real pieces carry such a return on far more often than the model's own pieces do (the first
 * 512 notes of piano-midi.de: 81 % of 3+-step matches go on for one more step, stage 8's own
 * pieces 55 %).
 */
export interface LoopHazardRows {
  band: Int8Array;
  dt: Int32Array;
  pitch: Int32Array;
}

export function loopHazardRows(tokens: readonly NoteToken[], o: { returns?: boolean } = {}): LoopHazardRows {
  const runs = loopRuns(tokens);
  const rows: LoopHazardRows = { band: new Int8Array(tokens.length).fill(-1), dt: new Int32Array(tokens.length), pitch: new Int32Array(tokens.length) };
  const nearest = o.returns ? distantMatches(tokens) : undefined;
  for (let i = 1; i < tokens.length; i++) {
    const behind = runs[i - 1];
    const band = loopBand(behind.length);
    if (band >= 0) {
      const copied = tokens[i - behind.period];
      rows.band[i] = band;
      rows.dt[i] = copied.dt;
      rows.pitch[i] = copied.pitch;
      continue;
    }
    const match = nearest?.[i - 1];
    if (!match) continue;
    const pitch = tokens[i - 1].pitch + tokens[match.end + 1].pitch - tokens[match.end].pitch;
    if (pitch < PITCH_MIN || pitch > PITCH_MAX) continue;
    rows.band[i] = LOOP_PROFILE_BANDS.length + bandOf(RETURN_HAZARD_BANDS, match.steps);
    rows.dt[i] = tokens[match.end + 1].dt;
    rows.pitch[i] = pitch;
  }
  return rows;
}

/**
 * Per note e, the figure returning from afar that ends on it, if any: the nearest earlier note
 * `end` whose last RETURN_HAZARD_BANDS[0] steps (interval and onset gap) are e's, when it lies
 * more than LOOP_MAX_PERIOD notes back (a nearer one is a loop, not a return), and how many
 * steps the two share going back (at most 32).
 */
function distantMatches(tokens: readonly NoteToken[]): ({ end: number; steps: number } | undefined)[] {
  const k = RETURN_HAZARD_BANDS[0];
  const same = (a: number, b: number) => tokens[a].pitch - tokens[a - 1].pitch === tokens[b].pitch - tokens[b - 1].pitch && tokens[a].dt === tokens[b].dt;
  const last = new Map<string, number>();
  const out: ({ end: number; steps: number } | undefined)[] = new Array(tokens.length).fill(undefined);
  for (let e = k; e < tokens.length; e++) {
    let key = '';
    for (let j = e - k + 1; j <= e; j++) key += `${tokens[j].pitch - tokens[j - 1].pitch}:${tokens[j].dt},`;
    const end = last.get(key);
    last.set(key, e);
    if (end === undefined || e - end <= LOOP_MAX_PERIOD) continue;
    let steps = k;
    while (steps < 32 && end - steps >= 1 && same(e - steps, end - steps)) steps++;
    out[e] = { end, steps };
  }
  return out;
}

/**
 * How often, per band of LOOP_PROFILE_BANDS, a note with a loop behind it copies the onset gap
 * of the note one period back (`dtShare` of `rows`), and of those that do, how often it also
 * copies the pitch (`pitchShare` of `pitchRows`): the two steps of carrying a loop on, as the
 * dt head and then the pitch head decide them. Their product is about LoopProfile.goesOn. With
 * `returns`, the RETURN_HAZARD_BANDS follow (kind 'return'; loopHazardRows).
 */
export interface LoopHazardProfile {
  bands: { from: number; kind?: 'loop' | 'return'; rows: number; dtShare: number; pitchRows: number; pitchShare: number }[];
}

export function loopHazardProfile(pieces: readonly (readonly NoteToken[])[], o: { returns?: boolean } = {}): LoopHazardProfile {
  const counts = [...LOOP_PROFILE_BANDS.map((from) => ({ from, kind: 'loop' as const })), ...(o.returns ? RETURN_HAZARD_BANDS.map((from) => ({ from, kind: 'return' as const })) : [])].map((b) => ({ ...b, rows: 0, dtShare: 0, pitchRows: 0, pitchShare: 0 }));
  for (const tokens of pieces) {
    const rows = loopHazardRows(tokens, o);
    for (let i = 1; i < tokens.length; i++) {
      const band = rows.band[i];
      if (band < 0) continue;
      const c = counts[band];
      c.rows++;
      if (tokens[i].dt !== rows.dt[i]) continue;
      c.dtShare++;
      c.pitchRows++;
      if (tokens[i].pitch === rows.pitch[i]) c.pitchShare++;
    }
  }
  for (const c of counts) {
    c.dtShare = c.rows ? c.dtShare / c.rows : 0;
    c.pitchShare = c.pitchRows ? c.pitchShare / c.pitchRows : 0;
  }
  return { bands: counts };
}
