/**
 * The long-context note model: the LSTM of network.ts, then multi-head attention over the
 * piece so far with a learned relative-position bias, then the same four chained heads.
 *
 * What each attention slot holds. Step t reads note t-1 and predicts note t. Slot j (a note
 * already written, j < t) has the key o_j·Wk (the LSTM's summary of the music before note j)
 * and the value o_j·Wv + note_j·Wnote (that summary plus note j itself). When the music before
 * note t resembles the music before note j, a head can hand note j to the prediction of note t:
 * one layer is enough to repeat or vary a motif from hundreds of notes back. A learned "null"
 * key per head (value zero) lets a head look at nothing, and covers the first note of a piece.
 *
 * Training runs chunks of one piece in order (src/model/note/train/stream.ts): the LSTM state and the
 * last `memory` slots are carried from chunk to chunk without gradient (Transformer-XL), so a
 * query sees memory + (its position in the chunk) slots, `memory` to `memory + window - 1`
 * notes back. Sampling (ringDecoder.ts) carries a ring of memory + window - 1 slots, the
 * farthest any trained query looked, and never re-runs anything.
 *
 * The relative bias: distance d = t - j (1 .. memory + window - 1) falls in one of
 * `relativeBuckets` buckets, exact for short distances and log-spaced beyond; each head
 * learns one bias per bucket.
 *
 * With `keys` the key label enters the LSTM input, and with `keyPitch` also the pitch logits
 * through a learned [key, pitch] table, so that a requested key holds from the first note.
 *
 * With `residual`, each LSTM layer above the first adds its output, scaled per unit by a learned
 * gate (`lstm{l}/gate`, zero at the start: ReZero), to the layer below's, and the attention and
 * the heads read the sum. A layer grown onto a trained model then starts as nothing: the grown
 * model computes exactly what its parent did, attention included, and the new layer's share
 * grows only as far as it lowers the loss. (Without it, the attention's trained query, key and
 * value weights would read a fresh random layer, and the model would start far behind its parent.)
 */
import * as tf from '@tensorflow/tfjs';
import { KEY_SLOTS } from '../../tokens/key.ts';
import { HEAD_SIZES, LOOP_INPUT_SLOTS, targetIndices } from './features.ts';
import type { NoteToken } from '../../tokens/tokenize.ts';
import { timingBinMatrix, TIMING_BIN_EDGES, type TimingMarginals } from '../../tokens/timing.ts';
import { headShapes, headsLoss, loopHazardLoss, lstmShapes, pitchLikelihood, pitchUnlikelihood, teacherForcedLogits, timingPull, CLOCK_PERIODS, CLOCK_SCALE, CLOCK_WIDTH, MATCH_SCALE, RELATIVE_WIDTH, type Hyperparameters, type LoopHazardShares, type SequenceBatch } from './network.ts';
import { lstmRecurrence, uniqueVariableName, type Weights } from '../layers.ts';

/** Width of a note as the attention values read it: the four heads' one-hots side by side. */
export const NOTE_WIDTH = HEAD_SIZES.reduce((s, n) => s + n, 0);

export const LONG_CONTEXT_HYPERPARAMETERS: Required<Hyperparameters> = {
  hidden: 256,
  layers: 1,
  attentionDim: 192,
  attentionWindow: 0,
  headDim: 192,
  window: 128,
  memory: 512,
  heads: 3,
  relativeBuckets: 32,
  keys: true,
  dropout: 0.1,
  keyPitch: true,
  residual: false,
  relativePitch: false,
  intervalValues: false,
  intervalMatch: 0,
  beatClock: false,
  loopInput: false,
};

/** The four columns that are 1 in `t`'s row of note one-hots (the four heads side by side). */
export function noteColumns(t: NoteToken): number[] {
  let offset = 0;
  return targetIndices(t).map((cls, k) => {
    const column = offset + cls;
    offset += HEAD_SIZES[k];
    return column;
  });
}

/** Writes the one-hots of `t` into row `row` of `out` [rows, NOTE_WIDTH]. */
export function writeNoteRow(out: Float32Array, row: number, t: NoteToken): void {
  for (const column of noteColumns(t)) out[row * NOTE_WIDTH + column] = 1;
}

