/**
 * STORE_URL: the same store cases on every backend, against real servers (nothing mocked):
 * the data folder's SQLite file, a throw-away redis-server and a throw-away Postgres cluster.
 * Job records (with the open jobs a restart finds), server settings, the community loop's
 * records, the atomic operations read back through plain keyv, the retraining lock (acquire,
 * contend, refresh, release, stale takeover), two real processes racing for it, and STORE_URL
 * reaching the community loop and the retraining child process. Plus the start-up checks of
 * STORE_URL, which never show its password.
 *
 * Redis and Postgres cases skip where the servers are not installed, unless
 * NOCTURNE_REQUIRE_REDIS=1 / NOCTURNE_REQUIRE_POSTGRES=1 (CI) make that a failure.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import { createKeyv as createRedisKeyv } from '@keyv/redis';
import { Community } from '../src/community/community.ts';
import { communityConfigFromEnv } from '../src/community/config.ts';
import { acquireRetrainLock, newLockOwner, readRetrainLock, refreshRetrainLock, releaseRetrainLock, RETRAIN_LOCK_KEY, type LockOwner } from '../src/community/lock.ts';
import { RetrainProcess } from '../src/community/retrainProcess.ts';
import { CommunityStore } from '../src/community/store.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import { JobStore, looksLikeJobId } from '../src/jobs/store.ts';
import type { JobRecord, JobState } from '../src/jobs/types.ts';
import { checkStoreUrl, describeStore, POSTGRES_TABLE, REDIS_NAMESPACE_PREFIX, Store, storeLocation, type StoreLocation } from '../src/storage/backend.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, type CommunityWorld } from './support/communityFixture.ts';
import { postgresSkip } from './support/postgres.ts';
import { TestRedis, redisSkip } from '../src/testing/redis.ts';
import { storeBackends, type StoreServer } from './support/storeBackends.ts';

const ROOT = join(import.meta.dirname, '..');
/** A password that must never show up in a log line or an error. */
const SECRET = 'pw-Zq8-never-logged';

const BACKENDS = storeBackends(SECRET);

function job(id: string, state: JobState, createdAt: string): JobRecord {
  return {
    id,
    kind: 'compose',
    who: { platform: 'discord', userId: 'u1', userName: 'ünïcode ♫', serverId: 'S1', channelId: 'C1', isManager: false },
    params: { composer: 'chopin', notes: 100, format: 'wav', randomSeed: 7 },
    outDir: `/out/${id}`,
    modelVersion: 'v1',
    state,
    createdAt,
    updatedAt: createdAt,
  };
}

/** A plain keyv on the backend, set up as each adapter's own documentation does, not through src/storage. */
async function plainKeyv(location: StoreLocation, table: string): Promise<{ keyv: Keyv; close: () => Promise<void> }> {
  if (location.kind === 'sqlite') {
    const keyv = new Keyv({ store: new KeyvSqlite({ uri: `sqlite://${location.file}`, table }), namespace: table });
    return { keyv, close: () => keyv.disconnect() };
  }
  if (location.kind === 'redis') {
    const keyv = createRedisKeyv(location.url, { namespace: `${REDIS_NAMESPACE_PREFIX}${table}` });
    return { keyv, close: () => keyv.disconnect() };
  }
  const { default: KeyvPostgres } = await import('@keyv/postgres');
  const keyv = new Keyv({ store: new KeyvPostgres({ uri: location.url, table: POSTGRES_TABLE }), namespace: table });
  return { keyv, close: () => keyv.disconnect() };
}

/** Racer processes (tests/support/lockRacer.ts), each with its own connection to the store. */
class Racer {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  private readonly lines: string[] = [];
  private waiting: ((line: string) => void) | undefined;

