/**
 * Unpack. Stock wasm Unpack slices its input once per output, and each slice read the whole
 * input through the host (the LSTM unstacks 128 timesteps of an [8192, 1024] projection per
 * training step). Unpacking a float32 tensor along its first axis here copies each row once,
 * from a view of the wasm heap. Other axes and dtypes stay on the stock kernel.
 */
import type * as tf from '@tensorflow/tfjs';
import { product, replaceWasmKernel, wasmBackendOf } from './heap.ts';

export function patchUnpack(): void {
  replaceWasmKernel('Unpack', (stock) => (args) => {
    const value = args.inputs.value as tf.TensorInfo;
    let axis = (args.attrs as { axis: number }).axis;
    if (axis < 0) axis += value.shape.length;
    if (axis !== 0 || value.dtype !== 'float32') return stock.kernelFunc(args);
    const rows = value.shape[0];
    const rest = value.shape.slice(1);
    const per = product(rest);
    const backend = wasmBackendOf(args);
    const outs: tf.TensorInfo[] = [];
    for (let i = 0; i < rows; i++) outs.push(backend.makeOutput(rest, 'float32'));
    // Views after every makeOutput, which may grow (and so detach) the heap.
    const src = backend.typedArrayFromHeap(value);
    outs.forEach((o, i) => backend.typedArrayFromHeap(o).set(src.subarray(i * per, (i + 1) * per)));
    return outs;
  });
}
