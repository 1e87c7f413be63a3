/**
 * Retraining on a worker with the community records in Redis (STORE_URL): the worker's run reads
 * the contributions the bots accepted into that store and records its run there, and the store's
 * URL (which may hold a password) never travels in the job's data. The bot's side
 * (RedisRetraining) and the worker's (RetrainJobWorker, with its own retraining child process) run
 * against one throw-away redis-server; the data folder is shared, as docs/scaling.md requires.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Community } from '../src/community/community.ts';
import type { RunRecord } from '../src/community/retrain.ts';
import { RETRAIN_QUEUE, RedisRetraining, RetrainJobWorker, type RetrainJobData } from '../src/scaleout/retrainQueue.ts';
import { DEFAULT_REDIS_PREFIX } from '../src/scaleout/redisQueue.ts';
import { NEW_PIECES, createCommunityWorld, datasetBytes, type CommunityWorld } from './support/communityFixture.ts';
import { TestRedis, redisSkip } from '../src/testing/redis.ts';

let redis: TestRedis;
let world: CommunityWorld;
let worker: RetrainJobWorker | undefined;
let bots: RedisRetraining | undefined;
const logs: string[] = [];

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  world = await createCommunityWorld({
    STORE_URL: redis.url,
    NOCTURNE_RETRAIN_SCHEDULE: 'off',
    NOCTURNE_RETRAIN_EPOCHS: '1',
    // Any candidate passes: this test is about where the run reads and writes, not the gate.
    NOCTURNE_GATE_NLL_TOLERANCE: '10',
    NOCTURNE_GATE_DRIFT_TOLERANCE: '1',
  });
});

after(async () => {
  await bots?.close();
  await worker?.close();
  await redis?.stop();
  if (world) await rm(world.root, { recursive: true, force: true });
});

test('a worker\'s retraining uses the bots\' STORE_URL (contributions in, run record out), and the URL is not in the job data', { skip: redisSkip, timeout: 300_000 }, async () => {
  assert.equal(world.config.storeUrl, redis.url, 'the community settings carry STORE_URL');
  const community = await Community.open(world.config);
  try {
    const outcome = await community.contribute(await datasetBytes(NEW_PIECES[0]), { uploader: 'u1', platform: 'discord', server: 'S1', label: 'Chopin', filename: 'piece.mid' });
    assert.equal(outcome.status, 'accepted', outcome.message);
  } finally {
    await community.close();
  }

  const log = (line: string) => void logs.push(line);
  worker = await RetrainJobWorker.start({ redisUrl: redis.url, lockTtlMs: 10_000, lockDurationMs: 30_000, storeUrl: redis.url, log });
  bots = await RedisRetraining.open(redis.url, log);
  const stages: string[] = [];
  const outcome = await bots.retrain(world.config, { trigger: 'moderator', requestedBy: 'mod', force: true }, (p) => stages.push(p.stage));
  assert.equal(outcome.status, 'promoted', `${outcome.reason}\n${logs.join('\n')}`);
  assert.equal(outcome.contributionsUsed, 1, 'the run found the contribution that is only in the Redis store');
  assert.ok(stages.includes('training'), `progress reached the bot: ${stages.join(', ')}`);

  // The run's record is in the store the bots read (Redis), not in the data folder's SQLite file.
  const again = await Community.open(world.config);
  try {
    const run = await again.store.get<RunRecord>(`run:${outcome.runId}`);
    assert.equal(run?.outcome?.status, 'promoted');
  } finally {
    await again.close();
  }

  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue<RetrainJobData>(RETRAIN_QUEUE, { connection, prefix: DEFAULT_REDIS_PREFIX });
  try {
    const jobs = await queue.getJobs(['completed']);
    assert.equal(jobs.length, 1);
    assert.equal('storeUrl' in jobs[0].data.config, false, 'the store URL stays out of the job data');
    assert.equal(JSON.stringify(jobs[0].data).includes(redis.url), false);
  } finally {
    await queue.close();
    connection.disconnect();
  }
});
