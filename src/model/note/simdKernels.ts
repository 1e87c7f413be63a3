/**
 * The small loops of a sampling step (ringDecoder.ts) as WebAssembly SIMD, four lanes at a time:
 *
 *   scores(q, keys, n, dk4, out)       out[s] = q · keys[s]            for s < n
 *   accumulate(p, values, n, dk4, out) out += Σ_s p[s] · values[s]     (each a dk vector)
 *
 * Pointers are byte offsets into the memory the module imports (env.memory), vectors are dk =
 * 4·dk4 float32s, slots follow each other (slot s at keys + 16·dk4·s), n ≥ 1 and dk4 ≥ 1. In
 * plain JavaScript the attention loops were a quarter of a step at batch 1. `scores` over a
 * transposed weight matrix is also a vector-matrix product (hostMatrix): for a row or two that
 * beats a tfjs product, whose engine bookkeeping costs more than the work.
 *
 * The module is small enough to write out: `assemble` below emits the binary format (the
 * WebAssembly core specification, sections 5.4–5.5), one function per instruction list.
 */

const I32 = 0x7f;
const V128 = 0x7b;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (small constants only). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const name = (s: string) => vec([...s].map((c) => [c.charCodeAt(0)]));

// The instructions used here.
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const tee = (i: number) => [0x22, ...uleb(i)];
const i32 = (n: number) => [0x41, ...sleb(n)];
const add = [0x6a];
const shl = [0x74];
const ltU = [0x49];
const eqz = [0x45];
const block = [0x02, 0x40];
const loop = [0x03, 0x40];
const brIf = (depth: number) => [0x0d, ...uleb(depth)];
const end = [0x0b];
const f32Load = [0x2a, 0x02, 0x00];
/** f32.store at `offset` bytes past the address on the stack. */
const f32StoreAt = (offset: number) => [0x38, 0x02, ...uleb(offset)];
const f32Add = [0x92];
const simd = (op: number, ...rest: number[]) => [0xfd, ...uleb(op), ...rest];
const v128Load = simd(0x00, 0x04, 0x00);
const v128Store = simd(0x0b, 0x04, 0x00);
const v128Zero = simd(0x0c, ...new Array(16).fill(0));
const f32x4Splat = simd(0x13);
const f32x4Lane = (lane: number) => simd(0x1f, lane);
const f32x4Add = simd(0xe4);
const f32x4Mul = simd(0xe6);
/** local += step */
const bump = (local: number, step: number[]) => [...get(local), ...step, ...add, ...set(local)];
/** ++counter < limit: the tail of a do-while loop. */
const countTo = (counter: number, limit: number) => [...get(counter), ...i32(1), ...add, ...tee(counter), ...get(limit), ...ltU, ...brIf(0)];
/** The sum of the four lanes of v128 local `acc`, as one f32 on the stack. */
const laneSum = (acc: number) => [...get(acc), ...f32x4Lane(0), ...get(acc), ...f32x4Lane(1), ...f32Add, ...get(acc), ...f32x4Lane(2), ...f32Add, ...get(acc), ...f32x4Lane(3), ...f32Add];

// Parameters of both functions: 0 vector (q or p), 1 slots (keys or values), 2 n, 3 dk4, 4 out.
const [VEC, SLOTS, N, DK4, OUT] = [0, 1, 2, 3, 4];
// Locals after them: 5 s, 6 i, 7 pointer into the slots, 8 pointer into the vector, 9 accumulator.
const [S, I, SP, VP, ACC] = [5, 6, 7, 8, 9];
const locals = [
  [4, I32],
  [1, V128],
];

const scores = [
  ...block,
  ...get(N), ...eqz, ...brIf(0),
  ...get(SLOTS), ...set(SP),
  ...loop, // over slots
  ...v128Zero, ...set(ACC),
  ...get(VEC), ...set(VP),
  ...i32(0), ...set(I),
  ...loop, // over the vector, four lanes at a time
  ...get(ACC), ...get(VP), ...v128Load, ...get(SP), ...v128Load, ...f32x4Mul, ...f32x4Add, ...set(ACC),
  ...bump(VP, i32(16)),
  ...bump(SP, i32(16)),
  ...countTo(I, DK4),
  ...end,
  ...get(OUT), ...laneSum(ACC), ...f32StoreAt(0),
  ...bump(OUT, i32(4)),
  ...countTo(S, N),
  ...end,
  ...end,
];

