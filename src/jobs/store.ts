/**
 * Job records and per-server settings in keyv (keyv@5 + @keyv/sqlite in the data folder).
 *
 * Three tables in one SQLite file: `jobs` (every record, kept), `open_jobs` (ids of jobs not yet
 * done or failed, so a restart finds them without scanning all history) and `server_settings`.
 * A record is written before its id enters `open_jobs` and leaves `open_jobs` only after its final
 * state is written, so a crash at any point leaves either a finished record or an open one.
 * Updates to one record are serialized in-process (read, merge, write), so concurrent stage
 * changes cannot lose each other's fields.
 */
import { mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import type { AudioFormat } from '../engine/types.ts';
import { OPEN_STATES, type JobRecord } from './types.ts';

export interface ServerSettings {
  /** 'ogg': always send OGG audio (smaller); 'wav': WAV, shrunk or OGG only when over the upload limit. */
  audio: AudioFormat;
}

export const DEFAULT_SERVER_SETTINGS: ServerSettings = Object.freeze({ audio: 'wav' });

export const STORE_FILE = 'nocturne.sqlite';

/** Milliseconds a write waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5000;

/** Lower-case letters and digits without look-alikes (no 0/o, 1/l/i): easy to type into `show`. */
const ID_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/**
 * A new job id: 8 characters with at least one digit and one letter, so that an id can never be
 * mistaken for a composer name or a number of notes where both may be typed ("/continue k3x9q2ab").
 */
export function newJobId(): string {
  for (;;) {
    let id = '';
    for (const b of randomBytes(8)) id += ID_ALPHABET[b % ID_ALPHABET.length];
    if (looksLikeJobId(id)) return id;
  }
}

/** Whether `text` could be a job id (so commands can tell an id from other words). */
export function looksLikeJobId(text: string): boolean {
  return /^(?=[a-z2-9]*[2-9])(?=[a-z2-9]*[a-z])[a-z2-9]{8}$/.test(text);
}

function table<T>(file: string, name: string, log: (line: string) => void): Keyv<T> {
  const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: name, busyTimeout: BUSY_TIMEOUT_MS });
  const keyv = new Keyv<T>({ store, namespace: name, throwOnErrors: true });
  keyv.on('error', (e: unknown) => log(`job store (${name}): ${e instanceof Error ? e.message : String(e)}`));
  return keyv;
}

/** Runs `f`, retrying for up to `limitMs` while SQLite answers SQLITE_BUSY. */
async function retryWhileBusy<T>(f: () => Promise<T>, limitMs = 5000): Promise<T> {
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

export class JobStore {
  private readonly chains = new Map<string, Promise<unknown>>();

  private constructor(
    private readonly jobs: Keyv<JobRecord>,
    private readonly open: Keyv<string>,
    private readonly settings: Keyv<ServerSettings>,
    readonly file: string,
  ) {}

  /** Opens (creating if needed) `<dataDir>/nocturne.sqlite`. */
  static async open(dataDir: string, log: (line: string) => void = () => {}): Promise<JobStore> {
    await mkdir(dataDir, { recursive: true });
    const file = join(dataDir, STORE_FILE);
    const store = new JobStore(table<JobRecord>(file, 'jobs', log), table<string>(file, 'open_jobs', log), table<ServerSettings>(file, 'server_settings', log), file);
    // Fail now, with the path, rather than on the first job. WAL lets the three connections
    // read while one writes, and synchronous=NORMAL makes each write one fsync-free append (a
    // power cut may lose the last writes but never corrupts the file).
    try {
      for (const keyv of [store.jobs, store.open, store.settings]) {
        const sqlite = keyv.store as KeyvSqlite;
        // Switching to WAL needs the file to itself and does not wait on busy_timeout: while one
        // of the other two connections is still creating its table, it fails at once with
        // SQLITE_BUSY. Those are ours and finish within milliseconds, so wait for them (bounded).
        await retryWhileBusy(() => sqlite.query('PRAGMA journal_mode=WAL'));
        await retryWhileBusy(() => sqlite.query('PRAGMA synchronous=NORMAL'));
      }
      await store.open.has('probe');
    } catch (e) {
      await store.close().catch(() => undefined);
      throw new Error(`cannot open the job store ${file}: ${(e as Error).message}`);
    }
    return store;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return (await this.jobs.get(id)) ?? undefined;
  }

  /** A fresh id not used by any stored job. */
  async freshId(): Promise<string> {
    for (let i = 0; i < 20; i++) {
      const id = newJobId();
      if (!(await this.jobs.has(id))) return id;
    }
    throw new Error('could not find a free job id');
  }

  async create(record: JobRecord): Promise<void> {
    await this.serialize(record.id, async () => {
      await this.jobs.set(record.id, record);
      if (OPEN_STATES.includes(record.state)) await this.open.set(record.id, record.createdAt);
    });
  }

  /** Merges `patch` into the stored record (serialized per id) and returns the new record. */
  async update(id: string, patch: Partial<JobRecord>): Promise<JobRecord> {
    return this.serialize(id, async () => {
      const current = await this.jobs.get(id);
      if (!current) throw new Error(`job ${id} is not in the store`);
      const next: JobRecord = { ...current, ...patch, updatedAt: new Date().toISOString() };
      await this.jobs.set(id, next);
      if (!OPEN_STATES.includes(next.state)) await this.open.delete(id);
      else if (!OPEN_STATES.includes(current.state)) await this.open.set(id, next.createdAt);
      return next;
    });
  }

  /** Jobs not yet done or failed, oldest first (what a crash or a shutdown left behind). */
  async openJobs(): Promise<JobRecord[]> {
    const ids: string[] = [];
    if (this.open.iterator) {
      for await (const [key] of this.open.iterator(undefined)) ids.push(String(key));
    }
    const records: JobRecord[] = [];
    for (const id of ids) {
      const record = await this.jobs.get(id);
      if (record && OPEN_STATES.includes(record.state)) records.push(record);
      else await this.open.delete(id);
    }
    return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async serverSettings(key: string): Promise<ServerSettings> {
    return { ...DEFAULT_SERVER_SETTINGS, ...((await this.settings.get(key)) ?? {}) };
  }

  async setServerSettings(key: string, settings: ServerSettings): Promise<void> {
    await this.settings.set(key, settings);
  }

  /** Waits for pending writes, then closes the database connections. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
    await Promise.allSettled([this.jobs.disconnect(), this.open.disconnect(), this.settings.disconnect()]);
  }

  private serialize<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(id) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.chains.set(id, tail);
    void tail.then(() => {
      if (this.chains.get(id) === tail) this.chains.delete(id);
    });
    return next;
  }
}
