/**
 * The long-context model's epoch and evaluation: whole pieces streamed chunk by chunk
 * (stream.ts), the LSTM state and attention memory carried between chunks without gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { advanceMemory, chunkLoss, chunkUnlikelihood, disposeMemory, emptyMemory, memoryMaskFor, type ChunkBatch, type ChunkCarry, type ChunkMemory } from '../longContext.ts';
import type { ModelDecoding } from '../folder.ts';
import type { Hyperparameters, LoopHazardShares } from '../network.ts';
import { HEAD_NAMES, type HeadName } from '../sampling.ts';
import type { Weights } from '../../layers.ts';
import type { Random } from '../../random.ts';
import { segmentKeys } from '../../../tokens/key.ts';
import { distantReturns, hazardBandCount, loopHazardProfile } from '../../../tokens/loops.ts';
import { timingMarginals, type TimingMarginals } from '../../../tokens/timing.ts';
import type { TokenPiece } from './batches.ts';
import { disposeChunk, modelStreamOptions, PieceStream, planRows, streamSteps, type StreamPiece } from './stream.ts';
import type { RealismCritic } from '../../../eval/realism.ts';
import { composerHazardShares, fitOwnBestCritic, hazardShares, sampleMarkedPieces, type SelfSampleStats, type UnlikelihoodOptions } from './unlikelihood.ts';

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
  /** `extra`: a few words for the progress line (the unlikelihood rounds' running figures). */
  progress: (done: number, total: number, meanLoss: number, tokens: number, extra?: string) => void;
  /** Unlikelihood rounds on the model's own samples between likelihood steps (unlikelihood.ts); absent: none. */
  unlikelihood?: UnlikelihoodOptions & { decoding?: ModelDecoding };
  /**
   * Return weighting: each note of a real piece that lies in a figure brought back from afar
   * (distantReturns: 8 notes, from further than a loop) counts 1 + returnWeight times in the
   * likelihood loss; absent or 0: every note once.
   */
  returnWeight?: number;
}

/** What an epoch's unlikelihood rounds saw: the model's own pieces, their loops, the loss. */
export interface UnlikelihoodRecord extends SelfSampleStats {
  rounds: number;
  /** Mean unlikelihood per marked note. */
  loss: number;
  /** Mean NLL per return note (return bonus only; else 0). */
  returnNll: number;
  /** Mean loop hazard loss per chunk step (loop hazard only; else 0), and the steps. */
  hazard: number;
  hazardSteps: number;
  /** Mean timing pull per chunk step (timing pull only; else 0), and the steps. */
  timing: number;
  timingSteps: number;
}

/** What a chunk's forward pass reads besides the chunk: the carried memory, its mask, the reset flags, and where its own slots go. */
interface ChunkContext {
  memory: ChunkMemory;
  mask: tf.Tensor2D;
  keep: tf.Tensor2D;
  carry: (c: ChunkCarry) => void;
}

/**
 * Plays a stream chunk by chunk: `use` gets each chunk and its context (the carried memory, its
 * mask and the reset flags) and must run one forward pass with it (chunkLoss or
 * chunkUnlikelihood, handing on the context's carry); the memory then moves on to the chunk's
 * slots and the chunk's tensors are freed.
 */
