/**
 * Stateful, batched, seeded sampling. Each step feeds only the previous note: the LSTM state
 * and a ring of recent attention keys/values are carried, the window is never re-run.
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_NAMES, HEAD_SIZES, inputWidth, writeInputRow } from './features.ts';
import { hasKeyPitch, isLongContext } from './longContext.ts';
import { commitNotes, concatRings, decodeStep, decoderWeights, disposeDecoderWeights, hostHeads, initialRing, type DecoderWeights, type RingState } from './ringDecoder.ts';
import { addRelativePitch, conditionOn, disposeState, headLogits, initialState, sparseInputTable, stepForward, type Hyperparameters, type SparseInputs, type StepState } from './network.ts';
import type { Weights } from '../layers.ts';
import { seededRandom, type Random } from '../random.ts';
import { ANY_KEY } from '../../tokens/key.ts';
import { PITCH_MAX, PITCH_MIN, STEPS_PER_BEAT, beatPositions, type NoteToken } from '../../tokens/tokenize.ts';

/** The four heads (features.ts), re-exported beside the per-head decoding options. */
export { HEAD_NAMES };
export type HeadName = (typeof HEAD_NAMES)[number];

export interface HeadDecoding {
  temperature: number;
  topP: number;
}

/** Per-head decoding that replaces the request's temperature and top-p for those heads. */
export type HeadDecodings = Partial<Record<HeadName, HeadDecoding>>;

/**
 * "dt=1.0/0.98,vel=1.1/1" → per-head decoding (temperature/top-p); throws with the reason for
 * anything else. Used by `nocturne evaluate --head-decoding` to choose defaults by measurement.
 */
export function parseHeadDecodings(text: string): HeadDecodings {
  const out: HeadDecodings = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^(dt|pitch|dur|vel)=([0-9.]+)\/([0-9.]+)$/.exec(part);
    if (!m) throw new Error(`head decoding "${part}" is not HEAD=TEMPERATURE/TOP_P with HEAD one of ${HEAD_NAMES.join(', ')}`);
    const temperature = Number(m[2]);
    const topP = Number(m[3]);
    if (!(temperature >= 0 && temperature <= 5)) throw new Error(`head decoding "${part}": temperature must be 0..5`);
    if (!(topP > 0 && topP <= 1)) throw new Error(`head decoding "${part}": top-p must be in (0, 1]`);
    out[m[1] as HeadName] = { temperature, topP };
  }
  return out;
}

/** "temperature 1, top-p 1 (per head: dt 0.85/1), composer guidance 2.5": how notes are drawn; guidance of 1 or none is left out. */
export function describeDecoding(temperature: number, topP: number, heads: HeadDecodings = {}, guidance: { composerGuidance?: number; keyGuidance?: number } = {}): string {
  const overrides = HEAD_NAMES.filter((h) => heads[h]).map((h) => `${h} ${heads[h]!.temperature}/${heads[h]!.topP}`);
  const guided = (name: string, g: number | undefined) => (g !== undefined && g !== 1 ? `, ${name} guidance ${g}` : '');
  return `temperature ${temperature}, top-p ${topP}${overrides.length ? ` (per head: ${overrides.join(', ')})` : ''}${guided('composer', guidance.composerGuidance)}${guided('key', guidance.keyGuidance)}`;
}

/** The composer guidance a request is sampled with: long-context models guide a named composer; anything else is 1 (none). */
export function composerGuidanceOf(h: Hyperparameters, r: SampleRequest, composerCount: number): number {
  return isLongContext(h) && r.composer !== composerCount ? (r.composerGuidance ?? 1) : 1;
}

/** The key guidance a request is sampled with: models with a key-pitch table guide a named key; anything else is 1 (none). */
export function keyGuidanceOf(h: Hyperparameters, r: SampleRequest): number {
  return hasKeyPitch(h) && (r.key ?? ANY_KEY) !== ANY_KEY ? (r.keyGuidance ?? 1) : 1;
}

