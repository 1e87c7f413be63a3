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
 * Training runs chunks of one piece in order (src/train/stream.ts): the LSTM state and the
 * last `memory` slots are carried from chunk to chunk without gradient (Transformer-XL), so a
 * query sees memory + (its position in the chunk) slots, `memory` to `memory + window - 1`
 * notes back. Sampling carries a ring of memory + window - 1 slots, the farthest any trained
 * query looked, and never re-runs anything.
 *
 * The relative bias: distance d = t - j (1 .. memory + window - 1) falls in one of
 * `relativeBuckets` buckets, exact for short distances and log-spaced beyond; each head
 * learns one bias per bucket.
 *
 * With `keys` the key label enters the LSTM input, and with `keyPitch` also the pitch logits
 * through a learned [key, pitch] table, so that a requested key holds from the first note.
 */
import * as tf from '@tensorflow/tfjs';
import { KEY_SLOTS } from '../tokens/key.ts';
import { HEAD_SIZES, targetIndices } from './features.ts';
import type { NoteToken } from '../tokens/tokenize.ts';
import { headShapes, headsLoss, lstmCell, lstmRecurrence, lstmShapes, uniqueVariableName, type Hyperparameters, type SequenceBatch, type SparseInputs, type Weights } from './network.ts';

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
  const A = h.attentionDim;
  s['attn/wq'] = [H, A];
  s['attn/wk'] = [H, A];
  s['attn/wv'] = [H, A];
  s['attn/wnote'] = [NOTE_WIDTH, A];
  s['attn/knull'] = [A];
  s['attn/bias'] = [h.relativeBuckets ?? 32, h.heads ?? 1];
  const heads = headShapes(h, H + A);
  if (hasKeyPitch(h)) heads['head/keypitch'] = [KEY_SLOTS, HEAD_SIZES[1]];
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
 * learn the long range.
 */