/** Whether the key also biases the pitch head (`head/keypitch`). */
export function hasKeyPitch(h: Hyperparameters): boolean {
  return Boolean(h.keys && h.keyPitch);
}

export function isLongContext(h: Hyperparameters): boolean {
  return (h.memory ?? 0) > 0;
}

/** Slots a sampling ring holds: the farthest distance a trained query saw. */
export function ringLength(h: Hyperparameters): number {
  return (h.memory ?? 0) + h.window - 1;
}

export function longContextShapes(h: Hyperparameters, inputDim: number): Record<string, number[]> {
  const s = lstmShapes(h, inputDim);
  const H = h.hidden;
  if (h.keys) s['lstm0/wkey'] = [KEY_SLOTS, 4 * H];
  if (h.loopInput) s['lstm0/wloop'] = [LOOP_INPUT_SLOTS, 4 * H];
  if (h.residual) for (let l = 1; l < h.layers; l++) s[`lstm${l}/gate`] = [H];
  const A = h.attentionDim;
  s['attn/wq'] = [H, A];
  s['attn/wk'] = [H, A];
  s['attn/wv'] = [H, A];
  s['attn/wnote'] = [NOTE_WIDTH, A];
  if (h.intervalValues) s['attn/winterval'] = [RELATIVE_WIDTH, A];
  if (h.intervalMatch) s['attn/match'] = [h.intervalMatch, h.heads ?? 1];
  if (h.beatClock) s['attn/clock'] = [CLOCK_PERIODS.length, h.heads ?? 1];
  s['attn/knull'] = [A];
  s['attn/bias'] = [h.relativeBuckets ?? 32, h.heads ?? 1];
  const heads = headShapes(h, H + A);
  if (hasKeyPitch(h)) heads['head/keypitch'] = [KEY_SLOTS, HEAD_SIZES[1]];
  if (h.relativePitch) heads['head/wrel'] = [h.headDim, RELATIVE_WIDTH];
  return { ...s, ...heads };
}

/** A trained local-attention model (network.ts) to start from. */
export interface WarmStart {
  weights: Weights;
  hyperparameters: Hyperparameters;
}

/**
 * Fresh weights: Glorot-uniform matrices, zero biases (forget gate at 1), a zero relative bias
 * and null key. With `from` (a trained local-attention model) every weight whose name and shape
 * match is copied, and when that model's attention size equals one head's, head 0 becomes that
 * model's attention: its query/key/value columns and head/wz rows are copied, its relative bias
 * is 0 within the old attention window and -8 beyond (nearly local, but with a gradient), and
 * the key input and head 0's note values start at zero. The network then starts where the old
 * one was (validation 4.02 nats/note against its 4.12 on 128-note chunks) and the other heads
 * learn the long range. A residual layer's gate starts at `gateInit` (default 0: the grown
 * model computes exactly what `from` did; a small value lets the new layer's weights get a
 * gradient from the first step, at the cost of starting slightly away from `from`).
 */
