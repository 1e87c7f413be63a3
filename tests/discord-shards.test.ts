/**
 * Discord sharding with real processes: `nocturne start` with DISCORD_SHARDS=auto runs discord.js's
 * ShardingManager, which forks one shard process per shard (under tsx) against the fake Discord,
 * which recommends 2 shards, delivers each session only its own guilds and dispatches each
 * interaction on the connection of the shard that owns its guild. Jobs go through a redis-server to
 * a `nocturne worker`. Checked: commands registered once, every /compose answered exactly once by
 * the right shard, and a shard killed with SIGKILL is respawned and answers again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ownsJob, shardExecArgv, shardOfGuild, shardRoleFromEnv } from '../src/app/discordShards.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import { FakeDiscord, guildForShard, shardOf, type RecordedCall } from '../src/testing/discordServer.ts';
import { chatFixture, isOgg, isPng, isWav, midiNoteCount, type ChatFixture } from './support/chatBot.ts';
import { NocturneProcess, TestRedis, botProcessEnv, redisSkip } from '../src/testing/redis.ts';

const SHARDS = 2;
/** Two guilds owned by each shard. */
const GUILDS = [guildForShard(0, SHARDS, 0), guildForShard(0, SHARDS, 1), guildForShard(1, SHARDS, 0), guildForShard(1, SHARDS, 1)];

let redis: TestRedis;
let fake: FakeDiscord;
let fixture: ChatFixture;
let worker: NocturneProcess | undefined;
let manager: NocturneProcess | undefined;
let userSeq = 0;

