/**
 * The controls through the Redis scale-out: a bot with REDIS_URL hands a job asking for a key, a
 * tempo and the score to a `nocturne worker` (ComposeWorker, in process, on a throw-away
 * redis-server); the worker composes with them and sends the MusicXML and the score picture back
 * with the other files, and the bot posts all five.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bot } from '../src/chat/bot.ts';
import type { Reply, ResultPost } from '../commands/shared/command.ts';
import { parseMidi } from '../src/midi/read.ts';
import { ComposeWorker } from '../src/scaleout/worker.ts';
import { TestRedis, redisSkip } from '../src/testing/redis.ts';
import { chatFixture, isPng, type ChatFixture } from './support/chatBot.ts';

let redis: TestRedis;
let fixture: ChatFixture;
let bot: Bot;
let worker: ComposeWorker;

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  fixture = await chatFixture('redis-score');
  bot = await Bot.open({ modelDir: fixture.modelDir, dataDir: join(fixture.dir, 'data'), outDir: join(fixture.dir, 'out'), limits: { batchWindowMs: 20 }, log: fixture.log, redisUrl: redis.url });
  worker = await ComposeWorker.start({ redisUrl: redis.url, modelDir: fixture.modelDir, backend: 'auto', maxBatch: 2, batchWindowMs: 20, lockDurationMs: 30_000, log: fixture.log });
});

after(async () => {
  await worker?.close();
  await bot?.close(5000);
  await redis?.stop();
  fixture?.remove();
});

test('key, tempo and score reach the worker, and the score files come back to the bot', { skip: redisSkip }, async () => {
  const posts: ResultPost[] = [];
  const errors: string[] = [];
  const reply: Reply = { uploadLimitBytes: 10_000_000, progress: async () => {}, info: async () => {}, error: async (l) => void errors.push(l), result: async (p) => void posts.push(p) };
  const who = { platform: 'discord' as const, userId: '700000000000000009', userName: 'ines', serverId: '800000000000000001', channelId: '810000000000000001', isManager: false };
  const record = await bot.runJob({ kind: 'compose', who, uploadLimitBytes: 10_000_000, params: { composer: 'chopin', notes: 16, format: 'wav', key: 'Eb minor', tempoBpm: 132, score: true } }, reply);
  assert.deepEqual(errors, []);
  assert.equal(record?.state, 'done');
  const o = record!.outputs!;
  assert.equal(o.tempoBpm, 132);
  assert.match(o.key!, /^Eb (major|minor)$/, 'the tiny model transposes to the tonic asked for');
  assert.equal(Math.round(parseMidi(new Uint8Array(readFileSync(o.midi)), 'piece.mid').tempoBpm), 132);
  assert.ok(o.score?.startsWith(record!.outDir) && o.scorePicture?.startsWith(record!.outDir), 'the score files are written into the bot\'s own out folder');
  assert.match(readFileSync(o.score!, 'utf8'), /<score-partwise/);
  assert.ok(isPng(readFileSync(o.scorePicture!)));
  assert.deepEqual(posts[0].files.map((f) => f.kind), ['audio', 'midi', 'image', 'score-picture', 'score']);
});