/** describeDecoding for one request as generateTokens samples it: the guidance named only where it applies. */
export function describeRequestDecoding(h: Hyperparameters, composerCount: number, r: SampleRequest): string {
  return describeDecoding(r.temperature, r.topP, r.heads, { composerGuidance: composerGuidanceOf(h, r, composerCount), keyGuidance: keyGuidanceOf(h, r) });
}

export interface SampleRequest {
  /** Composer index; the number of composers means "any composer". */
  composer: number;
  notes: number;
  temperature: number;
  topP: number;
  /** Per-head overrides of temperature and top-p. */
  heads?: HeadDecodings;
  randomSeed: number;
  /** Notes to continue (the state is built from them; they are not part of the output). */
  primer?: NoteToken[];
  /**
   * Key to write in (src/tokens/key.ts: 0-11 major, 12-23 minor, ANY_KEY), for models with a
   * key input; absent means any key. Models without one ignore it.
   */
  key?: number;
  /**
   * Key guidance g ≥ 1 for models with a key table (`keyPitch`): the pitch logits get
   * g·table[key] − (g − 1)·table[any], classifier-free guidance on the key's direct path (the
   * model trained with key dropout, so table[any] is its unconditioned answer). 1 (default) is
   * the model as trained; larger holds a requested key more firmly. No effect on "any key".
   */
  keyGuidance?: number;
  /**
   * Composer guidance g ≥ 1 (long-context models): every head's logits become
   * g·logits(composer) − (g − 1)·logits(any composer), classifier-free guidance from a shadow
   * row that plays the same notes as "any composer" (the model trained with composer dropout).
   * 1 (default) is the model as trained; a request for "any composer" is never guided.
   */
  composerGuidance?: number;
}

/**
 * Shadow rows for composer guidance: z carries the B primary rows, then one shadow row per
 * guided request: row B + j shadows primary row `parents[j]`, whose g is `scale[parents[j]]`.
 */
export interface Guidance {
  parents: number[];
  scale: number[];
}

/** Classifier-free guidance of one value: g·conditioned − (g − 1)·unconditioned. */
const guide = (conditioned: number, unconditioned: number, g: number) => g * conditioned - (g - 1) * unconditioned;

/** The primary rows' logits, each guided against its shadow row where it has one. */
function guidedLogits(values: Float32Array, width: number, guidance: Guidance | undefined, rows: number): Float32Array {
  if (!guidance) return values;
  const out = values.slice(0, rows * width);
  guidance.parents.forEach((r, j) => {
    const g = guidance.scale[r];
    for (let i = 0; i < width; i++) out[r * width + i] = guide(values[r * width + i], values[(rows + j) * width + i], g);
  });
  return out;
}

/** Per-row values of the primary rows followed by their shadow rows' copies (z's row order). */
function withShadows<T>(values: readonly T[], guidance: Guidance | undefined): T[] {
  return guidance ? [...values, ...guidance.parents.map((p) => values[p])] : [...values];
}

/** Longest primer fed to the model: earlier notes barely affect an LSTM state. */
export const MAX_PRIMER = 512;

/**
 * Most notes that one onset may hold: two hands' ten fingers. Of the 367,731 onsets in the 315
 * piano-midi.de pieces, 2 hold more (12 notes, in Ravel's Scarbo); stage 8 left alone wrote
 * onsets of up to 19 notes, 0.3 % of its onsets 12 or more. Once a row's onset holds this many,
 * the next note must move on (the gap head's 0 is masked, as after the top key).
 */
export const MAX_CHORD_NOTES = 10;

/** Scratch buffers reused across calls (sampling is synchronous and not re-entrant). */
let scratchProbs = new Float64Array(128);
let scratchAllowed = new Int32Array(128);
let scratchOrder = new Int32Array(128);

