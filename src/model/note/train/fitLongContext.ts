/**
 * The long-context model's epoch and evaluation: whole pieces streamed chunk by chunk
 * (stream.ts), the LSTM state and attention memory carried between chunks without gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { advanceMemory, chunkLoss, disposeMemory, emptyMemory, memoryMaskFor, type ChunkBatch, type ChunkCarry } from '../longContext.ts';
import type { Hyperparameters } from '../network.ts';
import type { Weights } from '../../layers.ts';
import type { Random } from '../../random.ts';
import { segmentKeys } from '../../../tokens/key.ts';
import type { TokenPiece } from './batches.ts';
import { disposeChunk, modelStreamOptions, PieceStream, planRows, streamSteps, type StreamPiece } from './stream.ts';

/** Pieces with their key labels (computed once; a key-conditioned model trains on them). */
export function withKeyLabels<T extends TokenPiece>(pieces: readonly T[]): (T & StreamPiece)[] {
  return pieces.map((p) => ((p as StreamPiece).keys ? (p as T & StreamPiece) : { ...p, keys: segmentKeys(p.tokens) }));
}

export interface StreamEpochOptions {
  batchSize: number;
  composerIndex: Map<string, number>;
  composers: number;
  transpose: number;
  composerDropout: number;
  keyDropout: number;
  /** Probability that a note is read back displaced (stream.ts inputNoise). */
  inputNoise: number;
  rng: Random;
  /** One optimiser step on a loss; returns its value (fit.ts's clipped Adam). */
  step: (loss: () => tf.Scalar) => number;
  progress: (done: number, total: number, meanLoss: number, tokens: number) => void;
}

/**
 * Plays a stream chunk by chunk: `use` gets each chunk and its loss function (the carried memory,
 * its mask and the reset flags wired in) and must call that function once; the memory then moves
 * on to the chunk's slots and the chunk's tensors are freed.
 */
function forEachChunk(weights: Weights, h: Hyperparameters, stream: PieceStream, dropout: number, use: (batch: ChunkBatch, chunkLossOf: () => ReturnType<typeof chunkLoss>) => void): void {
  let memory = emptyMemory(h, stream.rows);
  try {
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      const { batch } = chunk;
      const mask = memoryMaskFor(chunk.memory, h.memory ?? 0);
      const keep = tf.tensor2d(chunk.keep, [batch.batch, 1]);
      let carried: ChunkCarry | undefined;
      try {
        use(batch, () => chunkLoss(weights, h, batch, memory, mask, keep, dropout, (c) => (carried = c)));
        if (!carried) throw new Error('forEachChunk: the chunk\'s loss was not computed');
        memory = advanceMemory(h, memory, carried);
      } finally {
        tf.dispose([mask, keep]);
        disposeChunk(batch);
      }
    }
  } finally {
    disposeMemory(memory);
  }
}

/** One pass over every training piece; returns the mean loss per real note and the notes seen. */
export function streamEpoch(weights: Weights, h: Hyperparameters, pieces: readonly StreamPiece[], o: StreamEpochOptions): { loss: number; tokens: number; steps: number } {
  const queues = planRows(pieces, o.batchSize, o.rng);
  const total = streamSteps(pieces, queues, h.window);
  const stream = new PieceStream(pieces, queues, { ...modelStreamOptions(h), composerIndex: o.composerIndex, composers: o.composers, transpose: o.transpose, composerDropout: o.composerDropout, keyDropout: o.keyDropout, inputNoise: o.inputNoise, rng: o.rng });
  let lossSum = 0;
  let tokens = 0;
  let steps = 0;
  forEachChunk(weights, h, stream, h.dropout ?? 0, (batch, chunkLossOf) => {
    const scale = (batch.batch * batch.steps) / Math.max(1, batch.realTargets);
    const loss = o.step(() => tf.mul(chunkLossOf().total, scale) as tf.Scalar);
    lossSum += loss * batch.realTargets;
    tokens += batch.realTargets;
    steps++;
    o.progress(steps, total, lossSum / Math.max(1, tokens), tokens);
  });
  return { loss: lossSum / Math.max(1, tokens), tokens, steps };
}

/**
 * Mean NLL per note (sum over heads) over whole pieces, each read from its first note on.
 * A key-conditioned model reads each segment's estimated key, which is estimated with 64 notes
 * of context either side and so tells the model a little about the notes to come; `anyKey`
 * reads "any key" instead, as a request without a key does (the figure comparable with a model
 * that has no key input).
 */
export function evaluateStream(weights: Weights, h: Hyperparameters, pieces: readonly TokenPiece[], composerIndex: Map<string, number>, composers: number, batchSize: number, anyKey = false): { loss: number; perHead: number[]; notes: number } {
  const labelled = h.keys && !anyKey ? withKeyLabels(pieces) : pieces.map((p) => ({ composer: p.composer, tokens: p.tokens }));
  const queues = planRows(labelled, Math.min(batchSize, Math.max(1, labelled.length)));
  const stream = new PieceStream(labelled, queues, { ...modelStreamOptions(h), composerIndex, composers });
  const perHead = [0, 0, 0, 0];
  let notes = 0;
  forEachChunk(weights, h, stream, 0, (batch, chunkLossOf) => {
    const values = tf.tidy(() => tf.stack(chunkLossOf().perHead).dataSync());
    const rows = batch.batch * batch.steps; // the loss averages over every row, padding included
    for (let k = 0; k < 4; k++) perHead[k] += values[k] * rows;
    notes += batch.realTargets;
  });
  const total = perHead.reduce((s, v) => s + v, 0);
  return { loss: total / Math.max(1, notes), perHead: perHead.map((v) => v / Math.max(1, notes)), notes };
}
