/**
 * Sampling with the long-context model (longContext.ts), one note at a time.
 *
 * A step at batch 1 is a few small products; what cost the time was the forty-odd tfjs ops
 * around them, each paying the engine's bookkeeping (about 20–40 µs on wasm) for work of a
 * microsecond. Here tfjs runs only the products, five per step, each as upload → matMul →
 * download; the gates, the attention, the tanh layers and the head biases run on the host.
 *
 * One product per layer does two jobs. LSTM layer l's recurrent term for the next step is
 * h_l(t)·wh_l, and what reads h_l(t) in this step is the next layer's input product (or, after
 * the last layer, the attention's query, key and value and the head layer's LSTM half), so
 * h_l(t)·[wh_l | that] computes both: the recurrent half waits in the state for step t + 1.
 *
 * The ring: each row and head holds R slots of keys and values ([B, heads, R, dk]), circular;
 * a note is written over the oldest slot, and a step reads only the filled slots. The query
 * weights carry the 1/sqrt(dk) scale.
 */
import * as tf from '@tensorflow/tfjs';
import { attentionMemory, hostMatrix, type AttentionMemory, type HostMatrix } from './simdKernels.ts';
import { HEAD_SIZES, loopInputColumns } from './features.ts';
import { advanceLoop, startLoopTracker, type LoopTracker } from '../../tokens/loops.ts';
import { noteColumns, relativeBucket, ringLength } from './longContext.ts';
import { addRelativePitch, CLOCK_CYCLE, CLOCK_PERIODS, CLOCK_SCALE, clockPhase, intervalIndex, MATCH_SCALE, RELATIVE_WIDTH, rememberInterval, type Hyperparameters, type SparseInputs } from './network.ts';
import type { Weights } from '../layers.ts';
import type { NoteToken } from '../../tokens/tokenize.ts';

/**
 * Rows up to which a fused product runs on the host kernels: a pair of rows reads the
 * megabyte-sized matrix once (about 190 µs against XNNPACK's 250 µs through tfjs, for 256 × 1792
 * on one wasm thread); three rows read it twice, which is slower than XNNPACK.
 */
const FUSED_KERNEL_ROWS = 2;

/** Host copies and fused products of the weights a step reads (built once per generation). */
export interface DecoderWeights {
  layers: number;
  hidden: number;
  heads: number;
  dk: number;
  /** Slots in a row's ring per head. */
  R: number;
  headDim: number;
  /** lstm0/wx [inputDim, 4H] on the host: a multi-hot input is a sum of its rows. */
  inputTable: Float32Array;
  /** lstm{l}/b [4H]. */
  lstmBias: Float32Array[];
  /** lstm0/wkey [KEY_SLOTS, 4H] (key-conditioned models). */
  keyTable?: Float32Array;
  /** lstm0/wloop [LOOP_INPUT_SLOTS, 4H] (models with a loop input). */
  loopTable?: Float32Array;
  /** Tensors made for this generation (disposeDecoderWeights frees them). */
  made: tf.Tensor[];
  /**
   * Per layer [H, 4H + what reads it]: wh_l beside the input weights of what reads layer l's
   * output: lstm{l+1}/wx, or after the last layer [wq·s | wk | wv | head/wz's LSTM rows]. In a
   * residual model every layer above and the attention read layer l (through the sum), so its
   * product holds all their input weights, each scaled by layer l's gate: still one product.
   */
  fused: tf.Tensor2D[];
  /** The fused products as host kernels for one or two rows (batch 1 with its guidance row), tfjs above. */
  fusedProducts: HostMatrix[];
  /** Per layer: the consumers (layer index, or `layers` for the attention and heads) its product feeds, in column order. */
  feeds: number[][];
  /** head/wz's attention rows [A, headDim]. */
  wzContext: HostMatrix;
  bz: Float32Array;
  wdt: HostMatrix;
  bdt: Float32Array;
  /** head/edt [DT, headDim]: a one-hot choice times it is its row. */
  edt: Float32Array;
  /** head/wpitch [headDim, PITCH], with head/wrel's RELATIVE_WIDTH columns after it when `relative`. */
  wpitch: HostMatrix;
  relative: boolean;
  bpitch: Float32Array;
  epitch: Float32Array;
  /** head/wdur and head/wvel side by side [headDim, DUR + VEL]. */
  wdurvel: HostMatrix;
  bdurvel: Float32Array;
  /** attn/wnote [NOTE_WIDTH, A]: a note's own part of its value is the sum of four rows. */
  wnote: Float32Array;
  /** attn/winterval [RELATIVE_WIDTH, A] (models with intervalValues): a note's interval from the one before adds its row to the value. */
  winterval?: Float32Array;
  /** Lags of interval matching (0: none). */
  matchLags: number;
  /**
   * Models with intervalMatch: per head, MATCH_SCALE · the summed attn/match weights of every set
   * of matched lags [heads, 2^matchLags] (bit l of the index: lag l + 1 matched).
   */
  matchSums?: Float64Array;
  /**
   * Models with a beat clock: per head, the clock's part of the score of a slot whose note lies
   * δ grid steps before the query's, at [k * CLOCK_CYCLE + δ mod CLOCK_CYCLE].
   */
  clockTable?: Float64Array;
  /** [heads, dk]: each head's null key (its value is zero). */
  knull: Float32Array;
  /** [heads, R]: bias of the note `d + 1` notes back, at [k * R + d]. */
  bias: Float32Array;
}

