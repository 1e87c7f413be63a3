import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { ANY_SLOT, composerFor, expandComposerRows, planComposers, writeExpandedModel } from '../src/community/composerSlots.ts';
import { buildCorpusProfile, type CorpusProfile } from '../src/community/corpusProfile.ts';
import { gateDecision, scoreModel, type ModelScores } from '../src/community/gate.ts';
import { ModelRegistry, RegistryError, type ServingChange } from '../src/community/registry.ts';
import { RetrainSchedule } from '../src/community/schedule.ts';
import { initBackend } from '../src/model/backend.ts';
import { OFFSET_COMPOSER, inputWidth } from '../src/model/note/features.ts';
import { loadModelFolder, readModelSpec, saveModelFolder } from '../src/model/note/folder.ts';
import { composerTable, corpusHash, listCorpus, loadCorpus, splitByPiece, type CorpusPiece } from '../src/model/corpus.ts';
import { trainModel } from '../src/model/note/train/fit.ts';
import { createCommunityWorld, type CommunityWorld } from './support/communityFixture.ts';
import { createTinyModel, TINY_HYPERPARAMETERS } from './support/tinyModel.ts';

let world: CommunityWorld;
let corpus: CorpusPiece[];
let profile: CorpusProfile;
before(async () => {
  await initBackend('wasm', () => {});
  world = await createCommunityWorld();
  corpus = await loadCorpus(listCorpus(world.datasetDir));
  profile = await buildCorpusProfile(world.datasetDir);
});
after(async () => {
  await rm(world.root, { recursive: true, force: true });
});

/** A copy of the model in `from` with every weight changed by `change` (values, name). */
async function rewrittenModel(from: string, to: string, change: (values: Float32Array, name: string) => void): Promise<void> {
  const { spec, weights } = await loadModelFolder(from);
  const changed: Record<string, tf.Variable> = {};
  for (const [name, w] of Object.entries(weights)) {
    const values = (await w.data()) as Float32Array;
    change(values, name);
    changed[name] = tf.variable(tf.tensor(values, w.shape), false);
  }
  const { weights: _m, format: _f, formatVersion: _v, ...rest } = spec;
  await saveModelFolder(to, { ...rest, version: `${spec.version}-changed` }, changed);
  tf.dispose([...Object.values(weights), ...Object.values(changed)]);
}

