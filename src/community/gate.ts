/**
 * The promotion gate: a candidate replaces the serving model only if it is measurably no worse.
 *   1. NLL per note on a fixed validation set (whole pieces, never trained on by either model):
 *      candidate ≤ serving + tolerance.
 *   2. Its generated outputs pass the drift check a contribution must pass: the similarity of a
 *      pool of generated pieces to the training corpus is at least the threshold. While the
 *      serving model is itself below the threshold (an early model), it is enough not to fall
 *      more than the tolerance below the serving model: min(threshold, serving − tolerance).
 *      A drop that stays above the threshold passes; both numbers are in the reason.
 * scoreModel measures one model (tensors loaded, used and disposed here); gateDecision is pure.
 */
import * as tf from '@tensorflow/tfjs';
import { DEFAULT_TEMPERATURE, DEFAULT_TOP_P } from '../engine/engine.ts';
import { loadModelFolder } from '../model/note/folder.ts';
import { generateTokens } from '../model/note/sampling.ts';
import type { TokenPiece } from '../model/note/train/batches.ts';
import { evaluatePieces } from '../model/note/train/fit.ts';
import { histogramsOf, similarityTo, type Histograms, type Similarity } from './distributions.ts';

export interface ModelScores {
  version: string;
  /** Mean NLL per note (nats, sum of the four heads) on the validation set. */
  nll: number;
  validationPieces: number;
  validationNotes: number;
  /** Similarity of the model's generated pool to the training corpus. */
  outputSimilarity: number;
  outputDrift: Similarity['perQuantity'];
}

export interface GateSettings {
  nllTolerance: number;
  driftThreshold: number;
  driftTolerance: number;
}

export interface GateDecision {
  promote: boolean;
  /** One line: why it was promoted or not. */
  reason: string;
  nllPassed: boolean;
  driftPassed: boolean;
  /** The output similarity the candidate needed. */
  requiredSimilarity: number;
}

export interface SampleSettings {
  samples: number;
  sampleNotes: number;
}

/** Pieces the gate generates per model: "any" composer, fixed seeds, the engine's defaults. */
export function gateSamples(composerCount: number, s: SampleSettings) {
  return Array.from({ length: s.samples }, (_, i) => ({ composer: composerCount, notes: s.sampleNotes, temperature: DEFAULT_TEMPERATURE, topP: DEFAULT_TOP_P, randomSeed: 1000 + i }));
}

/** Loads the model in `dir`, scores it and disposes its tensors. */
export async function scoreModel(dir: string, validation: readonly TokenPiece[], reference: Histograms, samples: SampleSettings, batchSize = 32): Promise<ModelScores> {
  if (validation.length === 0) throw new Error('promotion gate: the validation set is empty');
  const { spec, weights } = await loadModelFolder(dir);
  try {
    const composerIndex = new Map(spec.composers.map((c, i) => [c.name, i]));
    const evaluation = evaluatePieces(weights, spec.hyperparameters, validation, composerIndex, spec.composers.length, batchSize);
    if (!Number.isFinite(evaluation.loss)) throw new Error(`promotion gate: model ${spec.version} gives a non-finite validation NLL`);
    const generated = generateTokens(weights, spec.hyperparameters, spec.composers.length, gateSamples(spec.composers.length, samples));
    const similarity = similarityTo(reference, histogramsOf(generated));
    return { version: spec.version, nll: evaluation.loss, validationPieces: validation.length, validationNotes: evaluation.notes, outputSimilarity: similarity.overall, outputDrift: similarity.perQuantity };
  } finally {
    tf.dispose(Object.values(weights));
  }
}

export function gateDecision(serving: ModelScores, candidate: ModelScores, s: GateSettings): GateDecision {
  const nllLimit = serving.nll + s.nllTolerance;
  const nllPassed = candidate.nll <= nllLimit;
  const requiredSimilarity = Math.max(0, Math.min(s.driftThreshold, serving.outputSimilarity - s.driftTolerance));
  const driftPassed = candidate.outputSimilarity >= requiredSimilarity;
  const nllText = `validation NLL ${candidate.nll.toFixed(4)} vs serving ${serving.nll.toFixed(4)} (+${s.nllTolerance} tolerance) on ${candidate.validationPieces} pieces`;
  const driftText = `generated outputs' similarity to the corpus ${candidate.outputSimilarity.toFixed(3)} (needed ${requiredSimilarity.toFixed(3)}; serving ${serving.outputSimilarity.toFixed(3)})`;
  const failures: string[] = [];
  if (!nllPassed) failures.push(`worse NLL: ${nllText}`);
  if (!driftPassed) failures.push(`outputs drift: ${driftText}`);
  return {
    promote: nllPassed && driftPassed,
    reason: failures.length ? `failed the gate: ${failures.join('; ')}` : `passed the gate: ${nllText}; ${driftText}`,
    nllPassed,
    driftPassed,
    requiredSimilarity,
  };
}