  constructor(location: StoreLocation) {
    this.child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'tests', 'support', 'lockRacer.ts'), JSON.stringify(location)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (d) => this.stderr.push(String(d)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(line);
      } else this.lines.push(line);
    });
  }

  /** The next line it prints (no time limit: the test's own timeout bounds it). */
  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.reject(this.exitError());
    return new Promise((resolve, reject) => {
      const onExit = () => reject(this.exitError());
      this.child.once('exit', onExit);
      this.waiting = (l) => {
        this.child.off('exit', onExit);
        resolve(l);
      };
    });
  }

  private exitError(): Error {
    return new Error(`racer exited (${this.child.exitCode ?? this.child.signalCode}): ${this.stderr.join('').slice(-2000)}`);
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.send('exit');
    await exited;
  }
}

for (const backend of BACKENDS) {
  describe(`store on ${backend.name}`, { skip: backend.skip }, () => {
    let server: StoreServer | undefined;
    let dir: string;
    let location: StoreLocation;
    const logs: string[] = [];
    const log = (line: string) => logs.push(line);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `nocturne-store-${backend.name}-`));
      server = await backend.start();
      location = server.location(join(dir, 'data'));
    });

    after(async () => {
      try {
        // No password in anything logged while the cases ran.
        assert.ok(!logs.join('\n').includes(SECRET), 'no password in the logs');
      } finally {
        await server?.stop();
        await rm(dir, { recursive: true, force: true });
      }
    });

    test('describes itself without the password', () => {
      const text = describeStore(location);
      assert.ok(!text.includes(SECRET), text);
      if (backend.name === 'postgres') assert.match(text, /^Postgres postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres/);
      if (backend.name === 'redis') assert.match(text, /^Redis redis:\/\/127\.0\.0\.1:\d+/);
      if (backend.name === 'sqlite') assert.equal(text, `SQLite file ${join(dir, 'data', 'nocturne.sqlite')}`);
    });

    test('job records: create, update, fresh ids, and the open jobs a restart (reopen) finds', async () => {
      const first = await JobStore.open(location, log);
      try {
        await first.create(job('aaaa2222', 'queued', '2026-11-25T10:00:03.000Z'));
        await first.create(job('bbbb3333', 'queued', '2026-11-25T10:00:01.000Z'));
        await first.create(job('cccc4444', 'queued', '2026-11-25T10:00:02.000Z'));
        await first.create(job('dddd5555', 'done', '2026-11-25T10:00:00.000Z'));
        // Concurrent stage changes of one record keep each other's fields.
        await Promise.all([first.update('aaaa2222', { state: 'composing' }), first.update('aaaa2222', { requeues: 1 })]);
        await first.update('cccc4444', { state: 'done', finishedAt: '2026-11-25T10:01:00.000Z' });
        const id = await first.freshId();
        assert.ok(looksLikeJobId(id) && !['aaaa2222', 'bbbb3333', 'cccc4444', 'dddd5555'].includes(id), id);
      } finally {
        await first.close();
      }
      // A "restart": a new connection finds exactly the unfinished jobs, oldest first.
      const second = await JobStore.open(location, log);
      try {
        const open = await second.openJobs();
        assert.deepEqual(
          open.map((r) => [r.id, r.state]),
          [
            ['bbbb3333', 'queued'],
            ['aaaa2222', 'composing'],
          ],
        );
        const a = (await second.get('aaaa2222'))!;
        assert.equal(a.requeues, 1);
        assert.equal(a.who.userName, 'ünïcode ♫');
        assert.equal((await second.get('cccc4444'))!.state, 'done');
        assert.equal((await second.get('cccc4444'))!.finishedAt, '2026-11-25T10:01:00.000Z');
        assert.equal(await second.get('nope2345'), undefined);
        // Finishing removes a job from the index; a bot sharing the store sees that at once.
        await second.update('bbbb3333', { state: 'failed', error: 'x' });
        assert.deepEqual(
          (await second.openJobs()).map((r) => r.id),
          ['aaaa2222'],
        );
        await second.update('aaaa2222', { state: 'done' });
        assert.deepEqual(await second.openJobs(), []);
      } finally {
        await second.close();
      }
    });

    test('two bots on one store: jobs created at the same time are all found', async () => {
      const [a, b] = await Promise.all([JobStore.open(location, log), JobStore.open(location, log)]);
      try {
        const ids = Array.from({ length: 12 }, (_, i) => `m${String.fromCharCode(97 + i)}${i % 8 + 2}xxxxx`.slice(0, 8));
        await Promise.all(ids.map((id, i) => (i % 2 ? a : b).create(job(id, 'queued', `2026-11-25T11:00:${String(10 + i).padStart(2, '0')}.000Z`))));
        assert.deepEqual(
          (await a.openJobs()).map((r) => r.id),
          ids,
        );
        await Promise.all(ids.map((id, i) => (i % 2 ? b : a).update(id, { state: 'done' })));
        assert.deepEqual(await b.openJobs(), []);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('server settings: defaults, then per-server values that survive a reopen', async () => {
      const first = await JobStore.open(location, log);
      try {
        assert.deepEqual(await first.serverSettings('discord:1'), { audio: 'wav', score: false });
        await first.setServerSettings('discord:1', { audio: 'ogg', score: true });
        assert.deepEqual(await first.serverSettings('slack:T1'), { audio: 'wav', score: false });
      } finally {
        await first.close();
      }
      const second = await JobStore.open(location, log);
      try {
        assert.deepEqual(await second.serverSettings('discord:1'), { audio: 'ogg', score: true });
      } finally {
        await second.close();
      }
    });

    test("community records: contributions' metadata round trip and listing by prefix in key order", async () => {
      const store = await CommunityStore.open(location, log);
      try {
        const record = { id: 'c-2', uploader: 'u', label: ':starts with a colon', filename: '100%_real*.mid', moderation: [{ by: 'm', action: 'reject', reason: 'ünïcode ♫' }], drift: { pitch: 0.5 }, similarity: 0.61, holdout: false };
        await store.set('contribution:c-2', record);
        await store.set('contribution:c-1', { ...record, id: 'c-1' });
        await store.set('contribution:c-10', { ...record, id: 'c-10' });
        await store.set('contributionX', { id: 'not a contribution' });
        await store.set('contrib_tion:c-9', { id: 'an underscore is not a wildcard' });
        await store.set('run:r1', { runId: 'r1', state: 'running' });
        assert.deepEqual(await store.get('contribution:c-2'), record);
        assert.deepEqual(
          (await store.list<{ id: string }>('contribution:')).map((e) => [e.key, e.value.id]),
          [
            ['contribution:c-1', 'c-1'],
            ['contribution:c-10', 'c-10'],
            ['contribution:c-2', 'c-2'],
          ],
        );
        assert.deepEqual(
          (await store.list('contrib_')).map((e) => e.key),
          ['contrib_tion:c-9'],
        );
        // More entries than one Redis SCAN page or Postgres/SQLite batch, in key order.
        const outputs = Array.from({ length: 600 }, (_, i) => `output:${String(i).padStart(4, '0')}`);
        for (const key of outputs.slice().reverse()) await store.set(key, { key });
        assert.deepEqual(
          (await store.list<{ key: string }>('output:')).map((e) => e.value.key),
          outputs,
        );
        await store.delete('contribution:c-10');
        assert.equal(await store.get('contribution:c-10'), undefined);
      } finally {
        await store.close();
      }
      const again = await CommunityStore.open(location, log);
      try {
        assert.deepEqual(
          (await again.list('contribution:')).map((e) => e.key),
          ['contribution:c-1', 'contribution:c-2'],
        );
        // The job store's tables are not the community's: nothing of theirs is listed here.
        assert.deepEqual(await again.list('aaaa2222'), []);
      } finally {
        await again.close();
      }
    });

    test("atomic operations work on keyv's own keys and values: written by one, read by the other", async () => {
      const store = await CommunityStore.open(location, log);
      const plain = await plainKeyv(location, 'community');
      try {
        // Insert if absent, read through a plain keyv as each adapter documents it.
        assert.equal(await store.insertIfAbsent('hash:abc', { id: 'c-1', at: 1 }), true);
        assert.equal(await store.insertIfAbsent('hash:abc', { id: 'c-2', at: 2 }), false);
        assert.deepEqual(await plain.keyv.get('hash:abc'), { id: 'c-1', at: 1 });
        // Written by plain keyv, compared and replaced by the store.
        await plain.keyv.set('hash:def', { id: 'c-3' });
        const raw = (await store.getRaw<{ id: string }>('hash:def'))!;
        assert.deepEqual(raw.value, { id: 'c-3' });
        assert.equal(await store.compareAndSet('hash:def', raw.text, { id: 'c-4' }), true);
        assert.equal(await store.compareAndSet('hash:def', raw.text, { id: 'c-5' }), false, 'a stale text never wins');
        assert.deepEqual(await plain.keyv.get('hash:def'), { id: 'c-4' });
        assert.equal(await store.compareAndDelete('hash:def', raw.text), false);
        assert.equal(await store.compareAndDelete('hash:def', (await store.getRaw('hash:def'))!.text), true);
        assert.equal(await plain.keyv.get('hash:def'), undefined);
        assert.equal(await store.compareAndSet('hash:def', raw.text, { id: 'c-6' }), false, 'nothing to replace');
        assert.equal(await store.getRaw('hash:def'), undefined);
      } finally {
        await store.delete('hash:abc');
        await plain.close();
        await store.close();
      }
    });

    test('insert if absent with a time to live: expires for keyv too, an expired entry is taken over by exactly one, expired rows are removed', async () => {
      const opened = await Promise.all([Store.open(location, ['ttl_test'], { log }), Store.open(location, ['ttl_test'], { log })]);
      const [a, b] = opened.map((s) => s.table<{ n: number }>('ttl_test'));
      const plain = await plainKeyv(location, 'ttl_test');
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      try {
        assert.equal(await a.insertIfAbsent('k1', { n: 1 }, 1000), true);
        assert.equal(await b.insertIfAbsent('k1', { n: 2 }, 60_000), false, 'live: another connection is refused');
        assert.deepEqual(await plain.keyv.get('k1'), { n: 1 }, 'written in keyv\'s own form');
        if (backend.name === 'redis') {
          const client = await (plain.keyv.store as unknown as { getClient(): Promise<{ pTTL(key: string): Promise<number> }> }).getClient();
          const ttl = await client.pTTL(a.storedKey('k1'));
          assert.ok(ttl > 0 && ttl <= 1000, `Redis expires the key itself (PTTL ${ttl})`);
        }
        await sleep(1100);
        // Expired: keyv reads nothing, and the key can be claimed again (without a read first).
        assert.equal(await b.insertIfAbsent('k1', { n: 3 }, 60_000), true);
        assert.equal(await a.insertIfAbsent('k1', { n: 4 }, 60_000), false);
        assert.deepEqual(await plain.keyv.get('k1'), { n: 3 });
        // Several connections racing for one expired entry: exactly one wins.
        assert.equal(await a.insertIfAbsent('k2', { n: 0 }, 100), true);
        await sleep(200);
        const wins = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).insertIfAbsent('k2', { n: i + 1 }, 60_000)));
        assert.equal(wins.filter(Boolean).length, 1, `winners: ${wins}`);
        assert.equal((await plain.keyv.get<{ n: number }>('k2'))!.n, wins.indexOf(true) + 1);
        // Without a time to live nothing expires; an expired row is removed, a live one kept.
        assert.equal(await a.insertIfAbsent('k3', { n: 5 }), true);
        assert.equal(await a.insertIfAbsent('k4', { n: 6 }, 100), true);
        await sleep(200);
        const removed = await a.deleteExpired();
        if (backend.name !== 'redis') assert.equal(removed, 1);
        assert.equal(await a.getRaw('k4'), undefined, 'the expired row is gone');
        assert.deepEqual((await a.list()).map((e) => e.key), ['k1', 'k2', 'k3']);
        await assert.rejects(a.insertIfAbsent('k5', { n: 7 }, 0), /positive whole number/);
      } finally {
        await plain.close();
        await Promise.all(opened.map((s) => s.close()));
      }
      // The job store's delivery claims (Slack replays) on the same primitive, across two bots' stores.
      const [x, y] = await Promise.all([JobStore.open(location, log), JobStore.open(location, log)]);
      try {
        const claims = await Promise.all([x.claimDelivery('slack-request:abc', 60_000), y.claimDelivery('slack-request:abc', 60_000), x.claimDelivery('slack-request:abc', 60_000)]);
        assert.deepEqual(claims.sort(), [false, false, true]);
        assert.equal(await y.claimDelivery('slack-request:def', 60_000), true);
      } finally {
        await Promise.all([x.close(), y.close()]);
      }
    });

    test('the retraining lock: acquire, contend, refresh, release, stale takeover', async () => {
      const store = await CommunityStore.open(location, log);
      try {
        const staleMs = 60 * 60_000;
        const a = newLockOwner('run-a', { trigger: 'moderator', requestedBy: 'mod1' });
        assert.deepEqual(await acquireRetrainLock(store, a, staleMs), { acquired: true });
        const busy = await acquireRetrainLock(store, newLockOwner('run-b'), staleMs);
        assert.equal(busy.acquired, false);
        assert.equal(!busy.acquired && busy.holder.runId, 'run-a');
        assert.equal(await refreshRetrainLock(store, 'run-a', new Date(Date.now() + 1000)), true);
        assert.equal(await refreshRetrainLock(store, 'run-b'), false, 'only the holder refreshes');
        assert.equal(await releaseRetrainLock(store, 'run-b'), false, 'only the holder releases');
        const read = (await readRetrainLock(store, staleMs))!;
        assert.equal(read.owner.runId, 'run-a');
        assert.equal(read.live, true);
        assert.equal(await releaseRetrainLock(store, 'run-a'), true);
        assert.equal(await readRetrainLock(store, staleMs), undefined);

        // Stale by heartbeat (another host, not heard from for longer than staleMs): taken over.
        const longAgo = new Date(Date.now() - 2 * staleMs);
        const gone: LockOwner = { ...newLockOwner('run-old', {}, longAgo), host: 'another-host' };
        assert.equal(await store.insertIfAbsent(RETRAIN_LOCK_KEY, gone), true);
        const taken = await acquireRetrainLock(store, newLockOwner('run-c'), staleMs);
        assert.equal(taken.acquired && taken.replaced?.runId, 'run-old');
        assert.equal(await refreshRetrainLock(store, 'run-old'), false, 'the old owner lost it');
        assert.equal(await releaseRetrainLock(store, 'run-old'), false);
        assert.equal(await releaseRetrainLock(store, 'run-c'), true);

        // Stale because its process is gone (this host, a pid that has exited).
        const dead = spawn(process.execPath, ['-e', '']);
        await new Promise((r) => dead.once('exit', r));
        assert.equal(await store.insertIfAbsent(RETRAIN_LOCK_KEY, { ...newLockOwner('run-dead'), pid: dead.pid!, host: hostname() }), true);
        const after = await acquireRetrainLock(store, newLockOwner('run-d'), staleMs);
        assert.equal(after.acquired && after.replaced?.runId, 'run-dead');
        assert.equal(await releaseRetrainLock(store, 'run-d'), true);
      } finally {
        await store.delete(RETRAIN_LOCK_KEY);
        await store.close();
      }
    });

    test('two processes race for the lock, free or stale: exactly one wins every round', async () => {
      const store = await CommunityStore.open(location, log);
      const racers = [new Racer(location), new Racer(location)];
      try {
        for (const r of racers) assert.equal(await r.next(), 'ready');
        for (let round = 1; round <= 6; round++) {
          const stale = round % 2 === 0;
          await store.delete(RETRAIN_LOCK_KEY);
          if (stale) await store.insertIfAbsent(RETRAIN_LOCK_KEY, { ...newLockOwner(`stale-${round}`, {}, new Date(Date.now() - 24 * 3600_000)), host: 'another-host' });
          // Both are told at once and each tries once; who wins is up to the store.
          for (const r of racers) r.send(`go ${round}`);
          const results = (await Promise.all(racers.map((r) => r.next()))).map((l) => JSON.parse(l) as { runId: string; acquired?: boolean; replaced?: string; holder?: string; error?: string });
          assert.deepEqual(
            results.filter((r) => r.error),
            [],
          );
          const winners = results.filter((r) => r.acquired);
          assert.equal(winners.length, 1, `round ${round} (${stale ? 'stale' : 'free'} lock): ${JSON.stringify(results)}`);
          const loser = results.find((r) => !r.acquired)!;
          assert.equal(loser.holder, winners[0].runId, 'the loser is told who won');
          if (stale) assert.equal(winners[0].replaced, `stale-${round}`);
          assert.equal((await store.get<LockOwner>(RETRAIN_LOCK_KEY))!.runId, winners[0].runId);
        }
      } finally {
        await Promise.allSettled(racers.map((r) => r.stop()));
        await store.delete(RETRAIN_LOCK_KEY);
        await store.close();
      }
    });
  });
}