/**
 * Picks a class from logits with temperature and nucleus (top-p) sampling; `allowed` masks
 * classes out. Temperature 0 is greedy (argmax). Pure apart from the generator it draws from.
 *
 * The nucleus is the shortest prefix of the classes sorted by probability (ties: lower index
 * first) whose mass reaches top-p. Only classes that can be in it are sorted: a class whose
 * probability is below (sum - cutoff) / n (with a margin far above float64 rounding) has at
 * least the cutoff's mass ranked before it, so it never is. The choice and the generator's
 * draws are exactly those of a full sort (tests/sampling-fast.test.ts checks this against the
 * straightforward version); the sort is what made 16-row batches slow.
 */
export function sampleNext(logits: ArrayLike<number>, temperature: number, topP: number, rng: Random, allowed?: (index: number) => boolean): number {
  const n = logits.length;
  if (scratchProbs.length < n) {
    scratchProbs = new Float64Array(n);
    scratchAllowed = new Int32Array(n);
    scratchOrder = new Int32Array(n);
  }
  const idx = scratchAllowed;
  let count = 0;
  for (let i = 0; i < n; i++) if (!allowed || allowed(i)) idx[count++] = i;
  if (count === 0) throw new Error('sampleNext: every class is masked out');
  if (temperature <= 0) {
    let best = idx[0];
    for (let k = 1; k < count; k++) if (logits[idx[k]] > logits[best]) best = idx[k];
    return best;
  }
  let max = -Infinity;
  for (let k = 0; k < count; k++) max = Math.max(max, logits[idx[k]] / temperature);
  const probs = scratchProbs;
  let sum = 0;
  for (let k = 0; k < count; k++) {
    const i = idx[k];
    probs[i] = Math.exp(logits[i] / temperature - max);
    sum += probs[i];
  }
  const cutoff = Math.min(1, topP) * sum;
  const threshold = (sum - cutoff) / count - 1e-12 * sum;
  const order = scratchOrder;
  let m = 0;
  if (threshold > 0) {
    for (let k = 0; k < count; k++) if (probs[idx[k]] >= threshold) order[m++] = idx[k];
  } else {
    order.set(idx.subarray(0, count));
    m = count;
  }
  // Descending probability, ties by index: a total order, so any sort gives the same result.
  const before = (a: number, b: number) => probs[a] > probs[b] || (probs[a] === probs[b] && a < b);
  if (m <= 32) {
    for (let k = 1; k < m; k++) {
      const v = order[k];
      let j = k - 1;
      while (j >= 0 && before(v, order[j])) {
        order[j + 1] = order[j];
        j--;
      }
      order[j + 1] = v;
    }
  } else {
    order.subarray(0, m).sort((a, b) => probs[b] - probs[a] || a - b);
  }
  let kept = 0;
  let mass = 0;
  for (let k = 0; k < m; k++) {
    mass += probs[order[k]];
    kept++;
    if (mass >= cutoff) break;
  }
  let r = rng.next() * mass;
  for (let k = 0; k < kept; k++) {
    r -= probs[order[k]];
    if (r <= 0) return order[k];
  }
  return order[kept - 1];
}

function concatStates(states: StepState[]): StepState {
  if (states.length === 1) return states[0];
  const joined: StepState = {
    h: states[0].h.map((_, l) => tf.concat(states.map((s) => s.h[l]), 0) as tf.Tensor2D),
    c: states[0].c.map((_, l) => tf.concat(states.map((s) => s.c[l]), 0) as tf.Tensor2D),
    keys: tf.concat(states.map((s) => s.keys), 0) as tf.Tensor3D,
    values: tf.concat(states.map((s) => s.values), 0) as tf.Tensor3D,
    filled: states.flatMap((s) => s.filled),
  };
  states.forEach(disposeState);
  return joined;
}

/**
 * The step's input rows as their active columns (see SparseInputs): the same rows that
 * writeInputRow writes, without uploading and multiplying the ~98% that are zero.
 */