export function createLongContextWeights(h: Hyperparameters, inputDim: number, seed = 1, from?: WarmStart, gateInit = 0): Weights {
  const weights: Weights = {};
  const heads = h.heads ?? 1;
  const dk = h.attentionDim / heads;
  const old = from?.weights;
  const oldAttention = old?.['attn/wq']?.shape[1];
  const inheritHead = old !== undefined && oldAttention === dk && old['attn/wq'].shape[0] === h.hidden;
  let n = 0;
  for (const [name, shape] of Object.entries(longContextShapes(h, inputDim))) {
    n++;
    const source = old?.[name];
    const init = tf.tidy(() => {
      if (source && source.shape.join('x') === shape.join('x')) return source.clone();
      if (name === 'lstm0/wkey' && old) return tf.zeros(shape);
      // Zero at the start: a key table, relative pitch head, interval rows, clock or loop input added to a trained model start as nothing.
      if (name === 'head/keypitch' || name === 'head/wrel' || name === 'attn/winterval' || name === 'attn/match' || name === 'attn/clock' || name === 'lstm0/wloop') return tf.zeros(shape);
      if (shape.length === 1 || name === 'attn/bias') {
        const values = new Float32Array(shape.reduce((p, d) => p * d, 1));
        if (name.startsWith('lstm') && name.endsWith('/b')) values.fill(1, h.hidden, 2 * h.hidden);
        if (name.startsWith('lstm') && name.endsWith('/gate')) values.fill(gateInit);
        if (name === 'attn/bias' && inheritHead) {
          const buckets = shape[0];
          const R = ringLength(h);
          const local = (from!.hyperparameters.attentionWindow || 32) - 1;
          for (let d = R; d >= 1; d--) values[relativeBucket(d, buckets, R) * heads] = d <= local ? 0 : -8;
        }
        return tf.tensor(values, shape);
      }
      const limit = Math.sqrt(6 / (shape[0] + shape[1]));
      const fresh = tf.randomUniform(shape, -limit, limit, 'float32', seed * 1000 + n);
      if (!inheritHead) return fresh;
      if (name === 'attn/wq' || name === 'attn/wk' || name === 'attn/wv') return tf.concat([old![name], fresh.slice([0, dk], [shape[0], shape[1] - dk])], 1);
      if (name === 'attn/wnote') return tf.concat([tf.zeros([shape[0], dk]), fresh.slice([0, dk], [shape[0], shape[1] - dk])], 1);
      if (name === 'head/wz' && old!['head/wz'].shape[1] === shape[1]) return tf.concat([old!['head/wz'], fresh.slice([h.hidden + dk, 0], [shape[0] - h.hidden - dk, shape[1]])], 0);
      return fresh;
    });
    weights[name] = tf.variable(init, true, uniqueVariableName(name));
    init.dispose();
  }
  return weights;
}

/** Bucket of a distance d ≥ 1: exact up to buckets/2, then log-spaced up to maxDistance. */
export function relativeBucket(d: number, buckets: number, maxDistance: number): number {
  const exact = Math.floor(buckets / 2);
  if (d <= exact) return d - 1;
  const b = exact + Math.floor((Math.log(d / exact) / Math.log(Math.max(maxDistance, exact + 1) / exact)) * (buckets - exact));
  return Math.min(buckets - 1, b);
}

const constants = new Map<string, { buckets: tf.Tensor2D; causal: tf.Tensor2D }>();
/**
 * For a chunk of T queries after M memory slots: the one-hot bucket of every (query, slot)
 * pair [T*(M+T), buckets] (a product with the bias table is the bias, with a gradient and no
 * gather), and the causal mask [T, M+T] (a query sees the memory and earlier chunk notes).
 * Kept for the process's life: they depend only on the sizes.
 */
function chunkConstants(T: number, M: number, buckets: number, maxDistance: number) {
  const id = `${T}/${M}/${buckets}/${maxDistance}`;
  let c = constants.get(id);
  if (!c) {
    const S = M + T;
    const hot = new Float32Array(T * S * buckets);
    const causal = new Float32Array(T * S);
    for (let t = 0; t < T; t++)
      for (let s = 0; s < S; s++) {
        const d = t + M - s; // slot s is note (s - M) of this chunk's numbering
        if (d >= 1) hot[(t * S + s) * buckets + relativeBucket(d, buckets, maxDistance)] = 1;
        else causal[t * S + s] = -1e9;
      }
    c = tf.tidy(() => ({ buckets: tf.keep(tf.tensor2d(hot, [T * S, buckets])), causal: tf.keep(tf.tensor2d(causal, [T, S])) }));
    constants.set(id, c);
  }
  return c;
}

/**
 * A batched product [n, a, b] × [n, b, c] as n plain products. The wasm backend's BatchMatMul
 * runs about 5× slower than the same work as separate 2-D products (XNNPACK), and autodiff
 * through unstack/stack keeps the backward pass on 2-D products as well.
 */
export function batchedMatMul(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  if (tf.getBackend() !== 'wasm') return tf.matMul(a, b, transposeA, transposeB);
  // One product: plain 2-D (tfjs's unstack gradient fails for a single slice: its stack gets no tensor).
  if (a.shape[0] === 1) {
    const product = tf.matMul(a.reshape(a.shape.slice(1) as [number, number]), b.reshape(b.shape.slice(1) as [number, number]), transposeA, transposeB);
    return product.reshape([1, ...product.shape]) as tf.Tensor3D;
  }
  const bs = tf.unstack(b) as tf.Tensor2D[];
  return tf.stack((tf.unstack(a) as tf.Tensor2D[]).map((x, i) => tf.matMul(x, bs[i], transposeA, transposeB))) as tf.Tensor3D;
}