describe('promotion gate', () => {
  const samples = { samples: 2, sampleNotes: 64 };
  let validation: CorpusPiece[];
  let serving: ModelScores;
  before(async () => {
    validation = splitByPiece(corpus).validation;
    serving = await scoreModel(world.modelDir, validation, profile.histograms, samples);
  });

  test('a better candidate (trained a few steps) is promoted', async () => {
    const { train } = splitByPiece(corpus);
    const out = join(world.root, 'better');
    await trainModel({
      outDir: out, train, validation: train.slice(0, 2), composers: composerTable(corpus), dataHash: corpusHash(train), dataSource: 'tiny', hyperparameters: TINY_HYPERPARAMETERS,
      epochs: 2, batchSize: 16, learningRate: 0.01, clipNorm: 1, patience: 3, transpose: 0, composerDropout: 0, seed: 1, resume: false, name: 'better', initialWeights: world.modelDir, log: () => {}, progress: () => {},
    });
    const tensors = tf.memory().numTensors;
    const candidate = await scoreModel(out, validation, profile.histograms, samples);
    assert.equal(tf.memory().numTensors, tensors, 'scoring leaks no tensors');
    assert.ok(candidate.nll < serving.nll, `${candidate.nll} < ${serving.nll}`);
    const decision = gateDecision(serving, candidate, { nllTolerance: 0.02, driftThreshold: 0.35, driftTolerance: 0.05 });
    assert.equal(decision.promote, true, decision.reason);
    assert.match(decision.reason, /^passed the gate: validation NLL/);
  });

  test('a worse candidate (perturbed weights) is not promoted, with the reason', async () => {
    const out = join(world.root, 'worse');
    let seed = 7;
    const noise = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 3;
    await rewrittenModel(world.modelDir, out, (v, name) => {
      if (name.startsWith('head/w')) for (let i = 0; i < v.length; i++) v[i] += noise();
    });
    const candidate = await scoreModel(out, validation, profile.histograms, samples);
    assert.ok(candidate.nll > serving.nll + 0.02, `${candidate.nll} vs ${serving.nll}`);
    const decision = gateDecision(serving, candidate, { nllTolerance: 0.02, driftThreshold: 0.35, driftTolerance: 0.05 });
    assert.equal(decision.promote, false);
    assert.match(decision.reason, /^failed the gate: worse NLL: validation NLL/);
  });

  test('outputs that drift fail the gate even with a better NLL; the tolerance is relative to serving', () => {
    const scores = (nll: number, outputSimilarity: number): ModelScores => ({ version: 'v', nll, validationPieces: 3, validationNotes: 900, outputSimilarity, outputDrift: {} });
    const s = { nllTolerance: 0.02, driftThreshold: 0.35, driftTolerance: 0.05 };
    const drifting = gateDecision(scores(5, 0.6), scores(4, 0.2), s);
    assert.equal(drifting.promote, false);
    assert.match(drifting.reason, /outputs drift: generated outputs' similarity to the corpus 0\.200 \(needed 0\.350/);
    // An early serving model below the threshold: the candidate needs only serving − tolerance.
    assert.equal(gateDecision(scores(5, 0.2), scores(4.9, 0.16), s).promote, true);
    assert.equal(gateDecision(scores(5, 0.2), scores(4.9, 0.14), s).promote, false);
    // NLL within the tolerance passes; beyond it fails.
    assert.equal(gateDecision(scores(5, 0.6), scores(5.019, 0.6), s).promote, true);
    assert.equal(gateDecision(scores(5, 0.6), scores(5.021, 0.6), s).promote, false);
  });
});

describe('composer slots for new labels', () => {
  test('a new label waits under "any" until it has enough pieces, then gets a slot appended', () => {
    const serving = [{ name: 'Chopin', pieces: 5, tempoBpm: 80 }, { name: 'Schumann', pieces: 4, tempoBpm: 90 }];
    const counts = new Map([['Chopin', { pieces: 5, tempoBpm: 80 }], ['Schumann', { pieces: 4, tempoBpm: 90 }]]);
    const few = planComposers(serving, counts, [{ label: 'Clementi', tempoBpm: 120 }, { label: 'chopin', tempoBpm: 70 }, { tempoBpm: 100 }], 2);
    assert.deepEqual(few.composers.map((c) => c.name), ['Chopin', 'Schumann']);
    assert.equal(few.composers[0].pieces, 6);
    assert.deepEqual(few.waiting, [{ label: 'Clementi', pieces: 1 }]);
    assert.equal(composerFor(few, 'Clementi'), ANY_SLOT);
    assert.equal(composerFor(few, 'CHOPIN'), 'Chopin');
    assert.equal(composerFor(few, undefined), ANY_SLOT);
    const enough = planComposers(serving, counts, [{ label: 'Clementi', tempoBpm: 120 }, { label: 'clementi', tempoBpm: 110 }], 2);
    assert.deepEqual(enough.composers.map((c) => c.name), ['Chopin', 'Schumann', 'Clementi']);
    assert.deepEqual(enough.newComposers, ['Clementi']);
    assert.equal(composerFor(enough, 'CLEMENTI'), 'Clementi');
  });

  test('expanding the input matrix keeps every row and starts the new composer from "any"', async () => {
    const cols = 3;
    const old = new Float32Array(inputWidth(2) * cols).map((_, i) => i);
    const wide = expandComposerRows(old, 2, 4, cols);
    assert.equal(wide.length, inputWidth(4) * cols);
    const row = (m: Float32Array, r: number) => [...m.subarray(r * cols, (r + 1) * cols)];
    for (let r = 0; r < OFFSET_COMPOSER + 2; r++) assert.deepEqual(row(wide, r), row(old, r));
    const any = row(old, OFFSET_COMPOSER + 2);
    for (let r = OFFSET_COMPOSER + 2; r <= OFFSET_COMPOSER + 4; r++) assert.deepEqual(row(wide, r), any);
    assert.throws(() => expandComposerRows(old, 2, 1, cols), /cannot shrink/);

    const out = join(world.root, 'expanded');
    const plan = planComposers((await readModelSpec(world.modelDir)).composers, new Map(), [{ label: 'Clementi', tempoBpm: 120 }], 1);
    await writeExpandedModel(world.modelDir, out, plan);
    const spec = await readModelSpec(out);
    assert.deepEqual(spec.composers.map((c) => c.name), ['Chopin', 'Schumann', 'Clementi']);
    assert.equal(spec.inputWidth, inputWidth(3));
    const loaded = await loadModelFolder(out);
    tf.dispose(Object.values(loaded.weights));
  });
});

describe('model registry', () => {
  let registry: ModelRegistry;
  const changes: ServingChange[] = [];
  before(async () => {
    registry = await ModelRegistry.open(world.config.dataDir, world.modelDir);
    registry.on('serving', (c) => changes.push(c));
  });
  after(() => registry.close());

  test('the shipped model is the first version, copied in with its files and a pointer', async () => {
    assert.equal(registry.serving, 'tiny-3');
    const [v] = await registry.list();
    assert.equal(v.version, 'tiny-3');
    assert.equal(v.serving, true);
    assert.equal(v.record.verdict, 'initial');
    for (const f of ['model.json', 'weights.bin', 'ATTRIBUTION.md', 'version.json']) assert.ok(existsSync(join(v.dir, f)), f);
    const pointer = JSON.parse(await readFile(registry.pointerPath, 'utf8'));
    assert.equal(pointer.version, 'tiny-3');
  });

  test('promote, rollback to the previous one, rollback to a named one; events; bad names refused', async () => {
    for (const seed of [4, 5]) {
      const staging = registry.stagingDir(`test-${seed}`);
      await createTinyModel(staging, ['Chopin', 'Schumann'], seed);
      await registry.publish(staging, { version: `tiny-${seed}`, verdict: 'passed', reason: 'test', createdAt: new Date(Date.now() + seed).toISOString() });
    }
    assert.deepEqual((await registry.list()).map((v) => v.version), ['tiny-5', 'tiny-4', 'tiny-3']);
    await registry.promote('tiny-4', 'test');
    await registry.promote('tiny-5', 'test');
    assert.equal((await registry.current()).version, 'tiny-5');
    const back = await registry.rollback(undefined, 'mod');
    assert.deepEqual([back.from, back.to], ['tiny-5', 'tiny-4']);
    assert.equal((await registry.rollback(undefined, 'mod')).to, 'tiny-3');
    await assert.rejects(registry.rollback(undefined, 'mod'), (e: Error) => e instanceof RegistryError && /nothing to roll back to/.test(e.message));
    assert.equal((await registry.rollback('tiny-5', 'mod')).to, 'tiny-5');
    assert.deepEqual(changes.map((c) => c.to), ['tiny-4', 'tiny-5', 'tiny-4', 'tiny-3', 'tiny-5']);
    assert.equal(changes.at(-1)!.dir, join(world.config.dataDir, 'models', 'tiny-5'));
    await assert.rejects(registry.promote('tiny', 'x'), /matches several versions/);
    await assert.rejects(registry.rollback('../../etc', 'x'), /no model version/);
    await assert.rejects(registry.promote('tiny-5', 'x'), /already serving/);
    const history = JSON.parse(await readFile(registry.pointerPath, 'utf8')).history;
    assert.equal(history.length, 6);
  });

  test('another process changing the pointer is picked up by refresh()', async () => {
    const other = await ModelRegistry.open(world.config.dataDir, world.modelDir);
    await other.rollback('tiny-3', 'other process');
    other.close();
    const seen = await registry.refresh();
    assert.equal(seen?.to, 'tiny-3');
    assert.equal(registry.serving, 'tiny-3');
    assert.equal(await registry.refresh(), undefined);
  });
});

describe('an updated shipped model', () => {
  test('replaces the shipped model it updates (which /rollback returns to) but not a model that passed the gate', async () => {
    const dataDir = await mkdtemp(join(world.root, 'shipped-update-'));
    const shipped = (seed: number) => join(world.root, `shipped-${seed}`);
    for (const seed of [8, 9]) await createTinyModel(shipped(seed), ['Chopin', 'Schumann'], seed);
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    (await ModelRegistry.open(dataDir, world.modelDir, log)).close();
    let registry = await ModelRegistry.open(dataDir, shipped(8), log);
    assert.equal(registry.serving, 'tiny-8');
    assert.match(lines.at(-1)!, /serving the updated shipped model tiny-8 \(was tiny-3/);
    assert.equal((await registry.rollback(undefined, 'mod')).to, 'tiny-3');
    registry.close();
    // A model that has served once is not forced back after a rollback from it.
    registry = await ModelRegistry.open(dataDir, shipped(8), log);
    assert.equal(registry.serving, 'tiny-3');
    // A community model that passed the gate keeps serving when the shipped one changes.
    const staging = registry.stagingDir('passed');
    await createTinyModel(staging, ['Chopin', 'Schumann'], 10);
    await registry.publish(staging, { version: 'tiny-10', verdict: 'passed', reason: 'test', createdAt: new Date().toISOString() });
    await registry.promote('tiny-10', 'test');
    registry.close();
    registry = await ModelRegistry.open(dataDir, shipped(9), log);
    assert.equal(registry.serving, 'tiny-10');
    assert.match(lines.at(-1)!, /shipped model is now tiny-9; the registry keeps serving tiny-10/);
    registry.close();
  });
});

describe('retraining schedule', () => {
  test('node-cron task: weekly in the configured time zone, and execute() runs the same function', async () => {
    const calls: string[] = [];
    const schedule = new RetrainSchedule('0 4 * * 0', 'Europe/Berlin', async () => {
      calls.push('retrain');
    });
    try {
      const next = schedule.nextRun();
      const berlin = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', weekday: 'short', hour: '2-digit', minute: '2-digit', hour12: false }).format(next);
      assert.equal(berlin, 'Sun 04:00');
      assert.ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 7 * 86_400_000);
      await schedule.task.execute();
      assert.deepEqual(calls, ['retrain']);
    } finally {
      await schedule.destroy();
    }
    assert.throws(() => new RetrainSchedule('every day', 'UTC', async () => {}), /not a cron expression/);
  });
});