export function createLongContextWeights(h: Hyperparameters, inputDim: number, seed = 1, from?: WarmStart): Weights {
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
      if (name === 'head/keypitch') return tf.zeros(shape);
      if (shape.length === 1 || name === 'attn/bias') {
        const values = new Float32Array(shape.reduce((p, d) => p * d, 1));
        if (name.startsWith('lstm') && name.endsWith('/b')) values.fill(1, h.hidden, 2 * h.hidden);
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
  const bs = tf.unstack(b) as tf.Tensor2D[];
  return tf.stack((tf.unstack(a) as tf.Tensor2D[]).map((x, i) => tf.matMul(x, bs[i], transposeA, transposeB))) as tf.Tensor3D;
}

/** A chunk of notes from B pieces (src/train/stream.ts), time-major like SequenceBatch. */
export interface ChunkBatch extends SequenceBatch {
  /** One-hot key label per row [T*B, KEY_SLOTS] (key-conditioned models). */
  keyInputs?: tf.Tensor2D;
  /**
   * The notes as the attention values read them back [T*B, NOTE_WIDTH], when they differ from
   * the targets (noisy teacher forcing); absent means the targets.
   */
  noteRows?: tf.Tensor2D;
  realTargets: number;
}

/** What one chunk hands to the next: LSTM state per layer and the attention memory. */
export interface ChunkMemory {
  h: tf.Tensor2D[];
  c: tf.Tensor2D[];
  /** [B, M, A], oldest first. */
  keys: tf.Tensor3D;
  values: tf.Tensor3D;
}

export function emptyMemory(h: Hyperparameters, B: number): ChunkMemory {
  const M = h.memory ?? 0;
  return {
    h: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    c: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    keys: tf.zeros([B, M, h.attentionDim]),
    values: tf.zeros([B, M, h.attentionDim]),
  };
}

export function disposeMemory(m: ChunkMemory): void {
  tf.dispose([...m.h, ...m.c, m.keys, m.values]);
}

/** The chunk's own slots and last LSTM states, for the next chunk's memory (all kept). */
export interface ChunkCarry {
  keys: tf.Tensor3D;
  values: tf.Tensor3D;
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
    const out = lstmRecurrence(xProj, w[`lstm${l}/wh`] as tf.Tensor2D, B, T, {
      h: tf.mul(memory.h[l], keep) as tf.Tensor2D,
      c: tf.mul(memory.c[l], keep) as tf.Tensor2D,
      onLastCell: (c) => lastC.push(c),
    });
    lastH.push(tf.keep(out.slice([(T - 1) * B, 0], [B, h.hidden])));
    x = out;
  }
  const o = dropout > 0 ? (tf.dropout(x, dropout) as tf.Tensor2D) : x;
  const toHeads = (t: tf.Tensor2D) => t.reshape([T, B, heads, dk]).transpose([1, 2, 0, 3]).reshape([B * heads, T, dk]) as tf.Tensor3D;
  const memHeads = (t: tf.Tensor3D) => t.reshape([B, M, heads, dk]).transpose([0, 2, 1, 3]).reshape([B * heads, M, dk]) as tf.Tensor3D;
  const noteRows = b.noteRows ?? (tf.concat(b.targets, 1) as tf.Tensor2D);
  const q = tf.matMul(o, w['attn/wq'] as tf.Tensor2D) as tf.Tensor2D;
  const k = tf.matMul(o, w['attn/wk'] as tf.Tensor2D) as tf.Tensor2D;
  const v = tf.add(tf.matMul(o, w['attn/wv'] as tf.Tensor2D), tf.matMul(noteRows, w['attn/wnote'] as tf.Tensor2D)) as tf.Tensor2D;
  if (carry) {
    const batchMajor = (t: tf.Tensor2D) => tf.keep(t.reshape([T, B, A]).transpose([1, 0, 2]) as tf.Tensor3D);
    carry({ keys: batchMajor(k), values: batchMajor(v), h: lastH, c: lastC });
  } else tf.dispose([...lastH, ...lastC]);
  const qh = toHeads(q);
  const keys = M > 0 ? (tf.concat([memHeads(memory.keys), toHeads(k)], 1) as tf.Tensor3D) : toHeads(k);
  const values = M > 0 ? (tf.concat([memHeads(memory.values), toHeads(v)], 1) as tf.Tensor3D) : toHeads(v);
  const scale = 1 / Math.sqrt(dk);
  const { buckets, causal } = chunkConstants(T, M, h.relativeBuckets ?? 32, ringLength(h));
  const bias = tf.matMul(buckets, w['attn/bias'] as tf.Tensor2D).reshape([T, S, heads]).transpose([2, 0, 1]); // [heads, T, S]
  const slotMask = tf.concat([memoryMask, tf.zeros([B, T])], 1).reshape([B, 1, 1, S]);
  const scores = batchedMatMul(qh, keys, false, true).mul(scale).reshape([B, heads, T, S]).add(bias).add(causal).add(slotMask);
  const nullKey = (w['attn/knull'] as tf.Tensor1D).reshape([1, heads, 1, dk]);
  const nullScores = tf.sum(tf.mul(qh.reshape([B, heads, T, dk]), nullKey), 3, true).mul(scale); // [B, heads, T, 1]
  const attention = tf.softmax(tf.concat([scores, nullScores], 3)).slice([0, 0, 0, 0], [B, heads, T, S]).reshape([B * heads, T, S]) as tf.Tensor3D;
  const context = batchedMatMul(attention, values).reshape([B, heads, T, dk]).transpose([2, 0, 1, 3]).reshape([T * B, A]) as tf.Tensor2D;
  const z = tf.tanh(tf.add(tf.matMul(tf.concat([o, context], 1), w['head/wz'] as tf.Tensor2D), w['head/bz'])) as tf.Tensor2D;
  return dropout > 0 ? (tf.dropout(z, dropout) as tf.Tensor2D) : z;
}

/** Mean NLL per row of a chunk (padding rows have zero targets and add nothing). */
export function chunkLoss(w: Weights, h: Hyperparameters, b: ChunkBatch, memory: ChunkMemory, memoryMask: tf.Tensor2D, keep: tf.Tensor2D, dropout: number, carry?: (c: ChunkCarry) => void): { total: tf.Scalar; perHead: tf.Scalar[] } {
  const pitchBias = hasKeyPitch(h) && b.keyInputs ? (tf.matMul(b.keyInputs, w['head/keypitch'] as tf.Tensor2D) as tf.Tensor2D) : undefined;
  return headsLoss(w, chunkHidden(w, h, b, memory, memoryMask, keep, dropout, carry), b.targets, pitchBias);
}

