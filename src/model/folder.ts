/**
 * A model folder: `model.json` (the spec: token scheme, window, composers, data hash,
 * hyperparameters, metrics, attribution and the weight manifest) next to `weights.bin`.
 * The loader refuses any folder whose spec does not match this code.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { tokenSchemeSpec } from '../tokens/tokenize.ts';
import { inputWidth } from './features.ts';
import { isLongContext, longContextShapes } from './longContext.ts';
import { uniqueVariableName, weightShapes, type Hyperparameters, type Weights } from './network.ts';

export const MODEL_FORMAT = 'nocturne-model';
export const MODEL_FORMAT_VERSION = 1;
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

export interface ModelSpec {
  format: typeof MODEL_FORMAT;
  formatVersion: number;
  /** e.g. "default-20261125-1012". */
  version: string;
  /** lstm-attention: local attention over the chunk; lstm-long-context: src/model/longContext.ts. */
  arch: ModelArch;
  tokens: ReturnType<typeof tokenSchemeSpec>;
  inputWidth: number;
  hyperparameters: Hyperparameters;
  composers: ComposerEntry[];
  data: { hash: string; source: string; pieces: number; notes: number; validationPieces: string[]; attribution: string };
  training: Record<string, unknown>;
  metrics: Record<string, number>;
  /**
   * The decoding this model plays best at, chosen by the realism measures (`nocturne evaluate
   * --temperature --top-p --head-decoding`); the engine uses it when a request sets neither
   * temperature nor top-p. Absent: temperature 1, top-p 0.95 for every head.
   */
  decoding?: ModelDecoding;
  weights: { name: string; shape: number[] }[];
}

export interface ModelDecoding {
  temperature: number;
  topP: number;
  heads?: Partial<Record<'dt' | 'pitch' | 'dur' | 'vel', { temperature: number; topP: number }>>;
  /** Key guidance for models with a key table (SampleRequest.keyGuidance); it applies to every request. */
  keyGuidance?: number;
  /** Composer guidance (SampleRequest.composerGuidance); it applies to every request. */
  composerGuidance?: number;
  /** How it was chosen (a line for the model card). */
  chosenBy?: string;
}

export type ModelArch = 'lstm-attention' | 'lstm-long-context';

/** The architecture a set of hyperparameters describes. */
export function archOf(h: Hyperparameters): ModelArch {
  return isLongContext(h) ? 'lstm-long-context' : 'lstm-attention';
}

/** Weight names and shapes of either note-model architecture. */
export function modelWeightShapes(h: Hyperparameters, inputDim: number): Record<string, number[]> {
  return isLongContext(h) ? longContextShapes(h, inputDim) : weightShapes(h, inputDim);
}

export class ModelFolderError extends Error {
  constructor(dir: string, reason: string) {
    super(`model folder ${dir}: ${reason}`);
    this.name = 'ModelFolderError';
  }
}

/** Writes a file through a temporary name so a crash never leaves a half-written one. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export function attributionText(spec: Pick<ModelSpec, 'version' | 'data'>): string {
  return `# ${spec.version}\n\n${modelAttribution(spec)}\n\nTraining data: ${spec.data.pieces} pieces (${spec.data.notes} notes) from ${spec.data.source}, data hash ${spec.data.hash}.\n`;
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

/** Saves spec + weights (weights first, then the spec that points at them). */
export async function saveModelFolder(dir: string, spec: Omit<ModelSpec, 'weights' | 'format' | 'formatVersion'>, weights: Weights): Promise<ModelSpec> {
  const names = Object.keys(modelWeightShapes(spec.hyperparameters, spec.inputWidth));
  const full: ModelSpec = { format: MODEL_FORMAT, formatVersion: MODEL_FORMAT_VERSION, ...spec, weights: names.map((n) => ({ name: n, shape: weights[n].shape })) };
  await writeWeightsFile(dir, names, weights);
  await writeFileAtomic(join(dir, 'model.json'), JSON.stringify(full, null, 2) + '\n');
  await writeFileAtomic(join(dir, 'ATTRIBUTION.md'), attributionText(full));
  return full;
}

export async function readModelSpec(dir: string): Promise<ModelSpec> {
  return readSpecFile(dir, 'train one with `nocturne train`, or point --model at models/default', specProblems);
}

/** Everything in a spec that this code cannot honour (empty when it loads). */
export function specProblems(spec: ModelSpec): string[] {
  const problems: string[] = [];
  if (spec.format !== MODEL_FORMAT) return [`format is ${JSON.stringify(spec.format)}, expected ${MODEL_FORMAT}`];
  if (spec.formatVersion !== MODEL_FORMAT_VERSION) problems.push(`format version ${spec.formatVersion}, this code reads ${MODEL_FORMAT_VERSION}`);
  if (spec.arch !== 'lstm-attention' && spec.arch !== 'lstm-long-context') problems.push(`architecture ${spec.arch} is neither lstm-attention nor lstm-long-context`);
  else if (spec.hyperparameters && spec.arch !== archOf(spec.hyperparameters)) problems.push(`architecture ${spec.arch} does not fit its hyperparameters (they describe ${archOf(spec.hyperparameters)})`);
  const expectedTokens = JSON.stringify(tokenSchemeSpec());
  if (JSON.stringify(spec.tokens) !== expectedTokens) problems.push(`token scheme ${JSON.stringify(spec.tokens)} differs from ${expectedTokens}`);
  if (!Array.isArray(spec.composers) || spec.composers.length === 0) problems.push('no composers');
  else if (spec.inputWidth !== inputWidth(spec.composers.length)) problems.push(`input width ${spec.inputWidth} does not fit ${spec.composers.length} composers (expected ${inputWidth(spec.composers.length)})`);
  if (problems.length) return problems;
  return manifestProblems(modelWeightShapes(spec.hyperparameters, spec.inputWidth), spec.weights);
}

/** Loads a folder into fresh variables. The caller disposes them. */
export async function loadModelFolder(dir: string, trainable = false): Promise<{ spec: ModelSpec; weights: Weights }> {
  const spec = await readModelSpec(dir);
  return { spec, weights: await readWeightsFile(dir, spec.weights, trainable) };
}
