/**
 * The keyv store behind job records, server settings and the community loop's records, chosen
 * by STORE_URL:
 *
 * - unset: the SQLite file `<NOCTURNE_DATA_DIR>/nocturne.sqlite` (@keyv/sqlite), one SQL table
 *   per store table, keys `<table>:<key>` (the layout nocturne has always used);
 * - `redis://` or `rediss://`: @keyv/redis, keys `nocturne:<table>::<key>` (the adapter's own
 *   `namespace::key` form, so @keyv/redis's createKeyv reads them too);
 * - `postgres://` or `postgresql://`: @keyv/postgres, every table in one SQL table `nocturne`
 *   (columns `key`, `value`), keys `<table>:<key>` (keyv's own namespace prefix).
 *
 * Plain keyv has get/set/delete only, and a lock across processes needs three atomic operations
 * more. Each backend does them natively on the very keys and values keyv reads and writes
 * (values in keyv's own serialised form), so every record stays readable through keyv:
 *
 * | | insert if absent | compare and set / delete (on the exact stored text) |
 * |---|---|---|
 * | SQLite | INSERT … ON CONFLICT DO NOTHING | UPDATE / DELETE … WHERE key = ? AND value = ? (SQLite serialises writers) |
 * | Redis | SET key value NX (PX ttl) | a Lua script (EVAL): GET, compare, SET (PX ttl) / DEL, run as one command |
 * | Postgres | INSERT … ON CONFLICT DO NOTHING | UPDATE / DELETE … WHERE key = $1 AND value = $2 (row lock, re-checked after a concurrent commit) |
 *
 * Insert if absent may carry a time to live (`insertIfAbsent(key, value, ttlMs)`): the entry
 * holds keyv's own `expires`, so keyv reads it as gone once it has expired, and an expired entry
 * counts as absent: it is replaced by compare and set on its exact text, so of several processes
 * that find it expired exactly one wins. Redis also gets the TTL natively (PX) and drops the key
 * itself; on SQLite and Postgres the rows stay until read or `deleteExpired` removes them.
 *
 * Listing by key prefix (`list`) works on every backend and returns keys in code-unit order
 * (Redis SCAN has no order and Postgres sorts by its collation, so the order is made here).
 *
 * keyv runs with `throwOnErrors` (and @keyv/redis with its own `throwOnErrors`), so a write that
 * fails throws instead of being dropped with only an 'error' event. Drivers are loaded only for
 * the backend in use.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import Keyv from 'keyv';
import type KeyvSqlite from '@keyv/sqlite';
import type KeyvRedis from '@keyv/redis';
import type { KeyvPostgres } from '@keyv/postgres';
import type { Pool } from 'pg';
import { redactedUrl } from '../redact.ts';

/** The SQLite file in the data folder, when STORE_URL is unset. */
export const STORE_FILE = 'nocturne.sqlite';
/** Postgres: the one SQL table (schema public) that holds every store table's keys. */
export const POSTGRES_TABLE = 'nocturne';
/** Redis: what every key starts with, so the store shares a Redis with BullMQ and others safely. */
export const REDIS_NAMESPACE_PREFIX = 'nocturne:';

export type StoreKind = 'sqlite' | 'redis' | 'postgres';
export type StoreLocation = { kind: 'sqlite'; file: string } | { kind: 'redis' | 'postgres'; url: string };

const URL_KINDS: Record<string, 'redis' | 'postgres'> = { 'redis:': 'redis', 'rediss:': 'redis', 'postgres:': 'postgres', 'postgresql:': 'postgres' };
const URL_FORMS = 'redis://, rediss://, postgres:// or postgresql:// URL (e.g. redis://:PASSWORD@10.0.0.5:6379/0 or postgres://nocturne:PASSWORD@10.0.0.6/nocturne)';

/** A STORE_URL as it may be shown: the password (and secret query parameters) replaced by ***. */
export function redactedStoreUrl(url: string): string {
  return redactedUrl(url, 'the configured STORE_URL');
}

