/**
 * Tanh. The stock wasm Tanh is a scalar loop (~15 ns per element here: at batch 16 it was a
 * quarter of the sampling step's kernel time) while Sigmoid is XNNPACK-vectorised (~1 ns).
 * tanh(x) = 2·sigmoid(2x) − 1, with the two affine steps done on the heap in place. Its absolute
 * error stays within a few float32 ulps of 1 (tests/backend-copies.test.ts checks 5e-7);
 * autodiff's Tanh gradient uses only the output, so training is unchanged but for that rounding.
 * Small inputs stay on the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { product, replaceWasmKernel, wasmBackendOf } from './heap.ts';

const TANH_PATCH_MIN_SIZE = 256;

export function patchTanh(): void {
  const sigmoid = tf.getKernel('Sigmoid', 'wasm');
  if (!sigmoid) return;
  replaceWasmKernel('Tanh', (stock) => (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    const size = product(x.shape);
    if (x.dtype !== 'float32' || size < TANH_PATCH_MIN_SIZE) return stock.kernelFunc(args);
    const backend = wasmBackendOf(args);
    const doubled = backend.makeOutput(x.shape, 'float32');
    const src = backend.typedArrayFromHeap(x);
    const twice = backend.typedArrayFromHeap(doubled);
    for (let i = 0; i < size; i++) twice[i] = 2 * src[i];
    const out = sigmoid.kernelFunc({ inputs: { x: doubled }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
    backend.disposeData(doubled.dataId);
    const y = backend.typedArrayFromHeap(out);
    for (let i = 0; i < size; i++) y[i] = 2 * y[i] - 1;
    return out;
  });
}