const host = (t: tf.Tensor) => t.dataSync() as Float32Array;

export function decoderWeights(w: Weights, h: Hyperparameters): DecoderWeights {
  const H = h.hidden;
  const A = h.attentionDim;
  const heads = h.heads ?? 1;
  const dk = A / heads;
  const R = ringLength(h);
  const buckets = h.relativeBuckets ?? 32;
  const table = host(w['attn/bias']);
  const bias = new Float32Array(heads * R);
  for (let d = 0; d < R; d++) {
    const bucket = relativeBucket(d + 1, buckets, R);
    for (let k = 0; k < heads; k++) bias[k * R + d] = table[bucket * heads + k];
  }
  const wz = w['head/wz'] as tf.Tensor2D;
  // The fused products are kept; the host arrays stay outside tidy, which would walk them.
  const feeds = Array.from({ length: h.layers }, (_, l) => (h.residual ? Array.from({ length: h.layers - l }, (_, i) => l + 1 + i) : [l + 1]));
  const fused = tf.tidy(() => {
    const top = tf.concat([tf.mul(w['attn/wq'], 1 / Math.sqrt(dk)), w['attn/wk'], w['attn/wv'], wz.slice([0, 0], [H, h.headDim])], 1);
    const inputOf = (consumer: number) => (consumer < h.layers ? w[`lstm${consumer}/wx`] : top);
    return feeds.map((consumers, l) => {
      // A residual layer's output enters the sum times its gate: fold the gate into the rows.
      const gate = h.residual && l > 0 ? w[`lstm${l}/gate`].reshape([H, 1]) : undefined;
      const reads = consumers.map((c) => (gate ? tf.mul(inputOf(c), gate) : inputOf(c)));
      return tf.concat([w[`lstm${l}/wh`], ...reads], 1) as tf.Tensor2D;
    });
  });
  const made: tf.Tensor[] = [...fused];
  const matrix = (values: Float32Array, K: number, N: number) => {
    const tensor = tf.tensor2d(values, [K, N]);
    made.push(tensor);
    return hostMatrix(values, K, N, (x, rows) => product(x, rows, tensor));
  };
  const [DUR, VEL] = [HEAD_SIZES[2], HEAD_SIZES[3]];
  const dur = host(w['head/wdur']);
  const vel = host(w['head/wvel']);
  const sideBySide = (a: Float32Array, n: number, b: Float32Array, m: number) => {
    const out = new Float32Array(h.headDim * (n + m));
    for (let i = 0; i < h.headDim; i++) {
      out.set(a.subarray(i * n, (i + 1) * n), i * (n + m));
      out.set(b.subarray(i * m, (i + 1) * m), i * (n + m) + n);
    }
    return out;
  };
  const durvel = sideBySide(dur, DUR, vel, VEL);
  const relative = Boolean(h.relativePitch);
  const PITCH = HEAD_SIZES[1];
  return {
    made,
    fused,
    fusedProducts: fused.map((f) => hostMatrix(host(f), f.shape[0], f.shape[1], (x, rows) => product(x, rows, f), FUSED_KERNEL_ROWS)),
    feeds,
    wzContext: matrix(host(wz).slice(H * h.headDim), A, h.headDim),
    wdt: matrix(host(w['head/wdt']), h.headDim, HEAD_SIZES[0]),
    wpitch: relative ? matrix(sideBySide(host(w['head/wpitch']), PITCH, host(w['head/wrel']), RELATIVE_WIDTH), h.headDim, PITCH + RELATIVE_WIDTH) : matrix(host(w['head/wpitch']), h.headDim, PITCH),
    relative,
    wdurvel: matrix(durvel, h.headDim, DUR + VEL),
    layers: h.layers,
    hidden: H,
    heads,
    dk,
    R,
    headDim: h.headDim,
    inputTable: host(w['lstm0/wx']),
    lstmBias: Array.from({ length: h.layers }, (_, l) => host(w[`lstm${l}/b`])),
    keyTable: h.keys ? host(w['lstm0/wkey']) : undefined,
    loopTable: h.loopInput ? host(w['lstm0/wloop']) : undefined,
    bz: host(w['head/bz']),
    bdt: host(w['head/bdt']),
    edt: host(w['head/edt']),
    bpitch: host(w['head/bpitch']),
    epitch: host(w['head/epitch']),
    bdurvel: Float32Array.from([...host(w['head/bdur']), ...host(w['head/bvel'])]),
    wnote: host(w['attn/wnote']),
    winterval: h.intervalValues ? host(w['attn/winterval']) : undefined,
    matchLags: h.intervalMatch ?? 0,
    matchSums: h.intervalMatch ? matchSums(host(w['attn/match']), h.intervalMatch, heads) : undefined,
    clockTable: h.beatClock ? clockTable(host(w['attn/clock']), heads) : undefined,
    knull: host(w['attn/knull']),
    bias,
  };
}

