/**
 * Community retraining on the long-context architecture: a moderator's retrain fine-tunes the
 * serving long-context model (with a new composer slot), the gate scores both on whole pieces,
 * the candidate is kept with its spec, generation works on whichever serves, and rollback
 * returns to the shipped version.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { Community } from '../src/community/community.ts';
import { initBackend } from '../src/model/backend.ts';
import { loadModelFolder, readModelSpec } from '../src/model/note/folder.ts';
import { generateTokens } from '../src/model/note/sampling.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, type CommunityWorld } from './support/communityFixture.ts';
import { TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

let world: CommunityWorld;
let community: Community;
/** The shipped model's architecture in small: relative pitch head, interval values and matching, beat clock. */
const SERVING = { ...TINY_LONG_CONTEXT_HYPERPARAMETERS, relativePitch: true, intervalValues: true, intervalMatch: 2, beatClock: true };

before(async () => {
  await initBackend('wasm', () => {});
  world = await createCommunityWorld({ NOCTURNE_NEW_LABEL_MIN_PIECES: '2' }, SERVING);
  community = await Community.open(world.config);
  const labels = ['Clementi', 'Clementi', 'Chopin'];
  for (const [i, name] of [NEW_PIECES[0], NEW_PIECES[1], NEW_PIECES[4]].entries()) {
    const o = await community.contribute(await datasetBytes(name), { uploader: `u${i}`, platform: 'terminal', filename: name, label: labels[i] });
    assert.equal(o.status, 'accepted', o.message);
  }
});
after(async () => {
  await community.close();
  await rm(world.root, { recursive: true, force: true });
});

test('retrain, gate, generate and roll back with a long-context serving model', async (t) => {
  const shipped = (await community.registry.current()).version;
  const lines: string[] = [];
  const outcome = await community.retrain({ trigger: 'moderator', requestedBy: 'mod1', force: true }, (p) => lines.push(`${p.stage}: ${p.line}`));
  t.diagnostic(`${outcome.status}: ${outcome.reason}`);
  assert.ok(outcome.status === 'promoted' || outcome.status === 'rejected', `${outcome.status}: ${outcome.reason}\n${lines.join('\n')}`);
  assert.deepEqual(outcome.newComposers, ['Clementi']);
  assert.ok(lines.some((l) => l.startsWith('training: epoch 2/2')), lines.join('\n'));
  assert.ok(Number.isFinite(outcome.before!.nll) && Number.isFinite(outcome.after!.nll), 'the gate scored both models');

  const candidate = (await community.listModels()).find((v) => v.version === outcome.version)!;
  const spec = await readModelSpec(candidate.dir);
  assert.equal(spec.arch, 'lstm-long-context');
  assert.deepEqual(spec.hyperparameters, SERVING, 'fine-tuning keeps the architecture');
  assert.deepEqual(spec.composers.map((c) => c.name), ['Chopin', 'Schumann', 'Clementi']);
  assert.equal((spec.training as { keyDropout?: number }).keyDropout, 0.2);

  const { weights } = await loadModelFolder(candidate.dir);
  // The serving model's clock starts at zero; retraining moves it like any other weight.
  assert.ok(tf.tidy(() => tf.abs(weights['attn/clock']).max().dataSync()[0]) > 0, 'the beat clock was trained');
  const [notes] = generateTokens(weights, spec.hyperparameters, spec.composers.length, [{ composer: 2, notes: 40, temperature: 1, topP: 0.95, randomSeed: 1, key: 9 }]);
  assert.equal(notes.length, 40);
  tf.dispose(Object.values(weights));

  if (outcome.status === 'promoted') {
    assert.equal(community.registry.serving, outcome.version);
    const back = await community.rollback(undefined, 'mod1');
    assert.equal(back.to, shipped);
  } else assert.equal(community.registry.serving, shipped);
  assert.equal((await community.registry.current()).version, shipped);
});
