/**
 * Model versions and which one serves. A class because it has a lifecycle (an optional watch on
 * the pointer file) and emits an event when the serving version changes, so the chat layer can
 * open the new Engine and drop the old one without a restart:
 *
 *   registry.on('serving', async (change) => { const next = await Engine.open(change.dir); ... });
 *
 * Layout under NOCTURNE_DATA_DIR/models/:
 *   <version>/       a complete model folder (model.json, weights.bin, ATTRIBUTION.md,
 *                    training-curve.png, history.json) plus version.json (how it was made and
 *                    what the gate said). Folders appear only by an atomic rename of a finished
 *                    staging folder, so a listed version is always complete.
 *   serving.json     { version, since, reason, stack, history }, replaced atomically (temp +
 *                    rename): a reader sees the old pointer or the new one, never half of one.
 * The shipped model (NOCTURNE_MODEL_DIR, models/default) is copied in as the first version.
 */
import { EventEmitter } from 'node:events';
import { existsSync, unwatchFile, watchFile } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readModelSpec, writeFileAtomic, type ModelSpec } from '../model/folder.ts';
import type { ModelScores } from './gate.ts';

/** How a version came to be, and what the gate said (version.json). */
export interface VersionRecord {
  version: string;
  /** initial: the shipped model; passed / rejected: the gate's verdict on a retrained candidate. */
  verdict: 'initial' | 'passed' | 'rejected';
  reason: string;
  createdAt: string;
  runId?: string;
  trigger?: string;
  requestedBy?: string;
  /** The serving version it was compared with (and fine-tuned from, unless fromScratch). */
  baseVersion?: string;
  fromScratch?: boolean;
  before?: ModelScores;
  after?: ModelScores;
  /** Contribution ids trained on, and held back for validation. */
  contributions?: string[];
  heldBack?: string[];
  /** Composer labels that got their own slot in this version. */
  newComposers?: string[];
}

export interface ServingEntry {
  version: string;
  since: string;
  reason: string;
}

export interface ServingPointer extends ServingEntry {
  /** Versions that served before, oldest first: rollback() returns to the last one. */
  stack: string[];
  /** Every change, oldest first (kept for the record). */
  history: ServingEntry[];
}

export interface ServingChange {
  from: string | undefined;
  to: string;
  /** The model folder to open. */
  dir: string;
  reason: string;
}

export interface ModelVersionInfo {
  version: string;
  dir: string;
  serving: boolean;
  record: VersionRecord;
  metrics: Record<string, number>;
  composers: string[];
  curvePng?: string;
}

/** A registry operation that cannot be done (unknown version, nothing to roll back to). */
export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryError';
  }
}

const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$/;
/** Files of a model folder that a version keeps (the training checkpoint is not kept). */
export const VERSION_FILES = ['model.json', 'weights.bin', 'ATTRIBUTION.md', 'training-curve.png', 'history.json'] as const;

export class ModelRegistry extends EventEmitter<{ serving: [ServingChange] }> {
  private servingVersion: string | undefined;
  private watching = false;

  private constructor(readonly root: string) {
    super();
  }

