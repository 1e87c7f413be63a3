/**
 * Picks the fastest TensorFlow.js backend that this machine has, and patches the wasm
 * backend's slow paths (measured: transposed or batched BatchMatMul falls off XNNPACK to a
 * naive loop at about 2 GFLOP/s, which is what autodiff's backward pass hits).
 *
 * Order: tfjs-node-gpu, tfjs-node (both optional dependencies, absent here), wasm, cpu.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

let chosen: BackendName | undefined;

async function tryNative(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
    } catch {
      // not installed (the usual case here): try the next one
    }
  }
  return undefined;
}

async function tryWasm(): Promise<boolean> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const require = createRequire(import.meta.url);
    const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    wasm.setWasmPaths(dist.endsWith('/') ? dist : `${dist}/`);
    // Threads are unavailable to wasm in Node; stay single-threaded on purpose.
    wasm.setThreadsCount(1);
    if (!(await tf.setBackend('wasm'))) return false;
    patchWasmKernels();
    return true;
  } catch {
    return false;
  }
}

/**
 * Initialise TensorFlow.js once. Returns the backend in use and logs it (unless quiet).
 * `choice` comes from `--backend`; 'auto' walks the preference order.
 */
export async function initBackend(choice: BackendChoice = 'auto', log: (line: string) => void = (l) => console.error(l)): Promise<BackendName> {
  if (chosen) return chosen;
  // The cpu backend greets Node users with a banner on first use; our log line says it better.
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
  let detail = '';
  if (choice === 'auto' || choice === 'tensorflow') {
    const pkg = await tryNative();
    if (pkg) {
      chosen = 'tensorflow';
      detail = pkg;
    } else if (choice === 'tensorflow') {
      throw new Error('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed');
    }
  }
  if (!chosen && (choice === 'auto' || choice === 'wasm')) {
    if (await tryWasm()) {
      chosen = 'wasm';
      detail = `@tensorflow/tfjs-backend-wasm (SIMD ${(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'on' : 'off'}, 1 thread)`;
    } else if (choice === 'wasm') {
      throw new Error('--backend wasm: @tensorflow/tfjs-backend-wasm failed to initialise');
    }
  }
  if (!chosen) {
    await tf.setBackend('cpu');
    chosen = 'cpu';
    detail = 'pure-JS cpu backend (slow)';
  }
  await tf.ready();
  log(`backend: ${chosen} — ${detail}`);
  return chosen;
}

let patched = false;

type WasmBackend = {
  disposeData(id: object): void;
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
};

/**
 * Stock wasm Slice reads its whole input through readSync, which copies it: unstacking
 * 128 timesteps of an [8192, 1024] projection copied 4 GB per training step. This Slice reads
 * a view of the wasm heap instead and copies only what it returns.
 */
function patchSlice(): void {
  const original = tf.getKernel('Slice', 'wasm');
  if (!original) return;
  const sliceUtil = (tf as unknown as { slice_util: {
    parseSliceParams(x: tf.TensorInfo, begin: number[], size: number[]): [number[], number[]];
    isSliceContinous(shape: number[], begin: number[], size: number[]): boolean;
  } }).slice_util;
  const fastSlice = (args: { inputs: tf.NamedTensorInfoMap; backend: object; attrs: tf.NamedAttrMap }): tf.TensorInfo => {
    const x = args.inputs.x as tf.TensorInfo;
    const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] };
    if (x.dtype !== 'float32' || x.shape.length > 2) return original.kernelFunc(args as never) as tf.TensorInfo;
    const backend = args.backend as unknown as WasmBackend;
    const [b, s] = sliceUtil.parseSliceParams(x, begin, size);
    const out = backend.makeOutput(s, x.dtype);
    // Views are taken after makeOutput, which may grow (and so detach) the heap.
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    const cols = x.shape.length === 2 ? x.shape[1] : 1;
    if (sliceUtil.isSliceContinous(x.shape, b, s)) {
      const offset = x.shape.length === 2 ? b[0] * cols + b[1] : b[0];
      dst.set(src.subarray(offset, offset + dst.length));
    } else {
      for (let r = 0; r < s[0]; r++) {
        const from = (b[0] + r) * cols + b[1];
        dst.set(src.subarray(from, from + s[1]), r * s[1]);
      }
    }
    return out;
  };
  tf.unregisterKernel('Slice', 'wasm');
  tf.registerKernel({ ...original, kernelFunc: fastSlice as never });

  const unpack = tf.getKernel('Unpack', 'wasm');
  if (!unpack) return;
  tf.unregisterKernel('Unpack', 'wasm');
  tf.registerKernel({
    ...unpack,
    kernelFunc: (args) => {
      const value = args.inputs.value as tf.TensorInfo;
      let axis = (args.attrs as { axis: number }).axis;
      if (axis < 0) axis += value.shape.length;
      if (axis !== 0 || value.dtype !== 'float32') return unpack.kernelFunc(args);
      const rows = value.shape[0];
      const rest = value.shape.slice(1);
      const per = rest.reduce((p, d) => p * d, 1);
      const backend = args.backend as unknown as WasmBackend;
      const outs: tf.TensorInfo[] = [];
      for (let i = 0; i < rows; i++) outs.push(backend.makeOutput(rest, 'float32'));
      const src = backend.typedArrayFromHeap(value);
      outs.forEach((o, i) => backend.typedArrayFromHeap(o).set(src.subarray(i * per, (i + 1) * per)));
      return outs;
    },
  });
}

