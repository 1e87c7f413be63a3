/**
 * Scale-out on Redis with real processes: a redis-server on 127.0.0.1, `nocturne worker`
 * processes, and a bot (Discord adapter against the fake) that composes through them without
 * loading the model. Faults: kill -9 a worker mid-job (another finishes it, exactly one answer),
 * restart Redis while idle (the worker and the bot reconnect; the next job is answered).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscordAdapter } from '../src/adapters/discord/discord.ts';
import { Bot } from '../src/chat/bot.ts';
import { ConfigError, loadConfig, loadWorkerConfig } from '../src/app/config.ts';
import { jobDataOf, redactedUrl } from '../src/scaleout/redisQueue.ts';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { createTinyModel } from './support/tinyModel.ts';
import { chatFixture, isOgg, isPng, isWav, midiNoteCount, type ChatFixture } from './support/chatBot.ts';
import { NocturneProcess, TestRedis, botProcessEnv, redisSkip } from '../src/testing/redis.ts';

let redis: TestRedis;
let fake: FakeDiscord;
let fixture: ChatFixture;
let bot: Bot;
let adapter: DiscordAdapter;
const workers: NocturneProcess[] = [];

function startWorker(): NocturneProcess {
  const w = new NocturneProcess('worker', {
    REDIS_URL: redis.url,
    NOCTURNE_MODEL_DIR: fixture.modelDir,
    NOCTURNE_BATCH_WINDOW_MS: '20',
    NOCTURNE_WORKER_LOCK_MS: '2000',
  });
  workers.push(w);
  return w;
}

function resultCalls(token: string): RecordedCall[] {
  return fake.callsFor(token).filter((c) => c.method === 'PATCH' && c.files.length > 0);
}

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  fake = await FakeDiscord.start();
  fixture = await chatFixture('redis');
  const first = startWorker();
  await first.waitFor(/worker: taking compose jobs/, 60_000, 'the first worker');
  bot = await Bot.open({ modelDir: fixture.modelDir, dataDir: fixture.dataDir, outDir: fixture.outDir, limits: { batchWindowMs: 20, userMaxOpen: 5, userPerMinute: 100 }, log: fixture.log, redisUrl: redis.url });
  adapter = new DiscordAdapter(bot, { token: 'MTAw.fake.token', apiBase: fake.apiBase, uploadLimitBytes: 10_000_000 }, fixture.log);
  await adapter.start();
});

after(async () => {
  await adapter?.stop();
  await bot?.close(5000);
  await Promise.allSettled(workers.map((w) => w.stop()));
  await fake?.close();
  await redis?.stop();
  fixture?.remove();
});

test('REDIS_URL and the worker settings are validated with every problem in one message', () => {
  assert.throws(
    () => loadWorkerConfig({ NOCTURNE_MODEL_DIR: '/nonexistent', NOCTURNE_BATCH_MAX: '0' }, '/'),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 3 && /REDIS_URL is not set/.test(e.message) && /NOCTURNE_BATCH_MAX/.test(e.message),
  );
  assert.throws(() => loadWorkerConfig({ REDIS_URL: 'http://x', NOCTURNE_MODEL_DIR: '/nonexistent' }, '/'), /REDIS_URL must be a redis or rediss URL/);
  assert.equal(redactedUrl('redis://user:hunter2@10.0.0.5:6379/0'), 'redis://user:***@10.0.0.5:6379/0');
  assert.deepEqual(jobDataOf({ composer: 'chopin', notes: 16, outDir: '/x/abc', seedMidi: new Uint8Array([1, 2]) }).seedMidiBase64, 'AQI=');
});

test('a bad REDIS_URL for the bot is one configuration line', { skip: redisSkip }, () => {
  assert.throws(() => loadConfig({ NOCTURNE_MODEL_DIR: fixture.modelDir, REDIS_URL: 'localhost:6379' }, fixture.dir), (e: unknown) => e instanceof ConfigError && /REDIS_URL must be an redis or rediss URL/.test(e.message));
  assert.equal(loadConfig({ NOCTURNE_MODEL_DIR: fixture.modelDir, REDIS_URL: redis.url }, fixture.dir).redisUrl, redis.url);
});

test('/compose through Redis: a worker process composes, progress reaches the user, the files reach the bot', { skip: redisSkip, timeout: 120_000 }, async () => {
  const tokens = [0, 1, 2].map((i) => fake.command('compose', { composer: 'chopin', notes: 16 + i }, { user: { id: `70000000000000080${i}`, username: `r${i}` } }).token);
  for (const [i, token] of tokens.entries()) {
    const o = await fake.waitForOutcome(token, 60_000);
    assert.equal(o.kind, 'result');
    const audio = o.call.files.find((f) => /\.(wav|ogg)$/.test(f.name))!;
    assert.ok(isWav(audio.bytes) || isOgg(audio.bytes));
    assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), 16 + i);
    assert.ok(isPng(o.call.files.find((f) => f.name.endsWith('.png'))!.bytes));
    const progress = fake.callsFor(token).map((c) => c.body?.content ?? '').filter(Boolean);
    assert.ok(progress.some((p) => /composing|rendering/.test(p)), `progress from the worker reached the user: ${JSON.stringify(progress)}`);
  }
  assert.ok(fixture.logs.some((l) => /jobs go through Redis .* this process does not load the model/.test(l)));
});

test('kill -9 a worker in the middle of a job: another worker finishes it, and the user gets exactly one answer', { skip: redisSkip, timeout: 180_000 }, async () => {
  const victim = workers[0];
  // 400 notes: about 3.4 minutes of music at the fixture's tempo, several seconds of sampling,
  // rendering and fitting (the worker sends it as mono WAV, which fits the bot's upload limit), so
  // the kill lands mid-job without the minutes a 2000-note piece spends in the OGG encoder.
  const notes = 400;
  const { token } = fake.command('compose', { composer: 'chopin', notes }, { user: { id: '700000000000000900', username: 'patient' } });
  await fake.waitFor((c) => c.path.includes(`/${token}/`) && /composing/.test(c.body?.content ?? ''), 60_000, 'the job being composed');
  victim.kill9();
  await new Promise((r) => victim.child.once('exit', r));
  assert.equal(resultCalls(token).length, 0, 'the victim was killed before it finished the job');
  const rescuer = startWorker();
  await rescuer.waitFor(/worker: taking compose jobs/, 60_000, 'the second worker');
  const o = await fake.waitForOutcome(token, 120_000);
  assert.equal(o.kind, 'result');
  assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), notes);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(resultCalls(token).length, 1, 'exactly one answer');
  const errors = fake.callsFor(token).filter((c) => (c.body?.flags ?? c.body?.data?.flags ?? 0) & 64);
  assert.deepEqual(errors, [], 'no error reply as well');
});

test('restart Redis while idle: the worker and the bot reconnect, nothing crashes, the next job is answered', { skip: redisSkip, timeout: 120_000 }, async () => {
  const worker = workers.at(-1)!;
  await redis.restart();
  await new Promise((r) => setTimeout(r, 3000));
  assert.ok(worker.alive, `the worker is still running:\n${worker.output.join('').slice(-2000)}`);
  const { token } = fake.command('compose', { composer: 'chopin', notes: 16 }, { user: { id: '700000000000000901', username: 'after' } });
  const o = await fake.waitForOutcome(token, 60_000);
  assert.equal(o.kind, 'result');
  assert.ok(worker.alive);
  const starts = worker.output.join('').match(/worker: taking compose jobs/g) ?? [];
  assert.equal(starts.length, 1, 'the worker did not restart (no crash loop)');
});

test('a promotion reaches every worker: each reloads the new version without a restart', { skip: redisSkip, timeout: 120_000 }, async () => {
  const second = startWorker();
  await second.waitFor(/worker: taking compose jobs/, 60_000, 'another worker');
  const live = workers.filter((w) => w.alive);
  assert.ok(live.length >= 2, 'two workers are running');
  const promoted = join(fixture.dir, 'promoted');
  await createTinyModel(promoted, ['Chopin', 'Mozart'], 5);
  const spec = JSON.parse(readFileSync(join(promoted, 'model.json'), 'utf8'));
  for (const c of spec.composers) c.tempoBpm = 480;
  writeFileSync(join(promoted, 'model.json'), JSON.stringify(spec));
  const info = await bot.useModel(promoted);
  assert.equal(info.version, 'tiny-5', 'the bot reports the new version (it read model.json only)');
  for (const w of live) await w.waitFor(/worker: now serving model tiny-5/, 60_000, `worker ${w.child.pid}`);
  const { token } = fake.command('compose', { composer: 'mozart', notes: 16 }, { user: { id: '700000000000000902', username: 'promoted' } });
  const o = await fake.waitForOutcome(token, 60_000);
  assert.equal(o.kind, 'result');
  assert.match(JSON.stringify(o.call.body), /tiny-5/, 'the piece names the promoted model');
  for (const w of live) assert.equal((w.output.join('').match(/worker: taking compose jobs/g) ?? []).length, 1, 'no restart');
});

test('kill -9 the bot while jobs are queued: after a restart every job is answered, once', { skip: redisSkip, timeout: 240_000 }, async () => {
  // The bot under test is a real process now: the in-process one leaves the fake gateway (it would
  // answer the same interactions), and no worker runs while the jobs are taken, so they are all
  // still queued when the bot dies.
  await adapter.stop();
  adapter = undefined as unknown as DiscordAdapter;
  await Promise.all(workers.map((w) => w.stop()));
  const { mkdtempSync } = await import('node:fs');
  const dir = mkdtempSync(join(fixture.dir, 'botkill-'));
  const env = botProcessEnv({ redisUrl: redis.url, modelDir: fixture.modelDir, dir, apiBase: fake.apiBase }, { NOCTURNE_USER_PER_MINUTE: '100' });
  const first = new NocturneProcess('start', env);
  let second: NocturneProcess | undefined;
  try {
    await first.waitFor(/discord: logged in/, 60_000, 'the bot');
    const readyBefore = fake.readyCount;
    const tokens = [0, 1, 2, 3, 4].map((i) => fake.command('compose', { composer: 'chopin', notes: 16 + i }, { user: { id: `70000000000000095${i}`, username: `k${i}` } }).token);
    for (const t of tokens) await fake.waitFor((c) => c.path.includes(`/${t}/`) && /queued #\d/.test(c.body?.content ?? ''), 30_000, 'queued');
    first.kill9();
    await new Promise((r) => first.child.once('exit', r));

    second = new NocturneProcess('start', env);
    await second.waitFor(/resumed 5 job\(s\)/, 60_000, 'the restarted bot');
    assert.ok(fake.readyCount > readyBefore);
    startWorker();
    for (const [i, t] of tokens.entries()) {
      const o = await fake.waitForOutcome(t, 120_000);
      assert.equal(o.kind, 'result', `job ${i} answered after the restart`);
      assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), 16 + i);
    }
    await new Promise((r) => setTimeout(r, 2000));
    for (const t of tokens) assert.equal(resultCalls(t).length, 1, 'exactly one answer per job');
  } finally {
    first.kill9();
    await second?.stop();
  }
});
