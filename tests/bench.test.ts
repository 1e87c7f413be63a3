/**
 * The bench's pure pieces, with real assertions (never timings): the analytic FLOP counter
 * against the products tfjs actually runs, the many-to-one loss against the many-to-many one,
 * the statistics, the target checks and the JSON's shape.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { backwardFlops, forwardFlops, stepFlops, trainStepFlops } from '../src/bench/flops.ts';
import { REQUIRED_FIELDS, checkTargets, formatTable } from '../src/bench/report.ts';
import { median, round, summarize } from '../src/bench/stats.ts';
import { benchLongContext, lastPositionLoss } from '../src/bench/training.ts';
import { chatFields, runBench } from '../src/cli/bench.ts';
import { initBackend } from '../src/model/backend.ts';
import { HEAD_SIZES, inputWidth } from '../src/model/note/features.ts';
import { createLongContextWeights } from '../src/model/note/longContext.ts';
import { DEFAULT_HYPERPARAMETERS, createWeights, sequenceLoss, type Hyperparameters, type SequenceBatch } from '../src/model/note/network.ts';
import { seededRandom } from '../src/model/random.ts';
import { TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

// Dimensions chosen all different, so that each product's shapes say which axis is inner.
const H: Hyperparameters = { hidden: 12, layers: 1, attentionDim: 5, attentionWindow: 4, headDim: 7, window: 12 };
const COMPOSERS = 2;
const B = 3;

function randomBatch(batch: number, steps: number): SequenceBatch {
  const D = inputWidth(COMPOSERS);
  const rows = batch * steps;
  const inputs = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([rows, D], 0, 1, 'float32', 5), 0.97), 'float32')) as tf.Tensor2D;
  const targets = HEAD_SIZES.map((n, k) => tf.oneHot(tf.randomUniform([rows], 0, n, 'int32', 10 + k) as tf.Tensor1D, n).toFloat()) as SequenceBatch['targets'];
  return { inputs, targets, batch, steps };
}

/** 2·M·K·N of every BatchMatMul that `f` runs, the inner axis found from the shapes. */
async function profiledMatmulFlops(f: () => void): Promise<number> {
  const info = await tf.profile(f);
  let total = 0;
  for (const k of info.kernels) {
    if (k.name !== 'BatchMatMul' && k.name !== '_FusedMatMul') continue;
    const [a, b] = k.inputShapes;
    const batch = a.slice(0, -2).reduce((p, d) => p * d, 1);
    const [a1, a2] = a.slice(-2);
    const [b1, b2] = b.slice(-2);
    const inner = [a1, a2].filter((d) => d === b1 || d === b2);
    assert.equal(new Set(inner).size, 1, `ambiguous product ${JSON.stringify(k.inputShapes)}`);
    const K = inner[0];
    total += 2 * batch * ((a1 * a2) / K) * K * ((b1 * b2) / K);
  }
  return total;
}

test('the FLOP counter matches the products a training step runs, forward and backward', async () => {
  await initBackend('wasm', () => {});
  const D = inputWidth(COMPOSERS);
  const w = createWeights(H, D, 9);
  const batch = randomBatch(B, H.window);
  const vars = Object.values(w);
  const forward = await profiledMatmulFlops(() => tf.tidy(() => void sequenceLoss(w, H, batch).total));
  assert.equal(forward, forwardFlops(H, D, B, H.window).total);
  const step = await profiledMatmulFlops(() => tf.tidy(() => void tf.variableGrads(() => sequenceLoss(w, H, batch).total, vars)));
  assert.equal(step, trainStepFlops(H, D, B, H.window).total);
  // Many-to-one: heads on the last position only.
  const lastOnly = await profiledMatmulFlops(() => tf.tidy(() => void tf.variableGrads(() => lastPositionLoss(w, H, batch), vars)));
  assert.equal(lastOnly, trainStepFlops(H, D, B, H.window, B).total);
  tf.dispose([...vars, batch.inputs, ...batch.targets]);
});

