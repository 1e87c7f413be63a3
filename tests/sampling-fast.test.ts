/**
 * sampleNext only sorts the classes that can be in the nucleus. These tests pin it to the
 * straightforward version (sort everything, then cut at top-p): same class, same draws from
 * the generator, for peaked, flat, tied and masked distributions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom, type Random } from '../src/model/random.ts';
import { sampleNext } from '../src/model/note/sampling.ts';

/** The version sampleNext replaced (commit a8c26fb), kept as the specification. */
function referenceSampleNext(logits: ArrayLike<number>, temperature: number, topP: number, rng: Random, allowed?: (index: number) => boolean): number {
  const n = logits.length;
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (!allowed || allowed(i)) order.push(i);
  if (order.length === 0) throw new Error('sampleNext: every class is masked out');
  if (temperature <= 0) return order.reduce((best, i) => (logits[i] > logits[best] ? i : best), order[0]);
  let max = -Infinity;
  for (const i of order) max = Math.max(max, logits[i] / temperature);
  const probs = new Float64Array(n);
  let sum = 0;
  for (const i of order) {
    probs[i] = Math.exp(logits[i] / temperature - max);
    sum += probs[i];
  }
  order.sort((a, b) => probs[b] - probs[a] || a - b);
  const cutoff = Math.min(1, topP) * sum;
  let kept = 0;
  let mass = 0;
  for (const i of order) {
    mass += probs[i];
    kept++;
    if (mass >= cutoff) break;
  }
  let r = rng.next() * mass;
  for (let k = 0; k < kept; k++) {
    r -= probs[order[k]];
    if (r <= 0) return order[k];
  }
  return order[kept - 1];
}

function logitsCase(gen: Random, n: number, kind: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = gen.next();
    if (kind === 0) out[i] = u * 0.5; // nearly flat
    else if (kind === 1) out[i] = (u - 0.5) * 12; // spread
    else if (kind === 2) out[i] = i === 7 ? 15 : u; // one dominant class
    else out[i] = Math.floor(u * 3); // many exact ties
  }
  return out;
}

test('sampleNext picks exactly what a full sort picks, and draws the same numbers', () => {
  const gen = seededRandom(2024);
  let cases = 0;
  for (const n of [4, 8, 88, 96, 97, 200]) {
    for (let kind = 0; kind < 4; kind++) {
      for (const temperature of [0, 0.3, 1, 1.7]) {
        for (const topP of [1e-6, 0.5, 0.9, 0.95, 0.999999, 1]) {
          const logits = logitsCase(gen, n, kind);
          const floor = Math.floor(gen.next() * (n - 1) * 0.8);
          for (const allowed of [undefined, (i: number) => i > floor, (i: number) => i % 3 !== 1]) {
            const seed = Math.floor(gen.next() * 2 ** 31);
            const a = seededRandom(seed);
            const b = seededRandom(seed);
            for (let draw = 0; draw < 3; draw++) {
              assert.equal(sampleNext(logits, temperature, topP, a, allowed), referenceSampleNext(logits, temperature, topP, b, allowed), `n=${n} kind=${kind} T=${temperature} p=${topP} draw ${draw}`);
              assert.equal(a.state(), b.state());
              cases++;
            }
          }
        }
      }
    }
  }
  assert.ok(cases > 5000);
});

test('sampleNext still refuses a fully masked distribution and handles plain arrays', () => {
  assert.throws(() => sampleNext([1, 2], 1, 1, seededRandom(1), () => false), /masked/);
  assert.equal(sampleNext([0, 5, 1], 0, 1, seededRandom(1)), 1);
  // A later, longer call after short ones (scratch buffers grow).
  const long = Array.from({ length: 1000 }, (_, i) => (i === 999 ? 50 : 0));
  assert.equal(sampleNext(long, 1, 0.5, seededRandom(3)), 999);
});