describe('STORE_URL reaches the community loop and the retraining child process', () => {
  let world: CommunityWorld;
  before(async () => {
    world = await createCommunityWorld();
  });
  after(async () => {
    if (world) await rm(world.root, { recursive: true, force: true });
  });

  for (const backend of BACKENDS) {
    test(`on ${backend.name}: a contribution's record goes to the store, its file to the data folder; a run in a child process sees the lock`, { skip: backend.skip }, async () => {
      const server = await backend.start();
      const dataDir = join(world.root, `data-${backend.name}`);
      try {
        const location = server.location(dataDir);
        const storeUrl = location.kind === 'sqlite' ? undefined : location.url;
        const config = communityConfigFromEnv({ ...world.env, NOCTURNE_DATA_DIR: dataDir, STORE_URL: storeUrl });
        assert.equal(config.storeUrl, storeUrl);
        const community = await Community.open(config);
        try {
          const outcome = await community.contribute(await datasetBytes(NEW_PIECES[0]), { uploader: 'u1', platform: 'terminal', label: 'Clementi', filename: 'mine.mid' });
          assert.equal(outcome.status === 'refused' ? outcome.reason : 'kept', 'kept');
          const id = outcome.status !== 'refused' ? outcome.record.id : '';
          assert.ok(existsSync(join(dataDir, 'contributions', `${id}.mid`)), 'the MIDI file is on disk');
          // Read back through a separate connection to the same store.
          const other = await CommunityStore.open(location);
          try {
            assert.deepEqual(
              (await other.list<{ id: string }>('contribution:')).map((e) => e.value.id),
              [id],
            );
            // The lock held here: a run in a child process finds it in the same store and is busy.
            assert.equal((await acquireRetrainLock(other, newLockOwner('held-by-test', { trigger: 'moderator', requestedBy: 'mod9' }), 60 * 60_000)).acquired, true);
            const run = await new RetrainProcess(config, { trigger: 'moderator', requestedBy: 'mod1', force: true }).outcome;
            assert.equal(run.status, 'busy', run.reason);
            assert.match(run.reason, /run held-by-test, moderator by mod9/);
            assert.equal(await releaseRetrainLock(other, 'held-by-test'), true);
          } finally {
            await other.close();
          }
        } finally {
          await community.close();
        }
        if (location.kind !== 'sqlite') assert.ok(!existsSync(join(dataDir, 'nocturne.sqlite')), 'no SQLite file when STORE_URL is set');
      } finally {
        await server.stop();
      }
    });
  }
});