/** The next chunk's memory: the last M slots of the old memory and this chunk's slots. */
export function advanceMemory(h: Hyperparameters, memory: ChunkMemory, carried: ChunkCarry): ChunkMemory {
  const M = h.memory ?? 0;
  const next = tf.tidy(() => {
    const B = carried.keys.shape[0];
    const T = carried.keys.shape[1];
    const A = h.attentionDim;
    const roll = (old: tf.Tensor3D, fresh: tf.Tensor3D) => (T >= M ? fresh.slice([0, T - M, 0], [B, M, A]) : tf.concat([old, fresh], 1).slice([0, T, 0], [B, M, A])) as tf.Tensor3D;
    return { keys: roll(memory.keys, carried.keys), values: roll(memory.values, carried.values) };
  });
  disposeMemory(memory);
  tf.dispose([carried.keys, carried.values]);
  return { h: carried.h, c: carried.c, keys: next.keys, values: next.values };
}

/** Additive memory mask [B, M]: the last `valid[b]` slots of row b are open. */
export function memoryMaskFor(valid: readonly number[], M: number): tf.Tensor2D {
  const m = new Float32Array(valid.length * M).fill(-1e9);
  valid.forEach((v, b) => m.fill(0, b * M + M - Math.min(v, M), (b + 1) * M));
  return tf.tensor2d(m, [valid.length, M]);
}

// ---------------------------------------------------------------------------------------------
// Sampling: one step at a time with a ring of slots.
//
// The ring lives on the host, circular: each row and head holds R slots of keys and values
// ([B, heads, R, dk]), a note is written over the oldest slot, and nothing moves. A tensor ring
// had to be shifted every note (two 0.5 MB copies per array on wasm, most of a step's time), and
// its fixed shape paid for every empty slot; here a step reads only the filled slots, which for
// a 500-note piece is half the ring on average. The LSTM, the query and the heads stay tensor
// ops; the attention itself (R·dk products per head) is a plain loop, in the order that makes
// every read contiguous. The query weights carry the 1/sqrt(dk) scale.

/** Decoding state of B rows: LSTM state per layer and a circular ring of R note slots per row and head. */
export interface RingState {
  h: tf.Tensor2D[];
  c: tf.Tensor2D[];
  /** [B, heads, R, dk]: slot keys, circular; row b's next write goes to slot next[b]. */
  keys: Float32Array;
  /** [B, heads, R, dk]: slot values, laid out as the keys. */
  values: Float32Array;
  /** Per row: the slot the next note is written to. */
  next: number[];
  /** Notes in each row's ring (at most R; the newest `filled` slots are real). */
  filled: number[];
  /** Each row's key-input row [B, 4H] (key-conditioned models). */
  keyRows?: tf.Tensor2D;
  /** [B, 2A]: the key and the LSTM part of the value of the note being chosen (ringStep → commitNotes). */
  pending?: Float32Array;
}

/** What a generation reads once: the query, key and value weights side by side, the note values, the null keys and the relative bias. */
export interface RingConstants {
  /** [H, 3A]: attn/wq (carrying the 1/sqrt(dk) scale), attn/wk, attn/wv: one product per step. */
  wqkv: tf.Tensor2D;
  /** [NOTE_WIDTH, A]: attn/wnote on the host (a note's value part is the sum of four rows). */
  wnote: Float32Array;
  /** [heads, dk]: each head's null key (its value is zero). */
  knull: Float32Array;
  /** [heads, R]: bias of the note `d + 1` notes back, at [k * R + d]. */
  bias: Float32Array;
  heads: number;
  dk: number;
  R: number;
}

export function ringConstants(w: Weights, h: Hyperparameters): RingConstants {
  const heads = h.heads ?? 1;
  const dk = h.attentionDim / heads;
  const R = ringLength(h);
  const buckets = h.relativeBuckets ?? 32;
  const table = w['attn/bias'].dataSync();
  const bias = new Float32Array(heads * R);
  for (let d = 0; d < R; d++) {
    const bucket = relativeBucket(d + 1, buckets, R);
    for (let k = 0; k < heads; k++) bias[k * R + d] = table[bucket * heads + k];
  }
  const wqkv = tf.tidy(() => tf.concat([tf.mul(w['attn/wq'], 1 / Math.sqrt(dk)), w['attn/wk'], w['attn/wv']], 1) as tf.Tensor2D);
  return { wqkv, wnote: w['attn/wnote'].dataSync() as Float32Array, knull: w['attn/knull'].dataSync() as Float32Array, bias, heads, dk, R };
}