/**
 * Checks a STORE_URL. Returns its backend, or one line saying what is wrong; neither ever holds
 * the password (a URL that does not parse is not shown at all).
 */
export function checkStoreUrl(raw: string): { kind: 'redis' | 'postgres'; url: string } | { problem: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { problem: `STORE_URL must be a ${URL_FORMS}, or unset for the SQLite file in NOCTURNE_DATA_DIR; the value set does not parse as a URL (a password with @ : / # ? must be percent-encoded)` };
  }
  const kind = URL_KINDS[u.protocol];
  if (!kind) return { problem: `STORE_URL must be a ${URL_FORMS}, or unset for the SQLite file in NOCTURNE_DATA_DIR; got a ${u.protocol.replace(/:$/, '')}: URL` };
  const shown = redactedStoreUrl(raw);
  if (kind === 'redis') {
    if (!u.hostname) return { problem: `STORE_URL has no host: ${shown} (e.g. redis://127.0.0.1:6379)` };
    if (!/^\/?(\d+)?$/.test(u.pathname)) return { problem: `STORE_URL: a Redis URL's path is the database number (e.g. redis://host:6379/0), got ${shown}` };
  } else if (!u.hostname && !u.searchParams.get('host')) {
    return { problem: `STORE_URL has no host: ${shown} (e.g. postgres://nocturne@127.0.0.1:5432/nocturne)` };
  }
  return { kind, url: raw };
}

/** Where the store is: STORE_URL when set (already checked by the config), else the data folder's SQLite file. */
export function storeLocation(dataDir: string, storeUrl?: string): StoreLocation {
  if (storeUrl === undefined || storeUrl.trim() === '') return { kind: 'sqlite', file: join(dataDir, STORE_FILE) };
  const checked = checkStoreUrl(storeUrl.trim());
  if ('problem' in checked) throw new Error(checked.problem);
  return checked;
}

/** One line for logs and errors; never holds a password. */
export function describeStore(location: StoreLocation): string {
  if (location.kind === 'sqlite') return `SQLite file ${location.file}`;
  if (location.kind === 'redis') return `Redis ${redactedStoreUrl(location.url)}`;
  return `Postgres ${redactedStoreUrl(location.url)} (table ${POSTGRES_TABLE})`;
}

/** A stored value and the exact text it is stored as (the token for compareAndSet/compareAndDelete). */
export interface RawEntry<T> {
  value: T;
  text: string;
}

export interface StoreEntry<T> {
  key: string;
  value: T;
}

/** keyv's own key form for a namespace (keyv's `_getKeyPrefix` with useKeyPrefix on). */
function keyvPrefixed(namespace: string, key: string): string {
  return key.startsWith(`${namespace}:`) ? key : `${namespace}:${key}`;
}

/** LIKE pattern for "starts with `prefix`", escaped with backslash. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * One table of the store: a keyv namespace, plus listing and the atomic operations on the same
 * keys. Keys are the caller's (without namespace).
 */
export abstract class StoreTable<T = unknown> {
  constructor(
    readonly name: string,
    readonly keyv: Keyv<T>,
  ) {}

  /** The key as the backend stores it (what keyv turns `key` into). */
  abstract storedKey(key: string): string;
  protected abstract readText(stored: string): Promise<string | undefined>;
  /** `ttlMs`: the text carries keyv's `expires` already; a backend that expires keys itself also sets its own TTL. */
  protected abstract insertText(stored: string, text: string, ttlMs?: number): Promise<boolean>;
  protected abstract replaceText(stored: string, expected: string, text: string, ttlMs?: number): Promise<boolean>;
  protected abstract deleteText(stored: string, expected: string): Promise<boolean>;
  /** [stored key, stored text] of every key starting with the stored prefix, in any order. */
  protected abstract listTexts(storedPrefix: string): Promise<[string, string][]>;

