/**
 * The community loop's records in keyv (keyv@5 + @keyv/sqlite): contributions, generated-output
 * drift samples, retraining runs and the retraining lock, in their own table and namespace of
 * the data folder's SQLite file (the file the job store uses too; nothing is shared but the file).
 *
 * Plain keyv has no atomic "insert if absent" or "compare and set", which a lock across
 * processes needs. Those two operations are done here in SQL on keyv's own table, with values
 * in keyv's own serialised form, so every record stays readable through keyv as usual.
 * SQLite serialises writers, so each statement is atomic across processes.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';

/** The SQLite file in the data folder (shared with the chat layer's job store). */
export const COMMUNITY_STORE_FILE = 'nocturne.sqlite';
export const COMMUNITY_TABLE = 'community';
export const COMMUNITY_NAMESPACE = 'community';
/** Milliseconds a statement waits for another connection's write lock before failing. */
const BUSY_TIMEOUT_MS = 10_000;

/** A stored value and the exact text it is stored as (the token for compareAndSet). */
export interface RawEntry<T> {
  value: T;
  text: string;
}

export class CommunityStore {
  private constructor(
    private readonly keyv: Keyv,
    private readonly adapter: KeyvSqlite,
    readonly file: string,
  ) {}

  /** Opens (creating if needed) the store in `dataDir`; fails at once, naming the file. */
  static async open(dataDir: string, log: (line: string) => void = () => {}): Promise<CommunityStore> {
    await mkdir(dataDir, { recursive: true });
    const file = join(dataDir, COMMUNITY_STORE_FILE);
    const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, table: COMMUNITY_TABLE, busyTimeout: BUSY_TIMEOUT_MS });
    const keyv = new Keyv({ store: adapter, namespace: COMMUNITY_NAMESPACE, throwOnErrors: true });
    keyv.on('error', (e: unknown) => log(`community store: ${e instanceof Error ? e.message : String(e)}`));
    const store = new CommunityStore(keyv, adapter, file);
    try {
      await keyv.has('probe');
    } catch (e) {
      await keyv.disconnect().catch(() => undefined);
      throw new Error(`cannot open the community store ${file}: ${(e as Error).message}`);
    }
    return store;
  }

  private storedKey(key: string): string {
    return `${COMMUNITY_NAMESPACE}:${key}`;
  }

  private async serialise(value: unknown): Promise<string> {
    const text = await this.keyv.serializeData({ value, expires: undefined });
    if (typeof text !== 'string') throw new Error('community store: keyv returned a non-string serialisation');
    return text;
  }

  private async deserialise<T>(text: string): Promise<T | undefined> {
    return (await this.keyv.deserializeData<T>(text))?.value;
  }

  async get<T>(key: string): Promise<T | undefined> {
    return ((await this.keyv.get(key)) as T | undefined) ?? undefined;
  }

  async set<T>(key: string, value: T): Promise<void> {
    await this.keyv.set(key, value);
  }

  async delete(key: string): Promise<void> {
    await this.keyv.delete(key);
  }

  /** Every entry whose key starts with `prefix`, in key order. */
  async list<T>(prefix: string): Promise<{ key: string; value: T }[]> {
    const pattern = this.storedKey(prefix).replace(/[\\%_]/g, (c) => `\\${c}`) + '%';
    const rows = (await this.adapter.query(`SELECT key, value FROM ${COMMUNITY_TABLE} WHERE key LIKE ? ESCAPE '\\' ORDER BY key`, pattern)) as { key: string; value: string }[];
    const out: { key: string; value: T }[] = [];
    for (const row of rows) {
      const value = await this.deserialise<T>(row.value);
      if (value !== undefined) out.push({ key: row.key.slice(COMMUNITY_NAMESPACE.length + 1), value });
    }
    return out;
  }

  /** The value and its stored text, for a later compareAndSet/compareAndDelete. */
  async getRaw<T>(key: string): Promise<RawEntry<T> | undefined> {
    const rows = (await this.adapter.query(`SELECT value FROM ${COMMUNITY_TABLE} WHERE key = ?`, this.storedKey(key))) as { value: string }[];
    if (rows.length === 0) return undefined;
    const value = await this.deserialise<T>(rows[0].value);
    return value === undefined ? undefined : { value, text: rows[0].value };
  }

  /** Stores `value` only if `key` holds nothing; true if this call stored it. Atomic. */
  async insertIfAbsent<T>(key: string, value: T): Promise<boolean> {
    const rows = (await this.adapter.query(
      `INSERT INTO ${COMMUNITY_TABLE} (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING RETURNING key`,
      this.storedKey(key),
      await this.serialise(value),
    )) as unknown[];
    return rows.length === 1;
  }

  /** Replaces the value only if it is still stored as `expectedText`; true if replaced. Atomic. */
  async compareAndSet<T>(key: string, expectedText: string, value: T): Promise<boolean> {
    const rows = (await this.adapter.query(
      `UPDATE ${COMMUNITY_TABLE} SET value = ? WHERE key = ? AND value = ? RETURNING key`,
      await this.serialise(value),
      this.storedKey(key),
      expectedText,
    )) as unknown[];
    return rows.length === 1;
  }

  /** Deletes the entry only if it is still stored as `expectedText`; true if deleted. Atomic. */
  async compareAndDelete(key: string, expectedText: string): Promise<boolean> {
    const rows = (await this.adapter.query(`DELETE FROM ${COMMUNITY_TABLE} WHERE key = ? AND value = ? RETURNING key`, this.storedKey(key), expectedText)) as unknown[];
    return rows.length === 1;
  }

  async close(): Promise<void> {
    await this.keyv.disconnect();
  }
}