export function disposeRingConstants(c: RingConstants): void {
  c.wqkv.dispose();
}

export function initialRing(h: Hyperparameters, keys: readonly number[], w: Weights): RingState {
  const B = keys.length;
  const size = B * h.attentionDim * ringLength(h);
  return {
    h: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    c: Array.from({ length: h.layers }, () => tf.zeros([B, h.hidden]) as tf.Tensor2D),
    keys: new Float32Array(size),
    values: new Float32Array(size),
    next: new Array(B).fill(0),
    filled: new Array(B).fill(0),
    keyRows: h.keys ? tf.tidy(() => tf.matMul(oneHotRows(keys as number[], KEY_SLOTS), w['lstm0/wkey'] as tf.Tensor2D) as tf.Tensor2D) : undefined,
  };
}

export function disposeRing(s: RingState): void {
  tf.dispose([...s.h, ...s.c, ...(s.keyRows ? [s.keyRows] : [])]);
}

/** Joins single-row states into one batch (disposes the parts). */
export function concatRings(states: RingState[]): RingState {
  if (states.length === 1) return states[0];
  const join = (parts: Float32Array[]) => {
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  };
  const joined: RingState = {
    h: states[0].h.map((_, l) => tf.concat(states.map((s) => s.h[l]), 0) as tf.Tensor2D),
    c: states[0].c.map((_, l) => tf.concat(states.map((s) => s.c[l]), 0) as tf.Tensor2D),
    keys: join(states.map((s) => s.keys)),
    values: join(states.map((s) => s.values)),
    next: states.flatMap((s) => s.next),
    filled: states.flatMap((s) => s.filled),
    pending: undefined,
    keyRows: states[0].keyRows ? (tf.concat(states.map((s) => s.keyRows!), 0) as tf.Tensor2D) : undefined,
  };
  states.forEach(disposeRing);
  return joined;
}

export function oneHotRows(indices: readonly number[], classes: number): tf.Tensor2D {
  const data = new Float32Array(indices.length * classes);
  indices.forEach((c, r) => (data[r * classes + c] = 1));
  return tf.tensor2d(data, [indices.length, classes]);
}

/** Scratch for the attention weights of one row and head (the null slot and R notes). */
let scratchScores = new Float64Array(1024);

/**
 * Attention of every row and head over its ring: q [B, heads*dk] (scaled) → context [B, heads*dk].
 * The null slot scores q·knull and contributes nothing; note slots score q·key + bias(distance).
 */
export function ringAttention(state: RingState, c: RingConstants, q: Float32Array): Float32Array {
  const { heads, dk, R, knull, bias } = c;
  const { keys, values } = state;
  const B = state.filled.length;
  const A = heads * dk;
  const context = new Float32Array(B * A);
  if (scratchScores.length < R) scratchScores = new Float64Array(R);
  const scores = scratchScores;
  for (let b = 0; b < B; b++) {
    const filled = state.filled[b];
    const newest = (state.next[b] + R - 1) % R;
    for (let k = 0; k < heads; k++) {
      const qo = b * A + k * dk;
      const ring = (b * heads + k) * R * dk;
      let nullScore = 0;
      for (let i = 0; i < dk; i++) nullScore += q[qo + i] * knull[k * dk + i];
      let max = nullScore;
      // d notes back is slot newest - d, wrapping once below zero.
      for (let d = 0, slot = newest; d < filled; d++, slot = slot === 0 ? R - 1 : slot - 1) {
        const at = ring + slot * dk;
        let score = bias[k * R + d];
        for (let i = 0; i < dk; i++) score += q[qo + i] * keys[at + i];
        scores[d] = score;
        if (score > max) max = score;
      }
      let total = Math.exp(nullScore - max);
      for (let d = 0; d < filled; d++) {
        const e = Math.exp(scores[d] - max);
        scores[d] = e;
        total += e;
      }
      for (let d = 0, slot = newest; d < filled; d++, slot = slot === 0 ? R - 1 : slot - 1) {
        const p = scores[d] / total;
        const at = ring + slot * dk;
        for (let i = 0; i < dk; i++) context[qo + i] += p * values[at + i];
      }
    }
  }
  return context;
}

