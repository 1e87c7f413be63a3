/**
 * The community loop's records in keyv: contributions, hash claims, generated-output drift
 * samples, retraining runs and the retraining lock, in their own table ("community") of the store
 * STORE_URL chooses (src/storage/backend.ts: the data folder's SQLite file by default, or Redis,
 * or Postgres; the job store uses the same one, nothing is shared but the place).
 *
 * Plain keyv has no atomic "insert if absent" or "compare and set", which a lock across
 * processes needs. The store engine does those natively on each backend, on keyv's own keys and
 * in keyv's own serialised form, so every record stays readable through keyv as usual.
 *
 * Only metadata lives here: contributed MIDI files, model versions and run scratch stay on disk
 * in NOCTURNE_DATA_DIR.
 */
import { Store, storeLocation, type RawEntry, type StoreLocation, type StoreTable } from '../storage/backend.ts';

export type { RawEntry } from '../storage/backend.ts';

export const COMMUNITY_TABLE = 'community';
/** SQLite: milliseconds a statement waits for another connection's write lock before failing. */
const BUSY_TIMEOUT_MS = 10_000;

export class CommunityStore {
  private constructor(
    private readonly store: Store,
    private readonly table: StoreTable<unknown>,
  ) {}

  /**
   * Opens the store at `where`: a store location (storeLocation(dataDir, STORE_URL)), or a data
   * folder for its SQLite file. Fails at once, naming the store (never its password).
   */
  static async open(where: StoreLocation | string, log: (line: string) => void = () => {}): Promise<CommunityStore> {
    const location = typeof where === 'string' ? storeLocation(where) : where;
    const store = await Store.open(location, [COMMUNITY_TABLE], { log, label: 'community store', busyTimeoutMs: BUSY_TIMEOUT_MS });
    return new CommunityStore(store, store.table(COMMUNITY_TABLE));
  }

  /** Which store this is, for log lines (no password). */
  get description(): string {
    return this.store.description;
  }

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.table.get(key)) as T | undefined;
  }

  async set<T>(key: string, value: T): Promise<void> {
    await this.table.set(key, value);
  }

  async delete(key: string): Promise<void> {
    await this.table.delete(key);
  }

  /** Every entry whose key starts with `prefix`, in key order. */
  async list<T>(prefix: string): Promise<{ key: string; value: T }[]> {
    return (await this.table.list(prefix)) as { key: string; value: T }[];
  }

  /** The value and its stored text, for a later compareAndSet/compareAndDelete. */
  async getRaw<T>(key: string): Promise<RawEntry<T> | undefined> {
    return (await this.table.getRaw(key)) as RawEntry<T> | undefined;
  }

  /** Stores `value` only if `key` holds nothing; true if this call stored it. Atomic across processes. */
  async insertIfAbsent<T>(key: string, value: T): Promise<boolean> {
    return this.table.insertIfAbsent(key, value);
  }

  /** Replaces the value only if it is still stored as `expectedText`; true if replaced. Atomic across processes. */
  async compareAndSet<T>(key: string, expectedText: string, value: T): Promise<boolean> {
    return this.table.compareAndSet(key, expectedText, value);
  }

  /** Deletes the entry only if it is still stored as `expectedText`; true if deleted. Atomic across processes. */
  async compareAndDelete(key: string, expectedText: string): Promise<boolean> {
    return this.table.compareAndDelete(key, expectedText);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
