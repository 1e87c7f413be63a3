/**
 * A seed model folder: `model.json` (arch "seed-lstm": token scheme, vocabulary, window,
 * composers, data hash, training budget, metrics, attribution, weight manifest) next to
 * `weights.bin` (float32, manifest order). The loader refuses a folder that does not match
 * this code.
 */
import { join } from 'node:path';
import { manifestProblems, readSpecFile, readWeightsFile, writeFileAtomic, writeWeightsFile, type ComposerEntry } from '../folder.ts';
import type { Weights } from '../network.ts';
import { seedWeightShapes, type SeedHyperparameters } from './network.ts';
import { UNKNOWN_EVENT, seedTokenSpec } from './tokens.ts';

export const SEED_MODEL_FORMAT = 'nocturne-seed-model';
export const SEED_MODEL_FORMAT_VERSION = 1;
export const SEED_ARCH = 'seed-lstm';

/** How much training the model got: the baseline's numbers only mean something beside it. */
export interface SeedBudget {
  /** Wall-clock limit on the training loop (minutes), if one was set. */
  maxMinutes: number | null;
  /** Distance in events between the targets of successive windows (1 = every window). */
  stride: number;
  /** Windows per epoch at that stride, and windows (= targets) actually trained on. */
  windowsPerEpoch: number;
  windowsTrained: number;
  /** windowsTrained / windowsPerEpoch. */
  epochs: number;
  /** Optimizer steps and seconds spent in them. */
  steps: number;
  trainSeconds: number;
  stoppedBy: 'time limit' | 'epochs';
}

export interface SeedModelSpec {
  format: typeof SEED_MODEL_FORMAT;
  formatVersion: number;
  version: string;
  arch: typeof SEED_ARCH;
  tokens: ReturnType<typeof seedTokenSpec>;
  vocabulary: string[];
  window: number;
  hyperparameters: SeedHyperparameters;
  composers: ComposerEntry[];
  data: { hash: string; source: string; pieces: number; events: number; validationPieces: string[]; attribution: string };
  budget: SeedBudget;
  training: Record<string, unknown>;
  metrics: Record<string, number>;
  weights: { name: string; shape: number[] }[];
}

/** True when a parsed model.json describes a seed model (the evaluator dispatches on this). */
export function isSeedModelSpec(spec: unknown): boolean {
  const s = spec as { format?: unknown; arch?: unknown } | null;
  return typeof s === 'object' && s !== null && (s.format === SEED_MODEL_FORMAT || s.arch === SEED_ARCH);
}

/** Everything in a spec that this code cannot honour (empty when it loads). */
export function seedSpecProblems(spec: SeedModelSpec): string[] {
  if (spec.format !== SEED_MODEL_FORMAT) return [`format is ${JSON.stringify(spec.format)}, expected ${SEED_MODEL_FORMAT}`];
  const problems: string[] = [];
  if (spec.formatVersion !== SEED_MODEL_FORMAT_VERSION) problems.push(`format version ${spec.formatVersion}, this code reads ${SEED_MODEL_FORMAT_VERSION}`);
  if (spec.arch !== SEED_ARCH) problems.push(`architecture ${JSON.stringify(spec.arch)} is not ${SEED_ARCH}`);
  const expectedTokens = JSON.stringify(seedTokenSpec());
  if (JSON.stringify(spec.tokens) !== expectedTokens) problems.push(`token scheme ${JSON.stringify(spec.tokens)} differs from ${expectedTokens}`);
  const h = spec.hyperparameters;
  if (!h || typeof h !== 'object') return [...problems, 'no hyperparameters'];
  if (!Array.isArray(spec.vocabulary) || spec.vocabulary[0] !== UNKNOWN_EVENT) problems.push(`vocabulary must be a list starting with ${UNKNOWN_EVENT}`);
  else if (spec.vocabulary.length !== h.vocabulary) problems.push(`vocabulary has ${spec.vocabulary.length} events, the network ${h.vocabulary}`);
  else if (new Set(spec.vocabulary).size !== spec.vocabulary.length) problems.push('vocabulary has duplicate events');
  if (spec.window !== h.window) problems.push(`window ${spec.window} differs from the network's ${h.window}`);
  if (!Array.isArray(spec.composers)) problems.push('no composer list');
  if (problems.length) return problems;
  return manifestProblems(seedWeightShapes(h), spec.weights);
}

/** Saves weights first, then the spec that points at them. */
export async function saveSeedModel(dir: string, spec: Omit<SeedModelSpec, 'weights' | 'format' | 'formatVersion' | 'arch'>, weights: Weights): Promise<SeedModelSpec> {
  const names = Object.keys(seedWeightShapes(spec.hyperparameters));
  const full: SeedModelSpec = {
    format: SEED_MODEL_FORMAT,
    formatVersion: SEED_MODEL_FORMAT_VERSION,
    arch: SEED_ARCH,
    ...spec,
    weights: names.map((n) => ({ name: n, shape: weights[n].shape })),
  };
  const problems = seedSpecProblems(full);
  if (problems.length) throw new Error(`seed model: refusing to save an inconsistent spec: ${problems.join('; ')}`);
  await writeWeightsFile(dir, names, weights);
  await writeFileAtomic(join(dir, 'model.json'), JSON.stringify(full, null, 2) + '\n');
  return full;
}

export async function readSeedSpec(dir: string): Promise<SeedModelSpec> {
  return readSpecFile(dir, 'train one with `nocturne train --arch seed`', seedSpecProblems);
}

/** Loads a seed model into fresh variables. The caller disposes them. */
export async function loadSeedModel(dir: string, trainable = false): Promise<{ spec: SeedModelSpec; weights: Weights }> {
  const spec = await readSeedSpec(dir);
  return { spec, weights: await readWeightsFile(dir, spec.weights, trainable, 'seed/') };
}
