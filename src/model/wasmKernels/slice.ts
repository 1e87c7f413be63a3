/**
 * Slice. Stock wasm Slice reads its whole input through readSync, which copies it: unstacking
 * 128 timesteps of an [8192, 1024] projection copied 4 GB per training step. Here a float32
 * slice reads a view of the wasm heap and copies only what it returns: any slice of rank 1 or 2,
 * and a slice of higher rank that cuts a single axis (the same copy as SplitV's). Other slices
 * stay on the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { cutAlongAxis, replaceWasmKernel, wasmBackendOf, type WasmBackend } from './heap.ts';

const sliceUtil = (tf as unknown as { slice_util: {
  parseSliceParams(x: tf.TensorInfo, begin: number[], size: number[]): [number[], number[]];
  isSliceContinous(shape: number[], begin: number[], size: number[]): boolean;
} }).slice_util;

/** A slice of rank 1 or 2 (begin `b`, size `s`), copied row by row from a view of the heap. */
function sliceRank2(backend: WasmBackend, x: tf.TensorInfo, b: number[], s: number[]): tf.TensorInfo {
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
}

export function patchSlice(): void {
  replaceWasmKernel('Slice', (stock) => (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype !== 'float32') return stock.kernelFunc(args);
    const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] };
    const [b, s] = sliceUtil.parseSliceParams(x, begin, size);
    const backend = wasmBackendOf(args);
    if (x.shape.length <= 2) return sliceRank2(backend, x, b, s);
    const axes = x.shape.map((_, i) => i).filter((i) => b[i] !== 0 || s[i] !== x.shape[i]);
    if (axes.length > 1) return stock.kernelFunc(args);
    const axis = axes[0] ?? 0;
    return cutAlongAxis(backend, x, axis, [[b[axis], s[axis]]])[0];
  });
}
