/**
 * Whole pieces, in order, for the long-context model: each of B rows plays a queue of pieces
 * chunk after chunk, so the LSTM state and the attention memory carried from one chunk to the
 * next are the ones sampling will have at that point of a piece. A piece's first chunk starts
 * from a reset state with an empty memory; its last chunk is padded (zero targets) and the row
 * moves on to its next piece. Pieces go to rows longest-first onto the shortest queue, so the
 * rows run out at about the same time and little is padding.
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_SIZES, inputWidth, LOOP_INPUT_SLOTS, loopInputColumns, targetIndices, writeInputRow } from '../features.ts';
import { NOTE_WIDTH, writeNoteRow, type ChunkBatch } from '../longContext.ts';
import { CLOCK_WIDTH, intervalIndex, NO_ANCHOR, RELATIVE_WIDTH, rememberInterval, writeClockRow, type Hyperparameters } from '../network.ts';
import type { Random } from '../../random.ts';
import { ANY_KEY, KEY_SLOTS, transposeKey } from '../../../tokens/key.ts';
import { LOOP_PROFILE_BANDS, loopRuns, type LoopHazardRows, type LoopRun } from '../../../tokens/loops.ts';
import { DT_CLASSES, PITCH_CLASSES, PITCH_MAX, PITCH_MIN, STEPS_PER_BEAT, noteOnsets, type NoteToken } from '../../../tokens/tokenize.ts';
import type { TokenPiece } from './batches.ts';

export interface StreamPiece extends TokenPiece {
  /** Key label of every note (segmentKeys), for key-conditioned models. */
  keys?: Uint8Array;
  /** Unlikelihood training: 1 for each note whose pitch is to be made less likely (loopContinuations). */
  marks?: Uint8Array;
  /** Return bonus: 1 for each note whose pitch is to be made more likely (distantReturns). */
  returns?: Uint8Array;
  /** Loop hazard training: the loop behind each note and the note that would carry it on (loopHazardRows). */
  hazard?: LoopHazardRows;
}

interface Cursor {
  queue: number[];
  piece: number;
  pos: number;
  shift: number;
  composer: number;
  /** Memory slots of this piece so far (0 at a piece's first chunk). */
  memory: number;
  /** The last note of the previous chunk as the next step reads it (displaced or not). */
  readBack?: NoteToken;
  /** The intervals of the notes read back so far, newest first, at most intervalMatch (intervalIndex; -1: none). */
  recent: number[];
}

/**
 * What a model's architecture asks of its stream: the chunk length and every extra input it reads
 * (key label, anchors, intervals, interval context). Training, validation and the bench all take
 * them from here, so none of them builds a stream that lacks one.
 */
export function modelStreamOptions(h: Hyperparameters): Pick<StreamOptions, 'window' | 'keyed' | 'relativePitch' | 'intervalValues' | 'intervalMatch' | 'beatClock' | 'loopInput'> {
  return { window: h.window, keyed: h.keys, relativePitch: h.relativePitch, intervalValues: h.intervalValues, intervalMatch: h.intervalMatch, beatClock: h.beatClock, loopInput: h.loopInput };
}

export interface StreamOptions {
  window: number;
  composerIndex: Map<string, number>;
  composers: number;
  /** Random transposition range in semitones, drawn once per piece (0 = none). */
  transpose?: number;
  /** Probability that a piece is labelled "any composer". */
  composerDropout?: number;
  /** Probability that a chunk's key label is "any key". */
  keyDropout?: number;
  keyed?: boolean;
  /** Models with a relative pitch head: hand each row's anchor (ChunkBatch.pitchAnchors). */
  relativePitch?: boolean;
  /** Models with interval values: hand each row's interval one-hot (ChunkBatch.intervalRows). */
  intervalValues?: boolean;
  /** Models with interval matching: hand each row's last this many intervals (ChunkBatch.intervalContext). */
  intervalMatch?: number;
  /** Models with a beat clock: hand each row the clock of the note it reads (ChunkBatch.clockRows). */
  beatClock?: boolean;
  /** Models with a loop input: hand each row the loop through the note it reads (ChunkBatch.loopInputs). */
  loopInput?: boolean;
  /**
   * Probability that a note, where it is read as the input of the next step, has its pitch moved
   * by 1 to 7 semitones (the target stays true). Noisy teacher forcing: the model learns that the
   * notes it reads back may be wrong, which keeps it from copying itself into a loop at sampling.
   */
  inputNoise?: number;
  /** Hand each row's mark and return (StreamPiece.marks, .returns; none: 0) as ChunkBatch.marks, .returns, for unlikelihood training. */
  marks?: boolean;
  /** Hand each row's loop hazard (StreamPiece.hazard; none: no loop) as ChunkBatch.hazard, for loop hazard training. */
  hazard?: boolean;
  /**
   * With `hazard`: each row's band is also grouped by the row's composer (ChunkBatch.hazard.bands
   * [rows, (composers + 1) × bands], composer slot `composers` being "any"), so that a loop hazard
   * step pulls each composer toward that composer's own shares (composerHazardShares).
   */
  hazardByComposer?: boolean;
  /** Hazard bands per group (hazardBandCount; default the loop bands alone). */
  hazardBands?: number;
  rng?: Random;
}