/** attn/clock [period, head] → DecoderWeights.clockTable. */
function clockTable(values: Float32Array, heads: number): Float64Array {
  const table = new Float64Array(heads * CLOCK_CYCLE);
  for (let k = 0; k < heads; k++)
    for (let delta = 0; delta < CLOCK_CYCLE; delta++) {
      let sum = 0;
      CLOCK_PERIODS.forEach((period, p) => (sum += values[p * heads + k] * Math.cos(clockPhase(delta, period))));
      table[k * CLOCK_CYCLE + delta] = CLOCK_SCALE * sum;
    }
  return table;
}

/** attn/match [lag, head] → DecoderWeights.matchSums. */
function matchSums(values: Float32Array, lags: number, heads: number): Float64Array {
  const sets = 1 << lags;
  const out = new Float64Array(heads * sets);
  for (let k = 0; k < heads; k++)
    for (let set = 0; set < sets; set++) for (let l = 0; l < lags; l++) if (set & (1 << l)) out[k * sets + set] += MATCH_SCALE * values[l * heads + k];
  return out;
}

/** Frees what decoderWeights made (the model's own weights stay). */
export function disposeDecoderWeights(d: DecoderWeights): void {
  tf.dispose(d.made);
}

/** x [rows, K] (host) · w [K, N] → [rows, N] on the host: the one tfjs product of a stage. */
function product(x: Float32Array, rows: number, w: tf.Tensor2D): Float32Array {
  const input = tf.tensor2d(x, [rows, w.shape[0]]);
  const out = tf.matMul(input, w);
  const values = host(out);
  tf.dispose([input, out]);
  return values;
}