function inputRows(table: Float32Array, previous: readonly (NoteToken | undefined)[], positions: readonly number[], composers: readonly number[], composerCount: number): SparseInputs {
  const D = inputWidth(composerCount);
  const B = previous.length;
  const row = new Float32Array(D);
  const active: number[][] = previous.map((p, r) => {
    row.fill(0);
    writeInputRow(row, 0, p, positions[r], composers[r]);
    const cols: number[] = [];
    for (let c = 0; c < D; c++) if (row[c] !== 0) cols.push(c);
    return cols;
  });
  const slots = Math.max(...active.map((a) => a.length));
  const columns = new Int32Array(slots * B).fill(-1);
  active.forEach((cols, r) => cols.forEach((c, s) => (columns[s * B + r] = c)));
  return { table, columns, rows: B, slots };
}

function oneHot(indices: number[], classes: number): tf.Tensor2D {
  const data = new Float32Array(indices.length * classes);
  indices.forEach((c, r) => (data[r * classes + c] = 1));
  return tf.tensor2d(data, [indices.length, classes]);
}

/** Feeds a primer through one row's state; returns the state after its last note. */
function prime(w: Weights, h: Hyperparameters, table: Float32Array, composer: number, composerCount: number, primer: NoteToken[]): StepState {
  let state = initialState(h, 1);
  const positions = beatPositions(primer);
  for (let i = 0; i < primer.length; i++) {
    const x = inputRows(table, [i === 0 ? undefined : primer[i - 1]], [i === 0 ? 0 : positions[i - 1]], [composer], composerCount);
    const step = stepForward(w, h, state, x);
    step.z.dispose();
    state = step.state;
  }
  return state;
}

function decodingOf(req: SampleRequest, head: HeadName): HeadDecoding {
  return req.heads?.[head] ?? req;
}

/**
 * The four chained heads of one step, for every row (primary rows, then shadow rows): dt logits,
 * then pitch logits given each row's dt, then duration and velocity logits given its pitch.
 * Each returns [rows, classes] logits on the host.
 */
export interface NoteHeads {
  dt(): Float32Array;
  /** Pitch logits after the chosen dts; `anchors` is each row's previous pitch index (-1: none), for a relative pitch head. */
  pitch(dts: readonly number[], anchors: readonly number[]): Float32Array;
  durVel(pitches: readonly number[]): { dur: Float32Array; vel: Float32Array };
}

/** The heads on a tensor z [B, headDim] (network.ts's ops); z stays the caller's, the rest is freed. */
export function tensorHeads(w: Weights, z: tf.Tensor2D): NoteHeads {
  const logits = (x: tf.Tensor2D, head: 'dt' | 'pitch' | 'dur' | 'vel') => {
    const t = headLogits(w, x, head);
    const values = t.dataSync() as Float32Array;
    t.dispose();
    return values;
  };
  const condition = (x: tf.Tensor2D, head: 'dt' | 'pitch', choices: readonly number[]) => {
    const hot = oneHot([...choices], head === 'dt' ? HEAD_SIZES[0] : HEAD_SIZES[1]);
    const next = conditionOn(w, x, head, hot);
    hot.dispose();
    return next;
  };
  let z2: tf.Tensor2D | undefined;
  return {
    dt: () => logits(z, 'dt'),
    pitch: (dts, anchors) => {
      z2 = condition(z, 'dt', dts);
      const values = logits(z2, 'pitch');
      if (!w['head/wrel']) return values;
      const rel = tf.matMul(z2, w['head/wrel'] as tf.Tensor2D);
      addRelativePitch(values, rel.dataSync() as Float32Array, anchors);
      rel.dispose();
      return values;
    },
    durVel: (pitches) => {
      if (!z2) throw new Error('tensorHeads: pitch before durVel');
      const z3 = condition(z2, 'pitch', pitches);
      z2.dispose();
      z2 = undefined;
      const out = { dur: logits(z3, 'dur'), vel: logits(z3, 'vel') };
      z3.dispose();
      return out;
    },
  };
}