/**
 * Two stock kernels copy more than they must:
 * - Identity copies its input. Autodiff clones every tensor it saves for the backward pass,
 *   so a training step saved one copy of the recurrent weights per timestep (128 MB moved),
 *   and each copy's new data id missed BatchMatMul's transpose cache (below) in the backward
 *   pass. This Identity shares the data with a reference count, as the cpu backend's does
 *   (data is immutable; wasm's own Reshape shares the same way).
 * - SplitV calls the stock slice, which reads its whole input through the host for every
 *   piece (the LSTM gate split, twice per timestep, forward and decoding). Here SplitV, and
 *   a Slice of any rank that cuts one axis, copy only the pieces, from a view of the heap.
 */
function patchCopies(): void {
  type Backend = WasmBackend & { incRef(dataId: object): void };
  const identity = tf.getKernel('Identity', 'wasm');
  if (identity) {
    tf.unregisterKernel('Identity', 'wasm');
    tf.registerKernel({
      ...identity,
      kernelFunc: (args) => {
        const x = args.inputs.x as tf.TensorInfo;
        if (x.dtype === 'string') return identity.kernelFunc(args);
        (args.backend as unknown as Backend).incRef(x.dataId);
        return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
      },
    });
  }
  const product = (dims: number[]) => dims.reduce((p, d) => p * d, 1);
  /** Pieces of `x` along `axis` ([begin, size] each), as new float32 tensors. */
  const cut = (backend: Backend, x: tf.TensorInfo, axis: number, pieces: [number, number][]): tf.TensorInfo[] => {
    const outer = product(x.shape.slice(0, axis));
    const inner = product(x.shape.slice(axis + 1));
    const rowLength = x.shape[axis] * inner;
    const outs = pieces.map(([, size]) => backend.makeOutput(x.shape.map((d, i) => (i === axis ? size : d)), 'float32'));
    // Views after every makeOutput, which may grow (and so detach) the heap.
    const src = backend.typedArrayFromHeap(x);
    outs.forEach((out, k) => {
      const dst = backend.typedArrayFromHeap(out);
      const [begin, size] = pieces[k];
      const length = size * inner;
      if (length === 0) return;
      for (let r = 0; r < outer; r++) {
        const from = r * rowLength + begin * inner;
        dst.set(src.subarray(from, from + length), r * length);
      }
    });
    return outs;
  };
  const splitV = tf.getKernel('SplitV', 'wasm');
  if (splitV) {
    tf.unregisterKernel('SplitV', 'wasm');
    tf.registerKernel({
      ...splitV,
      kernelFunc: (args) => {
        const x = args.inputs.x as tf.TensorInfo;
        if (x.dtype !== 'float32') return splitV.kernelFunc(args);
        const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
        const a = tf.util.parseAxisParam(axis, x.shape)[0];
        const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, a);
        let begin = 0;
        const pieces = sizes.map((size): [number, number] => {
          begin += size;
          return [begin - size, size];
        });
        return cut(args.backend as unknown as Backend, x, a, pieces);
      },
    });
  }
  const slice = tf.getKernel('Slice', 'wasm');
  const sliceUtil = (tf as unknown as { slice_util: { parseSliceParams(x: tf.TensorInfo, begin: number[], size: number[]): [number[], number[]] } }).slice_util;
  if (slice) {
    tf.unregisterKernel('Slice', 'wasm');
    tf.registerKernel({
      ...slice,
      kernelFunc: (args) => {
        const x = args.inputs.x as tf.TensorInfo;
        if (x.dtype === 'float32' && x.shape.length > 2) {
          const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] };
          const [b, s] = sliceUtil.parseSliceParams(x, begin, size);
          const axes = x.shape.map((_, i) => i).filter((i) => b[i] !== 0 || s[i] !== x.shape[i]);
          if (axes.length <= 1) {
            const axis = axes[0] ?? 0;
            return cut(args.backend as unknown as Backend, x, axis, [[b[axis], s[axis]]])[0];
          }
        }
        return slice.kernelFunc(args);
      },
    });
  }
}