/** Decoding state of B rows, all on the host. */
export interface RingState {
  /** Per layer [B, H]: LSTM output and cell. */
  h: Float32Array[];
  c: Float32Array[];
  /** Per layer [B, 4H]: h·wh from the last step (zero before the first). */
  recurrent: Float32Array[];
  /** [B, heads, R, dk]: slot keys, circular; row b's next write goes to slot next[b]. */
  keys: Float32Array;
  /** [B, heads, R, dk]: slot values, laid out as the keys. */
  values: Float32Array;
  /** Per row: the slot the next note is written to. */
  next: number[];
  /** Notes in each row's ring (at most R; the newest `filled` slots are real). */
  filled: number[];
  /** Each row's last committed pitch (undefined before the first): the interval of the next note starts there. */
  lastPitch: (number | undefined)[];
  /** Each row's last matchLags intervals (intervalIndex, -1: none), newest first (models with interval matching). */
  recent: number[][];
  /** [B, R, matchLags]: each slot's interval context, as `recent` was at its step (-1: none). */
  slotContexts?: Int8Array;
  /** Each row's onset of its last committed note in grid steps (NaN before the first; models with a beat clock). */
  onset?: number[];
  /** [B, R]: each slot's clock, the onset of the note read at its step (NaN: none). */
  slotOnsets?: Float64Array;
  /** Each row's loop tracker (models with a loop input): the loop through its last committed note. */
  loops?: LoopTracker[];
  /** Each row's loop-input columns of that loop (loopInputColumns), read by the next step. */
  loopColumns?: number[][];
  /** Each row's key-input row [B, 4H] (key-conditioned models). */
  keyRows?: Float32Array;
  /** [B, 2A]: the key and the LSTM part of the value of the note being chosen (decodeStep → commitNotes). */
  pending?: Float32Array;
  /** The memory `keys` and `values` live in, with the SIMD loops (attentionKernel.ts); absent: plain arrays, JavaScript loops. */
  attention?: AttentionMemory;
  /**
   * Where the attention looked, when set (a diagnostic; see attentionReach): per head, the
   * attention weight summed over steps for each band of REACH_BANDS and, last, the null slot.
   */
  reach?: Float64Array;
}

/** Distance bands of `RingState.reach`, as the farthest distance (notes back) of each. */
export const REACH_BANDS = [8, 32, 128, Infinity] as const;
/** Entries per head in `RingState.reach`: the bands, then the null slot. */
export const REACH_WIDTH = REACH_BANDS.length + 1;

/** Starts collecting where the attention of `state` looks (all rows together). */
export function collectReach(state: RingState, d: DecoderWeights): void {
  state.reach = new Float64Array(d.heads * REACH_WIDTH);
}

/** How many notes ring slot `slot` was written before the newest one (slot `newest`, age 0): the note `age + 1` notes back. */
const slotAge = (slot: number, newest: number, R: number) => (slot <= newest ? newest - slot : newest - slot + R);

function reachBand(back: number): number {
  let band = 0;
  while (back > REACH_BANDS[band]) band++;
  return band;
}

/** Key and value arrays for `rows` rows, in kernel memory where the kernels run. */
function ringArrays(d: DecoderWeights, rows: number): Pick<RingState, 'keys' | 'values' | 'attention'> {
  const size = rows * d.heads * d.R * d.dk;
  const attention = attentionMemory(size, d.R, d.dk);
  return attention ? { keys: attention.keys, values: attention.values, attention } : { keys: new Float32Array(size), values: new Float32Array(size) };
}

/** A fresh state for rows writing in `keys` (key indices; ignored by models without a key input). */
export function initialRing(d: DecoderWeights, keys: readonly number[]): RingState {
  const B = keys.length;
  const H = d.hidden;
  let keyRows: Float32Array | undefined;
  if (d.keyTable) {
    keyRows = new Float32Array(B * 4 * H);
    keys.forEach((k, b) => keyRows!.set(d.keyTable!.subarray(k * 4 * H, (k + 1) * 4 * H), b * 4 * H));
  }
  return {
    h: Array.from({ length: d.layers }, () => new Float32Array(B * H)),
    c: Array.from({ length: d.layers }, () => new Float32Array(B * H)),
    recurrent: Array.from({ length: d.layers }, () => new Float32Array(B * 4 * H)),
    ...ringArrays(d, B),
    next: new Array(B).fill(0),
    filled: new Array(B).fill(0),
    lastPitch: new Array(B).fill(undefined),
    recent: Array.from({ length: B }, () => []),
    slotContexts: d.matchLags ? new Int8Array(B * d.R * d.matchLags).fill(-1) : undefined,
    onset: d.clockTable ? new Array(B).fill(Number.NaN) : undefined,
    slotOnsets: d.clockTable ? new Float64Array(B * d.R).fill(Number.NaN) : undefined,
    loops: d.loopTable ? Array.from({ length: B }, () => startLoopTracker()) : undefined,
    loopColumns: d.loopTable ? Array.from({ length: B }, () => []) : undefined,
    keyRows,
  };
}

