import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Community } from '../src/community/community.ts';
import { buildCorpusProfile, loadCorpusProfile, type CorpusProfile } from '../src/community/corpusProfile.ts';
import { histogramsOf, mergeHistograms, similarityTo } from '../src/community/distributions.ts';
import { listCorpus, loadCorpus, type CorpusPiece } from '../src/model/corpus.ts';
import { MAX_DT, MAX_DUR, PITCH_MAX } from '../src/tokens/tokenize.ts';
import { createCommunityWorld, DATASET, datasetBytes, NEW_PIECES, outlandishPiece, type CommunityWorld } from './support/communityFixture.ts';

const isPng = (b: Buffer) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe('drift similarity on the whole dataset', () => {
  let corpus: CorpusPiece[];
  let profile: CorpusProfile;
  before(async () => {
    corpus = await loadCorpus(listCorpus(DATASET));
    profile = await buildCorpusProfile(DATASET);
  });

  test('the corpus against itself is 1.0; pooling per-piece histograms gives the same pool', () => {
    const self = similarityTo(profile.histograms, histogramsOf(corpus.map((p) => p.tokens)));
    assert.equal(self.overall, 1);
    const pooled = mergeHistograms(corpus.map((p) => histogramsOf([p.tokens])));
    assert.equal(similarityTo(profile.histograms, pooled).overall, 1);
  });

  test('a transposed or rhythmically distorted corpus is clearly less similar; a real subset is close', () => {
    const octaveUp = corpus.map((p) => p.tokens.map((t) => ({ ...t, pitch: Math.min(PITCH_MAX, t.pitch + 12) })));
    const slower = corpus.map((p) => p.tokens.map((t) => ({ ...t, dt: Math.min(MAX_DT, t.dt * 2), dur: Math.min(MAX_DUR, t.dur * 2) })));
    const chopin = corpus.filter((p) => p.composer === 'Chopin').map((p) => p.tokens);
    const up = similarityTo(profile.histograms, histogramsOf(octaveUp));
    const slow = similarityTo(profile.histograms, histogramsOf(slower));
    const real = similarityTo(profile.histograms, histogramsOf(chopin));
    assert.ok(up.overall < 0.8, `octave up ${up.overall}`);
    assert.ok(up.perQuantity.pitch!.similarity < 0.2, `pitch similarity ${up.perQuantity.pitch!.similarity}`);
    assert.ok(Math.abs(up.perQuantity.pitch!.distance - 12) < 0.5, `pitch distance ${up.perQuantity.pitch!.distance}`);
    assert.equal(up.perQuantity.ioi!.similarity, 1);
    assert.ok(slow.overall < 0.75, `rhythm x2 ${slow.overall}`);
    assert.ok(slow.perQuantity.ioi!.similarity < 0.5 && slow.perQuantity.duration!.similarity < 0.5);
    assert.ok(real.overall > 0.8, `Chopin subset ${real.overall}`);
    assert.ok(real.overall > up.overall + 0.1 && real.overall > slow.overall + 0.1);
  });

  test('an empty sample is one clear error', () => {
    assert.throws(() => similarityTo(profile.histograms, histogramsOf([])), /drift: the sample has no notes/);
  });
});

describe('drift monitor', () => {
  let world: CommunityWorld;
  let community: Community;
  before(async () => {
    world = await createCommunityWorld({ NOCTURNE_DRIFT_RECENT_OUTPUTS: '2' });
    community = await Community.open(world.config);
  });
  after(async () => {
    await community.close();
    await rm(world.root, { recursive: true, force: true });
  });

  test('the corpus profile is cached next to the data and rebuilt only when the corpus changes', async () => {
    const cache = `${world.config.dataDir}/corpus-profile.json`;
    const first = JSON.parse(await readFile(cache, 'utf8')) as CorpusProfile;
    assert.equal(first.pieces, 9);
    const again = await loadCorpusProfile(world.config.datasetDir, cache);
    assert.equal(again.builtAt, first.builtAt);
  });

  test('report: per-contribution, pool and output numbers, and a PNG chart', async () => {
    const empty = await community.driftReport({ chart: true });
    assert.equal(empty.pool, undefined);
    assert.equal(empty.chartPath, undefined);
    assert.match(empty.summary.join('\n'), /no accepted contributions yet/);

    for (const name of NEW_PIECES.slice(0, 2)) assert.equal((await community.contribute(await datasetBytes(name), { uploader: 'u1', platform: 'slack', filename: name })).status, 'accepted');
    assert.equal((await community.contribute(outlandishPiece(), { uploader: 'u2', platform: 'slack', filename: 'odd.mid' })).status, 'flagged');
    // Generated outputs: a real piece (as if composed) and the outlandish one.
    const [aRealPiece] = await loadCorpus(listCorpus(world.config.datasetDir));
    const real = await community.drift.recordOutput(aRealPiece.tokens, 'tiny-3');
    assert.ok(real.similarity > 0.4, `${real.similarity}`);
    await writeFile(`${world.root}/odd.mid`, outlandishPiece());
    const odd = await community.recordOutput(`${world.root}/odd.mid`, 'tiny-3');
    assert.ok(odd.similarity < real.similarity);

    const report = await community.driftReport({ chart: true });
    assert.equal(report.contributions.total, 3);
    assert.equal(report.contributions.flagged, 1);
    assert.equal(report.pool!.pieces, 2);
    assert.ok(report.pool!.overall > 0.35 && report.pool!.overall < 1);
    assert.equal(report.outputs!.pieces, 2);
    assert.deepEqual(report.outputs!.modelVersions, ['tiny-3']);
    assert.ok(report.outputs!.overall < report.pool!.overall, 'the outlandish output pulls the output pool down');
    assert.ok(isPng(await readFile(report.chartPath!)));
    assert.match(report.summary.join('\n'), /contributions: 3 \(2 accepted, 1 flagged, 0 rejected\)/);
    const stored = await community.listContributions();
    assert.ok(stored.every((r) => r.similarity >= 0 && r.similarity <= 1 && r.drift.pitch));
  });
});