describe('STORE_URL at start-up', () => {
  let world: CommunityWorld;
  before(async () => {
    world = await createCommunityWorld();
  });
  after(async () => {
    if (world) await rm(world.root, { recursive: true, force: true });
  });

  const base = () => ({ NOCTURNE_MODEL_DIR: world.modelDir, NOCTURNE_DATASET_DIR: world.datasetDir, NOCTURNE_DATA_DIR: join(world.root, 'data') });

  test('unset: the SQLite file in NOCTURNE_DATA_DIR; redis and postgres URLs are taken as given', () => {
    assert.equal(loadConfig(base(), world.root).storeUrl, undefined);
    assert.equal(loadConfig({ ...base(), STORE_URL: '  ' }, world.root).storeUrl, undefined);
    for (const url of [`redis://:${SECRET}@10.0.0.5:6379/2`, 'rediss://cache.example:6380', `postgres://nocturne:${SECRET}@db.example/nocturne`, 'postgresql://db.example:5433/nocturne?sslmode=require', 'postgres:///nocturne?host=/var/run/postgresql']) {
      const config = loadConfig({ ...base(), STORE_URL: url }, world.root);
      assert.equal(config.storeUrl, url);
      assert.equal(config.community?.storeUrl, url);
      assert.ok(!describeStore(storeLocation(config.dataDir, config.storeUrl)).includes(SECRET));
    }
    assert.deepEqual(storeLocation('/data'), { kind: 'sqlite', file: '/data/nocturne.sqlite' });
  });

  test('a bad STORE_URL is one line of the one start-up message, listed once, without its password', () => {
    const bad = [`mysql://root:${SECRET}@db/nocturne`, `redis://:${SECRET}@host:6379/zero`, `redis://:${SECRET}@/0`, `http//:${SECRET}@oops`, `postgres://u:${SECRET}@`];
    for (const url of bad) {
      const checked = checkStoreUrl(url);
      assert.ok('problem' in checked, url);
      assert.ok(!checked.problem.includes(SECRET), checked.problem);
      assert.throws(
        () => loadConfig({ ...base(), STORE_URL: url, NOCTURNE_QUEUE_MAX: 'lots' }, world.root),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.equal(e.problems.filter((p) => p.startsWith('STORE_URL')).length, 1, e.message);
          assert.ok(e.problems.some((p) => p.startsWith('NOCTURNE_QUEUE_MAX')), e.message);
          assert.ok(!e.message.includes(SECRET), e.message);
          return true;
        },
      );
    }
    assert.throws(() => communityConfigFromEnv({ ...world.env, STORE_URL: 'ftp://x' }), /STORE_URL must be a redis:\/\//);
  });

  test('REDIS_URL with a bad scheme is reported without its password too', () => {
    assert.throws(
      () => loadConfig({ ...base(), REDIS_URL: `http://:${SECRET}@10.0.0.5:6379` }, world.root),
      (e: unknown) => e instanceof ConfigError && /REDIS_URL must be an redis or rediss URL/.test(e.message) && !e.message.includes(SECRET),
    );
  });

  test('a store that cannot be reached fails at once, naming it without the password', { skip: postgresSkip && redisSkip ? 'neither Redis nor Postgres is installed' : false }, async () => {
    // Nothing listens on port 1.
    for (const url of [`postgres://u:${SECRET}@127.0.0.1:1/db`, `redis://:${SECRET}@127.0.0.1:1/0`]) {
      const logs: string[] = [];
      await assert.rejects(
        () => JobStore.open(storeLocation('/unused', url), (l) => logs.push(l)),
        (e: Error) => {
          assert.match(e.message, /^cannot open the job store \((Postgres|Redis) (postgres|redis):\/\/u?:?\*\*\*@127\.0\.0\.1:1\/(db|0)/);
          assert.ok(!e.message.includes(SECRET), e.message);
          return true;
        },
      );
      assert.ok(!logs.join('\n').includes(SECRET), logs.join('\n'));
    }
  });
});

describe('nocturne start with STORE_URL (a real bot process)', () => {
  let fixture: ChatFixture;
  before(async () => {
    fixture = await chatFixture('store-start');
  });
  after(() => fixture?.remove());

  for (const backend of BACKENDS.filter((b) => b.name !== 'sqlite')) {
    test(`on ${backend.name}: a piped /compose keeps its job record in the store, and the log names the store without its password`, { skip: backend.skip }, async () => {
      const server = await backend.start();
      try {
        const location = server.location(fixture.dataDir);
        assert.ok(location.kind !== 'sqlite');
        // Only the Postgres URL carries a password (trust authentication ignores it); a Redis
        // without one would refuse AUTH.
        const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DISCORD_|SLACK_|NOCTURNE_|STORE_URL|REDIS_URL)/.test(k)));
        const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'cli', 'main.ts'), 'start'], {
          cwd: fixture.dir,
          env: { ...clean, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_COMMUNITY: 'off', STORE_URL: location.url },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        const code = await new Promise<number | null>((resolve) => {
          child.on('close', resolve);
          child.stdin.end('/compose chopin 16\n');
        });
        assert.equal(code, 0, stderr);
        assert.match(stderr, backend.name === 'redis' ? /store: job records, settings in Redis redis:\/\/127\.0\.0\.1:\d+ \(STORE_URL;/ : /store: job records, settings in Postgres postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres \(table nocturne\) \(STORE_URL;/);
        assert.ok(!`${stdout}\n${stderr}`.includes(SECRET), 'no password in the output');
        const id = /Job ([a-z2-9]{8})/.exec(stdout)?.[1];
        assert.ok(id, stdout);
        assert.ok(!existsSync(join(fixture.dataDir, 'nocturne.sqlite')), 'no SQLite file');
        const store = await JobStore.open(location);
        try {
          const record = (await store.get(id))!;
          assert.equal(record.state, 'done');
          assert.equal(record.params.notes, 16);
          assert.deepEqual(await store.openJobs(), []);
        } finally {
          await store.close();
        }
      } finally {
        await server.stop();
      }
    });
  }
});

