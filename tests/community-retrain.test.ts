/**
 * Retraining end to end, in real child processes: kill -9 at several points leaves the serving
 * model and every contribution intact, and the next run starts cleanly and promotes; the lock
 * refuses a second run; the cron schedule calls the same retrain function.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Community } from '../src/community/community.ts';
import type { ContributionRecord } from '../src/community/contributions.ts';
import { acquireRetrainLock, newLockOwner, readRetrainLock, releaseRetrainLock } from '../src/community/lock.ts';
import type { ServingChange } from '../src/community/registry.ts';
import type { RetrainOutcome, RetrainStage, RunRecord } from '../src/community/retrain.ts';
import { RetrainProcess } from '../src/community/retrainProcess.ts';
import { readModelSpec } from '../src/model/note/folder.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, type CommunityWorld } from './support/communityFixture.ts';

let world: CommunityWorld;
let community: Community;
let contributionsBefore: { record: ContributionRecord; bytes: Buffer }[];
const changes: ServingChange[] = [];

async function contributionSnapshot() {
  const records = await community.listContributions();
  return Promise.all(records.map(async (record) => ({ record, bytes: await readFile(community.contributions.filePath(record.id)) })));
}

/** Every version folder is complete (spec readable, weights the size the spec says). */
async function assertVersionsComplete(): Promise<void> {
  const root = join(world.config.dataDir, 'models');
  for (const name of await readdir(root)) {
    if (name === 'serving.json' || name.startsWith('.')) continue;
    const spec = await readModelSpec(join(root, name));
    const floats = spec.weights.reduce((s, w) => s + w.shape.reduce((p, d) => p * d, 1), 0);
    assert.equal(statSync(join(root, name, 'weights.bin')).size, floats * 4, `${name} weights complete`);
    assert.ok(existsSync(join(root, name, 'version.json')), `${name} has version.json`);
  }
}

async function assertIntact(): Promise<void> {
  const serving = await community.registry.current();
  await readModelSpec(serving.dir);
  await assertVersionsComplete();
  assert.deepEqual(await contributionSnapshot(), contributionsBefore);
}

/** Starts a run in a child process and SIGKILLs it as soon as it reports `stage`. */
async function killAt(stage: RetrainStage): Promise<RetrainOutcome> {
  const stages: RetrainStage[] = [];
  const run = new RetrainProcess(world.config, { trigger: 'cli', force: true }, (p) => {
    stages.push(p.stage);
    if (p.stage === stage) run.kill();
  });
  const outcome = await run.outcome;
  assert.ok(stages.includes(stage), `reached ${stage}: ${stages.join(',')}`);
  return outcome;
}

before(async () => {
  world = await createCommunityWorld({ NOCTURNE_NEW_LABEL_MIN_PIECES: '2' });
  community = await Community.open(world.config);
  community.registry.on('serving', (c) => changes.push(c));
  const labels = ['Clementi', 'Clementi', undefined, 'Chopin'];
  for (const [i, name] of NEW_PIECES.slice(0, 4).entries()) {
    const o = await community.contribute(await datasetBytes(name), { uploader: `u${i}`, platform: 'terminal', filename: name, label: labels[i] });
    assert.equal(o.status, 'accepted', o.message);
  }
  // Hold one back for validation (normally decided by NOCTURNE_CONTRIBUTION_HOLDOUT from the id).
  const [held] = await community.listContributions();
  await community.store.set(`contribution:${held.id}`, { ...held, holdout: true });
  contributionsBefore = await contributionSnapshot();
});
after(async () => {
  await community.close();
  await rm(world.root, { recursive: true, force: true });
});

