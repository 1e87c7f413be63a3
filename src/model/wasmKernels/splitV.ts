/**
 * SplitV. Stock wasm SplitV calls the stock Slice once per piece, which reads its whole input
 * through the host every time (the LSTM gate split, twice per timestep, in training and in
 * decoding). Splitting a float32 tensor here copies only the pieces, from a view of the wasm heap.
 * Other dtypes stay on the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { cutAlongAxis, replaceWasmKernel, wasmBackendOf } from './heap.ts';

export function patchSplitV(): void {
  replaceWasmKernel('SplitV', (stock) => (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype !== 'float32') return stock.kernelFunc(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
    const a = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, a);
    let begin = 0;
    const pieces = sizes.map((size): [number, number] => {
      begin += size;
      return [begin - size, size];
    });
    return cutAlongAxis(wasmBackendOf(args), x, a, pieces);
  });
}
