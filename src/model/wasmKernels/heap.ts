/**
 * What the wasm kernel patches share: the part of the wasm backend they use (views of its heap,
 * fresh outputs, reference counts), the swap of a registered kernel for a patched one, and
 * copying pieces of a tensor along one axis straight from the heap.
 */
import * as tf from '@tensorflow/tfjs';

/** The part of the wasm backend that the patches call. */
export type WasmBackend = {
  disposeData(id: object): void;
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
};

export type KernelArgs = Parameters<tf.KernelFunc>[0];

export function wasmBackendOf(args: KernelArgs): WasmBackend {
  return args.backend as unknown as WasmBackend;
}

/**
 * Replaces wasm's kernel `name` with the one that `patch` builds around the stock kernel (which
 * the patch falls back to); nothing happens when wasm has no such kernel.
 */
export function replaceWasmKernel(name: string, patch: (stock: tf.KernelConfig) => tf.KernelFunc): void {
  const stock = tf.getKernel(name, 'wasm');
  if (!stock) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...stock, kernelFunc: patch(stock) });
}

export function product(dims: readonly number[]): number {
  return dims.reduce((p, d) => p * d, 1);
}

/** Pieces of `x` along `axis` ([begin, size] each), as new float32 tensors. */
export function cutAlongAxis(backend: WasmBackend, x: tf.TensorInfo, axis: number, pieces: [number, number][]): tf.TensorInfo[] {
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
}