/**
 * One step for every row: the LSTM on the previous notes' inputs (dense, or the sparse rows of
 * network.ts with `project` doing the first product), one product for this step's query and the
 * key and value of the slot it will fill, attention over the ring → z [B, headDim]. The LSTM
 * state in `state` is replaced (old tensors freed); commitNotes then writes the chosen notes.
 */
export function ringStep(w: Weights, h: Hyperparameters, state: RingState, constants: RingConstants, inputs: tf.Tensor2D | SparseInputs, project: (s: SparseInputs, n: number) => tf.Tensor2D): tf.Tensor2D {
  const sparse = inputs instanceof tf.Tensor ? undefined : inputs;
  const B = state.filled.length;
  const A = h.attentionDim;
  const lstm = tf.tidy(() => {
    let x = inputs as tf.Tensor2D;
    const hs: tf.Tensor2D[] = [];
    const cs: tf.Tensor2D[] = [];
    for (let l = 0; l < h.layers; l++) {
      const product = l === 0 && sparse ? project(sparse, 4 * h.hidden) : tf.matMul(x, w[`lstm${l}/wx`] as tf.Tensor2D);
      let xProj = tf.add(product, w[`lstm${l}/b`]) as tf.Tensor2D;
      if (l === 0 && state.keyRows) xProj = tf.add(xProj, state.keyRows) as tf.Tensor2D;
      const [hn, cn] = lstmCell(xProj, state.h[l], state.c[l], w[`lstm${l}/wh`] as tf.Tensor2D, h.hidden);
      hs.push(hn);
      cs.push(cn);
      x = hn;
    }
    return { hs, cs, qkv: tf.matMul(x, constants.wqkv) as tf.Tensor2D };
  });
  tf.dispose([...state.h, ...state.c]);
  state.h = lstm.hs;
  state.c = lstm.cs;
  const qkv = lstm.qkv.dataSync() as Float32Array;
  lstm.qkv.dispose();
  const q = new Float32Array(B * A);
  const pending = new Float32Array(B * 2 * A);
  for (let b = 0; b < B; b++) {
    q.set(qkv.subarray(b * 3 * A, b * 3 * A + A), b * A);
    pending.set(qkv.subarray(b * 3 * A + A, (b + 1) * 3 * A), b * 2 * A);
  }
  state.pending = pending;
  const context = ringAttention(state, constants, q);
  const x = state.h[h.layers - 1];
  return tf.tidy(() => {
    const ctx = tf.tensor2d(context, [B, A]);
    return tf.tanh(tf.add(tf.matMul(tf.concat([x, ctx], 1), w['head/wz'] as tf.Tensor2D), w['head/bz'])) as tf.Tensor2D;
  });
}

/**
 * Writes each row's chosen note over its oldest slot: the key and value ringStep computed from
 * the LSTM output, the value plus the note's own part (its four one-hot rows of attn/wnote).
 */
export function commitNotes(state: RingState, constants: RingConstants, notes: readonly NoteToken[]): void {
  const { heads, dk, R, wnote } = constants;
  const A = heads * dk;
  const B = state.filled.length;
  const pending = state.pending;
  if (!pending) throw new Error('commitNotes: no step to commit (call ringStep first)');
  for (let b = 0; b < B; b++) {
    const kv = b * 2 * A;
    for (const column of noteColumns(notes[b])) for (let i = 0; i < A; i++) pending[kv + A + i] += wnote[column * A + i];
    const slot = state.next[b];
    for (let k = 0; k < heads; k++) {
      const at = ((b * heads + k) * R + slot) * dk;
      state.keys.set(pending.subarray(kv + k * dk, kv + (k + 1) * dk), at);
      state.values.set(pending.subarray(kv + A + k * dk, kv + A + (k + 1) * dk), at);
    }
    state.next[b] = (slot + 1) % R;
    state.filled[b] = Math.min(state.filled[b] + 1, R);
  }
  state.pending = undefined;
}
