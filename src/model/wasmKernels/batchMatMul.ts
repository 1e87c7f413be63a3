/**
 * BatchMatMul. Stock wasm BatchMatMul reaches XNNPACK only for untransposed operands with equal
 * batch; a transposed or batched product (what autodiff's backward pass asks for) falls to a
 * naive loop at about 2 GFLOP/s. Here every call reaches the fast path: transposes are made
 * explicit, and a batched left operand times a shared right operand is folded into one 2-D
 * product. Transposed right operands (weights, in the backward pass) are cached by their data
 * id: tensors are immutable, and a training step reuses each transposed weight once per timestep.
 */
import * as tf from '@tensorflow/tfjs';
import { product, replaceWasmKernel, wasmBackendOf } from './heap.ts';

const TRANSPOSE_CACHE_SIZE = 24;
const transposeCache = new Map<object, tf.TensorInfo>();

export function patchBatchMatMul(): void {
  const transposeKernel = tf.getKernel('Transpose', 'wasm');
  const reshapeKernel = tf.getKernel('Reshape', 'wasm');
  if (!transposeKernel || !reshapeKernel) return;
  type Info = tf.TensorInfo;
  replaceWasmKernel('BatchMatMul', (original) => (args) => {
    const backend = wasmBackendOf(args);
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
    const aBatch = product(a2.shape.slice(0, -2));
    const bBatch = product(b2.shape.slice(0, -2));
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
  });
}
