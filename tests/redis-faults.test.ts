/**
 * Faults of the Redis scale-out, with real processes only: a redis-server (append-only file,
 * fsync on every write), a bot (`nocturne start`, Discord adapter against the fake gateway) and
 * `nocturne worker` processes, on the tiny community world (9 corpus pieces, the tiny model).
 *
 *   - Redis is killed (SIGKILL) while a worker composes a job, then started again on the same
 *     port: the bot and the worker reconnect, the job is answered exactly once, and neither
 *     process exits or starts over.
 *   - Retraining runs on a worker, under the Redis lock; the worker is killed (kill -9) during
 *     the run: its retraining child ends with it, the serving model (pointer, bytes, spec) and
 *     every accepted contribution are intact, the lock expires after its TTL, and a new worker
 *     takes the job over and runs it to a verdict that reaches the moderator and the moderators'
 *     channel; the promotion reaches every worker and the bot's own view. A second run is clean,
 *     and a request while it runs is answered "busy" with who started it and when; a worker
 *     started afterwards serves the latest version.
 *
 * No timings are asserted: every wait polls for a condition, with generous limits that only end
 * a hung test.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Community } from '../src/community/community.ts';
import { ConfigError, loadWorkerConfig } from '../src/app/config.ts';
import { processExists } from '../src/community/lock.ts';
import type { RunRecord } from '../src/community/retrain.ts';
import { readLock } from '../src/scaleout/redisLock.ts';
import { retrainLockKey, type RetrainLockInfo } from '../src/scaleout/retrainQueue.ts';
import { FakeDiscord, MANAGE_GUILD, type RecordedCall } from '../src/testing/discordServer.ts';
import { FAST_TEMPO_BPM, isPng, midiNoteCount } from './support/chatBot.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, type CommunityWorld } from './support/communityFixture.ts';
import { NocturneProcess, TestRedis, redisSkip } from '../src/testing/redis.ts';

const GUILD = '800000000000000001';
const MOD_CHANNEL = '830000000000000001';
const manager = { user: { id: '700000000000000403', username: 'max' }, permissions: MANAGE_GUILD };
const otherManager = { user: { id: '700000000000000404', username: 'mia' }, permissions: MANAGE_GUILD };
const member = { user: { id: '700000000000000405', username: 'dora' } };

let world: CommunityWorld;
let redis: TestRedis;
let probe: Redis;
let fake: FakeDiscord;
let bot: NocturneProcess;
const workers: NocturneProcess[] = [];

function startWorker(): NocturneProcess {
  const w = new NocturneProcess('worker', {
    REDIS_URL: redis.url,
    NOCTURNE_MODEL_DIR: world.modelDir,
    NOCTURNE_BATCH_WINDOW_MS: '20',
    NOCTURNE_WORKER_LOCK_MS: '2000',
    // Short, so that the take-over after a kill -9 comes soon; renewed every second meanwhile.
    NOCTURNE_RETRAIN_LOCK_MS: '3000',
  });
  workers.push(w);
  return w;
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Every file of a folder, by name, as a hash of its bytes. */
function folderHashes(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, sha(readFileSync(join(dir, f)))]));
}

function servingVersion(): string {
  return JSON.parse(readFileSync(join(world.config.dataDir, 'models', 'serving.json'), 'utf8')).version;
}

/** The accepted contributions: their records and their files' bytes. */
async function contributionsSnapshot(): Promise<string> {
  const community = await Community.open(world.config);
  try {
    const records = (await community.listContributions({ limit: 1000 })).sort((a, b) => a.id.localeCompare(b.id));
    return JSON.stringify(records.map((r) => ({ id: r.id, status: r.status, hash: r.hash, size: r.size, file: sha(readFileSync(community.contributions.filePath(r.id))) })));
  } finally {
    await community.close();
  }
}

async function runRecord(runId: string): Promise<RunRecord | undefined> {
  const community = await Community.open(world.config);
  try {
    return await community.store.get<RunRecord>(`run:${runId}`);
  } finally {
    await community.close();
  }
}