function forEachChunk(h: Hyperparameters, stream: PieceStream, use: (batch: ChunkBatch, context: ChunkContext) => void): void {
  let memory = emptyMemory(h, stream.rows);
  try {
    for (let chunk = stream.next(); chunk; chunk = stream.next()) {
      const { batch } = chunk;
      const mask = memoryMaskFor(chunk.memory, h.memory ?? 0);
      const keep = tf.tensor2d(chunk.keep, [batch.batch, 1]);
      let carried: ChunkCarry | undefined;
      try {
        use(batch, { memory, mask, keep, carry: (c) => (carried = c) });
        if (!carried) throw new Error('forEachChunk: the chunk\'s forward pass was not run');
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

/**
 * One unlikelihood round: the model writes pieces, and each chunk of them takes one step on the
 * unlikelihood of its marked pitches (weighted by `u.weight`) plus, with a return bonus, the
 * NLL of its return pitches (weighted by `u.returnBonus`) plus, with a loop hazard, the pull of
 * its loop continuation toward `realHazard` (loopHazardLoss, weighted by `u.hazard`) plus, with a
 * timing pull, the pull of its gap and duration marginals toward `realTiming` (timingPull,
 * weighted by `u.timingPull`). Chunks with nothing to learn from still run forward, without a
 * step, to carry the memory to the next chunk. With an own-best step, the best piece of each
 * group then takes likelihood steps (weighted by `u.ownBest`).
 */
function unlikelihoodRound(weights: Weights, h: Hyperparameters, pool: readonly string[], o: StreamEpochOptions, u: NonNullable<StreamEpochOptions['unlikelihood']>, record: UnlikelihoodRecord, realHazard?: LoopHazardShares, realTiming?: TimingMarginals, critic?: RealismCritic): void {
  const { pieces, stats, best } = sampleMarkedPieces(weights, h, o.composerIndex, pool, u.decoding, u, o.rng, critic);
  record.rounds++;
  for (const k of Object.keys(stats) as (keyof SelfSampleStats)[]) record[k] += stats[k];
  markedSteps(weights, h, pieces, stats, o, u, record, realHazard, realTiming);
  if (u.ownBest && best.length > 0) ownBestSteps(weights, h, best, o, u.ownBest, u.ownBestHeads);
}

/** The unlikelihood, return bonus, loop hazard and timing pull steps of a round, on its marked pieces; none when the round has nothing for them. */
function markedSteps(weights: Weights, h: Hyperparameters, pieces: readonly StreamPiece[], stats: SelfSampleStats, o: StreamEpochOptions, u: NonNullable<StreamEpochOptions['unlikelihood']>, record: UnlikelihoodRecord, realHazard?: LoopHazardShares, realTiming?: TimingMarginals): void {
  const bonus = u.returnBonus ?? 0;
  const hazardWeight = realHazard ? (u.hazard ?? 0) : 0;
  const timingWeight = realTiming ? (u.timingPull ?? 0) : 0;
  if ((!u.weight || stats.marked === 0) && (!bonus || stats.returned === 0) && !hazardWeight && !timingWeight) return;
  const stream = new PieceStream(pieces, planRows(pieces, pieces.length), { ...modelStreamOptions(h), composerIndex: o.composerIndex, composers: o.composers, marks: true, hazard: hazardWeight > 0, hazardByComposer: hazardWeight > 0 && u.hazardByComposer, hazardBands: hazardBandCount(u.hazardReturns) });
  forEachChunk(h, stream, (batch, c) => {
    const forward = () => chunkUnlikelihood(weights, h, batch, c.memory, c.mask, c.keep, h.dropout ?? 0, c.carry, hazardWeight ? realHazard : undefined, timingWeight ? realTiming : undefined);
    const marked = u.weight ? (batch.markedTargets ?? 0) : 0;
    const returned = bonus ? (batch.returnTargets ?? 0) : 0;
    const loops = hazardWeight ? (batch.hazard?.rows ?? 0) : 0;
    if (!marked && !returned && !loops && !timingWeight) return void tf.tidy(() => void forward()); // the carry is kept, the rest freed
    const parts = [0, 0, 0, 0];
    o.step(() => {
      const { unlikelihood, returnNll, hazard, timing } = forward();
      parts[0] = unlikelihood.dataSync()[0];
      parts[1] = returnNll.dataSync()[0];
      parts[2] = hazard.dataSync()[0];
      parts[3] = timing.dataSync()[0];
      return tf.addN([tf.mul(unlikelihood, u.weight), tf.mul(returnNll, bonus), tf.mul(hazard, hazardWeight), tf.mul(timing, timingWeight)]) as tf.Scalar;
    });
    record.loss += parts[0] * marked;
    record.returnNll += parts[1] * returned;
    if (loops) {
      record.hazard += parts[2];
      record.hazardSteps++;
    }
    if (timingWeight) {
      record.timing += parts[3];
      record.timingSteps++;
    }
  });
}

/** The own-best step: the kept own pieces read as real ones are, a likelihood step of weight `weight` per chunk on `heads` (all where absent). */
function ownBestSteps(weights: Weights, h: Hyperparameters, best: readonly StreamPiece[], o: StreamEpochOptions, weight: number, heads?: readonly HeadName[]): void {
  const stream = new PieceStream(best, planRows(best, best.length), { ...modelStreamOptions(h), composerIndex: o.composerIndex, composers: o.composers });
  const taught = heads ? HEAD_NAMES.map((name) => heads.includes(name)) : undefined;
  forEachChunk(h, stream, (batch, c) => {
    const scale = (weight * batch.batch * batch.steps) / Math.max(1, batch.realTargets);
    o.step(() => {
      const { total, perHead } = chunkLoss(weights, h, batch, c.memory, c.mask, c.keep, h.dropout ?? 0, c.carry);
      return tf.mul(taught ? tf.addN(perHead.filter((_, k) => taught[k])) : total, scale) as tf.Scalar;
    });
  });
}

/**
 * One pass over every training piece; returns the mean loss per real note and the notes seen,
 * and with `o.unlikelihood` what its rounds saw (a round after every `every` steps).
 */
export function streamEpoch(weights: Weights, h: Hyperparameters, pieces: readonly StreamPiece[], o: StreamEpochOptions): { loss: number; tokens: number; steps: number; unlikelihood?: UnlikelihoodRecord } {
  const queues = planRows(pieces, o.batchSize, o.rng);
  const total = streamSteps(pieces, queues, h.window);
  const returnWeight = o.returnWeight ?? 0;
  const played = returnWeight > 0 ? pieces.map((p) => (p.returns ? p : { ...p, returns: distantReturns(p.tokens) })) : pieces;
  const stream = new PieceStream(played, queues, { ...modelStreamOptions(h), composerIndex: o.composerIndex, composers: o.composers, transpose: o.transpose, composerDropout: o.composerDropout, keyDropout: o.keyDropout, inputNoise: o.inputNoise, rng: o.rng, marks: returnWeight > 0 });
  const pool = pieces.map((p) => p.composer);
  const record: UnlikelihoodRecord | undefined = o.unlikelihood ? { rounds: 0, pieces: 0, notes: 0, marked: 0, returned: 0, longestLoopSum: 0, loopBehind: 0, loopCarried: 0, near: 0, kept: 0, keptNotes: 0, keptReturned: 0, keptMarked: 0, keptNear: 0, scoreSum: 0, keptScoreSum: 0, loss: 0, returnNll: 0, hazard: 0, hazardSteps: 0, timing: 0, timingSteps: 0 } : undefined;
  // The real pieces' loop hazard, which a loop hazard step pulls the model's own pieces toward.
  // With hazardByComposer, one share per composer and band, grouped as the own pieces' rows are;
  // with hazardReturns, the return bands follow the loop bands.
  const u = o.unlikelihood;
  const returns = { returns: u?.hazardReturns };
  const realHazard = u?.hazard ? (u.hazardByComposer ? composerHazardShares(pieces, o.composerIndex, o.composers, u.hazardHeads, undefined, { ...returns, joint: u.hazardJoint }) : hazardShares(loopHazardProfile(pieces.map((p) => p.tokens), returns), u.hazardHeads, { joint: u.hazardJoint })) : undefined;
  // The real pieces' timing marginals, which a timing pull draws the own pieces' gaps and durations toward.
  const realTiming = u?.timingPull ? timingMarginals(pieces.map((p) => p.tokens)) : undefined;
  // Own-best by realism: a critic fitted on the training pieces against the model's pieces as the epoch starts.
  const critic = u?.ownBest && u.ownBestBy === 'realism' ? fitOwnBestCritic(weights, h, o.composerIndex, pool, u.decoding, u, o.rng, pieces.map((p) => p.tokens)) : undefined;
  let lossSum = 0;
  let tokens = 0;
  let steps = 0;
  forEachChunk(h, stream, (batch, c) => {
    const scale = (batch.batch * batch.steps) / Math.max(1, batch.realTargets);
    const loss = o.step(() => tf.mul(chunkLoss(weights, h, batch, c.memory, c.mask, c.keep, h.dropout ?? 0, c.carry, returnWeight).total, scale) as tf.Scalar);
    lossSum += loss * batch.realTargets;
    tokens += batch.realTargets;
    steps++;
    // The stream's memory is kept across the round: the round streams its own pieces from an empty memory.
    if (record && o.unlikelihood && steps % o.unlikelihood.every === 0) unlikelihoodRound(weights, h, pool, o, o.unlikelihood, record, realHazard, realTiming, critic);
    o.progress(steps, total, lossSum / Math.max(1, tokens), tokens, record?.pieces ? `own loops ${(record.longestLoopSum / record.pieces).toFixed(1)}, ${((100 * record.marked) / Math.max(1, record.notes)).toFixed(1)} % marked, ${((100 * record.returned) / Math.max(1, record.notes)).toFixed(1)} % returns, ${((100 * record.near) / Math.max(1, record.notes)).toFixed(1)} % near${record.loopBehind ? `, loops carried on ${((100 * record.loopCarried) / record.loopBehind).toFixed(0)} % after 4+` : ''}${record.kept ? `, kept ${((100 * record.keptReturned) / Math.max(1, record.keptNotes)).toFixed(1)} % returns / ${((100 * record.keptNear) / Math.max(1, record.keptNotes)).toFixed(1)} % near${critic ? `, realism log-odds kept ${(record.keptScoreSum / record.kept).toFixed(2)} / all ${(record.scoreSum / Math.max(1, record.pieces)).toFixed(2)}` : ''}` : ''}` : undefined);
  });
  if (record) {
    record.loss /= Math.max(1, record.marked);
    record.returnNll = o.unlikelihood?.returnBonus ? record.returnNll / Math.max(1, record.returned) : 0;
    record.hazard /= Math.max(1, record.hazardSteps);
    record.timing /= Math.max(1, record.timingSteps);
  }
  return { loss: lossSum / Math.max(1, tokens), tokens, steps, ...(record ? { unlikelihood: record } : {}) };
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
  forEachChunk(h, stream, (batch, c) => {
    const values = tf.tidy(() => tf.stack(chunkLoss(weights, h, batch, c.memory, c.mask, c.keep, 0, c.carry).perHead).dataSync());
    const rows = batch.batch * batch.steps; // the loss averages over every row, padding included
    for (let k = 0; k < 4; k++) perHead[k] += values[k] * rows;
    notes += batch.realTargets;
  });
  const total = perHead.reduce((s, v) => s + v, 0);
  return { loss: total / Math.max(1, notes), perHead: perHead.map((v) => v / Math.max(1, notes)), notes };
}
