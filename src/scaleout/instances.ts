/**
 * Bot instances sharing one store (STORE_URL, or the SQLite file on one machine): each bot
 * process has a name (NOCTURNE_INSTANCE) and keeps a heartbeat record `instances:<name>` in the
 * store (pid, host, startedAt, beatAt), refreshed every heartbeat interval and removed on a
 * graceful stop. Job records carry the name of the instance that owns them (JobRecord.owner).
 *
 * An instance whose heartbeat is older than the stale limit, or missing, is gone: another bot
 * takes its open jobs over (src/chat/bot.ts, recover), each with a compare-and-set on the job
 * record, so two survivors never both take the same job.
 *
 * Claiming the name at start is atomic too (insert if absent, or compare-and-set over a stale
 * record or this host's previous process), so two processes started with one name at once cannot
 * both run: the second is refused with one line.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { InstanceRecord } from '../jobs/types.ts';
import type { StoreTable } from '../storage/backend.ts';

export type { InstanceRecord };

export interface InstanceSettings {
  name: string;
  /** How often the heartbeat is refreshed. */
  heartbeatMs: number;
  /** A heartbeat older than this means the instance is gone and its open jobs may be taken over. */
  staleMs: number;
  /** How often a running bot looks for open jobs of gone instances. */
  scanMs: number;
}

export const DEFAULT_HEARTBEAT_MS = 10_000;
export const DEFAULT_STALE_MS = 60_000;
export const DEFAULT_SCAN_MS = 30_000;

/** What NOCTURNE_INSTANCE may hold: letters, digits, . _ - (up to 64), starting with a letter or digit. */
export const INSTANCE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The default instance name: this machine's host name (stable across restarts), made valid. */
export function defaultInstanceName(host = hostname()): string {
  const name = host.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return name || 'nocturne';
}

export function defaultInstanceSettings(name = defaultInstanceName()): InstanceSettings {
  return { name, heartbeatMs: DEFAULT_HEARTBEAT_MS, staleMs: DEFAULT_STALE_MS, scanMs: DEFAULT_SCAN_MS };
}

/** Whether the heartbeat is recent enough for the instance to count as running. */
export function heartbeatFresh(record: InstanceRecord | undefined, staleMs: number, now = Date.now()): boolean {
  if (!record) return false;
  const beat = Date.parse(record.beatAt);
  return Number.isFinite(beat) && now - beat <= staleMs;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a fresh heartbeat under our name belongs to another running process: another host, or
 * this host and a different pid that is still alive. (This host and a pid that has exited is this
 * deployment's previous process, e.g. restarted after kill -9: the name is ours again.)
 */
function heldByAnother(record: InstanceRecord, staleMs: number): boolean {
  if (!heartbeatFresh(record, staleMs)) return false;
  if (record.host !== hostname()) return true;
  return record.pid !== process.pid && pidAlive(record.pid);
}

export class InstanceNameInUse extends Error {
  constructor(readonly holder: InstanceRecord, staleMs: number) {
    const age = Math.max(0, Math.round((Date.now() - Date.parse(holder.beatAt)) / 1000));
    super(
      `another bot process already runs as instance "${holder.name}" (pid ${holder.pid} on ${holder.host}, heartbeat ${age} s ago) on this store: set a distinct NOCTURNE_INSTANCE for each bot process sharing a store (if that process is gone, its name is free ${Math.round(staleMs / 1000)} s after its last heartbeat)`,
    );
    this.name = 'InstanceNameInUse';
  }
}

/** This process's heartbeat record: claimed at start, refreshed on a timer, removed at stop. */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;

  private constructor(
    private readonly table: StoreTable<InstanceRecord>,
    private record: InstanceRecord,
    /** The exact stored text of our record (for compare-and-set). */
    private text: string,
    private readonly settings: InstanceSettings,
    private readonly log: (line: string) => void,
  ) {}

  get name(): string {
    return this.record.name;
  }

  /**
   * Claims `settings.name` in `table` and starts the timer. Throws InstanceNameInUse when another
   * running process holds the name (its heartbeat is fresh).
   */
  static async start(table: StoreTable<InstanceRecord>, settings: InstanceSettings, log: (line: string) => void = () => {}): Promise<Heartbeat> {
    const now = new Date().toISOString();
    const mine: InstanceRecord = { name: settings.name, pid: process.pid, host: hostname(), startedAt: now, beatAt: now, token: randomBytes(6).toString('hex') };
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await table.getRaw(settings.name);
      let claimed: boolean;
      if (!current) claimed = await table.insertIfAbsent(settings.name, mine);
      else if (heldByAnother(current.value, settings.staleMs)) throw new InstanceNameInUse(current.value, settings.staleMs);
      else claimed = await table.compareAndSet(settings.name, current.text, mine);
      if (claimed) {
        const heartbeat = new Heartbeat(table, mine, await table.serialise(mine), settings, log);
        heartbeat.arm();
        return heartbeat;
      }
      // Someone wrote the record between our read and our write: look again.
    }
    throw new Error(`could not claim instance name "${settings.name}" in the store (it kept changing)`);
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.beating = this.beat().finally(() => {
        this.beating = undefined;
        this.arm();
      });
    }, this.settings.heartbeatMs);
    this.timer.unref();
  }

  /** Refreshes beatAt (only while the record is still ours). */
  async beat(): Promise<void> {
    const next: InstanceRecord = { ...this.record, beatAt: new Date().toISOString() };
    try {
      if (await this.table.compareAndSet(this.record.name, this.text, next)) {
        this.record = next;
        this.text = await this.table.serialise(next);
        return;
      }
      const current = await this.table.getRaw(this.record.name);
      if (!current) {
        // Lost (a store restarted without persistence): write it again.
        if (await this.table.insertIfAbsent(this.record.name, next)) {
          this.record = next;
          this.text = await this.table.serialise(next);
        }
        return;
      }
      if (current.value.token !== this.record.token) {
        this.log(`instance ${this.record.name}: another process (pid ${current.value.pid} on ${current.value.host}) now holds this instance name; give each bot process sharing a store its own NOCTURNE_INSTANCE`);
        return;
      }
      // Ours, written in another form: adopt its text and try once more next time.
      this.text = current.text;
    } catch (e) {
      this.log(`instance ${this.record.name}: the heartbeat could not be written (${(e as Error).message}); trying again in ${Math.round(this.settings.heartbeatMs / 1000)} s`);
    }
  }

  /** Stops the timer and removes the record (only if it is still ours). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating;
    try {
      await this.table.compareAndDelete(this.record.name, this.text);
    } catch (e) {
      this.log(`instance ${this.record.name}: the heartbeat record could not be removed (${(e as Error).message}); it goes stale by itself`);
    }
  }
}