/** A chunk of notes from B pieces (src/model/note/train/stream.ts), time-major like SequenceBatch. */
export interface ChunkBatch extends SequenceBatch {
  /** One-hot key label per row [T*B, KEY_SLOTS] (key-conditioned models). */
  keyInputs?: tf.Tensor2D;
  /**
   * The notes as the attention values read them back [T*B, NOTE_WIDTH], when they differ from
   * the targets (noisy teacher forcing); absent means the targets.
   */
  noteRows?: tf.Tensor2D;
  /** Per row, the pitch index of the note it reads (NO_ANCHOR for none) [T*B]: the relative pitch head's anchor. */
  pitchAnchors?: tf.Tensor1D;
  /** One-hot interval of each row's read-back note from the one before it [T*B, RELATIVE_WIDTH] (zero: none; intervalIndex). */
  intervalRows?: tf.Tensor2D;
  /**
   * Models with interval matching: each row's last `intervalMatch` intervals, newest first, as
   * one-hot blocks [T*B, intervalMatch * RELATIVE_WIDTH] (a zero block: none); the query's and
   * the slot's side of the match alike (intervalContextWidth).
   */
  intervalContext?: tf.Tensor2D;
  /** Models with a beat clock: the clock of each row's read-back note [T*B, CLOCK_WIDTH] (writeClockRow; zero: none). */
  clockRows?: tf.Tensor2D;
  /** Models with a loop input: the loop through each row's read-back note [T*B, LOOP_INPUT_SLOTS] (loopInputColumns; zero: none). */
  loopInputs?: tf.Tensor2D;
  /** Unlikelihood training: 1 for each row whose target pitch is to be made less likely, else 0 [T*B] (PieceStream option marks). */
  marks?: tf.Tensor1D;
  /** Rows marked in `marks`. */
  markedTargets?: number;
  /** Return bonus: 1 for each row whose target pitch is to be made more likely, else 0 [T*B] (PieceStream option marks). */
  returns?: tf.Tensor1D;
  /** Rows marked in `returns`. */
  returnTargets?: number;
  /** Loop hazard training: each row's loop band and the values that would carry the loop on (PieceStream option hazard; loopHazardLoss). */
  hazard?: { bands: tf.Tensor2D; dtTargets: tf.Tensor2D; pitchTargets: tf.Tensor2D; dtMatched: tf.Tensor1D; rows: number };
  realTargets: number;
}

/** Columns of a row of interval context (ChunkBatch.intervalContext). */
export function intervalContextWidth(h: Hyperparameters): number {
  return (h.intervalMatch ?? 0) * RELATIVE_WIDTH;
}

/** What one chunk hands to the next: LSTM state per layer and the attention memory. */
export interface ChunkMemory {
  h: tf.Tensor2D[];
  c: tf.Tensor2D[];
  /** [B, M, A], oldest first. */
  keys: tf.Tensor3D;
  values: tf.Tensor3D;
  /** Models with interval matching: each slot's interval context [B, M, intervalContextWidth]. */
  contexts?: tf.Tensor3D;
  /** Models with a beat clock: each slot's clock row [B, M, CLOCK_WIDTH]. */
  clocks?: tf.Tensor3D;
}

export function emptyMemory(h: Hyperparameters, B: number): ChunkMemory {
  const M = h.memory ?? 0;
  return {
    h: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    c: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    keys: tf.zeros([B, M, h.attentionDim]),
    values: tf.zeros([B, M, h.attentionDim]),
    contexts: h.intervalMatch ? tf.zeros([B, M, intervalContextWidth(h)]) : undefined,
    clocks: h.beatClock ? tf.zeros([B, M, CLOCK_WIDTH]) : undefined,
  };
}

export function disposeMemory(m: ChunkMemory): void {
  tf.dispose([...m.h, ...m.c, m.keys, m.values, ...(m.contexts ? [m.contexts] : []), ...(m.clocks ? [m.clocks] : [])]);
}

/** The chunk's own slots and last LSTM states, for the next chunk's memory (all kept). */
export interface ChunkCarry {
  keys: tf.Tensor3D;
  values: tf.Tensor3D;
  contexts?: tf.Tensor3D;
  clocks?: tf.Tensor3D;
  h: tf.Tensor2D[];
  c: tf.Tensor2D[];
}

