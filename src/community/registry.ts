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
 *
 * No folder enters the registry or serves without passing the loader's checks (checkModelFolder):
 * a corrupt NOCTURNE_MODEL_DIR copied in unchecked once stayed "the first version" until someone
 * deleted it by hand. At open, a serving version that does not load is replaced by the shipped
 * model when that one loads; a broken copy is set aside as .broken-<version>-<time>, not deleted.
 */
import { EventEmitter } from 'node:events';
import { existsSync, unwatchFile, watchFile } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelFolderError } from '../model/folder.ts';
import { readModelSpec, type ModelSpec } from '../model/note/folder.ts';
import { writeFileAtomic } from '../storage/files.ts';
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
  /** The retraining run that promoted this version, when one did. */
  runId?: string;
  /** Set when a rollback made this version serve. */
  rollback?: boolean;
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
  /** The retraining run that made the change, when one did (so a process can tell its own runs' promotions). */
  runId?: string;
  /** The change is a rollback. */
  rollback?: boolean;
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

/**
 * The loader's checks (loadModelFolder) without making tensors, so the bot's main process need not
 * start a TensorFlow backend to vet a folder: the spec (readModelSpec), then weights.bin's size
 * against the manifest and every value finite, with the loader's messages. Throws ModelFolderError.
 */
export async function checkModelFolder(dir: string): Promise<ModelSpec> {
  const spec = await readModelSpec(dir);
  const binPath = join(dir, 'weights.bin');
  if (!existsSync(binPath)) throw new ModelFolderError(dir, 'weights.bin is missing');
  const buf = await readFile(binPath);
  const expectedFloats = spec.weights.reduce((s, w) => s + w.shape.reduce((p, d) => p * d, 1), 0);
  if (buf.byteLength !== expectedFloats * 4) throw new ModelFolderError(dir, `weights.bin holds ${buf.byteLength} bytes, the spec needs ${expectedFloats * 4}`);
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  let offset = 0;
  for (const w of spec.weights) {
    const size = w.shape.reduce((p, d) => p * d, 1);
    for (let i = offset; i < offset + size; i++) if (!Number.isFinite(all[i])) throw new ModelFolderError(dir, `weight ${w.name} holds a non-finite value`);
    offset += size;
  }
  return spec;
}