/**
 * Samples one note per row from the shared head activation z [B, headDim]: dt, then pitch
 * conditioned on it, then duration and velocity conditioned on both. `rows` holds each row's
 * last note and chord so far (the chord masks) and its random stream. z stays the caller's;
 * everything else made here is freed.
 * Used by whole-window re-feed (src/model/note/refeed.ts) and the local-attention model.
 */
export function sampleNotes(w: Weights, z: tf.Tensor2D, requests: readonly SampleRequest[], rows: Pick<DecodeRows, 'previous' | 'rngs' | 'chord'>, pitchBias?: readonly Float32Array[], guidance?: Guidance): NoteToken[] {
  return sampleFromHeads(tensorHeads(w, z), requests, rows, pitchBias, guidance);
}

/**
 * Samples one note per row from `heads`. `pitchBias` (a key-conditioned model's key table row
 * per request) is added to the pitch logits; with `guidance`, the heads also compute shadow rows
 * and every head is guided (SampleRequest.composerGuidance).
 */
export function sampleFromHeads(heads: NoteHeads, requests: readonly SampleRequest[], rows: Pick<DecodeRows, 'previous' | 'rngs' | 'chord'>, pitchBias?: readonly Float32Array[], guidance?: Guidance): NoteToken[] {
  const [DT, PITCH, DUR, VEL] = HEAD_SIZES;
  const B = requests.length;
  const { previous, rngs } = rows;
  const dtValues = guidedLogits(heads.dt(), DT, guidance, B);
  const dts = requests.map((req, r) => {
    const prev = previous[r];
    // A chord is ordered low to high: nothing can follow the top key at the same onset; and two hands hold at most MAX_CHORD_NOTES.
    const blockChord = prev !== undefined && (prev.pitch >= PITCH_MAX || rows.chord[r] >= MAX_CHORD_NOTES);
    const d = decodingOf(req, 'dt');
    return sampleNext(dtValues.subarray(r * DT, (r + 1) * DT), d.temperature, d.topP, rngs[r], blockChord ? (i) => i > 0 : undefined);
  });
  const anchors = previous.map((p) => (p === undefined ? -1 : p.pitch - PITCH_MIN));
  const pitchValues = guidedLogits(heads.pitch(withShadows(dts, guidance), withShadows(anchors, guidance)), PITCH, guidance, B);
  if (pitchBias) pitchBias.forEach((row, r) => row.forEach((v, i) => (pitchValues[r * PITCH + i] += v)));
  const pitches = requests.map((req, r) => {
    const prev = previous[r];
    const floor = dts[r] === 0 && prev !== undefined ? prev.pitch - PITCH_MIN : -1;
    const d = decodingOf(req, 'pitch');
    return sampleNext(pitchValues.subarray(r * PITCH, (r + 1) * PITCH), d.temperature, d.topP, rngs[r], floor >= 0 ? (i) => i > floor : undefined);
  });
  const both = heads.durVel(withShadows(pitches, guidance));
  const durValues = guidedLogits(both.dur, DUR, guidance, B);
  const velValues = guidedLogits(both.vel, VEL, guidance, B);
  return requests.map((req, r) => {
    const dur = decodingOf(req, 'dur');
    const vel = decodingOf(req, 'vel');
    return {
      dt: dts[r],
      pitch: pitches[r] + PITCH_MIN,
      dur: sampleNext(durValues.subarray(r * DUR, (r + 1) * DUR), dur.temperature, dur.topP, rngs[r]) + 1,
      vel: sampleNext(velValues.subarray(r * VEL, (r + 1) * VEL), vel.temperature, vel.topP, rngs[r]),
    };
  });
}

/** Per-row bookkeeping shared by the stateful and the re-feed decoders. */
export interface DecodeRows {
  rngs: Random[];
  /** Each row's last note (the primer's last, or undefined at the start of a piece). */
  previous: (NoteToken | undefined)[];
  /** Onset of each row's last note, in grid steps (its beat position is onset % STEPS_PER_BEAT). */
  onset: number[];
  /** Notes at each row's last onset so far (0 before the first note). */
  chord: number[];
  outputs: NoteToken[][];
}