async function until(check: () => boolean | Promise<boolean>, what: string, limitMs = 120_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}\nbot:\n${bot?.output.join('').slice(-3000)}\nworkers:\n${workers.map((w) => w.output.join('').slice(-2000)).join('\n---\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function progressOf(token: string): string[] {
  return fake.callsFor(token).filter((c) => c.method === 'PATCH' && c.files.length === 0).map((c) => String(c.body?.content ?? ''));
}

function resultCalls(token: string): RecordedCall[] {
  return fake.callsFor(token).filter((c) => c.method === 'PATCH' && c.files.length > 0);
}

function embedOf(call: RecordedCall): { title: string; description: string; fields: { name: string; value: string }[] } {
  return call.body?.data?.embeds?.[0] ?? call.body?.embeds?.[0];
}

const count = (p: NocturneProcess, pattern: RegExp) => (p.output.join('').match(new RegExp(pattern.source, 'g')) ?? []).length;

before(async () => {
  if (redisSkip) return;
  world = await createCommunityWorld({
    NOCTURNE_RETRAIN_SCHEDULE: 'off',
    // Runs go on for the epochs asked for (no early stop), so a run lasts long enough to be
    // interrupted, or to be asked about, however fast the machine is.
    NOCTURNE_RETRAIN_PATIENCE: '1000',
    // Any candidate passes, so the verdict is known in advance (the gate has its own tests).
    NOCTURNE_GATE_NLL_TOLERANCE: '10',
    NOCTURNE_GATE_DRIFT_TOLERANCE: '1',
  });
  // The untrained model's notes are far apart: a fast tempo keeps its audio short (see chatBot.ts).
  const specPath = join(world.modelDir, 'model.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  for (const c of spec.composers) c.tempoBpm = FAST_TEMPO_BPM;
  writeFileSync(specPath, `${JSON.stringify(spec, null, 2)}\n`);
  // Two accepted contributions, made before the bot starts.
  const community = await Community.open(world.config);
  try {
    for (const [i, name] of NEW_PIECES.slice(0, 2).entries()) {
      const outcome = await community.contribute(await datasetBytes(name), { uploader: `u${i}`, platform: 'discord', server: GUILD, label: 'Chopin', filename: name.split('/')[1] });
      assert.notEqual(outcome.status, 'refused', outcome.message);
    }
  } finally {
    await community.close();
  }

  redis = await TestRedis.start({ appendOnlyDir: mkdtempSync(join(world.root, 'redis-')) });
  probe = new Redis(redis.url, { maxRetriesPerRequest: null });
  probe.on('error', () => undefined);
  fake = await FakeDiscord.start();
  bot = new NocturneProcess('start', {
    ...world.env,
    REDIS_URL: redis.url,
    NOCTURNE_OUT_DIR: join(world.root, 'out'),
    NOCTURNE_TERMINAL: 'off',
    NOCTURNE_USER_PER_MINUTE: '100',
    NOCTURNE_BATCH_WINDOW_MS: '20',
    DISCORD_TOKEN: 'MTAw.fake.token',
    DISCORD_API_BASE: fake.apiBase,
    DISCORD_GUILD_ID: GUILD,
    NOCTURNE_DISCORD_MODERATOR_CHANNEL: MOD_CHANNEL,
  });
  await bot.waitFor(/discord: logged in/, 120_000, 'the bot');
  assert.match(bot.output.join(''), /retraining runs on nocturne worker processes/);
  await startWorker().waitFor(/worker: taking retraining jobs/, 120_000, 'the first worker');
});

after(async () => {
  await bot?.stop();
  await Promise.allSettled(workers.map((w) => w.stop()));
  probe?.disconnect();
  await fake?.close();
  await redis?.stop();
  if (world) await rm(world.root, { recursive: true, force: true });
});

test('the worker\'s retraining settings are validated with the rest', () => {
  const base = { REDIS_URL: 'redis://127.0.0.1:6379', NOCTURNE_MODEL_DIR: join(import.meta.dirname, '..', 'models', 'default') };
  const defaults = loadWorkerConfig(base, '/');
  assert.equal(defaults.retrain, true);
  assert.equal(defaults.retrainLockMs, 60_000);
  const off = loadWorkerConfig({ ...base, NOCTURNE_WORKER_RETRAIN: 'off', NOCTURNE_RETRAIN_LOCK_MS: '3000' }, '/');
  assert.equal(off.retrain, false);
  assert.equal(off.retrainLockMs, 3000);
  assert.equal(defaults.storeUrl, undefined, 'no STORE_URL: the SQLite file in the shared data folder');
  assert.equal(loadWorkerConfig({ ...base, STORE_URL: 'redis://:hunter2@10.0.0.5:6379' }, '/').storeUrl, 'redis://:hunter2@10.0.0.5:6379');
  assert.throws(
    () => loadWorkerConfig({ ...base, STORE_URL: 'mysql://root:hunter2@db/x' }, '/'),
    (e: unknown) => e instanceof ConfigError && /STORE_URL/.test(e.message) && !e.message.includes('hunter2'),
  );
  assert.throws(
    () => loadWorkerConfig({ ...base, NOCTURNE_WORKER_RETRAIN: 'maybe', NOCTURNE_RETRAIN_LOCK_MS: '10' }, '/'),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 2 && /NOCTURNE_WORKER_RETRAIN must be on or off/.test(e.message) && /NOCTURNE_RETRAIN_LOCK_MS/.test(e.message),
  );
});

test('Redis is killed during a compose job and started again: both processes reconnect, the job is answered exactly once', { skip: redisSkip, timeout: 300_000 }, async () => {
  const worker = workers.at(-1)!;
  // 400 notes: several seconds of sampling, rendering and fitting at the fixture's tempo, so the job
  // is still in flight through the outage, without the minutes a 2000-note piece spends in the OGG encoder.
  const notes = 400;
  const { token } = fake.command('compose', { composer: 'chopin', notes }, member);
  await fake.waitFor((c) => c.path.includes(`/${token}/`) && /composing/.test(c.body?.content ?? ''), 120_000, 'the job being composed');
  await redis.kill9();
  // While Redis is gone: no answer can be given, and nobody exits.
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(bot.alive, 'the bot is still running');
  assert.ok(worker.alive, 'the worker is still running');
  assert.equal(resultCalls(token).length, 0, 'the job was still in flight when Redis went away');
  await redis.relaunch();

  const o = await fake.waitForOutcome(token, 240_000);
  assert.equal(o.kind, 'result', JSON.stringify(o.call.body));
  assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), notes);
  // A later job goes through the same connections.
  const next = fake.command('compose', { composer: 'chopin', notes: 16 }, member);
  assert.equal((await fake.waitForOutcome(next.token, 120_000)).kind, 'result');
  assert.equal(resultCalls(token).length, 1, 'exactly one answer');
  assert.deepEqual(fake.callsFor(token).filter((c) => (c.body?.flags ?? c.body?.data?.flags ?? 0) & 64), [], 'no error reply as well');
  assert.ok(bot.alive && worker.alive, 'neither process exited');
  assert.equal(count(worker, /worker: taking compose jobs/), 1, 'the worker did not start over');
  assert.equal(count(bot, /jobs go through Redis/), 1, 'the bot did not start over');
});