/** Default share of notes read back displaced when a long-context model trains (CLI and retraining). */
export const DEFAULT_INPUT_NOISE = 0.05;

/** `t` with its pitch moved by ±1..7 semitones, kept on the keyboard. */
export function displacePitch(t: NoteToken, rng: Random): NoteToken {
  const step = 1 + Math.floor(rng.next() * 7);
  const up = rng.next() < 0.5 ? t.pitch + step <= PITCH_MAX : t.pitch - step < PITCH_MIN;
  return { ...t, pitch: up ? t.pitch + step : t.pitch - step };
}

export interface StreamChunk {
  batch: ChunkBatch;
  /** Per row: 1 continues the piece of the previous chunk, 0 starts fresh. */
  keep: number[];
  /** Per row: memory slots open for this chunk. */
  memory: number[];
}

/** Longest-first onto the shortest row: piece indices per row (order shuffled by `rng` first). */
export function planRows(pieces: readonly TokenPiece[], rows: number, rng?: Random): number[][] {
  const order = pieces.map((_, i) => i).filter((i) => pieces[i].tokens.length >= 2);
  if (rng)
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
  const queues: number[][] = Array.from({ length: rows }, () => []);
  const load = new Array(rows).fill(0);
  for (const i of [...order].sort((a, b) => pieces[b].tokens.length - pieces[a].tokens.length)) {
    let r = 0;
    for (let k = 1; k < rows; k++) if (load[k] < load[r]) r = k;
    queues[r].push(i);
    load[r] += pieces[i].tokens.length;
  }
  // Keep the shuffled order within each row (the sort was only for the assignment).
  if (rng) queues.forEach((q) => q.sort((a, b) => order.indexOf(a) - order.indexOf(b)));
  return queues.filter((q) => q.length > 0);
}

/** Steps an epoch takes over these rows (for progress). */
export function streamSteps(pieces: readonly TokenPiece[], queues: readonly number[][], window: number): number {
  return Math.max(0, ...queues.map((q) => q.reduce((s, i) => s + Math.ceil(pieces[i].tokens.length / window), 0)));
}

/** The value `cache` holds for piece `index`, made by `make` the first time it is asked for. */
function kept<T>(cache: Map<number, T>, index: number, make: () => T): T {
  let value = cache.get(index);
  if (value === undefined) {
    value = make();
    cache.set(index, value);
  }
  return value;
}

export class PieceStream {
  private readonly cursors: Cursor[];
  /** Each piece's note onsets (noteOnsets), made when the piece is first played. */
  private readonly onsets = new Map<number, Float64Array>();
  /** Each piece's loop through every note (loopRuns; the notes as written: a transposition moves no loop, a displaced read-back note is not counted), made when first needed. */
  private readonly loops = new Map<number, LoopRun[]>();

  constructor(
    private readonly pieces: readonly StreamPiece[],
    queues: readonly number[][],
    private readonly o: StreamOptions,
  ) {
    this.cursors = queues.map((q) => ({ queue: [...q], piece: -1, pos: 0, shift: 0, composer: 0, memory: 0, recent: [] }));
  }

  get rows(): number {
    return this.cursors.length;
  }

  private startNext(c: Cursor): void {
    c.piece = c.queue.shift() ?? -1;
    c.pos = 0;
    c.memory = 0;
    c.shift = 0;
    c.recent = [];
    if (c.piece < 0) return;
    const piece = this.pieces[c.piece];
    c.composer = this.o.composerIndex.get(piece.composer) ?? this.o.composers;
    const rng = this.o.rng;
    if (rng && this.o.composerDropout && rng.next() < this.o.composerDropout) c.composer = this.o.composers;
    if (rng && this.o.transpose) {
      let lo = Infinity;
      let hi = -Infinity;
      for (const t of piece.tokens) {
        lo = Math.min(lo, t.pitch);
        hi = Math.max(hi, t.pitch);
      }
      const down = Math.max(-this.o.transpose, PITCH_MIN - lo);
      const up = Math.min(this.o.transpose, PITCH_MAX - hi);
      if (up >= down) c.shift = down + Math.floor(rng.next() * (up - down + 1));
    }
  }