/** Notes at the last onset of `tokens` (its trailing notes with no gap, and the one they follow); 0 for none. */
export function chordAtEnd(tokens: readonly NoteToken[]): number {
  let n = 0;
  for (let i = tokens.length - 1; i >= 0; i--) {
    n++;
    if (tokens[i].dt > 0) break;
  }
  return n;
}

export function startRows(requests: readonly SampleRequest[]): DecodeRows {
  const primers = requests.map((r) => (r.primer ?? []).slice(-MAX_PRIMER));
  return {
    rngs: requests.map((r) => seededRandom(r.randomSeed)),
    previous: primers.map((p) => p[p.length - 1]),
    onset: primers.map((p) => (p.length ? beatPositions(p)[p.length - 1] : 0)),
    chord: primers.map(chordAtEnd),
    outputs: requests.map(() => []),
  };
}

/** Records one sampled note per row (rows past their length keep running but write nothing). */
export function advanceRows(rows: DecodeRows, requests: readonly SampleRequest[], tokens: readonly NoteToken[]): void {
  requests.forEach((req, r) => {
    const token = tokens[r];
    if (rows.outputs[r].length < req.notes) rows.outputs[r].push(token);
    if (rows.previous[r] !== undefined || rows.outputs[r].length > 1) rows.onset[r] += token.dt;
    rows.chord[r] = rows.previous[r] !== undefined && token.dt === 0 ? rows.chord[r] + 1 : 1;
    rows.previous[r] = token;
  });
}

/**
 * A long-context model's host-side decoder (its weights copied off the tensors and fused), made
 * once for many generateTokens calls on weights that no longer change: a loaded model, not one in
 * training. About 4 % of a 500-note batch-1 piece when each call makes its own. Undefined for a
 * model without a ring decoder. Free it with disposePreparedDecoder.
 */
export type PreparedDecoder = DecoderWeights;

export function prepareDecoder(w: Weights, h: Hyperparameters): PreparedDecoder | undefined {
  return isLongContext(h) ? decoderWeights(w, h) : undefined;
}

export function disposePreparedDecoder(d: PreparedDecoder | undefined): void {
  if (d) disposeDecoderWeights(d);
}

/**
 * Generates `notes` tokens for each request, all rows in one pass per step. Requests with
 * different lengths share the pass; each stops contributing once it has its notes. `prepared`
 * (prepareDecoder, for these weights) is used and left alive; without it each call makes its own.
 */
export function generateTokens(w: Weights, h: Hyperparameters, composerCount: number, requests: SampleRequest[], prepared?: PreparedDecoder): NoteToken[][] {
  if (requests.length === 0) return [];
  if (isLongContext(h)) return generateLongContextTokens(w, h, composerCount, requests, prepared);
  const rows = startRows(requests);
  const primers = requests.map((r) => (r.primer ?? []).slice(-MAX_PRIMER));
  const table = sparseInputTable(w);
  let state: StepState | undefined;
  const composers = requests.map((r) => r.composer);
  const total = Math.max(...requests.map((r) => r.notes));
  try {
    state = concatStates(primers.map((p, r) => (p.length > 0 ? prime(w, h, table, requests[r].composer, composerCount, p) : initialState(h, 1))));
    for (let step = 0; step < total; step++) {
      const x = inputRows(table, rows.previous, rows.onset.map((o) => o % STEPS_PER_BEAT), composers, composerCount);
      const next = stepForward(w, h, state, x);
      state = next.state;
      let tokens: NoteToken[];
      try {
        tokens = sampleNotes(w, next.z, requests, rows);
      } finally {
        next.z.dispose();
      }
      advanceRows(rows, requests, tokens);
    }
  } finally {
    if (state) disposeState(state);
  }
  return rows.outputs;
}