  async get(key: string): Promise<T | undefined> {
    return ((await this.keyv.get(key)) as T | undefined) ?? undefined;
  }

  async set(key: string, value: T): Promise<void> {
    await this.keyv.set(key, value);
  }

  async delete(key: string): Promise<boolean> {
    return this.keyv.delete(key);
  }

  async has(key: string): Promise<boolean> {
    return this.keyv.has(key);
  }

  /** keyv's serialised form of `value` (what keyv.set would store, with `ttlMs` as keyv's own `expires`). */
  async serialise(value: T, ttlMs?: number): Promise<string> {
    const text = await this.keyv.serializeData({ value, expires: ttlMs === undefined ? undefined : Date.now() + ttlMs });
    if (typeof text !== 'string') throw new Error(`store table ${this.name}: keyv returned a non-string serialisation`);
    return text;
  }

  private async deserialise(text: string): Promise<T | undefined> {
    const data = await this.keyv.deserializeData<T>(text);
    return data?.value ?? undefined;
  }

  /** Whether stored text carries keyv's `expires` and it has passed (keyv.get would answer nothing). */
  private async expiredText(text: string): Promise<boolean> {
    const data = await this.keyv.deserializeData<T>(text).catch(() => undefined);
    return typeof data?.expires === 'number' && data.expires <= Date.now();
  }

  /** Every entry whose key starts with `prefix`, in key order (code units), on every backend. */
  async list(prefix = ''): Promise<StoreEntry<T>[]> {
    const base = this.storedKey('');
    const rows = new Map(await this.listTexts(this.storedKey(prefix)));
    const out: StoreEntry<T>[] = [];
    for (const stored of [...rows.keys()].sort()) {
      if (!stored.startsWith(base)) continue;
      const value = await this.deserialise(rows.get(stored)!);
      if (value !== undefined) out.push({ key: stored.slice(base.length), value });
    }
    return out;
  }

  /** The value and its stored text, for a later compareAndSet/compareAndDelete. */
  async getRaw(key: string): Promise<RawEntry<T> | undefined> {
    const text = await this.readText(this.storedKey(key));
    if (text === undefined) return undefined;
    const value = await this.deserialise(text);
    return value === undefined ? undefined : { value, text };
  }

  /**
   * Stores `value` only if `key` holds nothing (or an entry whose time to live has passed); true
   * if this call stored it. Atomic across processes: of several calls for one key, exactly one
   * gets true. With `ttlMs` the entry expires that many milliseconds from now (keyv's `expires`,
   * and on Redis the key's own TTL), after which the key counts as absent again.
   */
  async insertIfAbsent(key: string, value: T, ttlMs?: number): Promise<boolean> {
    if (ttlMs !== undefined && !(Number.isSafeInteger(ttlMs) && ttlMs > 0)) throw new Error(`store table ${this.name}: a time to live must be a positive whole number of milliseconds, got ${ttlMs}`);
    const stored = this.storedKey(key);
    const text = await this.serialise(value, ttlMs);
    // Each lost round means another process changed the key meanwhile (took over the expired
    // entry, which then is live, or deleted it, so the insert can be tried again).
    for (let round = 0; round < 5; round++) {
      if (await this.insertText(stored, text, ttlMs)) return true;
      const current = await this.readText(stored);
      if (current === undefined) continue;
      if (!(await this.expiredText(current))) return false;
      if (await this.replaceText(stored, current, text, ttlMs)) return true;
    }
    throw new Error(`store table ${this.name}: key ${key} kept changing while it was being inserted`);
  }

  /**
   * Deletes the entries whose time to live has passed (each only if unchanged since it was read,
   * so a fresh claim made meanwhile stays); returns how many. keyv deletes an expired entry only
   * when it is read, so on SQLite and Postgres the rows of keys never read again stay until this
   * runs. Redis drops expired keys itself.
   */
  async deleteExpired(prefix = ''): Promise<number> {
    let deleted = 0;
    for (const [stored, text] of await this.listTexts(this.storedKey(prefix))) {
      if ((await this.expiredText(text)) && (await this.deleteText(stored, text))) deleted++;
    }
    return deleted;
  }