let killedRun = '';
let promoted = '';

test('kill -9 the worker during a retraining on Redis: the serving model and the contributions are intact, the lock is taken over after its TTL, the run ends in a verdict', { skip: redisSkip, timeout: 600_000 }, async () => {
  const shipped = servingVersion();
  const shippedDir = join(world.config.dataDir, 'models', shipped);
  const modelBefore = folderHashes(shippedDir);
  const contributionsBefore = await contributionsSnapshot();
  const victim = workers.at(-1)!;

  const { token } = fake.command('retrain', { force: 'yes', epochs: 30 }, manager);
  let runId = '';
  await until(() => progressOf(token).some((p) => (runId = /retraining \(run (\S+)\), training: /.exec(p)?.[1] ?? '') !== ''), 'the run training on the worker', 240_000);
  const held = await readLock<RetrainLockInfo>(probe, retrainLockKey());
  assert.ok(held, 'the worker holds the retraining lock');
  assert.equal(held.info.worker.split(' pid ')[1], String(victim.child.pid), held.info.worker);
  assert.equal(held.info.runId, runId);
  const child = (await runRecord(runId))?.pid;
  assert.ok(child && child !== victim.child.pid, 'the run is a child of the worker');

  victim.kill9();
  await new Promise((r) => victim.child.once('exit', r));
  killedRun = runId;
  await until(() => !processExists(child), 'the retraining child to end with its worker');

  // Nothing the run made is used: the pointer, the serving folder's bytes and spec, the contributions.
  assert.equal(servingVersion(), shipped);
  assert.deepEqual(folderHashes(shippedDir), modelBefore);
  assert.equal(await contributionsSnapshot(), contributionsBefore);

  // Nobody released the lock (its owner is dead); it expires after its TTL, and then can be taken.
  await until(async () => (await readLock(probe, retrainLockKey())) === undefined, 'the dead worker\'s lock to expire', 60_000);
  assert.equal(resultCalls(token).length, 0, 'no verdict yet: the job waits for a worker');

  const rescuer = startWorker();
  await rescuer.waitFor(/worker: taking retraining jobs/, 120_000, 'the second worker');
  const o = await fake.waitForOutcome(token, 480_000);
  assert.equal(o.kind, 'result', `a verdict with the curve attached: ${JSON.stringify(o.call.body)}`);
  const embed = o.call.body.embeds[0];
  const title = /^Retraining: (r\d+-\S+) promoted$/.exec(embed.title);
  assert.ok(title, embed.title);
  promoted = title[1];
  assert.match(embed.description, /validation NLL \(nats per note, lower is better\): \d+\.\d{4} → \d+\.\d{4}/);
  assert.match(embed.description, /data: 2 contributions trained on/);
  assert.ok(embed.description.includes(`serving: ${shipped} → ${promoted}`), embed.description);
  assert.ok(isPng(o.call.files.find((f) => f.name === `training-curve-${promoted}.png`)!.bytes));
  assert.match(rescuer.output.join(''), /worker: retraining job \S+ again: the worker that had it stopped/);
  assert.match(rescuer.output.join(''), /worker: retraining job \S+: took (over )?the retraining lock/);

  // The killed run is on record as interrupted; the shipped version is still byte for byte the same.
  assert.equal((await runRecord(killedRun))?.state, 'interrupted');
  assert.deepEqual(folderHashes(shippedDir), modelBefore);
  assert.equal(await contributionsSnapshot(), contributionsBefore);
  assert.equal(servingVersion(), promoted);

  // The verdict reaches the moderators' channel; the promotion reaches the worker and the bot's own view.
  const notice = await fake.waitFor((c) => c.method === 'POST' && c.path === `/channels/${MOD_CHANNEL}/messages` && c.body?.embeds?.[0]?.title === `Retraining: ${promoted} promoted`, 60_000, 'the moderator channel notice');
  assert.match(notice.body.embeds[0].description, /^started by max \(Discord\)\n/);
  assert.ok(notice.files.some((f) => isPng(f.bytes)));
  await rescuer.waitFor(new RegExp(`worker: now serving model ${promoted}`), 120_000, 'the worker reloading');
  const status = fake.command('status', {}, member);
  const s = await fake.waitForOutcome(status.token, 60_000);
  assert.match(embedOf(s.call).description, new RegExp(`Model: ${promoted}, 2 composers`));
  const piece = fake.command('compose', { composer: 'chopin', notes: 16 }, member);
  const p = await fake.waitForOutcome(piece.token, 120_000);
  assert.equal(embedOf(p.call).fields.find((f: { name: string }) => f.name === 'Model')?.value, promoted);
  assert.ok(bot.alive && rescuer.alive);
});

