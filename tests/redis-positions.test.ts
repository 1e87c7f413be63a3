/**
 * "queued #n" with REDIS_URL counts every bot's waiting jobs: two bots (two job stores, one
 * redis-server) hand their jobs to the one BullMQ queue, and each job's place is its place in
 * Redis's wait list. No worker runs at first, so the places are fixed; then a worker that takes
 * one job at a time starts, and the places fall until every job is composed and answered.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Bot } from '../src/chat/bot.ts';
import type { InfoMessage, Reply, ResultPost } from '../commands/shared/command.ts';
import type { JobInput, JobRecord } from '../src/jobs/types.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';
import { NocturneProcess, TestRedis, redisSkip } from '../src/testing/redis.ts';

let redis: TestRedis;
let fixture: ChatFixture;
const bots: Bot[] = [];
let worker: NocturneProcess | undefined;

class RecordingReply implements Reply {
  readonly progressLines: string[] = [];
  readonly results: ResultPost[] = [];
  readonly errors: string[] = [];
  async progress(text: string): Promise<void> {
    this.progressLines.push(text);
  }
  async info(_m: InfoMessage): Promise<void> {}
  async result(post: ResultPost): Promise<void> {
    this.results.push(post);
  }
  async error(line: string): Promise<void> {
    this.errors.push(line);
  }
  /** The places reported, in order. */
  places(): number[] {
    return this.progressLines.map((l) => /^queued #(\d+)/.exec(l)?.[1]).filter((p): p is string => p !== undefined).map(Number);
  }
}

function input(user: string, notes = 16): JobInput {
  return {
    kind: 'compose',
    who: { platform: 'discord', userId: user, userName: `u${user.slice(-3)}`, serverId: '800000000000000001', channelId: '810000000000000001', isManager: false },
    params: { composer: 'chopin', notes, format: 'wav' },
  };
}

/** Polls `check` until it is true (generous limit: a loaded 2-core machine is slow, not wrong). */
async function until(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  fixture = await chatFixture('positions');
  for (const name of ['a', 'b']) {
    bots.push(
      await Bot.open({
        modelDir: fixture.modelDir,
        dataDir: join(fixture.dir, `data-${name}`),
        outDir: join(fixture.dir, `out-${name}`),
        limits: { batchWindowMs: 20, userMaxOpen: 5, userPerMinute: 100 },
        log: fixture.log,
        redisUrl: redis.url,
      }),
    );
  }
});

after(async () => {
  await worker?.stop();
  await Promise.allSettled(bots.map((b) => b.close(5000)));
  await redis?.stop();
  fixture?.remove();
});

test('two bots, one Redis: a job\'s place counts the other bot\'s waiting jobs; places fall as a worker takes them', { skip: redisSkip, timeout: 240_000 }, async () => {
  const [a, b] = bots;
  const replies: RecordingReply[] = [];
  const runs: Promise<JobRecord | undefined>[] = [];
  // Three jobs on bot A, one after the other so their order in Redis is known.
  for (let i = 0; i < 3; i++) {
    const reply = new RecordingReply();
    replies.push(reply);
    runs.push(a.runJob(input(`70000000000000100${i}`), reply));
    await until(() => reply.places().length > 0, `bot A's job ${i + 1} to be queued`);
    assert.deepEqual(reply.places(), [i + 1], `bot A's job ${i + 1}: ${JSON.stringify(reply.progressLines)}`);
  }
  // Bot B has no job of its own in line, yet its job is fourth: A's three are ahead of it.
  const bReply = new RecordingReply();
  replies.push(bReply);
  runs.push(b.runJob(input('700000000000001010'), bReply));
  await until(() => bReply.places().length > 0, "bot B's job to be queued");
  assert.deepEqual(bReply.places(), [4], `bot B's job: ${JSON.stringify(bReply.progressLines)}`);
  assert.match(bReply.progressLines[0], /^queued #4, about \d+ s$/);
  // Both bots see the four waiting jobs (the queue bound and /status count them).
  await until(() => b.queueStats().waiting === 4 && a.queueStats().waiting === 4, 'both bots to count 4 waiting jobs');
  assert.equal(b.queueStats().composing, 0, 'nothing is composing without a worker');

  worker = new NocturneProcess('worker', { REDIS_URL: redis.url, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_BATCH_MAX: '1', NOCTURNE_BATCH_WINDOW_MS: '0' });
  const records = await Promise.all(runs);
  for (const [i, r] of records.entries()) assert.equal(r?.state, 'done', `job ${i + 1}: ${r?.error}`);
  for (const [i, reply] of replies.entries()) {
    assert.equal(reply.results.length, 1, `job ${i + 1} answered once`);
    assert.deepEqual(reply.errors, []);
    const places = reply.places();
    assert.deepEqual([...places].sort((x, y) => y - x), places, `job ${i + 1}'s places only fall: ${places}`);
    const composing = reply.progressLines.findIndex((l) => /composing/.test(l));
    assert.ok(composing >= 0, `job ${i + 1} reported composing: ${JSON.stringify(reply.progressLines)}`);
    assert.ok(reply.progressLines.slice(composing).every((l) => !/^queued/.test(l)), 'no place after it started');
  }
  // The worker took one job at a time in Redis order: B's job moved up before it started.
  assert.ok(bReply.places().some((p) => p < 4), `bot B's job moved up: ${JSON.stringify(bReply.progressLines)}`);
  assert.equal(b.queueStats().waiting, 0);
});