/**
 * The chunk forward pass → z [T*B, headDim]. `memoryMask` [B, M] is 0 for slots of the same
 * piece and -1e9 for the rest; `reset` rows start from a zero LSTM state. `carry` receives the
 * kept tensors the next chunk starts from. `dropout` > 0 only in training.
 */
export function chunkHidden(w: Weights, h: Hyperparameters, b: ChunkBatch, memory: ChunkMemory, memoryMask: tf.Tensor2D, keep: tf.Tensor2D, dropout: number, carry?: (c: ChunkCarry) => void): tf.Tensor2D {
  const B = b.batch;
  const T = b.steps;
  const M = h.memory ?? 0;
  const A = h.attentionDim;
  const heads = h.heads ?? 1;
  const dk = A / heads;
  const S = M + T;
  let x: tf.Tensor2D = b.inputs;
  const lastH: tf.Tensor2D[] = [];
  const lastC: tf.Tensor2D[] = [];
  for (let l = 0; l < h.layers; l++) {
    let xProj = tf.add(tf.matMul(x, w[`lstm${l}/wx`] as tf.Tensor2D), w[`lstm${l}/b`]) as tf.Tensor2D;
    if (l === 0 && h.keys && b.keyInputs) xProj = tf.add(xProj, tf.matMul(b.keyInputs, w['lstm0/wkey'] as tf.Tensor2D)) as tf.Tensor2D;
    if (l === 0 && h.loopInput) {
      if (!b.loopInputs) throw new Error("chunkHidden: a model with a loop input needs the chunk's loopInputs (PieceStream option loopInput)");
      xProj = tf.add(xProj, tf.matMul(b.loopInputs, w['lstm0/wloop'] as tf.Tensor2D)) as tf.Tensor2D;
    }
    const out = lstmRecurrence(xProj, w[`lstm${l}/wh`] as tf.Tensor2D, B, T, {
      h: tf.mul(memory.h[l], keep) as tf.Tensor2D,
      c: tf.mul(memory.c[l], keep) as tf.Tensor2D,
      onLastCell: (c) => lastC.push(c),
    });
    lastH.push(tf.keep(out.slice([(T - 1) * B, 0], [B, h.hidden])));
    // A residual layer adds its output, scaled per unit by its gate, to what it read.
    x = h.residual && l > 0 ? (tf.add(x, tf.mul(out, w[`lstm${l}/gate`])) as tf.Tensor2D) : out;
  }
  const o = dropout > 0 ? (tf.dropout(x, dropout) as tf.Tensor2D) : x;
  const toHeads = (t: tf.Tensor2D) => t.reshape([T, B, heads, dk]).transpose([1, 2, 0, 3]).reshape([B * heads, T, dk]) as tf.Tensor3D;
  const memHeads = (t: tf.Tensor3D) => t.reshape([B, M, heads, dk]).transpose([0, 2, 1, 3]).reshape([B * heads, M, dk]) as tf.Tensor3D;
  const noteRows = b.noteRows ?? (tf.concat(b.targets, 1) as tf.Tensor2D);
  const q = tf.matMul(o, w['attn/wq'] as tf.Tensor2D) as tf.Tensor2D;
  const k = tf.matMul(o, w['attn/wk'] as tf.Tensor2D) as tf.Tensor2D;
  const noteValues = tf.add(tf.matMul(o, w['attn/wv'] as tf.Tensor2D), tf.matMul(noteRows, w['attn/wnote'] as tf.Tensor2D)) as tf.Tensor2D;
  if (h.intervalValues && !b.intervalRows) throw new Error('chunkHidden: a model with interval values needs the chunk\'s intervalRows (PieceStream option intervalValues)');
  const v = h.intervalValues ? (tf.add(noteValues, tf.matMul(b.intervalRows!, w['attn/winterval'] as tf.Tensor2D)) as tf.Tensor2D) : noteValues;
  if (h.intervalMatch && (!b.intervalContext || !memory.contexts)) throw new Error('chunkHidden: a model with interval matching needs the chunk\'s intervalContext (PieceStream option intervalMatch) and a memory made for it');
  if (h.beatClock && (!b.clockRows || !memory.clocks)) throw new Error('chunkHidden: a model with a beat clock needs the chunk\'s clockRows (PieceStream option beatClock) and a memory made for it');
  if (carry) {
    const batchMajor = (t: tf.Tensor2D) => tf.keep(t.reshape([T, B, t.shape[1]]).transpose([1, 0, 2]) as tf.Tensor3D);
    carry({ keys: batchMajor(k), values: batchMajor(v), contexts: h.intervalMatch ? batchMajor(b.intervalContext!) : undefined, clocks: h.beatClock ? batchMajor(b.clockRows!) : undefined, h: lastH, c: lastC });
  } else tf.dispose([...lastH, ...lastC]);
  const qh = toHeads(q);
  const keys = M > 0 ? (tf.concat([memHeads(memory.keys), toHeads(k)], 1) as tf.Tensor3D) : toHeads(k);
  const values = M > 0 ? (tf.concat([memHeads(memory.values), toHeads(v)], 1) as tf.Tensor3D) : toHeads(v);
  const scale = 1 / Math.sqrt(dk);
  const { buckets, causal } = chunkConstants(T, M, h.relativeBuckets ?? 32, ringLength(h));
  const bias = tf.matMul(buckets, w['attn/bias'] as tf.Tensor2D).reshape([T, S, heads]).transpose([2, 0, 1]); // [heads, T, S]
  const slotMask = tf.concat([memoryMask, tf.zeros([B, T])], 1).reshape([B, 1, 1, S]);
  const scored = batchedMatMul(qh, keys, false, true).mul(scale).reshape([B, heads, T, S]).add(bias).add(causal).add(slotMask);
  const matched = h.intervalMatch ? scored.add(intervalMatchScores(w, h, b.intervalContext!, memory.contexts!, B, T)) : scored;
  const scores = h.beatClock ? matched.add(beatClockScores(w, h, b.clockRows!, memory.clocks!, B, T)) : matched;
  const nullKey = (w['attn/knull'] as tf.Tensor1D).reshape([1, heads, 1, dk]);
  const nullScores = tf.sum(tf.mul(qh.reshape([B, heads, T, dk]), nullKey), 3, true).mul(scale); // [B, heads, T, 1]
  const attention = tf.softmax(tf.concat([scores, nullScores], 3)).slice([0, 0, 0, 0], [B, heads, T, S]).reshape([B * heads, T, S]) as tf.Tensor3D;
  const context = batchedMatMul(attention, values).reshape([B, heads, T, dk]).transpose([2, 0, 1, 3]).reshape([T * B, A]) as tf.Tensor2D;
  const z = tf.tanh(tf.add(tf.matMul(tf.concat([o, context], 1), w['head/wz'] as tf.Tensor2D), w['head/bz'])) as tf.Tensor2D;
  return dropout > 0 ? (tf.dropout(z, dropout) as tf.Tensor2D) : z;
}

