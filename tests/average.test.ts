/** Weight averaging (`nocturne average`, src/model/note/average.ts): the mean, its refusals, and a folder that loads and is measured. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { corpusHash, listCorpus, loadCorpus, splitByPiece } from '../src/model/corpus.ts';
import { averageProblems, averageWeights } from '../src/model/note/average.ts';
import { loadModelFolder, readModelSpec } from '../src/model/note/folder.ts';
import { createTinyModel, TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

const run = promisify(execFile);
const cli = (...args: string[]) =>
  run('node', ['--import', 'tsx', 'src/cli/main.ts', 'average', ...args]).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

let dir: string;
let data: string;

/** A tiny long-context model trained (notionally) on `data`: its spec names the corpus's hash and split. */
async function tinyOn(folder: string, seed: number, composers = ['Chopin', 'Schumann']): Promise<void> {
  await createTinyModel(folder, composers, seed, TINY_LONG_CONTEXT_HYPERPARAMETERS);
  const pieces = await loadCorpus(listCorpus(data));
  const { validation } = splitByPiece(pieces);
  const path = join(folder, 'model.json');
  const spec = JSON.parse(await readFile(path, 'utf8'));
  spec.data = { ...spec.data, hash: corpusHash(pieces), source: data, pieces: pieces.length, validationPieces: validation.map((p) => p.name) };
  spec.training = { ...spec.training, seed, initFrom: 'tiny-parent', batchSize: 4 };
  spec.decoding = { temperature: 1, topP: 1, composerGuidance: 2, chosenBy: 'test' };
  await writeFile(path, JSON.stringify(spec));
}

before(async () => {
  await initBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'nocturne-average-'));
  data = join(dir, 'corpus');
  // Four pieces a composer, so that the split holds one of each back.
  for (const [composer, file] of [['Chopin', 'chpn-p20.mid'], ['Schumann', 'scn15_4.mid']]) {
    await mkdir(join(data, composer), { recursive: true });
    for (let i = 0; i < 4; i++) await copyFile(join('tests/fixtures', file), join(data, composer, `${i}-${file}`));
  }
  await tinyOn(join(dir, 'a'), 3);
  await tinyOn(join(dir, 'b'), 4);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('weight averaging', () => {
  test('averageWeights is the element-wise mean, in new variables, and leaks nothing', () => {
    const before = tf.memory().numTensors;
    const variable = (values: number[], shape: number[]) => {
      const t = tf.tensor(values, shape);
      const v = tf.variable(t);
      t.dispose();
      return v;
    };
    const a = { w: variable([1, 2, 3, 4], [2, 2]), b: variable([0, 10], [2]) };
    const b = { w: variable([3, 2, 1, 0], [2, 2]), b: variable([4, -10], [2]) };
    const mean = averageWeights([a, b]);
    assert.deepEqual(Array.from(mean.w.dataSync()), [2, 2, 2, 2]);
    assert.deepEqual(Array.from(mean.b.dataSync()), [2, 0]);
    assert.throws(() => averageWeights([a, { w: b.w } as typeof a]), /not have the same weights/);
    tf.dispose([...Object.values(a), ...Object.values(b), ...Object.values(mean)]);
    assert.equal(tf.memory().numTensors, before);
  });

  test('models that differ in what shapes a weight are refused, every difference named', async () => {
    await createTinyModel(join(dir, 'other'), ['Chopin', 'Mozart', 'Liszt'], 5, TINY_LONG_CONTEXT_HYPERPARAMETERS);
    const specs = await Promise.all(['a', 'other'].map(async (d) => ({ ...(await readModelSpec(join(dir, d))), dir: d })));
    const problems = averageProblems(specs);
    assert.ok(problems.some((p) => /other: its composers differ/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /training data hash differs/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /weights differ/.test(p)), 'the input width follows the composers');
    assert.deepEqual(averageProblems([specs[0]]), ['averaging needs two or more models, got 1']);
    assert.deepEqual(averageProblems([specs[0], { ...specs[0], dir: 'again' }]), []);
  });

  test('nocturne average writes a folder that loads, holds the mean, is measured on its validation pieces and carries the decoding as not chosen', async () => {
    const out = join(dir, 'soup');
    const r = await cli('--out', out, '--backend', 'wasm', join(dir, 'a'), join(dir, 'b'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /validation NLL \d+\.\d{4} nats\/note \(the models averaged: tiny-3 10\.0000, tiny-4 10\.0000\)/);
    const [soup, a, b] = await Promise.all([out, join(dir, 'a'), join(dir, 'b')].map((d) => loadModelFolder(d)));
    try {
      for (const name of ['lstm0/wx', 'attn/wq', 'head/bdt']) {
        const want = tf.tidy(() => tf.div(tf.add(a.weights[name], b.weights[name]), 2).dataSync());
        const got = soup.weights[name].dataSync();
        assert.ok(got.every((v, i) => Math.abs(v - want[i]) < 1e-6), name);
      }
      assert.ok(Number.isFinite(soup.spec.metrics.valNll) && soup.spec.metrics.valNll > 0, `valNll ${soup.spec.metrics.valNll}`);
      assert.deepEqual((soup.spec.training.averageOf as { version: string }[]).map((m) => m.version), ['tiny-3', 'tiny-4']);
      assert.equal(soup.spec.data.hash, a.spec.data.hash);
      assert.match(soup.spec.decoding!.chosenBy!, /^carried from tiny-3 .*not yet chosen for these weights/);
      assert.equal(soup.spec.decoding!.composerGuidance, 2);
      assert.match(await readFile(join(out, 'ATTRIBUTION.md'), 'utf8'), /piano-midi\.de/);
    } finally {
      for (const m of [soup, a, b]) tf.dispose(Object.values(m.weights));
    }
  });

  test('bad requests exit 2 with every problem listed, and nothing is written', async () => {
    const lone = await cli(join(dir, 'a'));
    assert.equal(lone.code, 2, lone.stderr);
    assert.match(lone.stderr, /--out DIR is required/);
    assert.match(lone.stderr, /two or more model folders to average, got 1/);
    const self = await cli('--out', join(dir, 'a'), join(dir, 'a'), join(dir, 'b'));
    assert.match(self.stderr, /--out must not be one of the models averaged/);
    assert.match(self.stderr, /exists and is not empty/);
    const mixed = await cli('--out', join(dir, 'mixed'), join(dir, 'a'), join(dir, 'other'));
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /composers differ/);
    const elsewhere = join(dir, 'elsewhere');
    for (const [composer, file] of [['Chopin', 'chpn-p20.mid'], ['Schumann', 'scn15_4.mid']]) {
      await mkdir(join(elsewhere, composer), { recursive: true });
      await copyFile(join('tests/fixtures', file), join(elsewhere, composer, file));
    }
    const wrongData = await cli('--out', join(dir, 'wrong'), '--data', elsewhere, '--backend', 'wasm', join(dir, 'a'), join(dir, 'b'));
    assert.equal(wrongData.code, 2, wrongData.stderr);
    assert.match(wrongData.stderr, /data hash [0-9a-f]+, the models were trained on [0-9a-f]+/);
    for (const d of ['mixed', 'wrong']) await assert.rejects(readFile(join(dir, d, 'model.json')));
  });
});