/**
 * Stock Sum over an axis that is not the innermost transposes its whole input first: the bias
 * gradients of a training step ([4096, 1024] summed over rows) spent ~45 ms there. This adds
 * the rows into a zeroed float32 accumulator in the same order as the stock kernel's loop, so
 * the result is bit-identical (tests/backend-copies.test.ts), ~5× faster on large inputs.
 * Small inputs stay on the stock kernel, which is faster there.
 */
const SUM_PATCH_MIN_SIZE = 65536;

function patchSum(): void {
  const stock = tf.getKernel('Sum', 'wasm');
  if (!stock) return;
  tf.unregisterKernel('Sum', 'wasm');
  tf.registerKernel({
    ...stock,
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      const size = x.shape.reduce((p, d) => p * d, 1);
      if (x.dtype !== 'float32' || size < SUM_PATCH_MIN_SIZE) return stock.kernelFunc(args);
      const axes = tf.util.parseAxisParam(axis, x.shape);
      if (axes.length !== 1 || axes[0] === x.shape.length - 1) return stock.kernelFunc(args);
      const a = axes[0];
      const outer = x.shape.slice(0, a).reduce((p, d) => p * d, 1);
      const rows = x.shape[a];
      const inner = size / (outer * rows);
      const backend = args.backend as unknown as WasmBackend;
      const out = backend.makeOutput(keepDims ? x.shape.map((d, i) => (i === a ? 1 : d)) : x.shape.filter((_, i) => i !== a), 'float32');
      const src = backend.typedArrayFromHeap(x);
      const dst = backend.typedArrayFromHeap(out);
      dst.fill(0);
      for (let o = 0; o < outer; o++) {
        const acc = dst.subarray(o * inner, (o + 1) * inner);
        for (let r = 0; r < rows; r++) {
          const row = src.subarray((o * rows + r) * inner, (o * rows + r + 1) * inner);
          for (let i = 0; i < inner; i++) acc[i] += row[i]; // a float32 store rounds each sum
        }
      }
      return out;
    },
  });
}

/**
 * The stock wasm Tanh is a scalar loop (~15 ns per element here: at batch 16 it was a quarter of
 * the sampling step's kernel time) while Sigmoid is XNNPACK-vectorised (~1 ns). tanh(x) =
 * 2·sigmoid(2x) − 1, with the two affine steps done on the heap in place. Its absolute error
 * stays within a few float32 ulps of 1 (tests/backend-copies.test.ts checks 5e-7); autodiff's
 * Tanh gradient uses only the output, so training is unchanged but for that rounding.
 * Small inputs stay on the stock kernel.
 */
const TANH_PATCH_MIN_SIZE = 256;