const accumulate = [
  ...block,
  ...get(N), ...eqz, ...brIf(0),
  ...loop, // over the vector, four lanes at a time
  ...v128Zero, ...set(ACC),
  ...get(SLOTS), ...set(SP),
  ...get(VEC), ...set(VP),
  ...i32(0), ...set(S),
  ...loop, // over slots: the same four lanes of each
  ...get(ACC), ...get(VP), ...f32Load, ...f32x4Splat, ...get(SP), ...v128Load, ...f32x4Mul, ...f32x4Add, ...set(ACC),
  ...bump(VP, i32(4)),
  ...bump(SP, [...get(DK4), ...i32(4), ...shl]),
  ...countTo(S, N),
  ...end,
  ...get(OUT), ...get(OUT), ...v128Load, ...get(ACC), ...f32x4Add, ...v128Store,
  ...bump(OUT, i32(16)),
  ...bump(SLOTS, i32(16)),
  ...countTo(I, DK4),
  ...end,
  ...end,
];

// `scores2`: the same products for two vectors at once (the second right after the first), each
// slot loaded once for both: out[2s] = q0 · slot s, out[2s + 1] = q1 · slot s. A vector-matrix
// product over a matrix too big for the cache streams it once for a pair of rows, not twice.
// Its locals: 5 s, 6 i, 7 slot pointer, 8 and 9 pointers into the two vectors, 10 and 11 their
// accumulators, 12 the slot's four lanes.
const [VP2, ACC0, ACC1, LANES] = [9, 10, 11, 12];
const pairLocals = [
  [5, I32],
  [3, V128],
];
const scores2 = [
  ...block,
  ...get(N), ...eqz, ...brIf(0),
  ...get(SLOTS), ...set(SP),
  ...loop, // over slots
  ...v128Zero, ...set(ACC0),
  ...v128Zero, ...set(ACC1),
  ...get(VEC), ...set(VP),
  ...get(VEC), ...get(DK4), ...i32(4), ...shl, ...add, ...set(VP2),
  ...i32(0), ...set(I),
  ...loop, // over the vectors, four lanes at a time
  ...get(SP), ...v128Load, ...set(LANES),
  ...get(ACC0), ...get(VP), ...v128Load, ...get(LANES), ...f32x4Mul, ...f32x4Add, ...set(ACC0),
  ...get(ACC1), ...get(VP2), ...v128Load, ...get(LANES), ...f32x4Mul, ...f32x4Add, ...set(ACC1),
  ...bump(VP, i32(16)),
  ...bump(VP2, i32(16)),
  ...bump(SP, i32(16)),
  ...countTo(I, DK4),
  ...end,
  ...get(OUT), ...laneSum(ACC0), ...f32StoreAt(0),
  ...get(OUT), ...laneSum(ACC1), ...f32StoreAt(4),
  ...bump(OUT, i32(8)),
  ...countTo(S, N),
  ...end,
  ...end,
];

/** The module: imports env.memory, exports `scores`, `accumulate` and `scores2`, all (i32 × 5) → (). */
export function assemble(): Uint8Array<ArrayBuffer> {
  const body = (code: number[], declared = locals) => {
    const f = [...vec(declared), ...code, ...end];
    return [...uleb(f.length), ...f];
  };
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), ...vec([])]])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0x00], [0x00], [0x00]])),
    ...section(7, vec([[...name('scores'), 0x00, 0x00], [...name('accumulate'), 0x00, 0x01], [...name('scores2'), 0x00, 0x02]])),
    ...section(10, vec([body(scores), body(accumulate), body(scores2, pairLocals)])),
  ]);
}

type KernelFunction = (vector: number, slots: number, n: number, dk4: number, out: number) => void;

let compiled: WebAssembly.Module | null | undefined;
function kernelModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(assemble());
    } catch {
      compiled = null; // no WebAssembly SIMD here: ringDecoder.ts runs the loops in JavaScript
    }
  }
  return compiled;
}