  /** Replaces the value only if it is still stored as `expectedText`; true if replaced. Atomic across processes. */
  async compareAndSet(key: string, expectedText: string, value: T): Promise<boolean> {
    return this.replaceText(this.storedKey(key), expectedText, await this.serialise(value));
  }

  /** Deletes the entry only if it is still stored as `expectedText`; true if deleted. Atomic across processes. */
  async compareAndDelete(key: string, expectedText: string): Promise<boolean> {
    return this.deleteText(this.storedKey(key), expectedText);
  }

  /**
   * Closes this table's connection (a Postgres pool is the store's and ends with it). `force`:
   * drop it without waiting for commands in flight (a server that never answered).
   */
  async close(_force = false): Promise<void> {
    await this.keyv.disconnect();
  }
}

class SqliteTable<T> extends StoreTable<T> {
  constructor(
    name: string,
    keyv: Keyv<T>,
    private readonly adapter: KeyvSqlite,
  ) {
    super(name, keyv);
  }

  private get table(): string {
    return this.adapter.opts.table as string;
  }

  private async rows(sql: string, ...parameters: string[]): Promise<Record<string, string>[]> {
    return (await this.adapter.query(sql, ...parameters)) as Record<string, string>[];
  }

  storedKey(key: string): string {
    return keyvPrefixed(this.name, key);
  }

  protected async readText(stored: string): Promise<string | undefined> {
    return (await this.rows(`SELECT value FROM ${this.table} WHERE key = ?`, stored))[0]?.value;
  }

  protected async insertText(stored: string, text: string): Promise<boolean> {
    return (await this.rows(`INSERT INTO ${this.table} (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING RETURNING key`, stored, text)).length === 1;
  }

  protected async replaceText(stored: string, expected: string, text: string): Promise<boolean> {
    return (await this.rows(`UPDATE ${this.table} SET value = ? WHERE key = ? AND value = ? RETURNING key`, text, stored, expected)).length === 1;
  }

  protected async deleteText(stored: string, expected: string): Promise<boolean> {
    return (await this.rows(`DELETE FROM ${this.table} WHERE key = ? AND value = ? RETURNING key`, stored, expected)).length === 1;
  }

  protected async listTexts(storedPrefix: string): Promise<[string, string][]> {
    const rows = await this.rows(`SELECT key, value FROM ${this.table} WHERE key LIKE ? ESCAPE '\\'`, likePrefix(storedPrefix));
    return rows.map((r) => [r.key, r.value]);
  }
}

/** The commands used on @keyv/redis's node-redis client (a single server, not a cluster). */
interface RedisCommands {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, options: { condition: 'NX'; expiration?: { type: 'PX'; value: number } }): Promise<string | null>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  scan(cursor: string, options: { MATCH: string; COUNT: number; TYPE: string }): Promise<{ cursor: string | number; keys: string[] }>;
  mGet(keys: string[]): Promise<(string | null)[]>;
}