test('the FLOP counter by hand on a small case, and its proportions for the default model', () => {
  const h: Hyperparameters = { hidden: 2, layers: 1, attentionDim: 1, attentionWindow: 2, headDim: 1, window: 4 };
  const f = forwardFlops(h, 3, 1, 4);
  assert.deepEqual(
    { ...f },
    { lstmInput: 2 * 4 * 3 * 8, lstmRecurrent: 2 * 4 * 2 * 8, attention: 3 * 2 * 4 * 2 + 2 * 4 * 1 * 4 + 2 * 4 * 4 * 1, sharedHead: 2 * 4 * 3, outputHeads: 2 * 4 * 289 + 2 * 4 * 185, total: 4248 },
  );
  const b = backwardFlops(h, 3, 1, 4);
  assert.equal(b.lstmInput, 192); // weight gradient only: the inputs are data
  assert.equal(b.lstmRecurrent, 128 + 2 * 3 * 2 * 8); // dW every step, dh for steps 1..3
  assert.equal(b.total, 192 + 224 + 224 + 48 + 2 * 2312 + 1480);
  const D = inputWidth(26);
  const d = trainStepFlops(DEFAULT_HYPERPARAMETERS, D, 32, 128);
  const ratio = d.total / d.forward.total;
  assert.ok(ratio > 2.5 && ratio < 3, `train/forward ${ratio}`);
  // About 4.1 MFLOP per supervised note for the default model.
  assert.ok(Math.abs(d.total / (32 * 128) / 4.1e6 - 1) < 0.05, `${d.total / (32 * 128)} FLOP per note`);
  assert.ok(stepFlops(DEFAULT_HYPERPARAMETERS, D, 1) < d.forward.total / (32 * 128));
});

test('many-to-one loss is the many-to-many loss of the last position', async () => {
  await initBackend('wasm', () => {});
  const D = inputWidth(COMPOSERS);
  const w = createWeights(H, D, 4);
  const T = H.window;
  const batch = randomBatch(B, T);
  // Keep only the last position's targets: sequenceLoss then averages B real rows over T·B.
  const lastMask = tf.concat([tf.zeros([(T - 1) * B, 1]), tf.ones([B, 1])], 0);
  const masked = { ...batch, targets: batch.targets.map((t) => tf.mul(t, lastMask)) as SequenceBatch['targets'] };
  const m2m = tf.tidy(() => sequenceLoss(w, H, masked).total.dataSync()[0]);
  const m2o = tf.tidy(() => lastPositionLoss(w, H, batch).dataSync()[0]);
  assert.ok(Math.abs(m2o - m2m * T) < 1e-4 * m2o, `${m2o} vs ${m2m * T}`);
  tf.dispose([...Object.values(w), batch.inputs, ...batch.targets, ...masked.targets, lastMask]);
});

test('statistics', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.deepEqual(summarize([5, 1, 9]), { medianMs: 5, minMs: 1, maxMs: 9, runs: [5, 1, 9] });
  assert.equal(round(123456, 3), 123000);
  assert.equal(round(0.0123456, 3), 0.0123);
  assert.equal(round(0), 0);
});

test('targets: pass, fail, relative to batch 1, and not measured', () => {
  const figures = { gen500_ms_batch1: 250, gen500_ms_batch16: 800, refeed_over_stateful: 45, train_share_of_matmul: 0.42, compose_ogg_s: null, peak_rss_mb: 900 };
  const checks = Object.fromEntries(checkTargets(figures).map((c) => [c.field, c.pass]));
  assert.equal(checks.gen500_ms_batch1, true);
  assert.equal(checks.gen500_ms_batch16, false); // 800 > 3 × 250
  assert.equal(checks.refeed_over_stateful, true);
  assert.equal(checks.train_share_of_matmul, false);
  assert.equal(checks.compose_ogg_s, null);
  assert.equal(checks.peak_rss_mb, null); // no target
  const table = formatTable(figures);
  assert.match(table, /500 notes, batch 1\s+250 ms\s+≤ 300 ms\s+✓/);
  assert.match(table, /training FLOP rate \/ matmul\s+42.0%\s+≥ 50%\s+✗/);
  assert.match(formatTable({ train_share_of_matmul: 0.4989 }), /49.9%\s+≥ 50%\s+✗/);
  assert.match(table, /compose chopin 500 → OGG\s+n\/a/);
  // WAV (the default format) and OGG side by side: the OGG line says what the encoder adds on the same pieces.
  const compose = formatTable({ compose_wav_s: 2.4, compose_ogg_s: 3.7, compose_sampling_s: 0.28, compose_music_s: 91.1, compose_music_range_s: [48.1, 159] });
  assert.match(compose, /compose chopin 500 → WAV\s+2.40 s\s+≤ 3 s\s+✓\s+sampling 0.28 s, the rest MIDI\/WAV\/PNG for 91.1 s of music \(median piece; 48.1–159 s\)/);
  assert.match(compose, /compose chopin 500 → OGG\s+3.70 s\s+≤ 3 s\s+✗\s+the same pieces; the Vorbis encode and its decoded check add 1.30 s/);
});

