/**
 * What every model folder shares, whichever model it holds: `model.json` (the spec) next to
 * `weights.bin` (float32 values in the order of the spec's weight manifest), written through
 * temporary names; the spec's version name, training machine and the training data's
 * attribution. Each model's spec and loader are its own: note/folder.ts and study/folder.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../storage/files.ts';
import { uniqueVariableName, type Weights } from './layers.ts';

/** A model version's name: `<name>-YYYYMMDD-HHMM` (UTC), e.g. default-20261125-1040. */
export function versionName(name: string, now = new Date()): string {
  return `${name}-${now.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-')}`;
}

/** The machine a model was trained on, as its spec records it ("2 × AMD EPYC …"). */
export function trainingMachine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`;
}

/** The training data's attribution that training writes into a new model.json (`data.attribution`). */
export const DATA_ATTRIBUTION =
  'Trained on piano MIDI files by Bernd Krueger, http://www.piano-midi.de, licensed CC BY-SA 3.0 DE (https://creativecommons.org/licenses/by-sa/3.0/de/). These weights are a derived work under the same licence.';

/**
 * The attribution of a loaded model: what its folder's model.json carries (`data.attribution`),
 * so a model trained on other data credits that data; DATA_ATTRIBUTION for a folder without one.
 */
export function modelAttribution(spec: { data?: { attribution?: unknown } }): string {
  const carried = spec.data?.attribution;
  return typeof carried === 'string' && carried.trim() !== '' ? carried : DATA_ATTRIBUTION;
}

export interface ComposerEntry {
  name: string;
  /** Pieces of this composer in the training data. */
  pieces: number;
  /** Median tempo of those pieces, used to time generated music. */
  tempoBpm: number;
}

export class ModelFolderError extends Error {
  constructor(dir: string, reason: string) {
    super(`model folder ${dir}: ${reason}`);
    this.name = 'ModelFolderError';
  }
}

/** Writes `weights.bin`: the named weights' float32 values, in that order (creates the folder). */
export async function writeWeightsFile(dir: string, names: readonly string[], weights: Weights): Promise<void> {
  await mkdir(dir, { recursive: true });
  const parts: Float32Array[] = [];
  for (const n of names) parts.push((await weights[n].data()) as Float32Array);
  const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    all.set(p, offset);
    offset += p.length;
  }
  await writeFileAtomic(join(dir, 'weights.bin'), new Uint8Array(all.buffer));
}

/** Reads `weights.bin` into fresh variables, checked against the manifest. The caller disposes them. */
export async function readWeightsFile(dir: string, manifest: readonly { name: string; shape: number[] }[], trainable: boolean, namePrefix = ''): Promise<Weights> {
  const binPath = join(dir, 'weights.bin');
  if (!existsSync(binPath)) throw new ModelFolderError(dir, 'weights.bin is missing');
  const buf = await readFile(binPath);
  const expectedFloats = manifest.reduce((s, w) => s + w.shape.reduce((p, d) => p * d, 1), 0);
  if (buf.byteLength !== expectedFloats * 4) throw new ModelFolderError(dir, `weights.bin holds ${buf.byteLength} bytes, the spec needs ${expectedFloats * 4}`);
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const weights: Weights = {};
  let offset = 0;
  for (const w of manifest) {
    const size = w.shape.reduce((p, d) => p * d, 1);
    const values = all.subarray(offset, offset + size);
    offset += size;
    for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) throw new ModelFolderError(dir, `weight ${w.name} holds a non-finite value`);
    const initial = tf.tensor(values, w.shape);
    weights[w.name] = tf.variable(initial, trainable, uniqueVariableName(`${namePrefix}${w.name}`));
    initial.dispose();
  }
  return weights;
}

/** Differences between the weight manifest a spec lists and the shapes the code expects. */
export function manifestProblems(expected: Record<string, number[]>, listed: readonly { name: string; shape: number[] }[] | undefined): string[] {
  const problems: string[] = [];
  const got = new Map((listed ?? []).map((w) => [w.name, w.shape]));
  for (const [name, shape] of Object.entries(expected)) {
    const have = got.get(name);
    if (!have) problems.push(`weight ${name} missing`);
    else if (have.join('x') !== shape.join('x')) problems.push(`weight ${name} is ${have.join('x')}, expected ${shape.join('x')}`);
  }
  for (const name of got.keys()) if (!(name in expected)) problems.push(`unexpected weight ${name}`);
  return problems;
}

/** Reads and parses `model.json`, refusing it with every problem `check` finds. */
export async function readSpecFile<T>(dir: string, missingHint: string, check: (spec: T) => string[]): Promise<T> {
  const path = join(dir, 'model.json');
  if (!existsSync(path)) throw new ModelFolderError(dir, `no model.json (${missingHint})`);
  let spec: T;
  try {
    spec = JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    throw new ModelFolderError(dir, `model.json is not valid JSON (${(e as Error).message})`);
  }
  const problems = check(spec);
  if (problems.length) throw new ModelFolderError(dir, `does not match this code: ${problems.join('; ')}`);
  return spec;
}