/** Feeds a primer through one row's ring (each note becomes a slot); returns the state after it. */
function primeRing(d: DecoderWeights, request: SampleRequest, composerCount: number, primer: NoteToken[]): RingState {
  const state = initialRing(d, [request.key ?? ANY_KEY]);
  readNotes(d, state, request.composer, composerCount, primer, false);
  return state;
}

/**
 * Reads `notes` into a one-row ring as written music: each step takes the note before it as
 * input and the note itself is written back (teacher forcing). `attend` also runs each step's
 * attention (a priming read skips it: nothing is sampled from it).
 */
export function readNotes(d: DecoderWeights, state: RingState, composer: number, composerCount: number, notes: readonly NoteToken[], attend: boolean): void {
  const positions = beatPositions(notes);
  for (let i = 0; i < notes.length; i++) {
    decodeStep(d, state, inputRows(d.inputTable, [i === 0 ? undefined : notes[i - 1]], [i === 0 ? 0 : positions[i - 1] % STEPS_PER_BEAT], [composer], composerCount), attend);
    commitNotes(state, d, [notes[i]]);
  }
}

/** Each request's pitch bias from the key table (models with `keyPitch`), with its key guidance; undefined without a table. */
export function keyPitchRows(w: Weights, h: Hyperparameters, requests: readonly SampleRequest[]): Float32Array[] | undefined {
  if (!hasKeyPitch(h)) return undefined;
  const table = w['head/keypitch'].dataSync() as Float32Array;
  const width = HEAD_SIZES[1];
  const row = (k: number) => table.subarray(k * width, (k + 1) * width);
  return requests.map((r) => {
    const g = keyGuidanceOf(h, r);
    const unconditioned = row(ANY_KEY);
    return Float32Array.from(row(r.key ?? ANY_KEY), (v, i) => guide(v, unconditioned[i], g));
  });
}

/**
 * generateTokens for the long-context model (src/model/note/longContext.ts): each step runs the LSTM
 * on the previous notes, attends over every row's ring of earlier notes, samples, and writes the
 * chosen notes into the ring; nothing is re-run. A request with composer guidance gets a shadow
 * row after the primary rows: the same notes, the same key, "any composer".
 */
function generateLongContextTokens(w: Weights, h: Hyperparameters, composerCount: number, requests: SampleRequest[], prepared?: PreparedDecoder): NoteToken[][] {
  const rows = startRows(requests);
  const parents = requests.flatMap((r, i) => (composerGuidanceOf(h, r, composerCount) !== 1 ? [i] : []));
  const guidance: Guidance | undefined = parents.length ? { parents, scale: requests.map((r) => r.composerGuidance ?? 1) } : undefined;
  // Every ring row: the primaries, then their shadows ("any composer").
  const ringRequests = withShadows(requests, guidance).map((r, i) => (i < requests.length ? r : { ...r, composer: composerCount }));
  const decoder = prepared ?? decoderWeights(w, h);
  const table = decoder.inputTable;
  const composers = ringRequests.map((r) => r.composer);
  const total = Math.max(...requests.map((r) => r.notes));
  const pitchBias = keyPitchRows(w, h, requests);
  try {
    const state = concatRings(decoder, ringRequests.map((r) => {
      const primer = (r.primer ?? []).slice(-MAX_PRIMER);
      return primer.length > 0 ? primeRing(decoder, r, composerCount, primer) : initialRing(decoder, [r.key ?? ANY_KEY]);
    }));
    for (let step = 0; step < total; step++) {
      const inputs = inputRows(table, withShadows(rows.previous, guidance), withShadows(rows.onset, guidance).map((t) => t % STEPS_PER_BEAT), composers, composerCount);
      const z = decodeStep(decoder, state, inputs)!;
      const tokens = sampleFromHeads(hostHeads(decoder, z, ringRequests.length), requests, rows, pitchBias, guidance);
      commitNotes(state, decoder, withShadows(tokens, guidance));
      advanceRows(rows, requests, tokens);
    }
  } finally {
    if (!prepared) disposeDecoderWeights(decoder);
  }
  return rows.outputs;
}
