/** The backend's own matmul rate: tf.matMul on large float32 matrices, the ceiling training is compared with. */
import * as tf from '@tensorflow/tfjs';
import { timeRuns } from './stats.ts';

export interface MatmulFigure {
  shape: string;
  gflops: number;
  medianMs: number;
}

/** GFLOP/s of [m,k]·[k,n] (2·m·k·n FLOPs per product), median of `reps` after a warm-up. */
export async function benchMatmul(m: number, k: number, n: number, reps: number): Promise<MatmulFigure> {
  const a = tf.randomUniform([m, k], -1, 1, 'float32', 1) as tf.Tensor2D;
  const b = tf.randomUniform([k, n], -1, 1, 'float32', 2) as tf.Tensor2D;
  try {
    // wasm kernels run synchronously, so the call's wall time is the product's time.
    const t = await timeRuns(() => tf.matMul(a, b).dispose(), 2, reps);
    return { shape: `${m}x${k}x${n}`, gflops: (2 * m * k * n) / (t.medianMs * 1e6), medianMs: t.medianMs };
  } finally {
    tf.dispose([a, b]);
  }
}
