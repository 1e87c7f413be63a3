import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Community } from '../src/community/community.ts';
import { CommunityConfigError, communityConfigFromEnv } from '../src/community/config.ts';
import { ContributionError, displayName, isHeldBack, normaliseLabel } from '../src/community/contributions.ts';
import { musicIdentity } from '../src/community/musicIdentity.ts';
import { parseMidi } from '../src/midi/read.ts';
import { tokenize } from '../src/tokens/tokenize.ts';
import { createCommunityWorld, datasetBytes, drumTrack, NEW_PIECES, outlandishPiece, resaved, type CommunityWorld } from './support/communityFixture.ts';

let world: CommunityWorld;
let community: Community;
const who = (uploader: string, extra: { label?: string; filename?: string } = {}) => ({ uploader, platform: 'discord', server: 'g1', filename: extra.filename ?? 'piece.mid', label: extra.label });

before(async () => {
  world = await createCommunityWorld({ NOCTURNE_CONTRIBUTIONS_PER_DAY: '3' });
  community = await Community.open(world.config);
});
after(async () => {
  await community.close();
  await rm(world.root, { recursive: true, force: true });
});

describe('contributions', () => {
  test('a new solo-piano piece is accepted: file under its id, record with hash, size, notes, similarity', async () => {
    const bytes = await datasetBytes(NEW_PIECES[0]);
    const outcome = await community.contribute(bytes, who('alice', { label: 'clementi', filename: '../../etc/passwd.mid' }));
    assert.equal(outcome.status, 'accepted', outcome.message);
    if (outcome.status !== 'accepted') return;
    const r = outcome.record;
    assert.match(r.id, /^c[0-9a-z]+$/);
    assert.equal(r.filename, 'passwd.mid');
    assert.equal(r.label, 'clementi');
    assert.equal(r.size, bytes.length);
    assert.equal(r.notes, tokenize(parseMidi(bytes, 'x').notes).length);
    assert.equal(r.hash, musicIdentity(tokenize(parseMidi(bytes, 'x').notes)).music);
    assert.ok(r.similarity > 0.35 && r.similarity <= 1, `similarity ${r.similarity}`);
    // The user's file name never became a path: only <id>.mid exists, byte for byte.
    const files = await readdir(join(world.config.dataDir, 'contributions'));
    assert.deepEqual(files, [`${r.id}.mid`]);
    assert.deepEqual(new Uint8Array(await readFile(join(world.config.dataDir, 'contributions', files[0]))), bytes);
    assert.deepEqual((await community.listContributions()).map((c) => c.id), [r.id]);
  });

  test('duplicates are refused: a training piece, its re-saved copy, and the same music as a contribution', async () => {
    const training = await datasetBytes('Chopin/chpn-p20.mid');
    const direct = await community.contribute(training, who('bob'));
    assert.equal(direct.status, 'refused');
    assert.match(direct.message, /duplicate: the same music as the training piece Chopin\/chpn-p20\.mid/);

    const copy = resaved(training);
    assert.notDeepEqual(copy, training);
    assert.deepEqual(tokenize(parseMidi(copy, 'c').notes), tokenize(parseMidi(training, 't').notes));
    const resavedOutcome = await community.contribute(copy, who('bob', { filename: 'my own piece.mid' }));
    assert.equal(resavedOutcome.status, 'refused');
    assert.match(resavedOutcome.message, /training piece Chopin\/chpn-p20\.mid/);

    const louder = resaved(training, (n) => ({ ...n, velocity: Math.min(127, n.velocity + 25) }));
    const louderOutcome = await community.contribute(louder, who('bob'));
    assert.equal(louderOutcome.status, 'refused');
    assert.match(louderOutcome.message, /duplicate: the training piece Chopin\/chpn-p20\.mid in another key or with other dynamics/);
    const transposed = resaved(training, (n) => ({ ...n, pitch: n.pitch + 5 }));
    assert.equal((await community.contribute(transposed, who('bob'))).status, 'refused');

    const first = (await community.listContributions())[0];
    const again = await community.contribute(resaved(await datasetBytes(NEW_PIECES[0])), who('bob'));
    assert.equal(again.status, 'refused');
    assert.equal(again.status === 'refused' && again.duplicateOf, first.id);
    assert.match(again.message, new RegExp(`same music as contribution ${first.id}`));
    const upAThird = await community.contribute(resaved(await datasetBytes(NEW_PIECES[0]), (n) => ({ ...n, pitch: n.pitch + 4 })), who('bob'));
    assert.match(upAThird.message, new RegExp(`duplicate: contribution ${first.id} \\(passwd\\.mid\\) in another key`));
    assert.equal((await community.listContributions()).length, 1);
  });

  test('bad files are refused with the check verdict, and nothing is stored', async () => {
    const text = await community.contribute(new TextEncoder().encode('not a midi file at all'), who('carol', { filename: 'notes.txt' }));
    assert.equal(text.status === 'refused' && text.reason, 'unreadable');
    const drums = await community.contribute(drumTrack(), who('carol', { filename: 'drums.mid' }));
    assert.equal(drums.status === 'refused' && drums.reason, 'unacceptable');
    assert.match(drums.message, /^drums\.mid: .*drum/i);
    const badLabel = await community.contribute(await datasetBytes(NEW_PIECES[1]), who('carol', { label: '<script>' }));
    assert.equal(badLabel.status === 'refused' && badLabel.reason, 'label');
    assert.equal((await community.listContributions()).length, 1);
  });

  test('a piece far from the corpus is flagged for a moderator; moderators reject and restore', async () => {
    const outcome = await community.contribute(outlandishPiece(), who('dave', { label: 'Chopin' }));
    assert.equal(outcome.status, 'flagged', outcome.message);
    if (outcome.status !== 'flagged') return;
    assert.ok(outcome.record.similarity < world.config.driftThreshold, `similarity ${outcome.record.similarity}`);
    assert.equal(outcome.record.label, 'Chopin');
    assert.deepEqual((await community.listContributions({ status: 'flagged' })).map((r) => r.id), [outcome.record.id]);
    assert.deepEqual((await community.contributions.usable()).training.map((r) => r.id).includes(outcome.record.id), false);

    const restored = await community.restoreContribution(outcome.record.id, 'mod1', 'it is fine');
    assert.equal(restored.status, 'accepted');
    const rejected = await community.rejectContribution(outcome.record.id, 'mod1', 'not piano music');
    assert.equal(rejected.status, 'rejected');
    assert.deepEqual(rejected.moderation.map((m) => m.action), ['restore', 'reject']);
    await assert.rejects(community.rejectContribution(outcome.record.id, 'mod1'), (e: Error) => e instanceof ContributionError && /already rejected/.test(e.message));
    await assert.rejects(community.rejectContribution('cnothere00000', 'mod1'), /no contribution cnothere00000/);
    await assert.rejects(community.rejectContribution('../../x', 'mod1'), /is not a contribution id/);
    // The file is kept, so a rejected contribution can be restored; its music stays a duplicate.
    assert.ok(existsSync(community.contributions.filePath(outcome.record.id)));
    const again = await community.contribute(outlandishPiece(), who('erin'));
    assert.match(again.message, /which a moderator rejected/);
  });

  test('per-user daily limit', async () => {
    for (const name of NEW_PIECES.slice(1, 4)) assert.notEqual((await community.contribute(await datasetBytes(name), who('frank'))).status, 'refused');
    const fourth = await community.contribute(await datasetBytes(NEW_PIECES[4]), who('frank'));
    assert.equal(fourth.status === 'refused' && fourth.reason, 'limit');
    assert.match(fourth.message, /limit of 3 contributions per day/);
    // Another user is not affected.
    assert.equal((await community.contribute(await datasetBytes(NEW_PIECES[4]), who('grace'))).status, 'accepted');
  });

  test('recover() removes temp files and files without a record, and keeps accepted ones', async () => {
    const folder = join(world.config.dataDir, 'contributions');
    const kept = await readdir(folder);
    await writeFile(join(folder, 'cdeadbeef0000.mid'), 'orphan');
    await writeFile(join(folder, 'cdeadbeef0001.mid.tmp-123'), 'half');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(join(folder, 'cdeadbeef0000.mid'), old, old);
    await utimes(join(folder, 'cdeadbeef0001.mid.tmp-123'), old, old);
    const removed = await community.contributions.recover();
    assert.deepEqual(removed.sort(), ['cdeadbeef0000.mid', 'cdeadbeef0001.mid.tmp-123']);
    assert.deepEqual((await readdir(folder)).sort(), kept.sort());
  });

  test('pure parts: display names, labels, holdout', () => {
    assert.equal(displayName('C:\\Users\\x\\Nocturne op.9.mid'), 'Nocturne op.9.mid');
    assert.equal(displayName('../..'), 'upload.mid');
    assert.deepEqual(normaliseLabel('  chopin ', ['Chopin']), { label: 'Chopin' });
    assert.deepEqual(normaliseLabel('any', ['Chopin']), {});
    assert.deepEqual(normaliseLabel('Fanny Hensel', ['Chopin']), { label: 'Fanny Hensel' });
    assert.ok(normaliseLabel('x'.repeat(41), []).error);
    assert.equal(isHeldBack('cabc123456', 0), false);
    const ids = Array.from({ length: 400 }, (_, i) => `c${i.toString(36).padStart(9, '0')}`);
    const held = ids.filter((id) => isHeldBack(id, 0.25)).length;
    assert.ok(held > 60 && held < 140, `held back ${held} of 400`);
    assert.equal(isHeldBack(ids[7], 0.25), isHeldBack(ids[7], 0.25));
  });
});

