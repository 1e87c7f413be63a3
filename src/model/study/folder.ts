/**
 * A study model folder: `model.json` (arch "seed-lstm": token scheme, vocabulary, window,
 * composers, data hash, training budget, metrics, attribution, weight manifest) next to
 * `weights.bin` (float32, manifest order). The loader refuses a folder that does not match
 * this code.
 */
import { join } from 'node:path';
import { manifestProblems, readSpecFile, readWeightsFile, writeWeightsFile, type ComposerEntry } from '../folder.ts';
import { writeFileAtomic } from '../../storage/files.ts';
import type { Weights } from '../layers.ts';
import { studyWeightShapes, type StudyHyperparameters } from './network.ts';
import { UNKNOWN_EVENT, studyTokenSpec } from './tokens.ts';

// The strings written into model.json keep the architecture's first name ("seed"): they identify
// the file format, so folders trained before the rename (models/study among them) still load.
export const STUDY_MODEL_FORMAT = 'nocturne-seed-model';
export const STUDY_MODEL_FORMAT_VERSION = 1;
export const STUDY_ARCH = 'seed-lstm';

/** How much training the model got: the baseline's numbers only mean something beside it. */
export interface StudyBudget {
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

export interface StudyModelSpec {
  format: typeof STUDY_MODEL_FORMAT;
  formatVersion: number;
  version: string;
  arch: typeof STUDY_ARCH;
  tokens: ReturnType<typeof studyTokenSpec>;
  vocabulary: string[];
  window: number;
  hyperparameters: StudyHyperparameters;
  composers: ComposerEntry[];
  data: { hash: string; source: string; pieces: number; events: number; validationPieces: string[]; attribution: string };
  budget: StudyBudget;
  training: Record<string, unknown>;
  metrics: Record<string, number>;
  weights: { name: string; shape: number[] }[];
}

/** True when a parsed model.json describes a study model (the evaluator dispatches on this). */
export function isStudyModelSpec(spec: unknown): boolean {
  const s = spec as { format?: unknown; arch?: unknown } | null;
  return typeof s === 'object' && s !== null && (s.format === STUDY_MODEL_FORMAT || s.arch === STUDY_ARCH);
}

/** Everything in a spec that this code cannot honour (empty when it loads). */
export function studySpecProblems(spec: StudyModelSpec): string[] {
  if (spec.format !== STUDY_MODEL_FORMAT) return [`format is ${JSON.stringify(spec.format)}, expected ${STUDY_MODEL_FORMAT}`];
  const problems: string[] = [];
  if (spec.formatVersion !== STUDY_MODEL_FORMAT_VERSION) problems.push(`format version ${spec.formatVersion}, this code reads ${STUDY_MODEL_FORMAT_VERSION}`);
  if (spec.arch !== STUDY_ARCH) problems.push(`architecture ${JSON.stringify(spec.arch)} is not ${STUDY_ARCH}`);
  const expectedTokens = JSON.stringify(studyTokenSpec());
  if (JSON.stringify(spec.tokens) !== expectedTokens) problems.push(`token scheme ${JSON.stringify(spec.tokens)} differs from ${expectedTokens}`);
  const h = spec.hyperparameters;
  if (!h || typeof h !== 'object') return [...problems, 'no hyperparameters'];
  if (!Array.isArray(spec.vocabulary) || spec.vocabulary[0] !== UNKNOWN_EVENT) problems.push(`vocabulary must be a list starting with ${UNKNOWN_EVENT}`);
  else if (spec.vocabulary.length !== h.vocabulary) problems.push(`vocabulary has ${spec.vocabulary.length} events, the network ${h.vocabulary}`);
  else if (new Set(spec.vocabulary).size !== spec.vocabulary.length) problems.push('vocabulary has duplicate events');
  if (spec.window !== h.window) problems.push(`window ${spec.window} differs from the network's ${h.window}`);
  if (!Array.isArray(spec.composers)) problems.push('no composer list');
  if (problems.length) return problems;
  return manifestProblems(studyWeightShapes(h), spec.weights);
}

/** Saves weights first, then the spec that points at them. */
export async function saveStudyModel(dir: string, spec: Omit<StudyModelSpec, 'weights' | 'format' | 'formatVersion' | 'arch'>, weights: Weights): Promise<StudyModelSpec> {
  const names = Object.keys(studyWeightShapes(spec.hyperparameters));
  const full: StudyModelSpec = {
    format: STUDY_MODEL_FORMAT,
    formatVersion: STUDY_MODEL_FORMAT_VERSION,
    arch: STUDY_ARCH,
    ...spec,
    weights: names.map((n) => ({ name: n, shape: weights[n].shape })),
  };
  const problems = studySpecProblems(full);
  if (problems.length) throw new Error(`study model: refusing to save an inconsistent spec: ${problems.join('; ')}`);
  await writeWeightsFile(dir, names, weights);
  await writeFileAtomic(join(dir, 'model.json'), JSON.stringify(full, null, 2) + '\n');
  return full;
}

export async function readStudySpec(dir: string): Promise<StudyModelSpec> {
  return readSpecFile(dir, 'train one with `nocturne train --arch study`', studySpecProblems);
}

/** Loads a study model into fresh variables. The caller disposes them. */
export async function loadStudyModel(dir: string, trainable = false): Promise<{ spec: StudyModelSpec; weights: Weights }> {
  const spec = await readStudySpec(dir);
  return { spec, weights: await readWeightsFile(dir, spec.weights, trainable, 'study/') };
}
