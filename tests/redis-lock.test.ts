/**
 * The Redis lock (src/scaleout/redisLock.ts) against a real redis-server: SET NX PX, a heartbeat that
 * keeps it past its TTL, release and renewal only by the owner, take-over after the TTL when the
 * owner stops renewing, re-taking a lock Redis lost, and the cron run coordinator (one runner per
 * scheduled slot among several processes).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RetrainSchedule } from '../src/community/schedule.ts';
import { RedisLock, readLock, redisRunCoordinator } from '../src/scaleout/redisLock.ts';
import { TestRedis, redisSkip } from '../src/testing/redis.ts';

let redis: TestRedis;
let a: Redis;
let b: Redis;

/** Polls `check` until it holds (no timing is asserted; the limit only ends a hung test). */
async function until(check: () => Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  if (redisSkip) return;
  redis = await TestRedis.start();
  a = new Redis(redis.url);
  b = new Redis(redis.url);
});

after(async () => {
  a?.disconnect();
  b?.disconnect();
  await redis?.stop();
});

test('one holder at a time; the others learn who holds it; only the owner releases it', { skip: redisSkip }, async () => {
  const first = await RedisLock.acquire(a, 't:lock1', { who: 'first' }, 10_000);
  assert.ok(first.acquired);
  const second = await RedisLock.acquire(b, 't:lock1', { who: 'second' }, 10_000);
  assert.equal(second.acquired, false);
  assert.ok(!second.acquired && second.holder.info.who === 'first' && second.holder.ttlMs > 0);
  assert.equal((await readLock(b, 't:lock1'))?.info.who, 'first');
  assert.equal((await readLock(b, 't:lock1'))?.info.token, undefined, 'the token is not handed out');

  // The first holding's lock expires and someone else takes it: the first can neither renew nor delete it.
  await a.del('t:lock1');
  const third = await RedisLock.acquire<{ who: string; runId?: string }>(b, 't:lock1', { who: 'third' }, 10_000);
  assert.ok(third.acquired);
  assert.equal(await first.lock.renew(), false);
  assert.equal(await first.lock.release(), false);
  assert.equal((await readLock(a, 't:lock1'))?.info.who, 'third');
  assert.equal(await third.lock.update({ who: 'third', runId: 'r1' }), true);
  assert.equal((await readLock(a, 't:lock1'))?.info.runId, 'r1');
  assert.equal(await third.lock.release(), true);
  assert.equal(await readLock(a, 't:lock1'), undefined);
});

test('the heartbeat keeps a lock past its TTL; without it the lock is taken over after the TTL', { skip: redisSkip, timeout: 60_000 }, async () => {
  const live = await RedisLock.acquire(a, 't:lock2', { who: 'live' }, 3000);
  assert.ok(live.acquired);
  live.lock.startHeartbeat(() => assert.fail('not lost'));
  // Several TTLs later it is still held (each renewal happens well inside the TTL).
  let seen = 0;
  await until(async () => {
    const held = await RedisLock.acquire(b, 't:lock2', { who: 'other' }, 3000);
    assert.equal(held.acquired, false, 'still held while the heartbeat runs');
    await new Promise((r) => setTimeout(r, 1500));
    return ++seen >= 5;
  }, 'a few TTLs');
  await live.lock.release();

  // A holder that stops renewing (as a killed process does): after the TTL another takes it over.
  const dead = await RedisLock.acquire(a, 't:lock2', { who: 'dead' }, 500);
  assert.ok(dead.acquired);
  let next: Awaited<ReturnType<typeof RedisLock.acquire>> | undefined;
  await until(async () => (next = await RedisLock.acquire(b, 't:lock2', { who: 'next' }, 10_000)).acquired, 'the take-over');
  assert.ok(next?.acquired);
  assert.equal((await readLock(a, 't:lock2'))?.info.who, 'next');
  assert.equal(await dead.lock.release(), false, 'the dead holder cannot release the new one');
  await next.lock.release();
});

