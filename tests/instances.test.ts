/**
 * Bot instances sharing one store (NOCTURNE_INSTANCE, heartbeats, takeover of a gone instance's
 * open jobs), on the SQLite file, a throw-away redis-server and a throw-away Postgres cluster,
 * with real bots (the tiny model composing in an engine thread) and nothing mocked: a live
 * instance's jobs are left alone; own and ownerless jobs are resumed; a gone instance's jobs are
 * taken over exactly once even when two bots try at once, also by the scan while running; a name
 * another running process holds is refused. Plus the settings' checks.
 *
 * A "gone" instance is one whose heartbeat record is stale or missing; the tests write such
 * records (and the dead bot's open jobs) into the store as a crashed bot would have left them.
 * Nothing asserts timings: every wait polls a condition with a generous limit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Bot } from '../src/chat/bot.ts';
import type { Reply } from '../commands/shared/command.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import { defaultInstanceName, type InstanceRecord, type InstanceSettings } from '../src/scaleout/instances.ts';
import { JobStore } from '../src/jobs/store.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import type { StoreLocation } from '../src/storage/backend.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';
import { storeBackends, type StoreServer } from './support/storeBackends.ts';

const BACKENDS = storeBackends();

/** Polls `check` until it is true (no timing is asserted; the limit only ends a hung test). */
async function until(check: () => boolean | Promise<boolean>, what: string, limitMs = 120_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether the job is done; a failed job ends the wait with its reason. */
async function done(store: JobStore, id: string): Promise<boolean> {
  const record = await store.get(id);
  if (record?.state === 'failed') throw new Error(`job ${id} failed: ${record.error}`);
  return record?.state === 'done';
}

/** What a chat user would see for one job, recorded (each job must get exactly one result). */
class Replies {
  readonly results = new Map<string, number>();
  readonly errors = new Map<string, string[]>();

  for(record: JobRecord): Reply {
    return {
      progress: async () => {},
      info: async () => {},
      result: async () => void this.results.set(record.id, (this.results.get(record.id) ?? 0) + 1),
      error: async (line) => void this.errors.set(record.id, [...(this.errors.get(record.id) ?? []), line]),
    };
  }
}

function heartbeat(name: string, beatAt: Date, host = 'another-host', pid = 4242): InstanceRecord {
  return { name, pid, host, startedAt: new Date(beatAt.getTime() - 1000).toISOString(), beatAt: beatAt.toISOString(), token: `t-${name}` };
}

for (const backend of BACKENDS) {
  describe(`bot instances on ${backend.name}`, { skip: backend.skip }, () => {
    let server: StoreServer | undefined;
    let fixture: ChatFixture;
    let location: StoreLocation;
    let seq = 0;

    before(async () => {
      fixture = await chatFixture(`instances-${backend.name}`);
      server = await backend.start();
      location = server.location(fixture.dataDir);
    });

    after(async () => {
      await server?.stop();
      fixture?.remove();
    });

    /** A stored open job, as bot `owner` (or a bot from before instances, with no owner) left it. */
    function openJob(owner: string | undefined): JobRecord {
      seq++;
      const id = `j${backend.name[0]}${String(seq).padStart(2, '0')}xyzq`.slice(0, 8);
      const now = new Date().toISOString();
      return {
        id,
        kind: 'compose',
        who: { platform: 'slack', userId: `U${seq}`, userName: `user${seq}`, serverId: 'T1', channelId: 'C1', isManager: false },
        params: { composer: 'chopin', notes: 16, format: 'wav', randomSeed: seq },
        outDir: join(fixture.outDir, id),
        modelVersion: 'v1',
        state: 'queued',
        createdAt: now,
        updatedAt: now,
        ...(owner !== undefined ? { owner } : {}),
      };
    }

    function openBot(name: string, settings: Partial<InstanceSettings> = {}): Promise<Bot> {
      return Bot.open({
        modelDir: fixture.modelDir,
        dataDir: fixture.dataDir,
        outDir: fixture.outDir,
        storeUrl: location.kind === 'sqlite' ? undefined : location.url,
        limits: { batchWindowMs: 20 },
        log: fixture.log,
        instance: { name, heartbeatMs: 200, staleMs: 60_000, scanMs: 3_600_000, ...settings },
      });
    }

    /** Writes what the test sets up, and cleans up after it (other tests share the store). */
    async function withStore<T>(work: (store: JobStore) => Promise<T>): Promise<T> {
      const store = await JobStore.open(location, fixture.log);
      try {
        return await work(store);
      } finally {
        for (const r of await store.openJobs()) await store.update(r.id, { state: 'failed', error: 'test cleanup' });
        for (const { key } of await store.instances.list()) await store.instances.delete(key);
        await store.close();
      }
    }

    test("a live instance's open jobs are left alone; own and ownerless (old) jobs are resumed", async () => {
      await withStore(async (store) => {
        await store.instances.set('bot-b', heartbeat('bot-b', new Date()));
        const theirs = openJob('bot-b');
        const mine = openJob('bot-a');
        const old = openJob(undefined);
        for (const r of [theirs, mine, old]) await store.create(r);
        const a = await openBot('bot-a');
        const replies = new Replies();
        try {
          const outcome = await a.recover(['slack'], (r) => replies.for(r));
          assert.deepEqual(outcome.requeued.sort(), [mine.id, old.id].sort());
          assert.deepEqual(outcome.othersLive, [theirs.id]);
          assert.deepEqual(outcome.takenOver, []);
          await until(async () => (await done(store, mine.id)) && (await done(store, old.id)), 'the resumed jobs');
          await until(() => replies.results.size === 2, 'the two answers');
          assert.equal(replies.results.get(mine.id), 1);
          assert.equal(replies.results.get(old.id), 1);
          assert.equal((await store.get(old.id))!.owner, 'bot-a', 'an ownerless job is claimed by the bot that resumes it');
          const left = (await store.get(theirs.id))!;
          assert.equal(left.state, 'queued');
          assert.equal(left.owner, 'bot-b');
          assert.equal(replies.results.has(theirs.id), false);
          // A new job names its owner.
          const record = await a.runJob({ kind: 'compose', who: theirs.who, params: { composer: 'mozart', notes: 16, format: 'wav' } }, { progress: async () => {}, info: async () => {}, result: async () => {}, error: async () => {} });
          assert.equal(record?.owner, 'bot-a');
          assert.equal((await store.get(record!.id))!.owner, 'bot-a');
          // The heartbeat is there while it runs, and gone after a graceful stop.
          const beat = (await store.instances.get('bot-a'))!;
          assert.equal(beat.pid, process.pid);
          assert.equal(beat.host, hostname());
        } finally {
          await a.close(5000);
        }
        assert.equal(await store.instances.get('bot-a'), undefined, 'removed on a graceful stop');
      });
    });

    test("a gone instance's jobs (stale or missing heartbeat) are taken over exactly once when two bots try at once", async () => {
      await withStore(async (store) => {
        await store.instances.set('bot-b', heartbeat('bot-b', new Date(Date.now() - 10 * 60_000)));
        // bot-d has no heartbeat record at all (it stopped, or never wrote one).
        const orphans = [...Array.from({ length: 6 }, () => openJob('bot-b')), ...Array.from({ length: 2 }, () => openJob('bot-d'))];
        for (const r of orphans) await store.create(r);
        const [a, c] = await Promise.all([openBot('bot-a'), openBot('bot-c')]);
        const replies = new Replies();
        try {
          const [fromA, fromC] = await Promise.all([a.recover(['slack'], (r) => replies.for(r)), c.recover(['slack'], (r) => replies.for(r))]);
          const all = [...fromA.requeued, ...fromC.requeued].sort();
          assert.deepEqual(all, orphans.map((r) => r.id).sort(), `each job resumed once: A ${fromA.requeued.join(',')} C ${fromC.requeued.join(',')}`);
          assert.equal(fromA.takenOver.length + fromC.takenOver.length, orphans.length);
          await until(async () => {
            for (const r of orphans) if (!(await done(store, r.id))) return false;
            return true;
          }, 'every taken-over job to finish');
          await until(() => replies.results.size === orphans.length, 'every answer');
          for (const r of orphans) {
            assert.equal(replies.results.get(r.id), 1, `job ${r.id} answered once`);
            const owner = (await store.get(r.id))!.owner;
            assert.equal(owner, fromA.requeued.includes(r.id) ? 'bot-a' : 'bot-c', `job ${r.id} names the bot that took it`);
          }
          assert.equal(replies.errors.size, 0, JSON.stringify([...replies.errors]));
        } finally {
          await Promise.all([a.close(5000), c.close(5000)]);
        }
      });
    });

    test('while running, a bot takes over the jobs of an instance that goes silent (and not before)', async () => {
      await withStore(async (store) => {
        // bot-b runs: its heartbeat is refreshed here as its own timer would.
        let beating = true;
        const beat = async () => {
          while (beating) {
            await store.instances.set('bot-b', heartbeat('bot-b', new Date()));
            await new Promise((r) => setTimeout(r, 100));
          }
        };
        const beater = beat();
        const jobs = [openJob('bot-b'), openJob('bot-b')];
        for (const r of jobs) await store.create(r);
        const a = await openBot('bot-a', { staleMs: 3000, scanMs: 100 });
        const replies = new Replies();
        try {
          const outcome = await a.recover(['slack'], (r) => replies.for(r));
          assert.deepEqual(outcome.othersLive.sort(), jobs.map((r) => r.id).sort());
          a.watchOrphans(['slack'], (r) => replies.for(r));
          // Several scans while bot-b is alive leave its jobs alone.
          await new Promise((r) => setTimeout(r, 1000));
          for (const r of jobs) {
            const now = (await store.get(r.id))!;
            assert.equal(now.owner, 'bot-b');
            assert.equal(now.state, 'queued');
          }
          // bot-b dies (its heartbeat stops): the scan takes its jobs over and answers them.
          beating = false;
          await beater;
          await until(() => replies.results.size === jobs.length, 'the taken-over jobs to be answered');
          for (const r of jobs) {
            assert.equal(replies.results.get(r.id), 1);
            const now = (await store.get(r.id))!;
            assert.equal(now.owner, 'bot-a');
            assert.equal(now.state, 'done');
          }
          assert.ok(fixture.logs.some((l) => /instance bot-b is gone .*taken over by bot-a/.test(l)), 'the takeover is logged');
        } finally {
          beating = false;
          await beater;
          await a.close(5000);
        }
      });
    });

    test('an instance name another running process holds is refused; a restart after a crash on this host is not', async () => {
      await withStore(async (store) => {
        // Another host, fresh heartbeat.
        await store.instances.set('bot-x', heartbeat('bot-x', new Date()));
        await assert.rejects(openBot('bot-x'), /another bot process already runs as instance "bot-x" \(pid 4242 on another-host.*set a distinct NOCTURNE_INSTANCE/);
        // This host, another process that is alive.
        const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
        try {
          await store.instances.set('bot-y', heartbeat('bot-y', new Date(), hostname(), other.pid!));
          await assert.rejects(openBot('bot-y'), /already runs as instance "bot-y".*NOCTURNE_INSTANCE/);
        } finally {
          other.kill('SIGKILL');
        }
        // This host, a process that has exited (kill -9, then a restart): the name is free.
        await new Promise((r) => (other.exitCode !== null || other.signalCode !== null ? r(undefined) : other.once('exit', r)));
        const restarted = await openBot('bot-y');
        assert.equal((await store.instances.get('bot-y'))!.pid, process.pid);
        await restarted.close(1000);
        // Another host, stale heartbeat: gone, the name is free.
        await store.instances.set('bot-z', heartbeat('bot-z', new Date(Date.now() - 10 * 60_000)));
        const z = await openBot('bot-z');
        await z.close(1000);
        // The refused bots left nothing behind: their records are the ones written above.
        assert.equal((await store.instances.get('bot-x'))!.host, 'another-host');
      });
    });
  });
}

describe('NOCTURNE_INSTANCE and the heartbeat settings', () => {
  let fixture: ChatFixture;
  let dir: string;
  before(async () => {
    fixture = await chatFixture('instance-config');
    dir = await mkdtemp(join(tmpdir(), 'nocturne-instance-config-'));
  });
  after(async () => {
    fixture?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const base = () => ({ NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_COMMUNITY: 'off', NOCTURNE_DATA_DIR: join(dir, 'data') });

  test('defaults: the host name, 10 s heartbeats, stale after 60 s, a scan every 30 s', () => {
    const config = loadConfig(base(), dir);
    assert.deepEqual(config.instance, { name: defaultInstanceName(), heartbeatMs: 10_000, staleMs: 60_000, scanMs: 30_000 });
    assert.match(config.instance!.name, /^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    assert.equal(defaultInstanceName('my host.example.com'), 'my-host.example.com');
    assert.equal(defaultInstanceName('__'), 'nocturne');
    assert.equal(loadConfig({ ...base(), NOCTURNE_INSTANCE: 'bot-2.eu', NOCTURNE_HEARTBEAT_S: '2', NOCTURNE_INSTANCE_STALE_S: '5', NOCTURNE_TAKEOVER_SCAN_S: '3' }, dir).instance!.staleMs, 5000);
  });

  test('a bad name or a stale limit under two heartbeats is listed with every other problem', () => {
    assert.throws(
      () => loadConfig({ ...base(), NOCTURNE_INSTANCE: 'bot 2/eu', NOCTURNE_HEARTBEAT_S: '30', NOCTURNE_INSTANCE_STALE_S: '40', NOCTURNE_QUEUE_MAX: 'lots' }, dir),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.ok(e.problems.some((p) => p.startsWith('NOCTURNE_INSTANCE must be a name')), e.message);
        assert.ok(e.problems.some((p) => p.startsWith('NOCTURNE_INSTANCE_STALE_S (40) must be at least twice NOCTURNE_HEARTBEAT_S (30)')), e.message);
        assert.ok(e.problems.some((p) => p.startsWith('NOCTURNE_QUEUE_MAX')), e.message);
        return true;
      },
    );
  });
});
