/**
 * The note model's folder: `model.json` (the spec: token scheme, window, composers, data hash,
 * hyperparameters, metrics, attribution and the weight manifest) next to `weights.bin`.
 * The loader refuses any folder whose spec does not match this code.
 */
import { join } from 'node:path';
import { tokenSchemeSpec } from '../../tokens/tokenize.ts';
import { manifestProblems, modelAttribution, readSpecFile, readWeightsFile, writeWeightsFile, type ComposerEntry } from '../folder.ts';
import { writeFileAtomic } from '../../storage/files.ts';
import type { Weights } from '../layers.ts';
import { inputWidth } from './features.ts';
import { isLongContext, longContextShapes } from './longContext.ts';
import { weightShapes, type Hyperparameters } from './network.ts';

export const MODEL_FORMAT = 'nocturne-model';
export const MODEL_FORMAT_VERSION = 1;

export interface ModelSpec {
  format: typeof MODEL_FORMAT;
  formatVersion: number;
  /** e.g. "default-20261125-1012". */
  version: string;
  /** lstm-attention: local attention over the chunk; lstm-long-context: src/model/note/longContext.ts. */
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

/**
 * The decoding a model trained from `parent` starts with: the parent's, its line for the model
 * card saying where it came from, until the realism section chooses one for the new weights.
 * Undefined when the parent plays the engine defaults.
 */
export function carriedDecoding(parent: Pick<ModelSpec, 'version' | 'decoding'>): ModelDecoding | undefined {
  if (!parent.decoding) return undefined;
  const origin = `carried from ${parent.version} by training that started from it; not yet chosen for these weights`;
  const { chosenBy } = parent.decoding;
  if (chosenBy?.startsWith('carried from ')) return { ...parent.decoding };
  return { ...parent.decoding, chosenBy: chosenBy ? `${origin} (there: ${chosenBy})` : origin };
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

export function attributionText(spec: Pick<ModelSpec, 'version' | 'data'>): string {
  return `# ${spec.version}\n\n${modelAttribution(spec)}\n\nTraining data: ${spec.data.pieces} pieces (${spec.data.notes} notes) from ${spec.data.source}, data hash ${spec.data.hash}.\n`;
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
