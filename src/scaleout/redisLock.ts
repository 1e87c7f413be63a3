/**
 * A lock in Redis for work that must run on one process at a time across machines (retraining).
 * A class because a held lock has a lifecycle: taken, kept alive, released.
 *
 * - Taking it is one `SET key value NX PX ttl`: the value is JSON that names the holder (for "busy"
 *   answers) and carries a random token, so it is unique to this holding.
 * - The holder renews the expiry by heartbeat (every ttl/3). Renewing, updating and releasing are
 *   Lua scripts that act only if the key still holds this exact value: a process can never renew
 *   or delete a lock that expired and was taken by someone else. They run one at a time, so a
 *   renewal never carries a value an update has just replaced.
 * - A holder that dies (kill -9, power, a lost network) stops renewing; the key expires after the
 *   TTL and the next `SET NX` takes it over. Nothing has to notice the death.
 * - If a renewal finds the key gone (Redis restarted without persistence, or the process was
 *   frozen for longer than the TTL), the lock tries to take it again at once; if someone else
 *   already has it, `onLost` is called so the holder stops its work.
 *
 * Also the node-cron run coordinator that lets several bots fire the same schedule while only one
 * of them runs each firing (one `SET NX` per scheduled slot).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { RunCoordinator } from 'node-cron';

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const UPDATE = `if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end`;

/** What a lock's value says about its holder: anything JSON, plus the token this module adds. */
export type LockInfo = Record<string, unknown>;

export interface HeldBy<T extends LockInfo> {
  info: T;
  /** Milliseconds until the key expires unless its holder renews it (-1: no expiry, should not happen). */
  ttlMs: number;
}

export type LockAttempt<T extends LockInfo> = { acquired: true; lock: RedisLock<T> } | { acquired: false; holder: HeldBy<T> };

/** This process, for lock values and log lines: "host pid 123". */
export function processName(): string {
  return `${hostname()} pid ${process.pid}`;
}

/** The current holder of `key`, if any. */
export async function readLock<T extends LockInfo>(redis: Redis, key: string): Promise<HeldBy<T> | undefined> {
  const [[, value], [, ttl]] = (await redis.multi().get(key).pttl(key).exec()) as [[unknown, string | null], [unknown, number]];
  if (value === null) return undefined;
  try {
    const { token: _token, ...info } = JSON.parse(value) as T & { token?: string };
    return { info: info as unknown as T, ttlMs: ttl };
  } catch {
    return { info: { unreadable: value.slice(0, 200) } as unknown as T, ttlMs: ttl };
  }
}

export class RedisLock<T extends LockInfo> {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lost = false;
  private onLost: (why: string) => void = () => {};
  /**
   * Renewing, updating and releasing run one at a time: a renewal sent with the old value and
   * answered after an update replaced it would otherwise look like a stolen lock.
   */
  private turn: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly redis: Redis,
    readonly key: string,
    private value: string,
    private info: T,
    readonly ttlMs: number,
  ) {}

  private static encode(info: LockInfo): string {
    return JSON.stringify({ ...info, token: randomBytes(12).toString('hex') });
  }

  /** Takes the lock if it is free (or expired); otherwise says who holds it. */
  static async acquire<T extends LockInfo>(redis: Redis, key: string, info: T, ttlMs: number): Promise<LockAttempt<T>> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const value = RedisLock.encode(info);
      if ((await redis.set(key, value, 'PX', ttlMs, 'NX')) === 'OK') return { acquired: true, lock: new RedisLock(redis, key, value, info, ttlMs) };
      const holder = await readLock<T>(redis, key);
      if (holder) return { acquired: false, holder };
      // Released or expired between the two commands: try again.
    }
    throw new Error(`lock ${key}: it kept changing hands; try again`);
  }

  get holder(): T {
    return this.info;
  }

  get isLost(): boolean {
    return this.lost;
  }

  /** Runs `step` after the lock operations already started (see `turn`). */
  private inTurn<R>(step: () => Promise<R>): Promise<R> {
    const result = this.turn.then(step);
    this.turn = result.catch(() => undefined);
    return result;
  }

  /** Extends the expiry to a full TTL if this holding still owns the key. */
  renew(): Promise<boolean> {
    return this.inTurn(() => this.renewNow());
  }

  private async renewNow(): Promise<boolean> {
    return Number(await this.redis.eval(RENEW, 1, this.key, this.value, this.ttlMs)) === 1;
  }

  /** Replaces what the lock says about its holder (e.g. once a run has its id), keeping ownership. */
  update(info: T): Promise<boolean> {
    return this.inTurn(async () => {
      const next = RedisLock.encode(info);
      const ok = Number(await this.redis.eval(UPDATE, 1, this.key, this.value, next, this.ttlMs)) === 1;
      if (ok) {
        this.value = next;
        this.info = info;
      }
      return ok;
    });
  }

  /**
   * Renews every ttl/3 until release(). A renewal that finds the key gone takes it again if it is
   * free; if another holder has it, `onLost` is called once and the heartbeat stops. A renewal that
   * fails (Redis unreachable) is simply tried again at the next beat.
   */
  startHeartbeat(onLost: (why: string) => void, intervalMs = Math.max(100, Math.floor(this.ttlMs / 3))): void {
    this.onLost = onLost;
    const beat = async () => {
      if (this.stopped) return;
      try {
        const lostTo = await this.inTurn(async () => {
          if ((await this.renewNow()) || this.stopped) return undefined;
          if ((await this.redis.set(this.key, this.value, 'PX', this.ttlMs, 'NX')) === 'OK') return undefined;
          const holder = await readLock(this.redis, this.key).catch(() => undefined);
          return holder ? JSON.stringify(holder.info) : 'another process';
        });
        if (lostTo !== undefined) {
          this.lost = true;
          this.onLost(`the lock ${this.key} expired and was taken by ${lostTo}`);
          return;
        }
      } catch {
        // Redis is unreachable: try again at the next beat (the key expires if this goes on).
      }
      if (!this.stopped) this.timer = setTimeout(() => void beat(), intervalMs);
    };
    this.timer = setTimeout(() => void beat(), intervalMs);
  }

  /** Stops the heartbeat and deletes the key if this holding still owns it. */
  async release(): Promise<boolean> {
    this.stopped = true;
    clearTimeout(this.timer);
    return this.inTurn(async () => !this.lost && Number(await this.redis.eval(RELEASE, 1, this.key, this.value)) === 1);
  }
}

/**
 * node-cron's run coordinator over Redis: of all the processes whose cron task fires for the same
 * slot, the first `SET NX` on `<prefix>:cron:<task>:<slot>` runs it; the others skip it. The key
 * outlives the firing (at least `minKeepMs`), so a process whose clock is late cannot run the slot
 * again after the first one finished.
 */
export function redisRunCoordinator(redis: Redis, prefix: string, onSkip: (key: string, holder: string) => void = () => {}, minKeepMs = 12 * 60 * 60 * 1000): RunCoordinator {
  return {
    async shouldRun(key: string, ttlMs: number): Promise<boolean> {
      const redisKey = `${prefix}:cron:${key}`;
      const won = (await redis.set(redisKey, processName(), 'PX', Math.max(ttlMs, minKeepMs), 'NX')) === 'OK';
      if (!won) onSkip(key, (await redis.get(redisKey).catch(() => null)) ?? 'another process');
      return won;
    },
  };
}