test('Redis restarts under an open store: a write meanwhile is kept or fails loudly, never dropped; then it reconnects by itself', { skip: redisSkip }, async () => {
  const redis = await TestRedis.start();
  const logs: string[] = [];
  try {
    const location = storeLocation('/unused', redis.url);
    const store = await JobStore.open(location, (l) => logs.push(l));
    try {
      await store.create(job('rrrr2222', 'queued', '2026-11-25T12:00:00.000Z'));
      await redis.stop();
      // Sent while Redis is down: node-redis either holds it until the connection is back, or,
      // if it went out on the dying socket, rejects it. Which one depends on when the client
      // notices the close; both are fine, a silent loss is not.
      const write = store.create(job('ssss3333', 'queued', '2026-11-25T12:00:01.000Z')).then(
        () => 'stored',
        (e: Error) => `failed: ${e.message}`,
      );
      await redis.restart();
      const outcome = await write;
      if (outcome === 'stored') assert.equal((await store.get('ssss3333'))?.state, 'queued');
      else assert.match(outcome, /^failed: ./);
      // Reconnected by itself: writes and reads work again (the throw-away server kept nothing).
      await store.create(job('tttt4444', 'queued', '2026-11-25T12:00:02.000Z'));
      assert.equal((await store.get('tttt4444'))?.state, 'queued');
      assert.equal(await store.get('rrrr2222'), undefined, 'a restart without persistence loses the records (docs/scaling.md: appendonly yes)');
    } finally {
      await store.close();
    }
    assert.ok(logs.some((l) => /job store \((jobs|open_jobs|server_settings)\)/.test(l)), 'the outage was logged');
  } finally {
    await redis.stop();
  }
});