/**
 * The interval-matching part of the scores [B, heads, T, S]: per lag, which slots' context
 * interval equals the query's (one-hot blocks, so a product of the blocks counts the match),
 * weighted per head and lag by MATCH_SCALE · attn/match. The matches are constants of the data;
 * only attn/match gets a gradient.
 */
function intervalMatchScores(w: Weights, h: Hyperparameters, context: tf.Tensor2D, memory: tf.Tensor3D, B: number, T: number): tf.Tensor4D {
  const L = h.intervalMatch!;
  const heads = h.heads ?? 1;
  const M = memory.shape[1];
  const S = M + T;
  const W = RELATIVE_WIDTH;
  // Lag-major, so that the matches of one lag lie together: [L, B, …].
  const own = context.reshape([T, B, L, W]).transpose([2, 1, 0, 3]) as tf.Tensor4D; // [L, B, T, W]
  const slots = M > 0 ? tf.concat([memory.reshape([B, M, L, W]).transpose([2, 0, 1, 3]), own], 2) : own; // [L, B, S, W]
  const matches = batchedMatMul(own.reshape([L * B, T, W]) as tf.Tensor3D, slots.reshape([L * B, S, W]) as tf.Tensor3D, false, true).reshape([L, B * T * S]) as tf.Tensor2D;
  // One plain product weighs the lags per head; only this side has a gradient.
  const perHead = tf.matMul(tf.mul(tf.transpose(w['attn/match']), MATCH_SCALE) as tf.Tensor2D, matches); // [heads, B*T*S]
  return perHead.reshape([heads, B, T, S]).transpose([1, 0, 2, 3]) as tf.Tensor4D;
}