/** KEYS[1] still holds ARGV[1] exactly: replace it with ARGV[2]. One script runs atomically. */
const REDIS_COMPARE_AND_SET = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0`;
/** The same, and the new value expires after ARGV[3] milliseconds. */
const REDIS_COMPARE_AND_SET_PX = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0`;
/** KEYS[1] still holds ARGV[1] exactly: delete it. */
const REDIS_COMPARE_AND_DELETE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end return 0`;

class RedisTable<T> extends StoreTable<T> {
  constructor(
    name: string,
    keyv: Keyv<T>,
    private readonly adapter: KeyvRedis<T>,
  ) {
    super(name, keyv);
  }

  private async client(): Promise<RedisCommands> {
    const client = await this.adapter.getClient();
    if (this.adapter.isCluster()) throw new Error('STORE_URL: Redis Cluster is not supported; use one Redis server (or Sentinel in front of one)');
    return client as unknown as RedisCommands;
  }

  storedKey(key: string): string {
    return this.adapter.createKeyPrefix(key, this.adapter.namespace);
  }

  protected async readText(stored: string): Promise<string | undefined> {
    return (await (await this.client()).get(stored)) ?? undefined;
  }

  protected async insertText(stored: string, text: string, ttlMs?: number): Promise<boolean> {
    const options = ttlMs === undefined ? { condition: 'NX' as const } : { condition: 'NX' as const, expiration: { type: 'PX' as const, value: ttlMs } };
    return (await (await this.client()).set(stored, text, options)) === 'OK';
  }

  protected async replaceText(stored: string, expected: string, text: string, ttlMs?: number): Promise<boolean> {
    const [script, args] = ttlMs === undefined ? [REDIS_COMPARE_AND_SET, [expected, text]] : [REDIS_COMPARE_AND_SET_PX, [expected, text, String(ttlMs)]];
    return Number(await (await this.client()).eval(script, { keys: [stored], arguments: args })) === 1;
  }

  /** Redis drops expired keys itself (they were written with PX). */
  override async deleteExpired(): Promise<number> {
    return 0;
  }

  protected async deleteText(stored: string, expected: string): Promise<boolean> {
    return Number(await (await this.client()).eval(REDIS_COMPARE_AND_DELETE, { keys: [stored], arguments: [expected] })) === 1;
  }

  /** Waits up to 5 s for commands in flight (node-redis queues them while Redis is away), then drops the connection. */
  override async close(force = false): Promise<void> {
    if (!force && (await withTimeout(this.adapter.disconnect(false), CLOSE_WAIT_MS)) !== 'timeout') return;
    await this.adapter.disconnect(true).catch(() => undefined);
  }

  protected async listTexts(storedPrefix: string): Promise<[string, string][]> {
    const client = await this.client();
    const match = `${storedPrefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    const out: [string, string][] = [];
    let cursor = '0';
    do {
      const page = await client.scan(cursor, { MATCH: match, COUNT: 500, TYPE: 'string' });
      cursor = String(page.cursor);
      if (page.keys.length === 0) continue;
      // A key deleted between SCAN and MGET reads as null and is left out.
      const values = await client.mGet(page.keys);
      page.keys.forEach((key, i) => {
        if (values[i] !== null && values[i] !== undefined) out.push([key, values[i]!]);
      });
    } while (cursor !== '0');
    return out;
  }
}

type SqlQuery = (sql: string, values?: unknown[]) => Promise<Record<string, string>[]>;

class PostgresTable<T> extends StoreTable<T> {
  constructor(
    name: string,
    keyv: Keyv<T>,
    private readonly query: SqlQuery,
  ) {
    super(name, keyv);
  }

  storedKey(key: string): string {
    return keyvPrefixed(this.name, key);
  }

  protected async readText(stored: string): Promise<string | undefined> {
    return (await this.query(`SELECT value FROM public.${POSTGRES_TABLE} WHERE key = $1`, [stored]))[0]?.value;
  }

  protected async insertText(stored: string, text: string): Promise<boolean> {
    return (await this.query(`INSERT INTO public.${POSTGRES_TABLE} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key`, [stored, text])).length === 1;
  }

  protected async replaceText(stored: string, expected: string, text: string): Promise<boolean> {
    return (await this.query(`UPDATE public.${POSTGRES_TABLE} SET value = $3 WHERE key = $1 AND value = $2 RETURNING key`, [stored, expected, text])).length === 1;
  }

  protected async deleteText(stored: string, expected: string): Promise<boolean> {
    return (await this.query(`DELETE FROM public.${POSTGRES_TABLE} WHERE key = $1 AND value = $2 RETURNING key`, [stored, expected])).length === 1;
  }