  /** The next chunk of every row, or undefined when every row has played its queue. */
  next(): StreamChunk | undefined {
    for (const c of this.cursors) if (c.piece < 0 && c.queue.length > 0) this.startNext(c);
    if (this.cursors.every((c) => c.piece < 0)) return undefined;
    const B = this.cursors.length;
    const T = this.o.window;
    const D = inputWidth(this.o.composers);
    const inputs = new Float32Array(T * B * D);
    const targets = HEAD_SIZES.map((n) => new Float32Array(T * B * n));
    const keyInputs = this.o.keyed ? new Float32Array(T * B * KEY_SLOTS) : undefined;
    const noise = this.o.rng && this.o.inputNoise ? this.o.inputNoise : 0;
    const noteRows = noise > 0 ? new Float32Array(T * B * NOTE_WIDTH) : undefined;
    const anchors = this.o.relativePitch ? new Float32Array(T * B).fill(NO_ANCHOR) : undefined;
    const intervals = this.o.intervalValues ? new Float32Array(T * B * RELATIVE_WIDTH) : undefined;
    const lags = this.o.intervalMatch ?? 0;
    const contexts = lags > 0 ? new Float32Array(T * B * lags * RELATIVE_WIDTH) : undefined;
    const clocks = this.o.beatClock ? new Float32Array(T * B * CLOCK_WIDTH) : undefined;
    const loopInputs = this.o.loopInput ? new Float32Array(T * B * LOOP_INPUT_SLOTS) : undefined;
    const marks = this.o.marks ? new Float32Array(T * B) : undefined;
    const returns = this.o.marks ? new Float32Array(T * B) : undefined;
    const NB = this.o.hazardBands ?? LOOP_PROFILE_BANDS.length;
    const groups = this.o.hazardByComposer ? (this.o.composers + 1) * NB : NB;
    const hazard = this.o.hazard ? { bands: new Float32Array(T * B * groups), dt: new Float32Array(T * B * DT_CLASSES), pitch: new Float32Array(T * B * PITCH_CLASSES), matched: new Float32Array(T * B), rows: 0 } : undefined;
    const keep: number[] = [];
    const memory: number[] = [];
    let real = 0;
    let marked = 0;
    let returned = 0;
    this.cursors.forEach((c, b) => {
      keep.push(c.piece >= 0 && c.pos > 0 ? 1 : 0);
      memory.push(c.memory);
      if (c.piece < 0) return;
      const piece = this.pieces[c.piece];
      const onsets = kept(this.onsets, c.piece, () => noteOnsets(piece.tokens));
      const loops = loopInputs ? kept(this.loops, c.piece, () => loopRuns(piece.tokens)) : undefined;
      const moved = (t: NoteToken): NoteToken => (c.shift ? { ...t, pitch: t.pitch + c.shift } : t);
      const to = Math.min(piece.tokens.length, c.pos + T);
      const chunkKeyDropped = this.o.rng && this.o.keyDropout ? this.o.rng.next() < this.o.keyDropout : false;
      let previous = c.pos > 0 ? c.readBack : undefined;
      for (let i = c.pos; i < to; i++) {
        const row = (i - c.pos) * B + b;
        writeInputRow(inputs, row * D, previous, i > 0 ? onsets[i - 1] % STEPS_PER_BEAT : 0, c.composer);
        if (anchors && previous) anchors[row] = previous.pitch - PITCH_MIN;
        // The clock of the note this row reads (none for a piece's first row, as for its interval context).
        if (clocks && i > 0) writeClockRow(clocks, row * CLOCK_WIDTH, onsets[i - 1]);
        if (loops && i > 0) for (const column of loopInputColumns(loops[i - 1])) loopInputs![row * LOOP_INPUT_SLOTS + column] = 1;
        if (contexts) c.recent.forEach((interval, l) => interval >= 0 && (contexts[(row * lags + l) * RELATIVE_WIDTH + interval] = 1));
        const before = previous;
        const target = moved(piece.tokens[i]);
        targetIndices(target).forEach((cls, h) => (targets[h][row * HEAD_SIZES[h] + cls] = 1));
        // The note as the next step and the attention values read it back: sometimes displaced.
        previous = noteRows && this.o.rng!.next() < noise ? displacePitch(target, this.o.rng!) : target;
        if (noteRows) writeNoteRow(noteRows, row, previous);
        const interval = intervals || contexts ? intervalIndex(before?.pitch, previous.pitch) : -1;
        if (intervals && interval >= 0) intervals[row * RELATIVE_WIDTH + interval] = 1;
        if (contexts) rememberInterval(c.recent, interval, lags);
        if (keyInputs) {
          const key = chunkKeyDropped || !piece.keys ? ANY_KEY : transposeKey(piece.keys[i], c.shift);
          keyInputs[row * KEY_SLOTS + key] = 1;
        }
        if (marks && piece.marks?.[i]) {
          marks[row] = 1;
          marked++;
        }
        if (returns && piece.returns?.[i]) {
          returns[row] = 1;
          returned++;
        }
        const band = piece.hazard?.band[i] ?? -1;
        if (hazard && band >= 0) {
          const loopDt = piece.hazard!.dt[i];
          hazard.bands[row * groups + (this.o.hazardByComposer ? c.composer * NB : 0) + band] = 1;
          hazard.dt[row * DT_CLASSES + loopDt] = 1;
          hazard.pitch[row * PITCH_CLASSES + piece.hazard!.pitch[i] + c.shift - PITCH_MIN] = 1;
          if (target.dt === loopDt) hazard.matched[row] = 1;
          hazard.rows++;
        }
        real++;
      }
      c.readBack = previous;
      c.memory += to - c.pos;
      c.pos = to;
      if (to >= piece.tokens.length) c.piece = -1; // the next chunk starts this row's next piece
    });
    const batch: ChunkBatch = {
      inputs: tf.tensor2d(inputs, [T * B, D]),
      targets: targets.map((t, h) => tf.tensor2d(t, [T * B, HEAD_SIZES[h]])) as ChunkBatch['targets'],
      keyInputs: keyInputs ? tf.tensor2d(keyInputs, [T * B, KEY_SLOTS]) : undefined,
      noteRows: noteRows ? tf.tensor2d(noteRows, [T * B, NOTE_WIDTH]) : undefined,
      pitchAnchors: anchors ? tf.tensor1d(anchors) : undefined,
      intervalRows: intervals ? tf.tensor2d(intervals, [T * B, RELATIVE_WIDTH]) : undefined,
      intervalContext: contexts ? tf.tensor2d(contexts, [T * B, lags * RELATIVE_WIDTH]) : undefined,
      clockRows: clocks ? tf.tensor2d(clocks, [T * B, CLOCK_WIDTH]) : undefined,
      loopInputs: loopInputs ? tf.tensor2d(loopInputs, [T * B, LOOP_INPUT_SLOTS]) : undefined,
      marks: marks ? tf.tensor1d(marks) : undefined,
      markedTargets: marks ? marked : undefined,
      returns: returns ? tf.tensor1d(returns) : undefined,
      returnTargets: returns ? returned : undefined,
      hazard: hazard
        ? { bands: tf.tensor2d(hazard.bands, [T * B, groups]), dtTargets: tf.tensor2d(hazard.dt, [T * B, DT_CLASSES]), pitchTargets: tf.tensor2d(hazard.pitch, [T * B, PITCH_CLASSES]), dtMatched: tf.tensor1d(hazard.matched), rows: hazard.rows }
        : undefined,
      batch: B,
      steps: T,
      realTargets: real,
    };
    return { batch, keep, memory };
  }
}

export function disposeChunk(b: ChunkBatch): void {
  tf.dispose([b.inputs, ...b.targets, ...(b.keyInputs ? [b.keyInputs] : []), ...(b.noteRows ? [b.noteRows] : []), ...(b.pitchAnchors ? [b.pitchAnchors] : []), ...(b.intervalRows ? [b.intervalRows] : []), ...(b.intervalContext ? [b.intervalContext] : []), ...(b.clockRows ? [b.clockRows] : []), ...(b.loopInputs ? [b.loopInputs] : []), ...(b.marks ? [b.marks] : []), ...(b.returns ? [b.returns] : []), ...(b.hazard ? [b.hazard.bands, b.hazard.dtTargets, b.hazard.pitchTargets, b.hazard.dtMatched] : [])]);
}