describe('retraining crash safety (kill -9)', () => {
  test('killed while training: serving model and contributions intact; the lock is left stale, not live', async () => {
    const servingBefore = await readFile(community.registry.pointerPath, 'utf8');
    const outcome = await killAt('training');
    assert.equal(outcome.status, 'failed');
    assert.match(outcome.reason, /was killed \(SIGKILL\) before finishing/);
    assert.equal(await readFile(community.registry.pointerPath, 'utf8'), servingBefore);
    await assertIntact();
    const lock = await readRetrainLock(community.store, 60 * 60_000);
    assert.equal(lock?.live, false, 'the dead run still names itself in the lock, but it is stale');
    assert.ok(existsSync(join(world.config.dataDir, 'runs')), 'its scratch folder is still there for the next run to remove');
  });

  test('killed while evaluating and while promoting: still intact (old or new serving, never half)', async (t) => {
    for (const stage of ['evaluating', 'promoting'] as const) {
      const outcome = await killAt(stage);
      t.diagnostic(`killed at ${stage}: ${outcome.status}; serving ${community.registry.serving} → ${(await community.registry.current()).version}`);
      assert.ok(outcome.status === 'failed' || outcome.status === 'promoted', `${stage}: ${outcome.status} ${outcome.reason}`);
      await assertIntact();
    }
  });

  test('the next run takes over the stale lock, cleans up, trains and promotes; the registry reports the switch', async (t) => {
    const before = (await community.registry.current()).version;
    const lines: string[] = [];
    const outcome = await community.retrain({ trigger: 'moderator', requestedBy: 'mod1', force: true }, (p) => lines.push(`${p.stage}: ${p.line}`));
    t.diagnostic(`${outcome.status}: ${outcome.reason}`);
    assert.ok(outcome.status === 'promoted' || outcome.status === 'rejected', `${outcome.status}: ${outcome.reason}`);
    assert.equal(outcome.servingBefore, before);
    assert.match(lines[0], /starting: run .* started; (earlier run .* had been interrupted|took over the stale lock)/);
    assert.ok(lines.some((l) => l.startsWith('training: epoch 2/2')), lines.join('\n'));
    assert.equal(outcome.contributionsUsed, 3);
    assert.equal(outcome.heldBack, 1);
    assert.equal(outcome.after!.validationPieces, outcome.before!.validationPieces);
    assert.ok(outcome.after!.validationPieces >= 3, 'corpus validation pieces plus the held-back contribution');
    assert.deepEqual(outcome.newComposers, before === 'tiny-3' ? ['Clementi'] : []);
    if (outcome.status === 'promoted') {
      assert.equal(outcome.servingAfter, outcome.version);
      assert.equal(changes.at(-1)?.to, outcome.version);
      assert.equal(community.registry.serving, outcome.version);
      assert.ok(outcome.after!.nll <= outcome.before!.nll + world.config.gate.nllTolerance);
    }
    // Versions keep spec, metrics, curve and the gate's record.
    const version = (await community.listModels()).find((v) => v.version === outcome.version)!;
    assert.equal(version.record.verdict, outcome.status === 'promoted' ? 'passed' : 'rejected');
    assert.deepEqual(version.record.contributions!.length, 3);
    assert.ok(version.curvePng && existsSync(version.curvePng));
    assert.ok(version.metrics.valNll > 0);
    // Clean state: no scratch, no staging, no lock; the killed runs are recorded as interrupted.
    assert.deepEqual(await readdir(join(world.config.dataDir, 'runs')), []);
    assert.deepEqual((await readdir(join(world.config.dataDir, 'models'))).filter((n) => n.startsWith('.')), []);
    assert.equal(await readRetrainLock(community.store, 60 * 60_000), undefined);
    const runs = (await community.store.list<RunRecord>('run:')).map((e) => e.value);
    assert.ok(runs.filter((r) => r.state === 'interrupted').length >= 2, runs.map((r) => r.state).join(','));
    assert.equal(runs.filter((r) => r.state === 'running').length, 0);
    assert.equal((await community.retrainStatus()).last?.runId, outcome.runId);
    await assertIntact();
  });
});

describe('retraining lock and schedule', () => {
  test('a second run while one holds the lock is answered "busy" at once', async () => {
    const owner = newLockOwner('someone-else', { trigger: 'moderator', requestedBy: 'mod2' });
    assert.equal((await acquireRetrainLock(community.store, owner, 60_000)).acquired, true);
    try {
      assert.equal((await acquireRetrainLock(community.store, newLockOwner('third'), 60_000)).acquired, false);
      const outcome = await community.retrain({ trigger: 'moderator', requestedBy: 'mod1' });
      assert.equal(outcome.status, 'busy');
      assert.match(outcome.reason, /already in progress \(run someone-else, moderator by mod2/);
    } finally {
      await releaseRetrainLock(community.store, 'someone-else');
    }
  });

  test('the cron task runs the same retrain function (here: nothing new since the last version)', async () => {
    const outcomes: RetrainOutcome[] = [];
    const schedule = (await community.startSchedule((o) => outcomes.push(o)))!;
    try {
      assert.equal(schedule.expression, '0 4 * * 0');
      await schedule.task.execute();
      assert.equal(outcomes.length, 1);
      // Promoted: nothing new since the serving version; rejected: the same data was already tried.
      assert.equal(outcomes[0].status, 'skipped', outcomes[0].reason);
      assert.match(outcomes[0].reason, /nothing to do: (no new accepted contributions since|the same 3 contributions were already tried in)/);
      const run = (await community.store.get<RunRecord>(`run:${outcomes[0].runId}`))!;
      assert.equal(run.trigger, 'schedule');
    } finally {
      await schedule.stop();
    }
  });
});
