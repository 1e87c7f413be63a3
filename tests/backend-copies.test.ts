/**
 * The wasm kernel patches that only move data (src/model/wasmKernels/: splitV, slice, identity): SplitV and
 * one-axis Slice of any rank must return exactly the stock pieces, and the data-sharing
 * Identity must behave like a copy (reference counted, no leaks).
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';

before(async () => {
  await initBackend('wasm', () => {});
});

/** Reference slice on a nested array: one axis cut to [begin, begin + size). */
function cutAxis(x: unknown, axis: number, begin: number, size: number): unknown {
  if (!Array.isArray(x)) return x;
  if (axis === 0) return x.slice(begin, begin + size);
  return x.map((row) => cutAxis(row, axis - 1, begin, size));
}

test('SplitV along every axis of 2-, 3- and 4-D tensors gives the exact pieces', () => {
  for (const shape of [[6, 10], [3, 4, 5], [2, 3, 4, 6]]) {
    const x = tf.randomNormal(shape, 0, 1, 'float32', 7);
    const values = x.arraySync();
    for (let axis = 0; axis < shape.length; axis++) {
      const d = shape[axis];
      const sizes = d >= 4 ? [1, d - 3, 2] : [1, d - 1];
      const pieces = tf.split(x, sizes, axis);
      let begin = 0;
      pieces.forEach((p, k) => {
        assert.deepEqual(p.shape, shape.map((v, i) => (i === axis ? sizes[k] : v)));
        assert.deepEqual(p.arraySync(), cutAxis(values, axis, begin, sizes[k]), `shape ${shape} axis ${axis} piece ${k}`);
        begin += sizes[k];
      });
      tf.dispose(pieces);
      if (d % 2 === 0) {
        const halves = tf.split(x, 2, axis);
        assert.deepEqual(halves[1].arraySync(), cutAxis(values, axis, d / 2, d / 2));
        tf.dispose(halves);
      }
    }
    x.dispose();
  }
});

test('Slice of 3- and 4-D tensors: one cut axis takes the fast path, several the stock one, same values', () => {
  const x = tf.randomNormal([4, 5, 6], 0, 1, 'float32', 3);
  const v = x.arraySync();
  assert.deepEqual(tf.slice(x, [0, 1, 0], [4, 4, 6]).arraySync(), cutAxis(v, 1, 1, 4));
  assert.deepEqual(tf.slice(x, [2, 0, 0], [1, 5, 6]).arraySync(), cutAxis(v, 0, 2, 1));
  assert.deepEqual(tf.slice(x, [0, 0, 3], [4, 5, 3]).arraySync(), cutAxis(v, 2, 3, 3));
  assert.deepEqual(tf.slice(x, [1, 2, 3], [2, 2, 2]).arraySync(), cutAxis(cutAxis(cutAxis(v, 0, 1, 2), 1, 2, 2), 2, 3, 2));
  const y = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 4);
  assert.deepEqual(tf.slice(y, [0, 0, 1, 0], [2, 3, 2, 5]).arraySync(), cutAxis(y.arraySync(), 2, 1, 2));
  tf.dispose([x, y]);
});

test('Identity shares data like a copy: the clone outlives the original, nothing leaks', () => {
  const before = tf.memory();
  const x = tf.tensor2d([1, 2, 3, 4], [2, 2]);
  const c = tf.clone(x);
  x.dispose();
  assert.deepEqual(c.arraySync(), [[1, 2], [3, 4]]);
  const d = tf.add(c, 1);
  c.dispose();
  assert.deepEqual(d.arraySync(), [[2, 3], [4, 5]]);
  d.dispose();
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
});

test('gradients through saved tensors are right and the tape leaks nothing', () => {
  // d/dw sum(tanh(x·w)·x·w) with w used at several "timesteps": checked against finite differences.
  const x = tf.randomNormal([3, 4], 0, 1, 'float32', 1);
  const w = tf.variable(tf.randomNormal([4, 4], 0, 0.5, 'float32', 2));
  const f = () => {
    let h = x;
    for (let t = 0; t < 3; t++) h = tf.tanh(tf.matMul(h, w));
    return tf.sum(h) as tf.Scalar;
  };
  const start = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(f, [w]);
  const g = grads[w.name].arraySync() as number[][];
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, start);
  const base = w.arraySync() as number[][];
  const eps = 1e-2;
  for (const [i, j] of [[0, 0], [1, 2], [3, 3]]) {
    const bump = (delta: number) => {
      const m = base.map((r) => [...r]);
      m[i][j] += delta;
      w.assign(tf.tensor2d(m));
      return tf.tidy(() => f().dataSync()[0]);
    };
    const numeric = (bump(eps) - bump(-eps)) / (2 * eps);
    assert.ok(Math.abs(numeric - g[i][j]) < 1e-2 * Math.max(1, Math.abs(numeric)), `dw[${i}][${j}] ${g[i][j]} vs ${numeric}`);
  }
  tf.dispose([x, w]);
});

test('Sum over a leading or middle axis of large tensors adds in the stock order (sequential float32)', () => {
  for (const [shape, axis] of [[[4096, 20], 0], [[8, 300, 40], 1], [[70000], 0], [[300, 300], 1]] as [number[], number][]) {
    const x = tf.randomNormal(shape, 0, 1, 'float32', 11);
    const v = x.dataSync();
    const outer = shape.slice(0, axis).reduce((p, d) => p * d, 1);
    const rows = shape[axis];
    const inner = v.length / (outer * rows);
    const expected = new Float32Array(outer * inner);
    for (let o = 0; o < outer; o++) for (let r = 0; r < rows; r++) for (let i = 0; i < inner; i++) expected[o * inner + i] = Math.fround(expected[o * inner + i] + v[(o * rows + r) * inner + i]);
    const got = tf.sum(x, axis).dataSync();
    assert.deepEqual(Array.from(got), Array.from(expected), `shape ${shape} axis ${axis}`);
    const kept = tf.sum(x, axis, true);
    assert.deepEqual(kept.shape, shape.map((d, i) => (i === axis ? 1 : d)));
    tf.dispose([x, kept]);
  }
});

test('the patched Tanh stays within 5e-7 of tanh, is exact at 0 and saturates to ±1, and its gradient is 1 − tanh²', () => {
  const n = 4096;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = (i - n / 2) / 128; // -16 .. 16, exact zero included
  const y = tf.tanh(tf.tensor1d(values));
  const out = y.dataSync();
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(out[i] - Math.tanh(values[i])));
  assert.ok(worst <= 5e-7, `largest error ${worst}`);
  assert.equal(out[n / 2], 0, 'tanh(0) is 0');
  assert.equal(out[0], -1);
  assert.equal(out[n - 1], 1);
  const small = tf.tanh(tf.tensor1d([0.5, -2]));
  Array.from(small.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - Math.tanh([0.5, -2][i])) < 1e-7));
  const grad = tf.grad((x: tf.Tensor) => tf.tanh(x).sum())(tf.tensor1d(values));
  const g = grad.dataSync();
  for (const i of [0, 1000, n / 2, 3000]) assert.ok(Math.abs(g[i] - (1 - Math.tanh(values[i]) ** 2)) < 2e-6, `gradient at ${values[i]}`);
  tf.dispose([y, small, grad]);
});