/** Polls `check` until it is true (generous limit: a loaded 2-core machine is slow, not wrong). */
async function until(check: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; manager output:\n${manager?.output.join('').slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The pids the manager logged for shard `id`, in order. */
function shardPids(id: number): number[] {
  const text = manager?.output.join('') ?? '';
  return [...text.matchAll(new RegExp(`shard ${id} of ${SHARDS} started \\(pid (\\d+)\\)`, 'g'))].map((m) => Number(m[1]));
}

function readyCount(id: number): number {
  return (manager?.output.join('').match(new RegExp(`discord shards: shard ${id} of ${SHARDS} ready`, 'g')) ?? []).length;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function commandPuts(): RecordedCall[] {
  return fake.calls.filter((c) => c.method === 'PUT' && /^\/applications\/\d+(\/guilds\/\d+)?\/commands$/.test(c.path));
}

function resultCalls(token: string): RecordedCall[] {
  return fake.callsFor(token).filter((c) => c.method === 'PATCH' && c.files.length > 0);
}

/** Sends /compose in `guild` and checks the answer: one result with its files, from the guild's shard. */
async function composeIn(guild: string, notes: number): Promise<string> {
  const user = { id: `7000000000000020${String(userSeq++).padStart(2, '0')}`, username: `s${userSeq}` };
  const { token } = fake.command('compose', { composer: 'chopin', notes }, { guildId: guild, user });
  const shard = shardOf(guild, SHARDS);
  assert.deepEqual(fake.deliveries.get(token), [shard], `the interaction went only to shard ${shard}'s connection`);
  const o = await fake.waitForOutcome(token, 120_000);
  assert.equal(o.kind, 'result', JSON.stringify(o.call.body));
  const audio = o.call.files.find((f) => /\.(wav|ogg)$/.test(f.name))!;
  assert.ok(isWav(audio.bytes) || isOgg(audio.bytes), 'valid WAV or OGG');
  assert.equal(midiNoteCount(o.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), notes);
  assert.ok(isPng(o.call.files.find((f) => f.name.endsWith('.png'))!.bytes));
  assert.match(o.call.userAgent, new RegExp(`nocturne \\(shard ${shard} of ${SHARDS}\\)`), 'answered by the shard that owns the guild');
  for (const c of fake.callsFor(token)) assert.match(c.userAgent, new RegExp(`shard ${shard} of`), `every call for it came from shard ${shard}`);
  return token;
}

/** A shard manager's environment: its own data and out folders (`name`), the fake at `apiBase`. */
function managerEnv(name: string, apiBase: string, extra: Record<string, string> = {}): Record<string, string> {
  return botProcessEnv({ redisUrl: redis.url, modelDir: fixture.modelDir, dir: join(fixture.dir, `manager${name}`), apiBase }, { DISCORD_SHARDS: '2', ...extra });
}

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  fake = await FakeDiscord.start({ shards: SHARDS, guilds: GUILDS });
  fixture = await chatFixture('shards');
  worker = new NocturneProcess('worker', { REDIS_URL: redis.url, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_BATCH_WINDOW_MS: '20' });
  await worker.waitFor(/worker: taking compose jobs/, 120_000, 'the worker');
  manager = new NocturneProcess('start', managerEnv('', fake.apiBase, { NOCTURNE_USER_PER_MINUTE: '100', NOCTURNE_BATCH_WINDOW_MS: '20', NOCTURNE_SHUTDOWN_GRACE_S: '5', DISCORD_SHARDS: 'auto' }));
  await manager.waitFor(/discord shards: all 2 ready/, 300_000, 'the shard manager');
});

after(async () => {
  const pids = [0, 1].flatMap(shardPids);
  await manager?.stop();
  // Whatever the manager could not stop (it should have): only the shard processes this test saw.
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await worker?.stop();
  await fake?.close();
  await redis?.stop();
  fixture?.remove();
});

test('DISCORD_SHARDS is validated with the rest, in one message; sharding needs REDIS_URL and DISCORD_TOKEN', () => {
  const model = join(import.meta.dirname, '..', 'models', 'default');
  const base = { NOCTURNE_MODEL_DIR: model, NOCTURNE_COMMUNITY: 'off' };
  assert.throws(
    () => loadConfig({ ...base, DISCORD_TOKEN: 'MTAw.fake.token', DISCORD_SHARDS: 'two', NOCTURNE_QUEUE_MAX: '0' }, '/'),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 3 && /DISCORD_SHARDS must be auto or a whole number/.test(e.message) && /DISCORD_SHARDS needs REDIS_URL/.test(e.message) && /NOCTURNE_QUEUE_MAX/.test(e.message),
  );
  assert.throws(() => loadConfig({ ...base, DISCORD_SHARDS: '2', REDIS_URL: 'redis://127.0.0.1:6379' }, '/'), /DISCORD_SHARDS is set but DISCORD_TOKEN is not/);
  const withRedis = { ...base, DISCORD_TOKEN: 'MTAw.fake.token', REDIS_URL: 'redis://127.0.0.1:6379' };
  assert.equal(loadConfig({ ...withRedis, DISCORD_SHARDS: 'auto' }, '/').discord?.shards, 'auto');
  assert.equal(loadConfig({ ...withRedis, DISCORD_SHARDS: '4' }, '/').discord?.shards, 4);
  assert.equal(loadConfig(withRedis, '/').discord?.shards, undefined, 'unset: no sharding');
});

test('shard arithmetic, job ownership and the shard process options (pure)', () => {
  for (const g of GUILDS) assert.equal(shardOfGuild(g, SHARDS), shardOf(g, SHARDS));
  assert.equal(shardOfGuild('81384788765712384', 1), 0);
  const job = (serverId?: string) => ({ who: { platform: 'discord', userId: '1', userName: 'x', channelId: '2', isManager: false, ...(serverId ? { serverId } : {}) } }) as JobRecord;
  assert.equal(ownsJob(job(GUILDS[2]), [1], SHARDS), true);
  assert.equal(ownsJob(job(GUILDS[2]), [0], SHARDS), false);
  assert.equal(ownsJob(job(), [0], SHARDS), true, 'DMs belong to shard 0');
  assert.equal(ownsJob(job(), [1], SHARDS), false);
  const argv = shardExecArgv(['--require', '/x/node_modules/tsx/dist/preflight.cjs', '--import', 'file:///x/node_modules/tsx/dist/loader.mjs', '--max-old-space-size=2048', '--inspect=9229']);
  assert.deepEqual(argv.slice(0, -2), ['--max-old-space-size=2048']);
  assert.deepEqual(argv.slice(-2, -1), ['--import']);
  assert.match(argv.at(-1)!, /tsx/);
  assert.deepEqual(shardRoleFromEnv({ SHARDS: '1', SHARD_COUNT: '2' }), { ids: [1], count: 2 });
  assert.throws(() => shardRoleFromEnv({}), /not started by the shard manager/);
});

test('the manager registers the commands once; each shard identifies as [id, 2] and gets only its own guilds', { skip: redisSkip }, async () => {
  assert.equal(commandPuts().length, 1, 'one registration for all shards');
  assert.deepEqual(
    (commandPuts()[0].body as { name: string }[]).map((c) => c.name).sort(),
    ['compose', 'continue', 'help', 'settings', 'show', 'status', 'styles'],
  );
  await until(() => fake.connectedShards().join() === '0,1', 'both shards connected');
  const byShard = new Map(fake.sessions.map((s) => [s.shard[0], s]));
  assert.deepEqual([...byShard.keys()].sort(), [0, 1]);
  for (const [id, session] of byShard) {
    assert.deepEqual(session.shard, [id, SHARDS]);
    assert.deepEqual(session.guilds, GUILDS.filter((g) => shardOf(g, SHARDS) === id), `shard ${id}'s guilds`);
    assert.equal(session.guilds.length, 2);
  }
  assert.equal(shardPids(0).length, 1);
  assert.equal(shardPids(1).length, 1);
  assert.notEqual(shardPids(0)[0], manager!.child.pid, 'shards are processes of their own');
  assert.doesNotMatch(manager!.output.join(''), /^discord: logged in/m, 'the manager runs no Discord client of its own');
});

test('/compose in guilds of both shards: every one answered exactly once, with its files, by the shard that owns the guild', { skip: redisSkip, timeout: 300_000 }, async () => {
  const tokens = await Promise.all(GUILDS.map((g, i) => composeIn(g, 16 + i)));
  // Give a duplicate answer the time to show up, then count.
  await new Promise((r) => setTimeout(r, 2000));
  for (const t of tokens) assert.equal(resultCalls(t).length, 1, 'exactly one answer');
});

test('kill -9 a shard process: the manager respawns it, and it answers again (the other shard is untouched)', { skip: redisSkip, timeout: 300_000 }, async () => {
  const [victim] = shardPids(1);
  const [survivor] = shardPids(0);
  const sessionsBefore = fake.sessions.filter((s) => s.shard[0] === 1).length;
  process.kill(victim, 'SIGKILL');
  await until(() => shardPids(1).length === 2, 'the respawned shard 1 process');
  assert.notEqual(shardPids(1)[1], victim);
  await until(() => readyCount(1) === 2, 'the respawned shard 1 to be ready');
  await until(() => fake.connectedShards().join() === '0,1', 'the dead connection gone and the new one identified');
  assert.equal(fake.sessions.filter((s) => s.shard[0] === 1).length, sessionsBefore + 1, 'shard 1 identified again');
  assert.ok(alive(survivor), 'shard 0 kept running');
  assert.equal(shardPids(0).length, 1, 'shard 0 was not restarted');

  const again = await composeIn(GUILDS[3], 20);
  const other = await composeIn(GUILDS[0], 21);
  await new Promise((r) => setTimeout(r, 2000));
  for (const t of [again, other]) assert.equal(resultCalls(t).length, 1, 'exactly one answer');
  assert.equal(commandPuts().length, 1, 'a respawn does not register the commands again');
});

test('"queued #n" counts the jobs of both shards: they wait in one Redis queue', { skip: redisSkip, timeout: 300_000 }, async () => {
  await worker!.stop();
  const first = fake.command('compose', { composer: 'chopin', notes: 16 }, { guildId: GUILDS[0], user: { id: '700000000000002090', username: 'q0' } });
  await fake.waitFor((c) => c.path.includes(`/${first.token}/`) && /queued #1\b/.test(c.body?.content ?? ''), 120_000, 'shard 0 job queued #1');
  const second = fake.command('compose', { composer: 'chopin', notes: 17 }, { guildId: GUILDS[2], user: { id: '700000000000002091', username: 'q1' } });
  const place = await fake.waitFor((c) => c.path.includes(`/${second.token}/`) && /queued #\d+/.test(c.body?.content ?? ''), 120_000, 'shard 1 job queued');
  assert.match(place.body.content, /queued #2\b/, "shard 1's job is behind shard 0's");
  assert.match(place.userAgent, /shard 1 of/);
  worker = new NocturneProcess('worker', { REDIS_URL: redis.url, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_BATCH_WINDOW_MS: '20' });
  for (const t of [first.token, second.token]) assert.equal((await fake.waitForOutcome(t, 120_000)).kind, 'result');
  await new Promise((r) => setTimeout(r, 2000));
  for (const t of [first.token, second.token]) assert.equal(resultCalls(t).length, 1, 'exactly one answer');
});

test('the terminal (like Slack) runs once, in the manager; SIGTERM stops the manager and every shard, exit 0', { skip: redisSkip, timeout: 300_000 }, async () => {
  const other = await FakeDiscord.start({ shards: SHARDS });
  const m = new NocturneProcess('start', managerEnv('-terminal', other.apiBase, { NOCTURNE_TERMINAL: 'on', NOCTURNE_SHUTDOWN_GRACE_S: '5' }));
  try {
    await m.waitFor(/discord shards: all 2 ready/, 300_000, 'the second shard manager');
    const lines = m.output.join('').split('\n');
    const bots = lines.filter((l) => /jobs go through Redis/.test(l));
    assert.equal(bots.length, 3, `one bot in the manager (for the terminal) and one per shard:\n${bots.join('\n')}`);
    assert.equal(bots.filter((l) => /^shard \d: /.test(l)).length, 2);
    assert.deepEqual(other.connectedShards(), [0, 1], 'the manager has no gateway connection of its own');
    const pids = [...m.output.join('').matchAll(/shard \d of 2 started \(pid (\d+)\)/g)].map((x) => Number(x[1]));
    assert.equal(pids.length, 2);
    const exited = new Promise<number | null>((resolve) => m.child.once('exit', resolve));
    m.child.kill('SIGTERM');
    assert.equal(await exited, 0, m.output.join('').slice(-3000));
    assert.match(m.output.join(''), /shard 0: SIGTERM: finishing the jobs in flight/);
    assert.match(m.output.join(''), /shard 1: SIGTERM: finishing the jobs in flight/);
    for (const pid of pids) assert.equal(alive(pid), false, `shard process ${pid} is gone`);
  } finally {
    m.kill9();
    await other.close();
  }
});

test('the manager killed with SIGKILL: its shards notice and stop by themselves', { skip: redisSkip, timeout: 300_000 }, async () => {
  const other = await FakeDiscord.start({ shards: SHARDS });
  const m = new NocturneProcess('start', managerEnv('-orphans', other.apiBase, { NOCTURNE_SHUTDOWN_GRACE_S: '5' }));
  const pids = () => [...m.output.join('').matchAll(/shard \d of 2 started \(pid (\d+)\)/g)].map((x) => Number(x[1]));
  try {
    await m.waitFor(/discord shards: all 2 ready/, 300_000, 'the third shard manager');
    m.kill9();
    await until(() => pids().every((pid) => !alive(pid)), 'the orphaned shards to stop', 60_000);
    assert.match(m.output.join(''), /shard 0: the shard manager is gone: finishing the jobs in flight/);
    assert.doesNotMatch(m.output.join(''), /ERR_IPC_CHANNEL_CLOSED|Unhandled/, 'a clean stop');
    await until(() => other.connectedShards().length === 0, 'their gateway connections closed', 60_000);
  } finally {
    for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await other.close();
  }
});

test('a shard that cannot log in stops the manager with one line, instead of respawning forever', { skip: redisSkip, timeout: 300_000 }, async () => {
  const broken = await FakeDiscord.start({ shards: SHARDS });
  // Registration (by the manager) works; the shards' gateway lookup is refused, as for a revoked token.
  broken.failWith = (c) => (c.path === '/gateway/bot' ? 401 : undefined);
  const doomed = new NocturneProcess('start', managerEnv('-broken', broken.apiBase));
  try {
    const code = await new Promise<number | null>((resolve) => doomed.child.once('exit', resolve));
    const out = doomed.output.join('');
    assert.equal(code, 1, out.slice(-3000));
    assert.match(out, /nocturne start: the Discord shards did not start: /);
    assert.match(out, /shard 0: could not start: could not log in to Discord/);
    assert.doesNotMatch(out, /respawning/, "no respawn while starting");
    assert.equal(broken.calls.filter((c) => c.method === 'PUT').length, 1, 'the commands were registered once, by the manager');
    const pids = [...out.matchAll(/shard \d of 2 started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
    assert.ok(pids.length >= 1);
    for (const pid of pids) assert.equal(alive(pid), false, `shard process ${pid} is gone`);
  } finally {
    doomed.kill9();
    await broken.close();
  }
});

test('a shard that keeps dying after its respawns stops the manager with one line (no endless respawn loop)', { skip: redisSkip, timeout: 300_000 }, async () => {
  const m = manager!;
  const exited = new Promise<number | null>((resolve) => m.child.once('exit', resolve));
  // From now on a shard cannot log in (a revoked token): every respawn of shard 1 dies at once.
  fake.failWith = (c) => (c.path === '/gateway/bot' ? 401 : undefined);
  try {
    process.kill(shardPids(1).at(-1)!, 'SIGKILL');
    const code = await exited;
    const out = m.output.join('');
    assert.equal(code, 1, out.slice(-3000));
    assert.match(out, /discord shards: shard 1 died 5 times without becoming ready \(last: exited \(code 1\)\); stopping/);
    assert.match(out, /nocturne start: discord shard 1 keeps dying before it is ready/);
    for (const pid of [0, 1].flatMap(shardPids)) assert.equal(alive(pid), false, `shard process ${pid} is gone`);
  } finally {
    fake.failWith = undefined;
  }
});
