/**
 * Job records and settings (each server's, and members' own) in keyv, on the store STORE_URL chooses
 * (src/storage/backend.ts: the data folder's SQLite file by default, or Redis, or Postgres).
 *
 * Five tables: `jobs` (every record, kept), `open_jobs` (one key per job not yet done or failed,
 * so a restart finds them without scanning all history), `server_settings`, `instances` (the
 * bots' heartbeats, src/scaleout/instances.ts) and `deliveries` (requests from a chat platform
 * already acted on, each kept for a while, so that a replayed or retried request is acted on
 * once by whichever bot sharing the store gets it first). A record is
 * written before its id enters `open_jobs` and leaves `open_jobs` only after its final state is
 * written, so a crash at any point leaves either a finished record or an open one. The index is
 * a key per job rather than one list record, so bots sharing a store never overwrite each
 * other's entries. Updates to one record are serialized in-process (read, merge, write), so
 * concurrent stage changes cannot lose each other's fields.
 */
import { randomBytes } from 'node:crypto';
import { Store, storeLocation, type StoreLocation, type StoreTable } from '../storage/backend.ts';
import type { AudioFormat } from '../engine/types.ts';
import { OPEN_STATES, type InstanceRecord, type JobRecord } from './types.ts';

export interface ServerSettings {
  /** 'ogg': always send OGG audio (smaller); 'wav': WAV, shrunk or OGG only when over the upload limit. */
  audio: AudioFormat;
  /** Every piece comes with its score (MusicXML and a picture of its first page) unless a request says otherwise (default no). */
  score?: boolean;
}

export const DEFAULT_SERVER_SETTINGS: ServerSettings = Object.freeze({ audio: 'wav', score: false });

/** A member's own choices (`/settings for:me`): each one set wins over the server's for that member's requests. */
export type MemberSettings = Partial<ServerSettings>;

/** SQLite: milliseconds a write waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5000;
/** How often (at most) one process removes expired `deliveries` rows (SQLite and Postgres keep them until then). */
const DELIVERY_PRUNE_MS = 60_000;

/** What a `deliveries` entry holds: when it was claimed (the key says what was delivered). */
export interface DeliveryClaim {
  claimedAt: string;
}

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

export class JobStore {
  private readonly chains = new Map<string, Promise<unknown>>();
  private lastPrune = 0;
  private pruning: Promise<unknown> | undefined;

  private constructor(
    private readonly store: Store,
    private readonly jobs: StoreTable<JobRecord>,
    private readonly open: StoreTable<string>,
    /** The servers' settings and, under their own keys, members' own (MemberSettings). */
    private readonly settings: StoreTable<MemberSettings>,
    /** Heartbeat records of the bot instances sharing this store (src/scaleout/instances.ts). */
    readonly instances: StoreTable<InstanceRecord>,
    private readonly deliveries: StoreTable<DeliveryClaim>,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Opens the job store at `where`: a store location (storeLocation(dataDir, STORE_URL)), or a
   * data folder for its SQLite file. Fails at once, naming the store (never its password).
   */
  static async open(where: StoreLocation | string, log: (line: string) => void = () => {}): Promise<JobStore> {
    const location = typeof where === 'string' ? storeLocation(where) : where;
    // On SQLite, WAL lets the three connections read while one writes, and synchronous=NORMAL
    // makes each write one fsync-free append (a power cut may lose the last writes but never
    // corrupts the file).
    const store = await Store.open(location, ['jobs', 'open_jobs', 'server_settings', 'instances', 'deliveries'], { log, label: 'job store', busyTimeoutMs: BUSY_TIMEOUT_MS, sqliteWal: true });
    return new JobStore(store, store.table('jobs'), store.table('open_jobs'), store.table('server_settings'), store.table('instances'), store.table('deliveries'), log);
  }

  /** Which store this is, for log lines (no password). */
  get description(): string {
    return this.store.description;
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

  /**
   * Makes `owner` the owner of the open job `id`, only if its record is still stored exactly as
   * `expectedText` (from getRaw): atomic across processes, so of several bots taking over the same
   * job exactly one succeeds. Returns the new record, or undefined if the record changed meanwhile.
   */
  async claim(id: string, expectedText: string, owner: string): Promise<JobRecord | undefined> {
    return this.serialize(id, async () => {
      const current = await this.jobs.getRaw(id);
      if (!current || current.text !== expectedText || !OPEN_STATES.includes(current.value.state)) return undefined;
      const next: JobRecord = { ...current.value, owner, updatedAt: new Date().toISOString() };
      return (await this.jobs.compareAndSet(id, expectedText, next)) ? next : undefined;
    });
  }

  /** A job's record and its exact stored text (for claim). */
  async getRaw(id: string): Promise<{ value: JobRecord; text: string } | undefined> {
    return this.jobs.getRaw(id);
  }

  /** Jobs not yet done or failed, oldest first (what a crash or a shutdown left behind). */
  async openJobs(): Promise<JobRecord[]> {
    const records: JobRecord[] = [];
    for (const { key: id } of await this.open.list()) {
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

  /** A member's own settings: only what they chose ({} when nothing). */
  async memberSettings(key: string): Promise<MemberSettings> {
    return (await this.settings.get(key)) ?? {};
  }

  /** Saves a member's own settings; with nothing chosen, removes them (the server's apply again). */
  async setMemberSettings(key: string, settings: MemberSettings): Promise<void> {
    const chosen = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
    if (Object.keys(chosen).length) await this.settings.set(key, chosen);
    else await this.settings.delete(key);
  }

  /**
   * Claims the delivery `key` (e.g. a Slack request's signature) for `ttlMs`: true for the first
   * claim, false while that claim lasts, whichever bot sharing this store made it (atomic across
   * processes). A request is acted on only by the caller that got true.
   */
  async claimDelivery(key: string, ttlMs: number): Promise<boolean> {
    this.pruneDeliveries();
    return this.deliveries.insertIfAbsent(key, { claimedAt: new Date().toISOString() }, ttlMs);
  }

  /** Removes expired delivery claims now and then (in the background; a failure is only logged). */
  private pruneDeliveries(): void {
    const now = Date.now();
    if (this.pruning || now - this.lastPrune < DELIVERY_PRUNE_MS) return;
    this.lastPrune = now;
    this.pruning = this.deliveries
      .deleteExpired()
      .catch((e: Error) => this.log(`job store: could not remove expired delivery claims: ${e.message}`))
      .finally(() => (this.pruning = undefined));
  }

  /** Waits for pending writes (and up to 2 s for a removal of expired claims), then closes the database connections. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const pruned = this.pruning ? Promise.race([this.pruning, new Promise((r) => (timer = setTimeout(r, 2000)))]) : undefined;
    await Promise.allSettled([...this.chains.values(), pruned]);
    clearTimeout(timer);
    await this.store.close();
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