test('bench --json --only matmul prints one JSON object with every required field', async () => {
  const chunks: string[] = [];
  const code = await runBench(['--json', '--quick', '--only', 'matmul'], () => {}, (text) => chunks.push(text));
  assert.equal(code, 0);
  const out = JSON.parse(chunks.join(''));
  for (const k of REQUIRED_FIELDS) assert.ok(k in out, `missing ${k}`);
  assert.ok(out.matmul_gflops > 0);
  assert.equal(out.matmul_shape, '1024x1024x1024');
  assert.equal(out.gen500_ms_batch1, null);
  assert.ok(out.peak_rss_mb > 0);
  await assert.rejects(runBench(['--only', 'nope'], () => {}), /unknown section/);
});

test('chat load results become chat_* fields and their targets', () => {
  const f = chatFields({ users: 8, notes: 250, served: 8, lost: 0, p50Ms: 2100, p99Ms: 31000, idleCompose500P50Ms: 900, batchedVsUnbatched: { speedup: 2.345 } });
  assert.equal(f.chat_p99_ms, 31000);
  assert.equal(f.chat_idle_compose500_p50_ms, 900);
  assert.equal(f.chat_batching_speedup, 2.35);
  const checks = Object.fromEntries(checkTargets(f).map((c) => [c.field, c.pass]));
  assert.equal(checks.chat_p99_ms, false);
  assert.equal(checks.chat_lost, true);
  assert.equal(checks.chat_idle_compose500_p50_ms, true);
  assert.doesNotMatch(formatTable({}), /chat load/); // optional rows stay out when not measured
  assert.match(formatTable(f), /chat load, requests lost\s+0\s+= 0\s+✓/);
});

test('the long-context training bench steps streamed chunks with carried memory and reports their real notes', async () => {
  await initBackend('wasm', () => {});
  const h = TINY_LONG_CONTEXT_HYPERPARAMETERS;
  const w = createLongContextWeights(h, inputWidth(COMPOSERS), 3);
  const before = Object.fromEntries(Object.entries(w).map(([k, v]) => [k, v.dataSync().slice()]));
  const rng = seededRandom(2);
  const piece = (composer: string, n: number) => ({ composer, tokens: Array.from({ length: n }, (_, i) => ({ dt: i ? 3 : 0, pitch: 50 + Math.floor(rng.next() * 20), dur: 6, vel: 4 })) });
  // Three rows: two whole chunks each at least, the third row's piece ends inside its third chunk.
  const pieces = [piece('Chopin', 3 * h.window), piece('Mozart', 3 * h.window), piece('Chopin', 2 * h.window + 5)];
  const lines: string[] = [];
  const r = benchLongContext({ weights: w, h, pieces, composerIndex: new Map([['Chopin', 0], ['Mozart', 1]]), composers: COMPOSERS, batchSize: 4, warmup: 1, reps: 2, log: (l) => lines.push(l) });
  assert.equal(r.batch, 3); // fewer pieces than the batch size: one row each
  assert.equal(r.window, h.window);
  assert.equal(r.memory, h.memory);
  // Warm-up 16+16+16 notes, then 16+16+16 and 16+16+5 timed (row 3's last chunk is padding after 5 notes).
  assert.equal(r.targets, (48 + 37) / 2);
  assert.ok(r.stepMs > 0 && r.targetsPerSecond > 0);
  assert.match(lines.join('\n'), /long-context, 3 rows × 16-note chunks with 24 notes of memory/);
  assert.ok(Object.entries(w).some(([k, v]) => v.dataSync().some((x, i) => x !== before[k][i])), 'the Adam steps moved the weights');
  await assert.rejects(async () => benchLongContext({ weights: w, h, pieces: pieces.slice(2), composerIndex: new Map([['Chopin', 0]]), composers: COMPOSERS, batchSize: 16, warmup: 2, reps: 2, log: () => {} }), /gives 3 chunks of 1 × 16 notes, 4 needed/);
  tf.dispose(Object.values(w));
});

test('the table without the local-attention-only figures (a long-context bench)', () => {
  const table = formatTable({ train_tokens_per_s: 2500, train_step_ms: 800, train_batch: 16, train_window: 128, train_memory: 512, train_share_of_matmul: null, m2m_over_m2o: null, refeed_over_stateful: null });
  assert.match(table, /training, many-to-many\s+2500 tok\/s\s+B=16 × 128 notes \+ 512 memory \(long-context\), 800 ms\/step/);
  assert.match(table, /many-to-many \/ many-to-one\s+n\/a\s*\n/);
  assert.match(table, /training FLOP rate \/ matmul\s+n\/a\s+≥ 50%\s+–/);
  assert.match(table, /re-feed \/ stateful, per note\s+n\/a\s+≥ 30×\s+–/);
  assert.doesNotMatch(formatTable({ train_tokens_per_s: 2500, train_batch: 32, train_window: 128, train_step_ms: 1600 }), /long-context/);
});