describe('community config', () => {
  test('every bad setting is named in one message', () => {
    assert.throws(
      () => communityConfigFromEnv({ NOCTURNE_MODEL_DIR: world.modelDir, NOCTURNE_DATASET_DIR: '/nowhere', NOCTURNE_CONTRIBUTIONS_PER_DAY: 'many', NOCTURNE_DRIFT_THRESHOLD: '2', NOCTURNE_RETRAIN_SCHEDULE: 'every sunday', NOCTURNE_RETRAIN_TIMEZONE: 'Mars/Olympus', NOCTURNE_RETRAIN_FROM_SCRATCH: 'maybe' }),
      (e: Error) =>
        e instanceof CommunityConfigError &&
        e.problems.length === 6 &&
        /NOCTURNE_DATASET_DIR: \/nowhere is not a folder/.test(e.message) &&
        /NOCTURNE_CONTRIBUTIONS_PER_DAY must be a number/.test(e.message) &&
        /NOCTURNE_DRIFT_THRESHOLD must be between 0 and 1/.test(e.message) &&
        /NOCTURNE_RETRAIN_SCHEDULE must be a cron expression/.test(e.message) &&
        /NOCTURNE_RETRAIN_TIMEZONE must be an IANA time zone/.test(e.message) &&
        !e.message.includes('\n'),
    );
  });

  test('defaults, and the schedule can be switched off', () => {
    const c = communityConfigFromEnv({ NOCTURNE_MODEL_DIR: world.modelDir, NOCTURNE_DATASET_DIR: world.datasetDir });
    assert.equal(c.dataDir, join(process.cwd(), 'data'));
    assert.equal(c.contributionsPerDay, 10);
    assert.equal(c.driftThreshold, 0.35);
    assert.equal(c.retrain.schedule, '0 4 * * 0');
    assert.equal(c.retrain.staleLockMinutes, c.retrain.maxMinutes + 60);
    assert.equal(communityConfigFromEnv({ ...world.env, NOCTURNE_RETRAIN_SCHEDULE: 'off' }).retrain.schedule, null);
  });
});
