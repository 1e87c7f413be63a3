/**
 * Identity. Stock wasm Identity copies its input. Autodiff clones every tensor it saves for the
 * backward pass, so a training step saved one copy of the recurrent weights per timestep (128 MB
 * moved), and each copy's new data id missed BatchMatMul's transpose cache (batchMatMul.ts) in
 * the backward pass. This Identity shares the data with a reference count, as the cpu backend's
 * does (data is immutable; wasm's own Reshape shares the same way). Strings keep the stock kernel.
 */
import type * as tf from '@tensorflow/tfjs';
import { replaceWasmKernel, wasmBackendOf } from './heap.ts';

export function patchIdentity(): void {
  replaceWasmKernel('Identity', (stock) => (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string') return stock.kernelFunc(args);
    wasmBackendOf(args).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  });
}