/** Why a model folder cannot serve, or undefined when it passes the loader's checks. */
export async function modelFolderProblem(dir: string): Promise<string | undefined> {
  try {
    await checkModelFolder(dir);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

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
      const version = await registry.installShipped(initialModelDir, log);
      if (!existsSync(registry.pointerPath)) await registry.writePointer(version, 'initial version', undefined);
    }
    const pointer = await registry.readPointer();
    const problem = await modelFolderProblem(registry.dirOf(pointer.version));
    if (problem) {
      // Recover with the shipped model rather than stay stuck on a folder that cannot load.
      let version: string;
      try {
        version = await registry.installShipped(initialModelDir, log);
      } catch (e) {
        throw new RegistryError(`the serving model ${pointer.version} does not load (${problem}), and the shipped model cannot replace it: ${(e as Error).message}`);
      }
      if (version !== pointer.version) {
        await registry.writePointer(version, `recovered at start: ${pointer.version} does not load`, pointer, pointer.stack.filter((v) => v !== pointer.version));
      }
      log(`model registry: the serving model ${pointer.version} does not load (${problem}); serving the shipped model ${version} from ${initialModelDir} instead`);
    }
    await registry.followShipped(initialModelDir, log);
    registry.servingVersion = (await registry.readPointer()).version;
    await checkModelFolder(registry.dirOf(registry.servingVersion));
    return registry;
  }

  /**
   * A newer shipped model (an update of the project, NOCTURNE_MODEL_DIR naming another version)
   * serves in place of the shipped model it replaces, which stays on the stack (/rollback returns
   * to it). A community model that passed the gate keeps serving: the log says the shipped one is
   * there to roll forward to by hand. A shipped model that does not load changes nothing.
   */
  private async followShipped(initialModelDir: string, log: (line: string) => void): Promise<void> {
    const pointer = await this.readPointer();
    const shipped = await readModelSpec(initialModelDir).catch(() => undefined);
    if (!shipped || shipped.version === pointer.version || pointer.history.some((e) => e.version === shipped.version)) return;
    if ((await this.versionRecord(pointer.version)).verdict !== 'initial') {
      log(`model registry: the shipped model is now ${shipped.version}; the registry keeps serving ${pointer.version}, which passed the gate`);
      return;
    }
    let version: string;
    try {
      version = await this.installShipped(initialModelDir, log);
    } catch (e) {
      log(`model registry: the shipped model ${shipped.version} is not taken: ${(e as Error).message}`);
      return;
    }
    await this.writePointer(version, `the shipped model was updated from ${pointer.version}`, pointer);
    log(`model registry: serving the updated shipped model ${version} (was ${pointer.version}; /rollback returns to it)`);
  }

  /**
   * Makes sure the registry holds a loadable copy of the shipped model and returns its version.
   * Refuses a shipped model that fails the loader's checks (nothing is copied). A broken copy under
   * the same name is set aside first.
   */
  private async installShipped(initialModelDir: string, log: (line: string) => void): Promise<string> {
    let spec: ModelSpec;
    try {
      spec = await checkModelFolder(initialModelDir);
    } catch (e) {
      throw new RegistryError(`the shipped model (NOCTURNE_MODEL_DIR) cannot serve: ${(e as Error).message}`);
    }
    const dir = this.dirOf(spec.version);
    if (existsSync(dir)) {
      const problem = await modelFolderProblem(dir);
      if (!problem) return spec.version;
      const aside = join(this.root, `.broken-${spec.version}-${Date.now()}`);
      await rename(dir, aside).catch(() => undefined);
      log(`model registry: ${spec.version} in the registry does not load (${problem}); set aside as ${aside}`);
    }
    const staging = this.stagingDir(`initial-${process.pid}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    for (const f of VERSION_FILES) if (existsSync(join(initialModelDir, f))) await copyFile(join(initialModelDir, f), join(staging, f));
    const record: VersionRecord = { version: spec.version, verdict: 'initial', reason: `the shipped model from ${initialModelDir}`, createdAt: new Date().toISOString() };
    try {
      await this.publish(staging, record);
      log(`model registry: ${spec.version} (from ${initialModelDir}) copied into the registry`);
    } catch (e) {
      // Another process published it first: theirs is the same model.
      await rm(staging, { recursive: true, force: true });
      if (!existsSync(dir) || (await modelFolderProblem(dir))) throw e;
    }
    return spec.version;
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
    await checkModelFolder(stagingDir);
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

  private async writePointer(version: string, reason: string, previous: ServingPointer | undefined, stack?: string[], about: Pick<ServingEntry, 'runId' | 'rollback'> = {}): Promise<ServingPointer> {
    const since = new Date().toISOString();
    const entry: ServingEntry = { version, since, reason, ...about };
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

  /** Makes `version` the serving one (after checking it loads) and emits 'serving'; `runId`: the retraining run promoting it. */
  async promote(version: string, reason: string, runId?: string): Promise<ServingChange> {
    const name = await this.resolve(version);
    await checkModelFolder(this.dirOf(name));
    const previous = await this.readPointer();
    if (previous.version === name) throw new RegistryError(`${name} is already serving`);
    await this.writePointer(name, reason, previous, undefined, runId ? { runId } : {});
    return this.changed(previous.version, name, reason, runId ? { runId } : {});
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
    await checkModelFolder(this.dirOf(target));
    const reason = `rollback from ${previous.version} by ${by}`;
    await this.writePointer(target, reason, previous, stack, { rollback: true });
    return this.changed(previous.version, target, reason, { rollback: true });
  }

  /** Re-reads the pointer (another process may have changed it); emits 'serving' if it moved. */
  async refresh(): Promise<ServingChange | undefined> {
    const pointer = await this.readPointer();
    if (pointer.version === this.servingVersion) return undefined;
    return this.changed(this.servingVersion, pointer.version, pointer.reason, { ...(pointer.runId ? { runId: pointer.runId } : {}), ...(pointer.rollback ? { rollback: true } : {}) });
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

  private changed(from: string | undefined, to: string, reason: string, about: Pick<ServingChange, 'runId' | 'rollback'> = {}): ServingChange {
    this.servingVersion = to;
    const change: ServingChange = { from, to, dir: this.dirOf(to), reason, ...about };
    this.emit('serving', change);
    return change;
  }
}