/**
 * The beat-clock part of the scores [B, heads, T, S]: per head, CLOCK_SCALE · Σ_p attn/clock[p,
 * head] · cos(2π·δ/P), δ the time between the notes a query and a slot read. The query's clock
 * columns are weighted per head, so one batched product with the slots' columns gives every head's
 * sum; the clocks are constants of the data, and only attn/clock gets a gradient.
 */
function beatClockScores(w: Weights, h: Hyperparameters, clocks: tf.Tensor2D, memory: tf.Tensor3D, B: number, T: number): tf.Tensor4D {
  const heads = h.heads ?? 1;
  const M = memory.shape[1];
  const S = M + T;
  const C = CLOCK_WIDTH;
  const own = clocks.reshape([T, B, C]).transpose([1, 0, 2]) as tf.Tensor3D; // [B, T, C]
  const slots = (M > 0 ? tf.concat([memory, own], 1) : own) as tf.Tensor3D; // [B, S, C]
  // attn/clock [P, heads] → per head and column (cos and sin of a period share its weight) [heads, C].
  const columns = tf.mul(tf.transpose(w['attn/clock']).reshape([heads, CLOCK_PERIODS.length, 1]).tile([1, 1, 2]).reshape([1, heads, 1, C]), CLOCK_SCALE);
  const weighted = tf.mul(own.reshape([B, 1, T, C]), columns).reshape([B, heads * T, C]) as tf.Tensor3D;
  return batchedMatMul(weighted, slots, false, true).reshape([B, heads, T, S]) as tf.Tensor4D;
}

/** The chunk's pitch bias from its key labels (key-pitch models) and its pitch anchors (relative-pitch models): what the heads read besides z. */
function chunkHeadInputs(w: Weights, h: Hyperparameters, b: ChunkBatch): { pitchBias?: tf.Tensor2D; anchors?: tf.Tensor1D } {
  if (h.relativePitch && !b.pitchAnchors) throw new Error('chunkLoss: a model with a relative pitch head needs the chunk\'s pitchAnchors (PieceStream option relativePitch)');
  const pitchBias = hasKeyPitch(h) && b.keyInputs ? (tf.matMul(b.keyInputs, w['head/keypitch'] as tf.Tensor2D) as tf.Tensor2D) : undefined;
  return { pitchBias, anchors: h.relativePitch ? b.pitchAnchors : undefined };
}

/**
 * Mean NLL per row of a chunk (padding rows have zero targets and add nothing). With
 * `returnWeight` w > 0, a row that lies in a figure brought back from afar (ChunkBatch.returns)
 * counts 1 + w times.
 */
export function chunkLoss(w: Weights, h: Hyperparameters, b: ChunkBatch, memory: ChunkMemory, memoryMask: tf.Tensor2D, keep: tf.Tensor2D, dropout: number, carry?: (c: ChunkCarry) => void, returnWeight = 0): { total: tf.Scalar; perHead: tf.Scalar[] } {
  if (returnWeight > 0 && !b.returns) throw new Error('chunkLoss: return weighting needs the chunk\'s returns (PieceStream option marks, StreamPiece.returns)');
  const { pitchBias, anchors } = chunkHeadInputs(w, h, b);
  const rowWeights = returnWeight > 0 && b.returns ? (tf.add(1, tf.mul(b.returns, returnWeight)) as tf.Tensor1D) : undefined;
  return headsLoss(w, chunkHidden(w, h, b, memory, memoryMask, keep, dropout, carry), b.targets, pitchBias, anchors, rowWeights);
}

/** The timing pull's bins of the gap head's classes (class c: a gap of c steps) and of the duration head's (class c: c + 1 steps), made once. */
const GAP_TIMING_BINS = timingBinMatrix(HEAD_SIZES[0], (c) => c);
const DURATION_TIMING_BINS = timingBinMatrix(HEAD_SIZES[2], (c) => c + 1);

