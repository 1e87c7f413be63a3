/**
 * Sum. Stock wasm Sum over an axis that is not the innermost transposes its whole input first:
 * the bias gradients of a training step ([4096, 1024] summed over rows) spent ~45 ms there. This
 * adds the rows into a zeroed float32 accumulator in the same order as the stock kernel's loop,
 * so the result is bit-identical (tests/backend-copies.test.ts), ~5× faster on large inputs.
 * Small inputs, the innermost axis and several axes at once stay on the stock kernel, which is
 * faster there.
 */
import * as tf from '@tensorflow/tfjs';
import { product, replaceWasmKernel, wasmBackendOf } from './heap.ts';

const SUM_PATCH_MIN_SIZE = 65536;

export function patchSum(): void {
  replaceWasmKernel('Sum', (stock) => (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const size = product(x.shape);
    if (x.dtype !== 'float32' || size < SUM_PATCH_MIN_SIZE) return stock.kernelFunc(args);
    const axes = tf.util.parseAxisParam(axis, x.shape);
    if (axes.length !== 1 || axes[0] === x.shape.length - 1) return stock.kernelFunc(args);
    const a = axes[0];
    const outer = product(x.shape.slice(0, a));
    const rows = x.shape[a];
    const inner = size / (outer * rows);
    const backend = wasmBackendOf(args);
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
  });
}