/** A ring's memory with the two kernels bound to it, and float32 views of its regions. */
export interface AttentionMemory {
  /** [rows, heads, R, dk] keys and values, as RingState lays them out. */
  keys: Float32Array;
  values: Float32Array;
  /** One head's query or attention weights (R floats) and one head's context (dk floats). */
  vector: Float32Array;
  context: Float32Array;
  /** `vector` (a query) · each of `n` key slots from float `first` of keys → out[0..n). */
  scores(first: number, n: number, out: Float64Array): void;
  /** Σ p[s]·values slot s over `n` slots from float `first` of values, p in `vector`, → context. */
  accumulate(first: number, n: number): void;
}

/**
 * Memory for `slotFloats` floats of keys and as many of values (a multiple of dk), with the
 * kernels, or undefined where WebAssembly SIMD is missing or dk is not a multiple of four.
 */
export function attentionMemory(slotFloats: number, R: number, dk: number): AttentionMemory | undefined {
  const module = dk % 4 === 0 ? kernelModule() : null;
  if (!module) return undefined;
  const floats = 2 * slotFloats + Math.max(R, dk) + dk + R;
  const memory = new WebAssembly.Memory({ initial: Math.ceil((floats * 4) / 65536) + 1 });
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as { scores: KernelFunction; accumulate: KernelFunction };
  const buffer = memory.buffer;
  const keys = new Float32Array(buffer, 0, slotFloats);
  const values = new Float32Array(buffer, slotFloats * 4, slotFloats);
  const vectorAt = 2 * slotFloats * 4;
  const vector = new Float32Array(buffer, vectorAt, Math.max(R, dk));
  const contextAt = vectorAt + vector.length * 4;
  const context = new Float32Array(buffer, contextAt, dk);
  const outAt = contextAt + dk * 4;
  const scoresOut = new Float32Array(buffer, outAt, R);
  const dk4 = dk / 4;
  return {
    keys,
    values,
    vector,
    context,
    scores(first, n, out) {
      exports.scores(vectorAt, first * 4, n, dk4, outAt);
      out.set(scoresOut.subarray(0, n));
    },
    accumulate(first, n) {
      context.fill(0);
      exports.accumulate(vectorAt, (slotFloats + first) * 4, n, dk4, contextAt);
    },
  };
}

/** x [rows, K] · W [K, N] on the host. */
export interface HostMatrix {
  times(x: Float32Array, rows: number): Float32Array;
}

/** Rows up to which the kernel beats XNNPACK's product through tfjs (small matrices: the head layers). */
const KERNEL_ROWS = 4;

/**
 * W (host copy, [K, N] row-major) as a product: the kernels over W's columns (`scores2` for each
 * pair of rows, `scores` for an odd one) for up to `maxRows` rows, else `fallback` (a tfjs
 * product). Without the kernels, always the fallback. A matrix of megabytes, which the kernels
 * stream from memory once per pair, beats XNNPACK only up to two rows.
 */
export function hostMatrix(w: Float32Array, K: number, N: number, fallback: (x: Float32Array, rows: number) => Float32Array, maxRows = KERNEL_ROWS): HostMatrix {
  const module = K % 4 === 0 ? kernelModule() : null;
  if (!module) return { times: fallback };
  const memory = new WebAssembly.Memory({ initial: Math.ceil(((K * N + 2 * K + 2 * N) * 4) / 65536) + 1 });
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as { scores: KernelFunction; scores2: KernelFunction };
  const columns = new Float32Array(memory.buffer, 0, K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) columns[n * K + k] = w[k * N + n];
  // Room for two input rows and two interleaved output rows.
  const xAt = K * N * 4;
  const input = new Float32Array(memory.buffer, xAt, 2 * K);
  const outAt = xAt + 2 * K * 4;
  const output = new Float32Array(memory.buffer, outAt, 2 * N);
  return {
    times(x, rows) {
      if (rows > maxRows) return fallback(x, rows);
      const out = new Float32Array(rows * N);
      let r = 0;
      // Rows in pairs: the matrix is read once per pair.
      for (; r + 1 < rows; r += 2) {
        input.set(x.subarray(r * K, (r + 2) * K));
        exports.scores2(xAt, 0, N, K / 4, outAt);
        for (let n = 0, a = r * N, b = (r + 1) * N; n < N; n++) {
          out[a + n] = output[2 * n];
          out[b + n] = output[2 * n + 1];
        }
      }
      if (r < rows) {
        input.set(x.subarray(r * K, (r + 1) * K));
        exports.scores(xAt, 0, N, K / 4, outAt);
        out.set(output.subarray(0, N), r * N);
      }
      return out;
    },
  };
}