/**
 * The unlikelihood of a chunk's marked pitches (pitchUnlikelihood) and the NLL of its return
 * pitches (pitchLikelihood; 0 where the chunk has none), the forward pass as chunkLoss runs it:
 * training on the model's own samples, whose marked notes continue a loop and whose return
 * notes bring a figure back from afar (src/model/note/train/unlikelihood.ts); with
 * `realHazard` the loop hazard (loopHazardLoss) and with `realTiming` the timing pull of the gap
 * and duration heads (timingPull, the two summed).
 */
export function chunkUnlikelihood(w: Weights, h: Hyperparameters, b: ChunkBatch, memory: ChunkMemory, memoryMask: tf.Tensor2D, keep: tf.Tensor2D, dropout: number, carry?: (c: ChunkCarry) => void, realHazard?: LoopHazardShares, realTiming?: TimingMarginals): { unlikelihood: tf.Scalar; returnNll: tf.Scalar; hazard: tf.Scalar; timing: tf.Scalar } {
  if (!b.marks) throw new Error('chunkUnlikelihood: the chunk has no marks (PieceStream option marks)');
  if (realHazard && !b.hazard) throw new Error('chunkUnlikelihood: loop hazard training needs the chunk\'s hazard rows (PieceStream option hazard)');
  const { pitchBias, anchors } = chunkHeadInputs(w, h, b);
  const logits = teacherForcedLogits(w, chunkHidden(w, h, b, memory, memoryMask, keep, dropout, carry), b.targets, pitchBias, anchors);
  const z = b.hazard;
  const bins = TIMING_BIN_EDGES.length;
  return {
    unlikelihood: pitchUnlikelihood(logits[1], b.targets[1], b.marks),
    returnNll: b.returns && b.returnTargets ? pitchLikelihood(logits[1], b.targets[1], b.returns) : tf.scalar(0),
    hazard: realHazard && z?.rows ? loopHazardLoss(logits[0], logits[1], z.bands, z.dtTargets, z.pitchTargets, z.dtMatched, realHazard) : tf.scalar(0),
    timing: realTiming
      ? (tf.add(
          timingPull(logits[0], b.targets[0], tf.tensor2d(GAP_TIMING_BINS, [HEAD_SIZES[0], bins]), realTiming.dt),
          timingPull(logits[2], b.targets[2], tf.tensor2d(DURATION_TIMING_BINS, [HEAD_SIZES[2], bins]), realTiming.dur),
        ) as tf.Scalar)
      : tf.scalar(0),
  };
}

/** The next chunk's memory: the last M slots of the old memory and this chunk's slots. */
export function advanceMemory(h: Hyperparameters, memory: ChunkMemory, carried: ChunkCarry): ChunkMemory {
  const M = h.memory ?? 0;
  const next = tf.tidy(() => {
    const B = carried.keys.shape[0];
    const T = carried.keys.shape[1];
    const roll = (old: tf.Tensor3D, fresh: tf.Tensor3D) => {
      const width = fresh.shape[2];
      return (T >= M ? fresh.slice([0, T - M, 0], [B, M, width]) : tf.concat([old, fresh], 1).slice([0, T, 0], [B, M, width])) as tf.Tensor3D;
    };
    const contexts = memory.contexts && carried.contexts ? roll(memory.contexts, carried.contexts) : undefined;
    const clocks = memory.clocks && carried.clocks ? roll(memory.clocks, carried.clocks) : undefined;
    return { keys: roll(memory.keys, carried.keys), values: roll(memory.values, carried.values), contexts, clocks };
  });
  disposeMemory(memory);
  tf.dispose([carried.keys, carried.values, ...(carried.contexts ? [carried.contexts] : []), ...(carried.clocks ? [carried.clocks] : [])]);
  return { h: carried.h, c: carried.c, keys: next.keys, values: next.values, contexts: next.contexts, clocks: next.clocks };
}

/** Additive memory mask [B, M]: the last `valid[b]` slots of row b are open. */
export function memoryMaskFor(valid: readonly number[], M: number): tf.Tensor2D {
  const m = new Float32Array(valid.length * M).fill(-1e9);
  valid.forEach((v, b) => m.fill(0, b * M + M - Math.min(v, M), (b + 1) * M));
  return tf.tensor2d(m, [valid.length, M]);
}