test('the next retraining runs cleanly on Redis; a request while it runs is answered "busy" with who and when', { skip: redisSkip, timeout: 600_000 }, async () => {
  assert.ok(promoted, 'the previous test promoted a version');
  const { token } = fake.command('retrain', { force: 'yes', epochs: 30 }, manager);
  await until(() => progressOf(token).some((p) => /retraining \(run \S+\), training: /.test(p)), 'the second run', 240_000);
  const busy = fake.command('retrain', { force: 'yes' }, otherManager);
  const b = await fake.waitForOutcome(busy.token, 60_000);
  assert.equal(b.kind, 'error');
  const text = String(b.call.body?.content ?? b.call.body?.data?.content ?? '');
  assert.match(text, /a retraining run is already (in progress \(run \S+, moderator by max \(Discord\) at \d{4}-\d\d-\d\d \d\d:\d\d UTC, on worker .* pid \d+\)|queued for a worker \(moderator by max \(Discord\) at .* UTC\)); try again when it has finished/);

  const o = await fake.waitForOutcome(token, 480_000);
  assert.equal(o.kind, 'result', JSON.stringify(o.call.body));
  const latest = /^Retraining: (r\d+-\S+) promoted$/.exec(o.call.body.embeds[0].title)?.[1];
  assert.ok(latest, o.call.body.embeds[0].title);
  assert.doesNotMatch(o.call.body.embeds[0].description, /interrupted/);
  assert.equal(await readLock(probe, retrainLockKey()), undefined, 'the lock was released by its owner');

  // A worker started after the promotions serves the latest version, not NOCTURNE_MODEL_DIR.
  const late = startWorker();
  await late.waitFor(new RegExp(`worker: taking compose jobs from \\S+ with model ${latest} `), 120_000, 'a worker started after the promotions');
});
