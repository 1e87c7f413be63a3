/**
 * Two real `nocturne start` bots (instances bot-a and bot-b) on one Redis STORE_URL and REDIS_URL,
 * Discord through the fake gateway. bot-a takes five /compose while no worker runs, so they stay
 * queued; bot-b starts and leaves them alone (bot-a is alive); bot-a is killed with SIGKILL; bot-b
 * takes them over once bot-a's heartbeat is stale, a worker composes them, and each user gets
 * exactly one answer. Short heartbeat settings; every wait polls with a generous limit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { chatFixture, midiNoteCount, type ChatFixture } from './support/chatBot.ts';
import { NocturneProcess, TestRedis, botProcessEnv, redisSkip } from '../src/testing/redis.ts';
import { JobStore } from '../src/jobs/store.ts';
import { storeLocation } from '../src/storage/backend.ts';

let redis: TestRedis;
let fake: FakeDiscord;
let fixture: ChatFixture;
const processes: NocturneProcess[] = [];

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  fake = await FakeDiscord.start();
  fixture = await chatFixture('redis-instances');
});

after(async () => {
  await Promise.allSettled(processes.map((p) => p.stop()));
  await fake?.close();
  await redis?.stop();
  fixture?.remove();
});

function resultCalls(token: string): RecordedCall[] {
  return fake.callsFor(token).filter((c) => c.method === 'PATCH' && c.files.length > 0);
}

test('kill -9 one of two bots sharing a store with jobs queued: the other takes them over and answers each once', { skip: redisSkip, timeout: 300_000 }, async () => {
  const storeUrl = `${redis.url}/1`;
  const bot = (name: string): NocturneProcess => {
    const dir = mkdtempSync(join(fixture.dir, `${name}-`));
    const p = new NocturneProcess(
      'start',
      botProcessEnv(
        { redisUrl: redis.url, modelDir: fixture.modelDir, dir, apiBase: fake.apiBase },
        { STORE_URL: storeUrl, NOCTURNE_INSTANCE: name, NOCTURNE_HEARTBEAT_S: '1', NOCTURNE_INSTANCE_STALE_S: '4', NOCTURNE_TAKEOVER_SCAN_S: '1', NOCTURNE_USER_PER_MINUTE: '100' },
      ),
    );
    processes.push(p);
    return p;
  };
  const a = bot('bot-a');
  await a.waitFor(/discord: logged in/, 90_000, 'bot-a');
  // Only bot-a is connected to the gateway while the jobs are asked for, so only it receives them.
  const tokens = [0, 1, 2, 3, 4].map((i) => fake.command('compose', { composer: 'chopin', notes: 16 + i }, { user: { id: `70000000000000097${i}`, username: `o${i}` } }).token);
  for (const t of tokens) await fake.waitFor((c) => c.path.includes(`/${t}/`) && /queued #\d/.test(c.body?.content ?? ''), 60_000, 'queued');

  const b = bot('bot-b');
  await b.waitFor(/discord: logged in/, 90_000, 'bot-b');
  await b.waitFor(/left 5 open job\(s\) to the other running bot instance/, 60_000, 'bot-b leaving bot-a\'s jobs alone');

  // A second process under bot-b's name is refused with one line while bot-b runs.
  const twin = bot('bot-b');
  await twin.waitFor(/another bot process already runs as instance "bot-b".*NOCTURNE_INSTANCE/, 90_000, 'the twin');
  await new Promise((r) => (twin.alive ? twin.child.once('exit', r) : r(undefined)));
  assert.notEqual(twin.child.exitCode, 0);

  a.kill9();
  await new Promise((r) => (a.alive ? a.child.once('exit', r) : r(undefined)));
  await b.waitFor(/took over 5 job\(s\) of gone instance\(s\)/, 120_000, 'bot-b taking over');
  const worker = new NocturneProcess('worker', { REDIS_URL: redis.url, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_BATCH_WINDOW_MS: '20' });
  processes.push(worker);
  for (const [i, t] of tokens.entries()) {
    const o = await fake.waitForOutcome(t, 180_000);
    assert.equal(o.kind, 'result', `job ${i} answered after the takeover`);
    assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), 16 + i);
  }
  await new Promise((r) => setTimeout(r, 2000));
  for (const t of tokens) assert.equal(resultCalls(t).length, 1, 'exactly one answer per job');
  const store = await JobStore.open(storeLocation('/unused', storeUrl));
  try {
    assert.deepEqual(await store.openJobs(), []);
    assert.equal(await store.instances.get('bot-a').then((r) => r?.name), 'bot-a', 'the killed bot\'s heartbeat stays (stale)');
  } finally {
    await store.close();
  }
  await b.stop();
  const after = await JobStore.open(storeLocation('/unused', storeUrl));
  try {
    assert.equal(await after.instances.get('bot-b'), undefined, 'a graceful stop removes the heartbeat');
  } finally {
    await after.close();
  }
});
