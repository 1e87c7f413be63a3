/**
 * The batching rule (src/jobs/batching.ts) that the in-process queue and the Redis worker share:
 * the first job and the next ones of similar length (within a factor of two), in order, up to
 * the batch size; the others keep their order for the next batch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { similarLength, takeBatch } from '../src/jobs/batching.ts';

const notes = (n: number) => n;

test('similar length: within a factor of two of the first job, either way, bounds included', () => {
  assert.ok(similarLength(500, 500));
  assert.ok(similarLength(1000, 500));
  assert.ok(similarLength(250, 500));
  assert.ok(!similarLength(1001, 500));
  assert.ok(!similarLength(249, 500));
});

test('a batch takes the first job and the next ones of similar length, in order; the rest keep their order', () => {
  assert.deepEqual(takeBatch([500, 16, 600, 2000, 300, 20], notes, 8), { batch: [500, 600, 300], rest: [16, 2000, 20] });
  // The first job decides: a short one at the head batches the short ones.
  assert.deepEqual(takeBatch([16, 500, 20, 32, 8], notes, 8), { batch: [16, 20, 32, 8], rest: [500] });
});

test('at most maxBatch jobs; jobs of similar length beyond it wait, in order', () => {
  assert.deepEqual(takeBatch([100, 100, 150, 2000, 120, 90], notes, 3), { batch: [100, 100, 150], rest: [2000, 120, 90] });
  assert.deepEqual(takeBatch([100, 200], notes, 1), { batch: [100], rest: [200] });
});

test('nothing waiting: an empty batch; the input is left as it was', () => {
  assert.deepEqual(takeBatch([], notes, 8), { batch: [], rest: [] });
  const waiting = [{ n: 40 }, { n: 400 }, { n: 50 }];
  const { batch, rest } = takeBatch(waiting, (j) => j.n, 8);
  assert.deepEqual(batch, [{ n: 40 }, { n: 50 }]);
  assert.equal(rest[0], waiting[1]);
  assert.equal(waiting.length, 3);
});