  protected async listTexts(storedPrefix: string): Promise<[string, string][]> {
    const rows = await this.query(`SELECT key, value FROM public.${POSTGRES_TABLE} WHERE key LIKE $1 ESCAPE '\\'`, [likePrefix(storedPrefix)]);
    return rows.map((r) => [r.key, r.value]);
  }
}

export interface StoreOptions {
  /** Where keyv's and the drivers' errors go (each distinct message at most once a minute). */
  log?: (line: string) => void;
  /** A name for log lines and errors, e.g. "job store". */
  label?: string;
  /** SQLite: milliseconds a statement waits for another connection's write lock. */
  busyTimeoutMs?: number;
  /** SQLite: WAL journal and synchronous=NORMAL (readers do not wait for the writer; no fsync per write). */
  sqliteWal?: boolean;
}

/** How long opening a store may take before it counts as unreachable. */
const OPEN_TIMEOUT_MS = 10_000;
/** How long closing waits for a Redis connection's commands in flight. */
const CLOSE_WAIT_MS = 5000;

/** `work`'s result, or 'timeout' after `ms` (the timer is cleared either way; a late failure is ignored). */
async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  work.catch(() => undefined);
  try {
    return await Promise.race([work, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `f`, retrying for up to `limitMs` while SQLite answers SQLITE_BUSY. */
export async function retryWhileBusy<T>(f: () => Promise<T>, limitMs = 5000): Promise<T> {
  const end = Date.now() + limitMs;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!/SQLITE_BUSY/.test((e as Error).message ?? '') || Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/**
 * Tables of one store location, opened together. Each table has its own keyv and adapter (on
 * Postgres they share one connection pool, which ends with the store).
 */
export class Store {
  private constructor(
    readonly location: StoreLocation,
    readonly description: string,
    private readonly tables: Map<string, StoreTable<unknown>>,
    private readonly onClose: () => Promise<void>,
  ) {}

  /**
   * Opens `names` at `location` (creating the SQLite file or the Postgres table if needed) and
   * checks that each answers; on failure everything opened is closed again and the error says
   * which store, without a password.
   */
  static async open(location: StoreLocation, names: readonly string[], options: StoreOptions = {}): Promise<Store> {
    const description = describeStore(location);
    const label = options.label ?? 'store';
    const log = throttledLog(options.log ?? (() => {}));
    const errors: string[] = [];
    const listen = (keyv: Keyv<unknown>, name: string) =>
      keyv.on('error', (e: unknown) => {
        const message = e instanceof Error ? e.message : String(e);
        if (errors.length < 20) errors.push(message);
        log(`${label} (${name}): ${message}`);
      });
    const tables = new Map<string, StoreTable<unknown>>();
    let pool: Pool | undefined;
    const closeAll = async (force = false) => {
      await Promise.allSettled([...tables.values()].map((t) => t.close(force)));
      await pool?.end().catch(() => undefined);
    };
    try {
      if (location.kind === 'sqlite') {
        await mkdir(dirname(location.file), { recursive: true });
        const { default: KeyvSqliteClass } = await import('@keyv/sqlite');
        for (const name of names) {
          const adapter = new KeyvSqliteClass({ uri: `sqlite://${location.file}`, table: name, busyTimeout: options.busyTimeoutMs ?? 5000 });
          const keyv = new Keyv<unknown>({ store: adapter, namespace: name, throwOnErrors: true });
          listen(keyv, name);
          tables.set(name, new SqliteTable(name, keyv, adapter));
        }
        if (options.sqliteWal) {
          for (const table of tables.values()) {
            const adapter = table.keyv.store as KeyvSqlite;
            // Switching to WAL needs the file to itself and does not wait on busy_timeout: while
            // another of these connections is still creating its table it fails at once with
            // SQLITE_BUSY. Those are ours and finish within milliseconds, so wait (bounded).
            await retryWhileBusy(() => adapter.query('PRAGMA journal_mode=WAL'));
            await retryWhileBusy(() => adapter.query('PRAGMA synchronous=NORMAL'));
          }
        }
      } else if (location.kind === 'redis') {
        const { default: KeyvRedisClass } = await import('@keyv/redis');
        for (const name of names) {
          const adapter = new KeyvRedisClass<unknown>(location.url);
          // The adapter's own default swallows failed commands (an 'error' event only).
          adapter.throwOnErrors = true;
          adapter.throwOnConnectError = true;
          // No adapter connectionTimeout: its timer is never cleared and would hold the process
          // open; the probe below has its own. Without one, node-redis retries until it connects.
          // keyv hands keys over as they are; the adapter stores `<namespace>::<key>`.
          const keyv = new Keyv<unknown>({ store: adapter, namespace: `${REDIS_NAMESPACE_PREFIX}${name}`, useKeyPrefix: false, throwOnErrors: true });
          listen(keyv, name);
          tables.set(name, new RedisTable(name, keyv, adapter));
        }
      } else {
        const { default: pg } = await import('pg');
        const { KeyvPostgres: KeyvPostgresClass } = await import('@keyv/postgres');
        const ownPool = new pg.Pool({ connectionString: location.url, max: 4, connectionTimeoutMillis: 10_000 });
        pool = ownPool;
        // An idle connection that breaks (Postgres restarts) must not become an uncaught error.
        ownPool.on('error', (e) => log(`${label}: Postgres connection: ${e.message}`));
        const query: SqlQuery = async (sql, values) => (await ownPool.query<Record<string, string>>(sql, values)).rows;
        // @keyv/postgres keeps one pool per process for all its instances and ends it on any
        // instance's disconnect(); this store's tables use the store's own pool instead.
        class PooledKeyvPostgres extends KeyvPostgresClass {
          override async connect() {
            return query as (sql: string, values?: unknown) => Promise<Record<string, string>[]>;
          }
          override async disconnect(): Promise<void> {}
        }
        for (const name of names) {
          const adapter: KeyvPostgres = new PooledKeyvPostgres({ uri: location.url, table: POSTGRES_TABLE });
          const keyv = new Keyv<unknown>({ store: adapter, namespace: name, throwOnErrors: true });
          listen(keyv, name);
          // adapter.query waits for the adapter's CREATE TABLE IF NOT EXISTS.
          tables.set(name, new PostgresTable(name, keyv, (sql, values) => adapter.query(sql, values)));
        }
      }
      // Fail now, naming the store, rather than on the first job.
      const probe = (async () => {
        for (const table of tables.values()) await table.has('probe');
      })();
      if ((await withTimeout(probe, OPEN_TIMEOUT_MS)) === 'timeout') throw new Error(`no answer within ${OPEN_TIMEOUT_MS / 1000} s`);
    } catch (e) {
      await closeAll(true);
      let why = (e as Error).message ?? String(e);
      // The reason came as 'error' events (node-redis retries, @keyv/redis throws a fixed sentence).
      if (/^Redis client is not connected|^no answer within/.test(why) && errors.length) why = `${why}: ${[...new Set([errors[0], errors.at(-1)!])].join('; ')}`;
      throw new Error(`cannot open the ${label} (${description}): ${why}`);
    }
    return new Store(location, description, tables, closeAll);
  }

  get kind(): StoreKind {
    return this.location.kind;
  }

  table<T>(name: string): StoreTable<T> {
    const table = this.tables.get(name);
    if (!table) throw new Error(`store: no table ${name} was opened`);
    return table as StoreTable<T>;
  }

  /** Closes every table's connection. */
  async close(): Promise<void> {
    await this.onClose();
  }
}

/** A log that repeats the same line at most once a minute (a down server errors on every retry). */
function throttledLog(log: (line: string) => void): (line: string) => void {
  const last = new Map<string, number>();
  return (line) => {
    const now = Date.now();
    if ((last.get(line) ?? -Infinity) > now - 60_000) return;
    last.set(line, now);
    if (last.size > 100) last.clear();
    log(line);
  };
}