  /** Opens NOCTURNE_DATA_DIR/models, copying in the initial model as the first version if it is empty. */
  static async open(dataDir: string, initialModelDir: string, log: (line: string) => void = () => {}): Promise<ModelRegistry> {
    const registry = new ModelRegistry(join(dataDir, 'models'));
    await mkdir(registry.root, { recursive: true });
    if (!existsSync(registry.pointerPath)) {
      const spec = await readModelSpec(initialModelDir);
      if (!existsSync(registry.dirOf(spec.version))) {
        const staging = registry.stagingDir(`initial-${process.pid}`);
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { recursive: true });
        for (const f of VERSION_FILES) if (existsSync(join(initialModelDir, f))) await copyFile(join(initialModelDir, f), join(staging, f));
        const record: VersionRecord = { version: spec.version, verdict: 'initial', reason: `the shipped model from ${initialModelDir}`, createdAt: new Date().toISOString() };
        try {
          await registry.publish(staging, record);
          log(`model registry: ${spec.version} (from ${initialModelDir}) is the first version`);
        } catch (e) {
          // Another process published it first: theirs is the same model.
          await rm(staging, { recursive: true, force: true });
          if (!existsSync(registry.dirOf(spec.version))) throw e;
        }
      }
      if (!existsSync(registry.pointerPath)) await registry.writePointer(spec.version, 'initial version', undefined);
    }
    registry.servingVersion = (await registry.readPointer()).version;
    await readModelSpec(registry.dirOf(registry.servingVersion));
    return registry;
  }

  get pointerPath(): string {
    return join(this.root, 'serving.json');
  }

  dirOf(version: string): string {
    if (!VERSION_PATTERN.test(version)) throw new RegistryError(`${JSON.stringify(version.slice(0, 40))} is not a model version name`);
    return join(this.root, version);
  }

  /** A scratch folder on the registry's file system (so publishing is a rename). */
  stagingDir(tag: string): string {
    return join(this.root, `.staging-${tag}`);
  }

  /**
   * Removes staging folders a crash left behind (only dot-folders; versions are never touched).
   * Call it only while holding the retraining lock: no other process is staging then.
   */
  async removeStaging(): Promise<void> {
    for (const name of await readdir(this.root)) if (name.startsWith('.staging-')) await rm(join(this.root, name), { recursive: true, force: true });
  }

  /**
   * Makes a finished staging folder a version: writes version.json into it, then renames it into
   * place (atomic). Refuses an existing version name.
   */
  async publish(stagingDir: string, record: VersionRecord): Promise<string> {
    const dir = this.dirOf(record.version);
    if (existsSync(dir)) throw new RegistryError(`model version ${record.version} already exists`);
    await readModelSpec(stagingDir);
    await writeFileAtomic(join(stagingDir, 'version.json'), JSON.stringify(record, null, 2) + '\n');
    await rename(stagingDir, dir);
    return dir;
  }

  async readPointer(): Promise<ServingPointer> {
    try {
      return JSON.parse(await readFile(this.pointerPath, 'utf8')) as ServingPointer;
    } catch (e) {
      throw new RegistryError(`cannot read ${this.pointerPath}: ${(e as Error).message}`);
    }
  }

  private async writePointer(version: string, reason: string, previous: ServingPointer | undefined, stack?: string[]): Promise<ServingPointer> {
    const since = new Date().toISOString();
    const entry: ServingEntry = { version, since, reason };
    const pointer: ServingPointer = { ...entry, stack: stack ?? (previous ? [...previous.stack, previous.version] : []), history: [...(previous?.history ?? []), entry] };
    await writeFileAtomic(this.pointerPath, JSON.stringify(pointer, null, 2) + '\n');
    return pointer;
  }

  /** The serving version and its folder, as the pointer file says now. */
  async current(): Promise<{ version: string; dir: string }> {
    const { version } = await this.readPointer();
    return { version, dir: this.dirOf(version) };
  }

  /** The serving version this registry last saw (no file read). */
  get serving(): string {
    return this.servingVersion!;
  }

  async versionRecord(version: string): Promise<VersionRecord> {
    const path = join(this.dirOf(version), 'version.json');
    if (!existsSync(path)) return { version, verdict: 'initial', reason: 'no version.json', createdAt: '' };
    return JSON.parse(await readFile(path, 'utf8')) as VersionRecord;
  }

  /** Every version, newest first. */
  async list(): Promise<ModelVersionInfo[]> {
    const serving = (await this.readPointer()).version;
    const out: ModelVersionInfo[] = [];
    for (const name of await readdir(this.root)) {
      if (name.startsWith('.') || !VERSION_PATTERN.test(name)) continue;
      const dir = join(this.root, name);
      let spec: ModelSpec;
      try {
        spec = await readModelSpec(dir);
      } catch {
        continue;
      }
      const record = await this.versionRecord(name);
      const curve = join(dir, 'training-curve.png');
      out.push({ version: name, dir, serving: name === serving, record, metrics: spec.metrics, composers: spec.composers.map((c) => c.name), curvePng: existsSync(curve) ? curve : undefined });
    }
    return out.sort((a, b) => b.record.createdAt.localeCompare(a.record.createdAt) || b.version.localeCompare(a.version));
  }

  /** The full version name for a name or a unique prefix of one. */
  async resolve(nameOrPrefix: string): Promise<string> {
    const text = nameOrPrefix.trim();
    const versions = (await this.list()).map((v) => v.version);
    if (versions.includes(text)) return text;
    const matches = versions.filter((v) => v.startsWith(text));
    if (text && matches.length === 1) return matches[0];
    if (matches.length > 1) throw new RegistryError(`"${text}" matches several versions: ${matches.slice(0, 5).join(', ')}`);
    throw new RegistryError(`no model version "${text.slice(0, 40)}"; known: ${versions.slice(0, 8).join(', ')}`);
  }

  /** Makes `version` the serving one (after checking it loads) and emits 'serving'. */
  async promote(version: string, reason: string): Promise<ServingChange> {
    const name = await this.resolve(version);
    await readModelSpec(this.dirOf(name));
    const previous = await this.readPointer();
    if (previous.version === name) throw new RegistryError(`${name} is already serving`);
    await this.writePointer(name, reason, previous);
    return this.changed(previous.version, name, reason);
  }

  /**
   * Switches back: with no version, to the one that served before the current one; with a
   * version, to that one. Emits 'serving'.
   */
  async rollback(version?: string, by = 'a moderator'): Promise<ServingChange> {
    const previous = await this.readPointer();
    let target: string;
    let stack: string[];
    if (version === undefined) {
      if (previous.stack.length === 0) throw new RegistryError(`nothing to roll back to: ${previous.version} is the first serving version`);
      target = previous.stack[previous.stack.length - 1];
      stack = previous.stack.slice(0, -1);
    } else {
      target = await this.resolve(version);
      if (target === previous.version) throw new RegistryError(`${target} is already serving`);
      const at = previous.stack.lastIndexOf(target);
      stack = at >= 0 ? previous.stack.slice(0, at) : [...previous.stack, previous.version];
    }
    await readModelSpec(this.dirOf(target));
    const reason = `rollback from ${previous.version} by ${by}`;
    await this.writePointer(target, reason, previous, stack);
    return this.changed(previous.version, target, reason);
  }

  /** Re-reads the pointer (another process may have changed it); emits 'serving' if it moved. */
  async refresh(): Promise<ServingChange | undefined> {
    const pointer = await this.readPointer();
    if (pointer.version === this.servingVersion) return undefined;
    return this.changed(this.servingVersion, pointer.version, pointer.reason);
  }

  /** Polls the pointer file so changes made by other processes (a retraining run) are seen. */
  watch(intervalMs = 2000): void {
    if (this.watching) return;
    this.watching = true;
    watchFile(this.pointerPath, { interval: intervalMs, persistent: false }, () => {
      this.refresh().catch(() => undefined);
    });
  }

  close(): void {
    if (this.watching) unwatchFile(this.pointerPath);
    this.watching = false;
    this.removeAllListeners();
  }

  private changed(from: string | undefined, to: string, reason: string): ServingChange {
    this.servingVersion = to;
    const change: ServingChange = { from, to, dir: this.dirOf(to), reason };
    this.emit('serving', change);
    return change;
  }
}