function patchTanh(): void {
  const stock = tf.getKernel('Tanh', 'wasm');
  const sigmoid = tf.getKernel('Sigmoid', 'wasm');
  if (!stock || !sigmoid) return;
  tf.unregisterKernel('Tanh', 'wasm');
  tf.registerKernel({
    ...stock,
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      const size = x.shape.reduce((p, d) => p * d, 1);
      if (x.dtype !== 'float32' || size < TANH_PATCH_MIN_SIZE) return stock.kernelFunc(args);
      const backend = args.backend as unknown as WasmBackend;
      const doubled = backend.makeOutput(x.shape, 'float32');
      const src = backend.typedArrayFromHeap(x);
      const twice = backend.typedArrayFromHeap(doubled);
      for (let i = 0; i < size; i++) twice[i] = 2 * src[i];
      const out = sigmoid.kernelFunc({ inputs: { x: doubled }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
      backend.disposeData(doubled.dataId);
      const y = backend.typedArrayFromHeap(out);
      for (let i = 0; i < size; i++) y[i] = 2 * y[i] - 1;
      return out;
    },
  });
}

/**
 * Re-registers wasm's BatchMatMul so that every call reaches the XNNPACK fast path:
 * transposes are made explicit, and a batched left operand times a shared right operand
 * is folded into one 2-D product. Transposed right operands (weights, in the backward pass)
 * are cached by their data id: tensors are immutable, and a training step reuses each
 * transposed weight once per timestep.
 */
const TRANSPOSE_CACHE_SIZE = 24;
const transposeCache = new Map<object, tf.TensorInfo>();

function patchWasmKernels(): void {
  if (patched) return;
  patched = true;
  patchSlice();
  patchCopies();
  patchSum();
  patchTanh();
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const transposeKernel = tf.getKernel('Transpose', 'wasm');
  const reshapeKernel = tf.getKernel('Reshape', 'wasm');
  if (!original || !transposeKernel || !reshapeKernel) return;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  type Info = tf.TensorInfo;
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    kernelFunc: (args) => {
      const backend = args.backend as unknown as { disposeData(id: object): void };
      const { a, b } = args.inputs as { a: Info; b: Info };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      const temps: Info[] = [];
      const swapLast = (x: Info): Info => {
        const rank = x.shape.length;
        const perm = [...Array(rank).keys()];
        [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
        return transposeKernel.kernelFunc({ inputs: { x }, backend: args.backend, attrs: { perm } }) as Info;
      };
      let a2 = a;
      if (transposeA) {
        a2 = swapLast(a);
        temps.push(a2);
      }
      let b2 = b;
      if (transposeB) {
        const cached = transposeCache.get(b.dataId);
        if (cached) b2 = cached;
        else if (b.shape.length === 2) {
          b2 = swapLast(b);
          transposeCache.set(b.dataId, b2);
          if (transposeCache.size > TRANSPOSE_CACHE_SIZE) {
            const [oldest, info] = transposeCache.entries().next().value as [object, Info];
            transposeCache.delete(oldest);
            backend.disposeData(info.dataId);
          }
        } else {
          b2 = swapLast(b);
          temps.push(b2);
        }
      }
      const aBatch = a2.shape.slice(0, -2).reduce((p, d) => p * d, 1);
      const bBatch = b2.shape.slice(0, -2).reduce((p, d) => p * d, 1);
      const outShape = [...a2.shape.slice(0, -1), b2.shape[b2.shape.length - 1]];
      let folded = false;
      if (aBatch > 1 && bBatch === 1) {
        // [..., M, K] x [K, N]: one [batch*M, K] x [K, N] product.
        const rows = aBatch * a2.shape[a2.shape.length - 2];
        a2 = reshapeKernel.kernelFunc({ inputs: { x: a2 }, backend: args.backend, attrs: { shape: [1, rows, a2.shape[a2.shape.length - 1]] } }) as Info;
        temps.push(a2);
        folded = true;
      }
      const out = original.kernelFunc({ inputs: { a: a2, b: b2 }, backend: args.backend, attrs: { transposeA: false, transposeB: false } }) as Info;
      for (const t of temps) backend.disposeData(t.dataId);
      if (folded) (out as { shape: number[] }).shape = outShape;
      return out;
    },
  });
}

export function currentBackend(): BackendName | undefined {
  return chosen;
}

/** Where the wasm binaries live (for diagnostics). */
export function wasmDistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')));
}
