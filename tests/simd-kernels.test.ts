import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { inputWidth } from '../src/model/note/features.ts';
import { createLongContextWeights } from '../src/model/note/longContext.ts';
import { seededRandom } from '../src/model/random.ts';
import { decoderWeights, disposeDecoderWeights, initialRing, ringAttention } from '../src/model/note/ringDecoder.ts';
import { assemble, attentionMemory, hostMatrix } from '../src/model/note/simdKernels.ts';
import { TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

before(async () => {
  await initBackend('wasm', () => {});
});

const randomArray = (n: number, seed: number) => {
  const rng = seededRandom(seed);
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
};

const worstDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
};

describe('SIMD kernels', () => {
  test('the hand-assembled module validates and exports its three functions', () => {
    const bytes = assemble();
    assert.ok(WebAssembly.validate(bytes));
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => `${e.name}:${e.kind}`);
    assert.deepEqual(exports, ['scores:function', 'accumulate:function', 'scores2:function']);
  });

  test('scores and accumulate compute the dot products and the weighted sum of plain loops', () => {
    for (const [R, dk, first, n] of [[10, 8, 0, 7], [10, 8, 3, 7], [639, 64, 0, 639], [639, 64, 5 * 64, 1], [6, 4, 0, 6]]) {
      const memory = attentionMemory(R * dk, R, dk);
      assert.ok(memory, 'WebAssembly SIMD is available in Node 20');
      memory.keys.set(randomArray(R * dk, 1));
      memory.values.set(randomArray(R * dk, 2));
      const q = randomArray(dk, 3);
      memory.vector.set(q);
      const out = new Float64Array(n);
      const firstSlot = first / dk;
      memory.scores(first, n, out);
      const expected = Array.from({ length: n }, (_, s) => q.reduce((sum, v, i) => sum + v * memory.keys[(firstSlot + s) * dk + i], 0));
      assert.ok(worstDifference(out, expected) < 1e-4, `scores R=${R} dk=${dk} first=${first} n=${n}`);
      const p = randomArray(n, 4);
      memory.vector.set(p);
      memory.accumulate(first, n);
      const context = Array.from({ length: dk }, (_, i) => p.reduce((sum, v, s) => sum + v * memory.values[(firstSlot + s) * dk + i], 0));
      assert.ok(worstDifference(memory.context, context) < 1e-4, `accumulate R=${R} dk=${dk} first=${first} n=${n}`);
    }
  });

  test('a host matrix gives the tfjs product through the kernel (few rows) and the fallback (many)', () => {
    const [K, N] = [192, 97];
    const w = randomArray(K * N, 5);
    const tensor = tf.tensor2d(w, [K, N]);
    const viaTfjs = (x: Float32Array, rows: number) => {
      const out = tf.matMul(tf.tensor2d(x, [rows, K]), tensor);
      const values = out.dataSync() as Float32Array;
      out.dispose();
      return values;
    };
    let fallbacks = 0;
    const matrix = hostMatrix(w, K, N, (x, rows) => {
      fallbacks++;
      return viaTfjs(x, rows);
    });
    // 2 and 4 rows run as pairs (scores2), 1 and 3 end on a single row (scores).
    for (const rows of [1, 2, 3, 4, 5, 32]) {
      const x = randomArray(rows * K, 10 + rows);
      assert.ok(worstDifference(matrix.times(x, rows), viaTfjs(x, rows)) < 1e-4, `${rows} rows`);
    }
    assert.equal(fallbacks, 2, 'rows above four go to the tfjs product');
    // Each row of a pair gets its own product, not its partner's.
    const one = randomArray(K, 40);
    const pair = new Float32Array(2 * K);
    pair.set(one, K);
    const both = matrix.times(pair, 2);
    assert.ok(both.subarray(0, N).every((v) => v === 0), 'a zero row times W is zero');
    assert.ok(worstDifference(both.subarray(N), matrix.times(one, 1)) < 1e-5);
    // A big matrix may take the kernels for fewer rows.
    const big = hostMatrix(w, K, N, (x, rows) => {
      fallbacks++;
      return viaTfjs(x, rows);
    }, 2);
    const three = randomArray(3 * K, 41);
    assert.ok(worstDifference(big.times(three, 3), viaTfjs(three, 3)) < 1e-4);
    assert.equal(fallbacks, 3, 'three rows go to the tfjs product when the limit is two');
    tensor.dispose();
  });

  test('ring attention gives the same context with the kernels and with the JavaScript loops, before and after the ring wraps', () => {
    const H = TINY_LONG_CONTEXT_HYPERPARAMETERS;
    const w = createLongContextWeights(H, inputWidth(2), 9);
    const d = decoderWeights(w, H);
    const rows = 3;
    const withKernels = initialRing(d, [0, 5, 24]);
    assert.ok(withKernels.attention, 'the ring lives in kernel memory');
    withKernels.keys.set(randomArray(withKernels.keys.length, 6));
    withKernels.values.set(randomArray(withKernels.values.length, 7));
    // Row 0 empty, row 1 part full, row 2 wrapped (its newest note in slot 4).
    withKernels.filled = [0, 9, d.R];
    withKernels.next = [0, 9, 5];
    const plain = { ...withKernels, keys: withKernels.keys.slice(), values: withKernels.values.slice(), attention: undefined };
    const q = randomArray(rows * 3 * H.attentionDim, 8);
    const a = ringAttention(withKernels, d, q, 3 * H.attentionDim);
    const b = ringAttention(plain, d, q, 3 * H.attentionDim);
    assert.ok(worstDifference(a, b) < 1e-5, `largest difference ${worstDifference(a, b)}`);
    assert.ok(a.subarray(0, H.attentionDim).every((v) => v === 0), 'an empty ring attends only to the null slot, whose value is zero');
    assert.ok(a.subarray(2 * H.attentionDim).some((v) => v !== 0));
    disposeDecoderWeights(d);
    tf.dispose(Object.values(w));
  });
});