test('a lock Redis lost is taken again by its heartbeat; one taken by another process is reported lost', { skip: redisSkip, timeout: 30_000 }, async () => {
  const held = await RedisLock.acquire(a, 't:lock3', { who: 'me' }, 900);
  assert.ok(held.acquired);
  let lost = '';
  held.lock.startHeartbeat((why) => (lost = why));
  await a.del('t:lock3'); // as after a Redis restart without persistence
  await until(async () => (await readLock(b, 't:lock3'))?.info.who === 'me', 'the lock taken again');
  assert.equal(lost, '');
  // Now it is stolen (expired while this process was frozen, and taken): the holder hears of it.
  await b.set('t:lock3', JSON.stringify({ who: 'thief', token: 'x' }), 'PX', 60_000);
  await until(async () => lost !== '', 'the loss to be noticed');
  assert.match(lost, /thief/);
  assert.equal(held.lock.isLost, true);
  assert.equal(await held.lock.release(), false);
  assert.equal((await readLock(a, 't:lock3'))?.info.who, 'thief');
});

test('updating what the lock says while its heartbeat renews it never loses the lock', { skip: redisSkip, timeout: 30_000 }, async () => {
  // A renewal sent with the old value, answered after an update replaced that value, used to
  // look like a stolen lock: the retraining worker then stopped its own run (seen under load).
  const held = await RedisLock.acquire<{ who: string; n?: number }>(a, 't:lock4', { who: 'me' }, 3000);
  assert.ok(held.acquired);
  let lost = '';
  held.lock.startHeartbeat((why) => (lost = why), 1);
  for (let n = 0; n < 300 && !lost; n++) {
    assert.equal(await held.lock.update({ who: 'me', n }), true, `update ${n}`);
    if (n % 10 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(lost, '', 'the heartbeat did not report its own update as a loss');
  assert.equal((await readLock(b, 't:lock4'))?.info.n, 299);
  assert.equal(await held.lock.release(), true);
});

test('the cron run coordinator: of several processes firing the same slot, exactly one runs it', { skip: redisSkip }, async () => {
  const skipped: string[] = [];
  const coordinators = [a, b, a].map((c) => redisRunCoordinator(c, 't', (key, holder) => skipped.push(`${key} ${holder}`)));
  const slot = 'nocturne-retrain:2026-11-29T04:00:00.000Z';
  const votes = await Promise.all(coordinators.map((c) => c.shouldRun(slot, 30_000)));
  assert.equal(votes.filter(Boolean).length, 1);
  assert.equal(skipped.length, 2);
  assert.ok((await a.pttl(`t:cron:${slot}`)) > 30_000, 'the claim outlives the firing');
  assert.equal(await coordinators[1].shouldRun('nocturne-retrain:2026-12-06T04:00:00.000Z', 30_000), true, 'the next slot is free');
});

test('two bots\' retraining schedules on one Redis: every firing runs on exactly one of them', { skip: redisSkip, timeout: 120_000 }, async () => {
  const wins = new Map<string, number>();
  let losses = 0;
  let runs = 0;
  const coordinator = (connection: Redis) => {
    const inner = redisRunCoordinator(connection, 't2');
    return {
      async shouldRun(key: string, ttlMs: number) {
        const won = await inner.shouldRun(key, ttlMs);
        if (won) wins.set(key, (wins.get(key) ?? 0) + 1);
        else losses++;
        return won;
      },
    };
  };
  // Every second, so that both fire the same slots many times during the test.
  const schedules = [a, b].map((c) => new RetrainSchedule('* * * * * *', 'UTC', async () => void runs++, undefined, coordinator(c)));
  try {
    for (const s of schedules) await s.start();
    await until(async () => runs >= 3 && losses >= 1, 'a few firings seen by both');
  } finally {
    for (const s of schedules) await s.destroy();
  }
  await until(async () => runs === [...wins.values()].reduce((n, v) => n + v, 0), 'the runs of the won slots');
  assert.deepEqual([...wins.values()].filter((v) => v !== 1), [], 'no slot ran twice');
  assert.ok([...wins.keys()].every((k) => /^nocturne-retrain:\d{4}-\d\d-\d\dT/.test(k)), [...wins.keys()].join(', '));
});
