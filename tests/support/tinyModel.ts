/**
 * A small untrained model folder for tests that need the real load → sample → render path
 * without the time or size of the shipped model. Same code, same spec checks.
 */
import * as tf from '@tensorflow/tfjs';
import { inputWidth } from '../../src/model/note/features.ts';
import { DATA_ATTRIBUTION } from '../../src/model/folder.ts';
import { archOf, saveModelFolder, type ModelSpec } from '../../src/model/note/folder.ts';
import { createLongContextWeights, isLongContext } from '../../src/model/note/longContext.ts';
import { createWeights, type Hyperparameters } from '../../src/model/note/network.ts';
import { tokenSchemeSpec } from '../../src/tokens/tokenize.ts';

export const TINY_HYPERPARAMETERS: Hyperparameters = { hidden: 16, layers: 1, attentionDim: 8, attentionWindow: 8, headDim: 16, window: 32 };

/** A long-context model of the same size: 2 heads of 4, 24 notes of memory, a key input. */
export const TINY_LONG_CONTEXT_HYPERPARAMETERS: Hyperparameters = { hidden: 16, layers: 1, attentionDim: 8, attentionWindow: 0, headDim: 16, window: 16, memory: 24, heads: 2, relativeBuckets: 8, keys: true, dropout: 0, keyPitch: true };

export async function createTinyModel(dir: string, composers = ['Chopin', 'Mozart'], seed = 3, hyperparameters = TINY_HYPERPARAMETERS): Promise<ModelSpec> {
  const width = inputWidth(composers.length);
  const weights = isLongContext(hyperparameters) ? createLongContextWeights(hyperparameters, width, seed) : createWeights(hyperparameters, width, seed);
  try {
    return await saveModelFolder(
      dir,
      {
        version: `tiny-${seed}`,
        arch: archOf(hyperparameters),
        tokens: tokenSchemeSpec(),
        inputWidth: width,
        hyperparameters,
        composers: composers.map((name, i) => ({ name, pieces: 10 + i, tempoBpm: 90 + 10 * i })),
        data: { hash: 'test', source: 'tests', pieces: 0, notes: 0, validationPieces: [], attribution: DATA_ATTRIBUTION },
        training: { startedAt: '2026-01-01T00:00:00Z' },
        metrics: { valNll: 10 },
      },
      weights,
    );
  } finally {
    tf.dispose(Object.values(weights));
  }
}