/** The arrays end to end, in a new array made by `make`. */
function joinArrays<T extends Float32Array | Float64Array | Int8Array>(parts: readonly T[], make: (length: number) => T): T {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
const join = (parts: readonly Float32Array[]) => joinArrays(parts, (n) => new Float32Array(n));

/** Joins states into one batch, rows in order. */
export function concatRings(d: DecoderWeights, states: RingState[]): RingState {
  if (states.length === 1) return states[0];
  const perLayer = (pick: (s: RingState) => Float32Array[]) => pick(states[0]).map((_, l) => join(states.map((s) => pick(s)[l])));
  const arrays = ringArrays(d, states.length);
  arrays.keys.set(join(states.map((s) => s.keys)));
  arrays.values.set(join(states.map((s) => s.values)));
  return {
    h: perLayer((s) => s.h),
    c: perLayer((s) => s.c),
    recurrent: perLayer((s) => s.recurrent),
    ...arrays,
    next: states.flatMap((s) => s.next),
    filled: states.flatMap((s) => s.filled),
    lastPitch: states.flatMap((s) => s.lastPitch),
    recent: states.flatMap((s) => s.recent),
    slotContexts: states[0].slotContexts ? joinArrays(states.map((s) => s.slotContexts!), (n) => new Int8Array(n)) : undefined,
    onset: states[0].onset ? states.flatMap((s) => s.onset!) : undefined,
    slotOnsets: states[0].slotOnsets ? joinArrays(states.map((s) => s.slotOnsets!), (n) => new Float64Array(n)) : undefined,
    loops: states[0].loops ? states.flatMap((s) => s.loops!) : undefined,
    loopColumns: states[0].loopColumns ? states.flatMap((s) => s.loopColumns!) : undefined,
    keyRows: states[0].keyRows ? join(states.map((s) => s.keyRows!)) : undefined,
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** One LSTM cell per row on the host; gates [input, forget, output | candidate] in `gates` [B, 4H]. */
function lstmCellHost(gates: Float32Array, h: Float32Array, c: Float32Array, B: number, H: number): void {
  for (let b = 0; b < B; b++) {
    const g = b * 4 * H;
    const s = b * H;
    for (let j = 0; j < H; j++) {
      const cell = sigmoid(gates[g + H + j]) * c[s + j] + sigmoid(gates[g + j]) * Math.tanh(gates[g + 3 * H + j]);
      c[s + j] = cell;
      h[s + j] = sigmoid(gates[g + 2 * H + j]) * Math.tanh(cell);
    }
  }
}

/** Row sums of a multi-hot input: x·lstm0/wx as the sum of the active rows (see SparseInputs). */
function inputProjection(d: DecoderWeights, inputs: SparseInputs, out: Float32Array): void {
  const { columns, rows, slots } = inputs;
  const n = 4 * d.hidden;
  const table = d.inputTable;
  for (let r = 0; r < rows; r++) {
    const sum = out.subarray(r * n, (r + 1) * n);
    for (let s = 0; s < slots; s++) {
      const c = columns[s * rows + r];
      if (c < 0) continue;
      const row = table.subarray(c * n, (c + 1) * n);
      for (let j = 0; j < n; j++) sum[j] += row[j];
    }
  }
}

/** a[ao..ao+n) · b[bo..bo+n), four running sums (about twice as fast in V8 as one). */
function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += a[ao + i] * b[bo + i];
    s1 += a[ao + i + 1] * b[bo + i + 1];
    s2 += a[ao + i + 2] * b[bo + i + 2];
    s3 += a[ao + i + 3] * b[bo + i + 3];
  }
  for (; i < n; i++) s0 += a[ao + i] * b[bo + i];
  return s0 + s1 + s2 + s3;
}

/** Scratch for the attention weights of one row and head (R notes). */
let scratchScores = new Float64Array(1024);
/** Scratch for the matched lags of one row's slots (interval matching; R notes). */
let scratchMatched = new Uint8Array(1024);

/**
 * Attention of every row and head over its ring: q [B, heads*dk] (scaled, row stride `qStride`)
 * → context [B, heads*dk]. The null slot scores q·knull and contributes nothing; note slots
 * score q·key + bias(distance). A ring fills slots 0, 1, … and then wraps, so its filled slots
 * are always slots 0 .. filled - 1: one run for the kernels.
 */
export function ringAttention(state: RingState, d: DecoderWeights, q: Float32Array, qStride: number): Float32Array {
  const { heads, dk, R, knull, bias } = d;
  const { keys, values, attention } = state;
  const B = state.filled.length;
  const A = heads * dk;
  const context = new Float32Array(B * A);
  if (scratchScores.length < R) scratchScores = new Float64Array(R);
  const scores = scratchScores;
  for (let b = 0; b < B; b++) {
    const filled = state.filled[b];
    const newest = (state.next[b] + R - 1) % R;
    // Which lags each slot matches is the same for every head: found once per row.
    const matched = d.matchSums ? matchedLags(state, d, b, filled) : undefined;
    for (let k = 0; k < heads; k++) {
      const qo = b * qStride + k * dk;
      const co = b * A + k * dk;
      const ring = (b * heads + k) * R * dk;
      if (filled === 0) {
        // Only the null slot, whose value is zero.
        if (state.reach) state.reach[k * REACH_WIDTH + REACH_BANDS.length] += 1;
        continue;
      }
      const nullScore = dot(q, qo, knull, k * dk, dk);
      if (attention) {
        attention.vector.set(q.subarray(qo, qo + dk));
        attention.scores(ring, filled, scores);
      } else for (let slot = 0; slot < filled; slot++) scores[slot] = dot(q, qo, keys, ring + slot * dk, dk);
      if (matched) {
        const sums = d.matchSums!;
        const base = k << d.matchLags;
        for (let slot = 0; slot < filled; slot++) scores[slot] += sums[base + matched[slot]];
      }
      if (d.clockTable) addClockScores(scores, state, d, b, k, filled);
      // Slot s holds the note newest - s notes back (mod R).
      let max = nullScore;
      for (let slot = 0; slot < filled; slot++) {
        const back = slotAge(slot, newest, R);
        const score = scores[slot] + bias[k * R + back];
        scores[slot] = score;
        if (score > max) max = score;
      }
      let total = Math.exp(nullScore - max);
      for (let slot = 0; slot < filled; slot++) {
        const e = Math.exp(scores[slot] - max);
        scores[slot] = e;
        total += e;
      }
      if (state.reach) {
        const row = k * REACH_WIDTH;
        state.reach[row + REACH_BANDS.length] += Math.exp(nullScore - max) / total;
        for (let slot = 0; slot < filled; slot++) state.reach[row + reachBand(slotAge(slot, newest, R) + 1)] += scores[slot] / total;
      }
      if (attention) {
        for (let slot = 0; slot < filled; slot++) attention.vector[slot] = scores[slot] / total;
        attention.accumulate(ring, filled);
        context.set(attention.context, co);
      } else
        for (let slot = 0; slot < filled; slot++) {
          const p = scores[slot] / total;
          const at = ring + slot * dk;
          for (let i = 0; i < dk; i++) context[co + i] += p * values[at + i];
        }
    }
  }
  return context;
}

/** The beat clock's part of head k's scores of row b's filled slots (a slot or query with no note read adds nothing). */
function addClockScores(scores: Float64Array, state: RingState, d: DecoderWeights, b: number, k: number, filled: number): void {
  const now = state.onset![b];
  if (Number.isNaN(now)) return;
  const table = d.clockTable!;
  const base = k * CLOCK_CYCLE;
  for (let slot = 0, at = b * d.R; slot < filled; slot++, at++) {
    const then = state.slotOnsets![at];
    // Onsets only grow along a row, so now - then ≥ 0.
    if (!Number.isNaN(then)) scores[slot] += table[base + ((now - then) % CLOCK_CYCLE)];
  }
}

/**
 * Interval matching (models with intervalMatch): for each filled slot of row b, the set of lags
 * at which its context interval equals the row's current one (bit l: lag l + 1), in scratch.
 */
function matchedLags(state: RingState, d: DecoderWeights, b: number, filled: number): Uint8Array {
  if (scratchMatched.length < d.R) scratchMatched = new Uint8Array(d.R);
  const matched = scratchMatched;
  matched.fill(0, 0, filled);
  const L = d.matchLags;
  const recent = state.recent[b];
  const contexts = state.slotContexts!;
  for (let l = 0; l < Math.min(L, recent.length); l++) {
    const interval = recent[l];
    if (interval < 0) continue;
    for (let slot = 0, at = b * d.R * L + l; slot < filled; slot++, at += L) if (contexts[at] === interval) matched[slot] |= 1 << l;
  }
  return matched;
}

/**
 * One step for every row: the LSTM layers on the previous notes' inputs, the query and the key
 * and value of the slot this step fills, attention over the ring → z [B, headDim] on the host
 * (`withHeadInput` false skips z, for priming). commitNotes then writes the chosen notes.
 */
export function decodeStep(d: DecoderWeights, state: RingState, inputs: SparseInputs, withHeadInput = true): Float32Array | undefined {
  const B = inputs.rows;
  const H = d.hidden;
  const A = d.heads * d.dk;
  // The attention's and heads' input per row: [q (A) | k (A) | v (A) | head/wz's LSTM part (headDim)].
  const stride = 3 * A + d.headDim;
  // What each consumer reads, summed over the layers that feed it (one layer unless residual).
  const reads = Array.from({ length: d.layers + 1 }, (_, c) => new Float32Array(B * (c < d.layers ? 4 * H : stride)));
  inputProjection(d, inputs, reads[0]);
  for (let l = 0; l < d.layers; l++) {
    const gates = reads[l];
    const bias = d.lstmBias[l];
    const rec = state.recurrent[l];
    const key = l === 0 ? state.keyRows : undefined;
    for (let b = 0; b < B; b++)
      for (let j = 0, o = b * 4 * H; j < 4 * H; j++, o++) gates[o] += bias[j] + rec[o] + (key ? key[o] : 0);
    if (l === 0 && d.loopTable && state.loopColumns)
      for (let b = 0; b < B; b++)
        for (const column of state.loopColumns[b]) {
          const row = d.loopTable.subarray(column * 4 * H, (column + 1) * 4 * H);
          for (let j = 0; j < 4 * H; j++) gates[b * 4 * H + j] += row[j];
        }
    lstmCellHost(gates, state.h[l], state.c[l], B, H);
    const out = d.fusedProducts[l].times(state.h[l], B);
    const width = d.fused[l].shape[1];
    const next = new Float32Array(B * 4 * H);
    for (let b = 0; b < B; b++) {
      next.set(out.subarray(b * width, b * width + 4 * H), b * 4 * H);
      let column = b * width + 4 * H;
      for (const c of d.feeds[l]) {
        const target = reads[c];
        const n = target.length / B;
        for (let j = 0, o = b * n; j < n; j++, o++) target[o] += out[column + j];
        column += n;
      }
    }
    state.recurrent[l] = next;
  }
  const qkvz = reads[d.layers];
  const pending = new Float32Array(B * 2 * A);
  for (let b = 0; b < B; b++) pending.set(qkvz.subarray(b * stride + A, b * stride + 3 * A), b * 2 * A);
  state.pending = pending;
  if (!withHeadInput) return undefined;
  const context = ringAttention(state, d, qkvz, stride);
  const fromContext = d.wzContext.times(context, B);
  const z = new Float32Array(B * d.headDim);
  for (let b = 0; b < B; b++)
    for (let j = 0; j < d.headDim; j++) z[b * d.headDim + j] = Math.tanh(qkvz[b * stride + 3 * A + j] + fromContext[b * d.headDim + j] + d.bz[j]);
  return z;
}

/**
 * Writes each row's chosen note over its oldest slot: the key and value decodeStep computed from
 * the LSTM output, the value plus the note's own part (its four one-hot rows of attn/wnote).
 */
export function commitNotes(state: RingState, d: DecoderWeights, notes: readonly NoteToken[]): void {
  const { heads, dk, R, wnote } = d;
  const A = heads * dk;
  const B = state.filled.length;
  const pending = state.pending;
  if (!pending) throw new Error('commitNotes: no step to commit (call decodeStep first)');
  for (let b = 0; b < B; b++) {
    const kv = b * 2 * A;
    for (const column of noteColumns(notes[b])) for (let i = 0; i < A; i++) pending[kv + A + i] += wnote[column * A + i];
    const interval = d.winterval || d.matchLags ? intervalIndex(state.lastPitch[b], notes[b].pitch) : -1;
    if (d.winterval && interval >= 0) for (let i = 0; i < A; i++) pending[kv + A + i] += d.winterval[interval * A + i];
    state.lastPitch[b] = notes[b].pitch;
    const slot = state.next[b];
    if (state.slotContexts) {
      // The slot keeps the context its step was scored with; then this note's interval joins it.
      const recent = state.recent[b];
      const at = (b * R + slot) * d.matchLags;
      for (let l = 0; l < d.matchLags; l++) state.slotContexts[at + l] = l < recent.length ? recent[l] : -1;
      rememberInterval(recent, interval, d.matchLags);
    }
    if (state.onset) {
      // The slot keeps the clock its step was scored with (the note it read); then this note's onset follows.
      const before = state.onset[b];
      state.slotOnsets![b * R + slot] = before;
      state.onset[b] = Number.isNaN(before) ? 0 : before + notes[b].dt;
    }
    if (state.loops) state.loopColumns![b] = loopInputColumns(advanceLoop(state.loops[b], notes[b]));
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

/** Adds `bias` [N] to every row of `x` [rows, N] in place. */
function addRowBias(x: Float32Array, bias: Float32Array): Float32Array {
  const n = bias.length;
  for (let o = 0; o < x.length; o++) x[o] += bias[o % n];
  return x;
}

/** tanh(z + table[choice]) per row: a one-hot choice fed back into the head activation. */
function conditionOnHost(z: Float32Array, table: Float32Array, choices: readonly number[], width: number): Float32Array {
  const out = new Float32Array(z.length);
  choices.forEach((c, b) => {
    for (let j = 0; j < width; j++) out[b * width + j] = Math.tanh(z[b * width + j] + table[c * width + j]);
  });
  return out;
}

/** Rows of two products side by side [rows, n + m] (one fused product) → the two [rows, n] and [rows, m]. */
function splitColumns(both: Float32Array, rows: number, n: number, m: number): [Float32Array, Float32Array] {
  const a = new Float32Array(rows * n);
  const b = new Float32Array(rows * m);
  for (let r = 0; r < rows; r++) {
    a.set(both.subarray(r * (n + m), r * (n + m) + n), r * n);
    b.set(both.subarray(r * (n + m) + n, (r + 1) * (n + m)), r * m);
  }
  return [a, b];
}

/** The chained heads on a host z [B, headDim] (see NoteHeads in sampling.ts). */
export function hostHeads(d: DecoderWeights, z: Float32Array, rows: number) {
  const width = d.headDim;
  let z2: Float32Array | undefined;
  return {
    dt: () => addRowBias(d.wdt.times(z, rows), d.bdt),
    pitch: (dts: readonly number[], anchors: readonly number[]) => {
      z2 = conditionOnHost(z, d.edt, dts, width);
      if (!d.relative) return addRowBias(d.wpitch.times(z2, rows), d.bpitch);
      const [pitch, rel] = splitColumns(d.wpitch.times(z2, rows), rows, HEAD_SIZES[1], RELATIVE_WIDTH);
      return addRelativePitch(addRowBias(pitch, d.bpitch), rel, anchors);
    },
    durVel: (pitches: readonly number[]) => {
      if (!z2) throw new Error('hostHeads: pitch before durVel');
      const both = addRowBias(d.wdurvel.times(conditionOnHost(z2, d.epitch, pitches, width), rows), d.bdurvel);
      const [dur, vel] = splitColumns(both, rows, HEAD_SIZES[2], HEAD_SIZES[3]);
      return { dur, vel };
    },
  };
}
