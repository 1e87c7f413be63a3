/**
 * Training: Adam with global-norm gradient clipping, many-to-many chunks, validation on whole
 * held-out pieces, early stopping on validation loss, a checkpoint after every epoch (weights,
 * optimizer moments and the loop state) so that `--resume` continues where a run stopped.
 * The best epoch's weights are the model folder; the curve PNG is written beside them.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { plotTrainingCurve } from '../../../render/curve.ts';
import { tokenSchemeSpec } from '../../../tokens/tokenize.ts';
import { currentBackend } from '../../backend.ts';
import { inputWidth } from '../features.ts';
import { DATA_ATTRIBUTION, trainingMachine, versionName } from '../../folder.ts';
import { writeFileAtomic } from '../../../storage/files.ts';
import { archOf, loadModelFolder, readModelSpec, saveModelFolder, type ModelSpec } from '../folder.ts';
import { createLongContextWeights, isLongContext } from '../longContext.ts';
import { createWeights, sequenceLoss, type Hyperparameters } from '../network.ts';
import type { Weights } from '../../layers.ts';
import { seededRandom, shuffleInPlace } from '../../random.ts';
import { clippedGroupStep, formatSeconds, type ParameterGroup, type TrainingRunOptions } from '../../training.ts';
import { buildBatch, chunkPieces, disposeBatch, type TokenPiece } from './batches.ts';
import { evaluateStream, streamEpoch, withKeyLabels, type UnlikelihoodRecord } from './fitLongContext.ts';
import type { UnlikelihoodOptions } from './unlikelihood.ts';

/** maxMinutes is checked after each epoch here (the epoch in progress is finished first). */
export interface TrainOptions extends TrainingRunOptions {
  hyperparameters: Hyperparameters;
  patience: number;
  transpose: number;
  composerDropout: number;
  resume: boolean;
  /**
   * Start from these weights (fine-tuning) instead of a fresh initialisation. A long-context
   * model may start from a local-attention folder: every weight whose name and shape match.
   */
  initialWeights?: string;
  /** Long-context models with keys: probability that a chunk's key label is "any key". */
  keyDropout?: number;
  /** Long-context models: probability that a note is read back with a displaced pitch (noisy teacher forcing). */
  inputNoise?: number;
  /** Long-context models: extra weight of the notes of figures brought back from afar in the likelihood loss (StreamEpochOptions.returnWeight). */
  returnWeight?: number;
  /** Decoding to record in the spec (a fine-tuned model keeps its parent's). */
  decoding?: ModelSpec['decoding'];
  /**
   * With `initialWeights`: the learning rate of the weights taken from that model (the rest, such
   * as a grown layer, train at `learningRate`), so that a trained model is not shaken out of its
   * minimum while what is new learns. Both are halved together. Default: `learningRate`.
   */
  inheritedLearningRate?: number;
  /** Residual long-context models: the value every layer gate starts at (default 0, see createLongContextWeights). */
  gateInit?: number;
  /** Long-context models: unlikelihood rounds on the model's own samples against copy loops (unlikelihood.ts); absent: none. */
  unlikelihood?: UnlikelihoodOptions;
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  valPerHead: number[];
  tokensPerSecond: number;
  seconds: number;
  learningRate: number;
  /** Runs with unlikelihood rounds: what the model wrote during the epoch, and the loss on its loops. */
  selfSamples?: { rounds: number; pieces: number; meanLongestLoop: number; markedShare: number; unlikelihood: number; returnShare?: number; returnNll?: number; loopsCarriedOn?: number; hazard?: number; timing?: number; nearShare?: number; kept?: { pieces: number; returnShare: number; markedShare: number; nearShare: number; score?: number; candidateScore?: number } };
}

interface LoopState {
  epoch: number;
  history: EpochRecord[];
  bestValLoss: number;
  bestEpoch: number;
  badEpochs: number;
  learningRate: number;
  rngState: number;
  startedAt: string;
  trainSeconds: number;
  dataHash: string;
  /** Weights taken from the starting model that train at their own rate (inheritedLearningRate): their names and that rate over the rest's. */
  inherited?: { names: string[]; rateRatio: number };
  /** The version of the model whose weights the run started from (--init-from). */
  initFrom?: string;
}

const CHECKPOINT = 'checkpoint';

/** The pieces validation NLL is measured on: the held-out ones, or the first 4 training pieces of a corpus too small to hold any out. */
export function measuredPieces<T>(validation: readonly T[], train: readonly T[]): readonly T[] {
  return validation.length ? validation : train.slice(0, 4);
}

/**
 * Mean NLL per note (sum over heads) over whole pieces, without augmentation: 128-note chunks
 * from a fresh state for the local-attention model, each piece streamed from its first note
 * for the long-context model (what each model's sampler does). `anyKey`: a key-conditioned
 * model reads "any key" instead of each segment's estimated key (see evaluateStream).
 */
export function evaluatePieces(weights: Weights, h: Hyperparameters, pieces: readonly TokenPiece[], composerIndex: Map<string, number>, composers: number, batchSize: number, anyKey = false): { loss: number; perHead: number[]; notes: number } {
  if (isLongContext(h)) return evaluateStream(weights, h, pieces, composerIndex, composers, batchSize, anyKey);
  const chunks = chunkPieces(pieces, h.window);
  let total = 0;
  const perHead = [0, 0, 0, 0];
  let notes = 0;
  for (let i = 0; i < chunks.length; i += batchSize) {
    const batch = buildBatch(pieces, chunks.slice(i, i + batchSize), { window: h.window, composerIndex, composers });
    const values = tf.tidy(() => {
      const { perHead: ph } = sequenceLoss(weights, h, batch);
      return tf.stack(ph).dataSync();
    });
    // sequenceLoss averages over all T*B rows, padding included: rescale to real targets.
    const rows = batch.batch * batch.steps;
    for (let k = 0; k < 4; k++) {
      const sum = values[k] * rows;
      perHead[k] += sum;
      total += sum;
    }
    notes += batch.realTargets;
    disposeBatch(batch);
  }
  return { loss: total / notes, perHead: perHead.map((v) => v / notes), notes };
}

export async function trainModel(o: TrainOptions): Promise<ModelSpec> {
  const h = o.hyperparameters;
  const composerIndex = new Map(o.composers.map((c, i) => [c.name, i]));
  const D = inputWidth(o.composers.length);
  const checkpointDir = join(o.outDir, CHECKPOINT);
  await mkdir(o.outDir, { recursive: true });

  const { weights, state } = await startingPoint(o, D, checkpointDir);
  const names = Object.keys(weights);
  const groups = parameterGroups(names, state);
  for (const [i, g] of groups.entries()) {
    const bin = optimizerFile(checkpointDir, i);
    if (o.resume && existsSync(bin) && state.epoch > 0) await restoreOptimizer(g.optimizer, bin);
  }
  if (state.inherited) o.log(`${state.inherited.names.length} weights from the starting model train at ${(state.learningRate * state.inherited.rateRatio).toExponential(2)}, the other ${names.length - state.inherited.names.length} at ${state.learningRate.toExponential(2)}`);

  const rng = seededRandom(state.rngState);
  const pass: EpochPass = { o, weights, groups, composerIndex, rng, train: isLongContext(h) && h.keys ? withKeyLabels(o.train) : o.train };
  const validationPieces = measuredPieces(o.validation, o.train);
  const deadline = o.maxMinutes ? Date.now() + o.maxMinutes * 60_000 : Infinity;
  // A resumed run already has its best epoch in the model folder: an epoch that does not beat it
  // must not overwrite those weights.
  let spec = state.epoch > 0 ? await readSpec(o.outDir) : undefined;
  while (state.epoch < o.epochs) {
    const epoch = state.epoch + 1;
    const started = performance.now();
    const trained = trainOneEpoch(pass, epoch, started);
    const seconds = (performance.now() - started) / 1000;
    const val = evaluatePieces(weights, h, validationPieces, composerIndex, o.composers.length, o.batchSize);
    const record: EpochRecord = { epoch, trainLoss: trained.loss, valLoss: val.loss, valPerHead: val.perHead, tokensPerSecond: Math.round(trained.tokens / seconds), seconds: Math.round(seconds), learningRate: state.learningRate };
    if (trained.unlikelihood) record.selfSamples = selfSampleSummary(trained.unlikelihood, Boolean(o.unlikelihood?.returnBonus), Boolean(o.unlikelihood?.hazard), Boolean(o.unlikelihood?.timingPull));
    o.progress(`epoch ${epoch}/${o.epochs} done: train ${record.trainLoss.toFixed(4)} val ${val.loss.toFixed(4)} ${record.tokensPerSecond} tok/s ${formatSeconds(seconds)}`, true);
    if (record.selfSamples) {
      const s = record.selfSamples;
      o.log(`  own samples: ${s.pieces} pieces in ${s.rounds} rounds, longest loop ${s.meanLongestLoop.toFixed(1)} notes per 250 (real pieces about 15.6), ${(100 * s.markedShare).toFixed(1)} % of notes past the loop limit, unlikelihood ${s.unlikelihood.toFixed(3)}, ${(100 * (s.returnShare ?? 0)).toFixed(1)} % of notes lie in an 8-note figure brought back from afar (real pieces about 35 %)${s.nearShare !== undefined ? ` and ${(100 * s.nearShare).toFixed(1)} % in one repeated within 16 notes (real about 10 %)` : ''}${s.returnNll !== undefined ? `, their NLL ${s.returnNll.toFixed(3)}` : ''}, ${(100 * (s.loopsCarriedOn ?? 0)).toFixed(0)} % of notes with a loop of 4+ behind carry it on${s.hazard !== undefined ? `, loop hazard ${s.hazard.toFixed(4)}` : ''}${s.timing !== undefined ? `, timing pull ${s.timing.toFixed(4)}` : ''}${s.kept ? `; the ${s.kept.pieces} kept for own-best steps: ${(100 * s.kept.returnShare).toFixed(1)} % in returns, ${(100 * s.kept.nearShare).toFixed(1)} % in near repeats, ${(100 * s.kept.markedShare).toFixed(1)} % past the loop limit${s.kept.score !== undefined ? `, own-best score ${s.kept.score.toFixed(3)} (all candidates ${(s.kept.candidateScore ?? 0).toFixed(3)})` : ''}` : ''}`);
    }
    const improved = recordEpoch(state, record, seconds, groups, o);
    state.rngState = rng.state();
    const metrics = epochMetrics(state, record, improved, spec);
    // Checkpoint: this epoch's weights, the optimizer, then the state that names them.
    await saveModelFolder(checkpointDir, modelSpecFor(o, D, state, metrics), weights);
    for (const [i, g] of groups.entries()) await saveOptimizer(g.optimizer, optimizerFile(checkpointDir, i), g.names);
    await writeFileAtomic(join(checkpointDir, 'state.json'), JSON.stringify(state, null, 2));
    spec = await saveBestModel(o, D, state, metrics, weights, improved ? undefined : spec);
    await writeFileAtomic(join(o.outDir, 'history.json'), JSON.stringify(state.history, null, 2));
    await plotTrainingCurve(state.history, join(o.outDir, 'training-curve.png'), { title: `${o.name}: loss per note (nats), sum of 4 heads` });
    const stop = stopReason(state, o, deadline);
    if (stop) {
      o.log(stop);
      break;
    }
  }
  tf.dispose(Object.values(weights));
  for (const g of groups) g.optimizer.dispose();
  const result = spec ?? (await readSpec(o.outDir));
  if (!result) throw new Error(`${o.outDir}: no model was written (no epoch ran)`);
  return result;
}

/** An epoch's unlikelihood rounds as its record keeps them. */
function selfSampleSummary(r: UnlikelihoodRecord, bonus: boolean, hazard: boolean, timing: boolean): NonNullable<EpochRecord['selfSamples']> {
  return {
    rounds: r.rounds,
    pieces: r.pieces,
    meanLongestLoop: r.longestLoopSum / Math.max(1, r.pieces),
    markedShare: r.marked / Math.max(1, r.notes),
    unlikelihood: r.loss,
    returnShare: r.returned / Math.max(1, r.notes),
    ...(bonus ? { returnNll: r.returnNll } : {}),
    loopsCarriedOn: r.loopCarried / Math.max(1, r.loopBehind),
    nearShare: r.near / Math.max(1, r.notes),
    ...(hazard ? { hazard: r.hazard } : {}),
    ...(timing ? { timing: r.timing } : {}),
    ...(r.kept > 0 ? { kept: { pieces: r.kept, returnShare: r.keptReturned / Math.max(1, r.keptNotes), markedShare: r.keptMarked / Math.max(1, r.keptNotes), nearShare: r.keptNear / Math.max(1, r.keptNotes), score: r.keptScoreSum / r.kept, candidateScore: r.scoreSum / Math.max(1, r.pieces) } } : {}),
  };
}

/** The checkpoint's optimizer file of parameter group `i` (0: the main one). */
function optimizerFile(checkpointDir: string, i: number): string {
  return join(checkpointDir, i === 0 ? 'optimizer.bin' : `optimizer-${i}.bin`);
}

/**
 * One Adam optimizer for all weights, or, when the run keeps inherited weights at their own rate,
 * one for the rest and one for those (names in manifest order in each: Adam matches its moments
 * to variables by position).
 */
function parameterGroups(names: string[], state: LoopState): ParameterGroup[] {
  if (!state.inherited) return [{ optimizer: tf.train.adam(state.learningRate), names }];
  const inherited = new Set(state.inherited.names);
  const rates = { rest: state.learningRate, inherited: state.learningRate * state.inherited.rateRatio };
  // A start that left nothing new (every weight taken) has one group, at the inherited rate.
  return (['rest', 'inherited'] as const)
    .map((group) => ({ group, names: names.filter((n) => inherited.has(n) === (group === 'inherited')) }))
    .filter((g) => g.names.length > 0)
    .map((g) => ({ optimizer: tf.train.adam(rates[g.group]), names: g.names }));
}

/** The spec of the model folder a run has written so far, if it has one. */
async function readSpec(dir: string): Promise<ModelSpec | undefined> {
  return existsSync(join(dir, 'model.json')) ? readModelSpec(dir) : undefined;
}

/** Where a run starts: the checkpoint's weights and loop state (--resume), or new or given weights at epoch 0. */
async function startingPoint(o: TrainOptions, D: number, checkpointDir: string): Promise<{ weights: Weights; state: LoopState }> {
  const h = o.hyperparameters;
  if (o.resume && existsSync(join(checkpointDir, 'state.json'))) {
    const state = JSON.parse(await readFile(join(checkpointDir, 'state.json'), 'utf8')) as LoopState;
    if (state.dataHash !== o.dataHash) throw new Error(`--resume: the checkpoint was trained on data ${state.dataHash}, this data is ${o.dataHash}; use the same --data/--composers or drop --resume`);
    const loaded = await loadModelFolder(checkpointDir, true);
    o.log(`resuming after epoch ${state.epoch} (best validation loss ${state.bestValLoss.toFixed(4)} at epoch ${state.bestEpoch})`);
    return { weights: loaded.weights, state };
  }
  if (o.resume) o.log('--resume: no checkpoint found, starting fresh');
  const state: LoopState = { epoch: 0, history: [], bestValLoss: Infinity, bestEpoch: 0, badEpochs: 0, learningRate: o.learningRate, rngState: o.seed, startedAt: new Date().toISOString(), trainSeconds: 0, dataHash: o.dataHash };
  if (!isLongContext(h)) {
    const from = o.initialWeights ? await loadModelFolder(o.initialWeights, true) : undefined;
    const weights = from ? from.weights : createWeights(h, D, o.seed);
    if (from) {
      state.inherited = inheritedGroup(o, Object.keys(weights));
      state.initFrom = from.spec.version;
    }
    return { weights, state };
  }
  const from = o.initialWeights ? await loadModelFolder(o.initialWeights, false) : undefined;
  const weights = createLongContextWeights(h, D, o.seed, from && { weights: from.weights, hyperparameters: from.spec.hyperparameters }, o.gateInit);
  if (from) {
    o.log(`starting from ${o.initialWeights} (${from.spec.version})`);
    state.initFrom = from.spec.version;
    // Taken whole from the starting model: the same name and shape.
    state.inherited = inheritedGroup(o, Object.keys(weights).filter((n) => from.weights[n]?.shape.join('x') === weights[n].shape.join('x')));
    tf.dispose(Object.values(from.weights));
  }
  return { weights, state };
}

/** The inherited weights' group, when the run gives them a learning rate of their own. */
function inheritedGroup(o: TrainOptions, names: string[]): LoopState['inherited'] {
  if (o.inheritedLearningRate === undefined || o.inheritedLearningRate === o.learningRate || names.length === 0) return undefined;
  return { names, rateRatio: o.inheritedLearningRate / o.learningRate };
}

/** What every epoch of one run shares. */
interface EpochPass {
  o: TrainOptions;
  weights: Weights;
  groups: ParameterGroup[];
  composerIndex: Map<string, number>;
  rng: ReturnType<typeof seededRandom>;
  /** The training pieces as the model reads them (with key labels for a key-conditioned long-context model). */
  train: readonly TokenPiece[];
}

/**
 * One pass over the training data with progress lines: whole pieces streamed in order for the
 * long-context model, shuffled window chunks for the local-attention model. Returns the mean
 * training loss per note and the notes seen.
 */
function trainOneEpoch(p: EpochPass, epoch: number, started: number): { loss: number; tokens: number; unlikelihood?: UnlikelihoodRecord } {
  const { o, weights, groups, composerIndex, rng } = p;
  const h = o.hyperparameters;
  const progress = (done: number, total: number, meanLoss: number, seen: number, extra?: string) => {
    const elapsed = (performance.now() - started) / 1000;
    const line = progressLine(epoch, o.epochs, done, total, meanLoss, seen / elapsed, (elapsed / done) * (total - done));
    o.progress(extra ? `${line} (${extra})` : line, false);
  };
  if (isLongContext(h)) {
    const r = streamEpoch(weights, h, p.train, {
      batchSize: o.batchSize,
      composerIndex,
      composers: o.composers.length,
      transpose: o.transpose,
      composerDropout: o.composerDropout,
      keyDropout: o.keyDropout ?? 0,
      inputNoise: o.inputNoise ?? 0,
      rng,
      step: (loss) => clippedGroupStep(groups, weights, loss, o.clipNorm),
      progress,
      unlikelihood: o.unlikelihood && { ...o.unlikelihood, decoding: o.decoding },
      returnWeight: o.returnWeight,
    });
    return { loss: r.loss, tokens: r.tokens, unlikelihood: r.unlikelihood };
  }
  const chunks = shuffleInPlace(chunkPieces(p.train, h.window, rng), rng);
  const batches = Math.ceil(chunks.length / o.batchSize);
  let lossSum = 0;
  let tokens = 0;
  for (let i = 0; i < batches; i++) {
    const batch = buildBatch(p.train, chunks.slice(i * o.batchSize, (i + 1) * o.batchSize), {
      window: h.window,
      composerIndex,
      composers: o.composers.length,
      transpose: o.transpose,
      composerDropout: o.composerDropout,
      rng,
    });
    lossSum += trainStep(groups, weights, h, batch, o.clipNorm);
    tokens += batch.realTargets;
    disposeBatch(batch);
    progress(i + 1, batches, lossSum / (i + 1), tokens);
  }
  return { loss: lossSum / batches, tokens };
}

/**
 * Adds the epoch to the loop state; returns whether validation improved. Without improvement
 * the learning rate is halved (the optimizer's too) and the patience count goes up.
 */
function recordEpoch(state: LoopState, record: EpochRecord, seconds: number, groups: readonly ParameterGroup[], o: TrainOptions): boolean {
  state.history.push(record);
  state.trainSeconds += seconds;
  state.epoch = record.epoch;
  if (record.valLoss < state.bestValLoss - 1e-4) {
    state.bestValLoss = record.valLoss;
    state.bestEpoch = record.epoch;
    state.badEpochs = 0;
    return true;
  }
  state.badEpochs++;
  state.learningRate /= 2;
  for (const g of groups) (g.optimizer as unknown as { learningRate: number }).learningRate /= 2;
  o.log(`validation loss did not improve (${state.badEpochs}/${o.patience}); learning rate halved to ${state.learningRate.toExponential(2)}`);
  return false;
}

/** The spec's metrics after an epoch: the best epoch's validation figures, this epoch's training loss. */
function epochMetrics(state: LoopState, record: EpochRecord, improved: boolean, previous: ModelSpec | undefined): Record<string, number> {
  const head = (k: number, name: string) => (improved ? record.valPerHead[k] : (previous?.metrics[name] ?? record.valPerHead[k]));
  return {
    valNll: state.bestValLoss,
    valNllDt: head(0, 'valNllDt'),
    valNllPitch: head(1, 'valNllPitch'),
    valNllDur: head(2, 'valNllDur'),
    valNllVel: head(3, 'valNllVel'),
    trainNll: record.trainLoss,
    epochs: record.epoch,
    bestEpoch: state.bestEpoch,
    tokensPerSecond: record.tokensPerSecond,
  };
}

/**
 * The model folder keeps the best epoch's weights: an improved (or first) epoch writes them with
 * its spec; otherwise only the spec's training record and the epoch count are refreshed.
 */
async function saveBestModel(o: TrainOptions, D: number, state: LoopState, metrics: Record<string, number>, weights: Weights, kept: ModelSpec | undefined): Promise<ModelSpec> {
  if (!kept) return saveModelFolder(o.outDir, modelSpecFor(o, D, state, metrics), weights);
  // `kept` is what the folder's model.json holds: the last spec written, or read when resuming.
  const spec = { ...kept, training: modelSpecFor(o, D, state, metrics).training, metrics: { ...kept.metrics, epochs: metrics.epochs, trainNll: metrics.trainNll } };
  await writeFileAtomic(join(o.outDir, 'model.json'), JSON.stringify(spec, null, 2) + '\n');
  return spec;
}

/** Why the loop stops after this epoch (patience spent, time limit reached), or undefined to go on. */
function stopReason(state: LoopState, o: TrainOptions, deadline: number): string | undefined {
  if (state.badEpochs >= o.patience) return `early stopping: no improvement for ${o.patience} epochs; best epoch ${state.bestEpoch}`;
  if (Date.now() > deadline) return `time limit of ${o.maxMinutes} min reached after epoch ${state.epoch}; --resume continues`;
  return undefined;
}

/** The model folder's spec (all but the weight manifest) for the run so far. */
function modelSpecFor(o: TrainOptions, D: number, state: LoopState, metrics: Record<string, number>): Omit<ModelSpec, 'weights' | 'format' | 'formatVersion'> {
  const h = o.hyperparameters;
  return {
    version: versionName(o.name),
    arch: archOf(h),
    tokens: tokenSchemeSpec(),
    inputWidth: D,
    hyperparameters: h,
    composers: o.composers,
    data: {
      hash: o.dataHash,
      source: o.dataSource,
      pieces: o.train.length + o.validation.length,
      notes: [...o.train, ...o.validation].reduce((s, p) => s + p.tokens.length, 0),
      validationPieces: o.validation.map((p) => p.name),
      attribution: DATA_ATTRIBUTION,
    },
    training: {
      epochs: state.epoch,
      bestEpoch: state.bestEpoch,
      batchSize: o.batchSize,
      learningRate: o.learningRate,
      ...(state.inherited ? { inheritedLearningRate: o.learningRate * state.inherited.rateRatio } : {}),
      clipNorm: o.clipNorm,
      transpose: o.transpose,
      composerDropout: o.composerDropout,
      ...(isLongContext(h) ? { keyDropout: o.keyDropout ?? 0, inputNoise: o.inputNoise ?? 0 } : {}),
      ...(o.unlikelihood ? { unlikelihood: o.unlikelihood } : {}),
      ...(o.returnWeight ? { returnWeight: o.returnWeight } : {}),
      ...(o.gateInit ? { gateInit: o.gateInit } : {}),
      seed: o.seed,
      backend: currentBackend() ?? 'unknown',
      machine: trainingMachine(),
      startedAt: state.startedAt,
      trainSeconds: Math.round(state.trainSeconds),
      history: state.history,
      ...(state.initFrom ? { initFrom: state.initFrom } : {}),
    },
    metrics,
    ...(o.decoding ? { decoding: o.decoding } : {}),
  };
}

function progressLine(epoch: number, epochs: number, i: number, n: number, loss: number, rate: number, eta: number): string {
  const width = 24;
  const filled = Math.round((i / n) * width);
  return `epoch ${epoch}/${epochs} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${i}/${n} loss ${loss.toFixed(4)} ${Math.round(rate)} tok/s ETA ${formatSeconds(eta)}`;
}

/** One training step of the LSTM-attention model; returns the batch loss per real note. */
export function trainStep(groups: readonly ParameterGroup[], weights: Weights, h: Hyperparameters, batch: ReturnType<typeof buildBatch>, clipNorm: number): number {
  // Padding rows have zero targets; scale the mean so it is per real note.
  const scale = (batch.batch * batch.steps) / Math.max(1, batch.realTargets);
  return clippedGroupStep(groups, weights, () => tf.mul(sequenceLoss(weights, h, batch).total, scale) as tf.Scalar, clipNorm);
}

async function saveOptimizer(optimizer: tf.AdamOptimizer, path: string, names: string[]): Promise<void> {
  const named = await optimizer.getWeights();
  const header = named.map((n) => ({ name: n.name, shape: n.tensor.shape }));
  const datas = await Promise.all(named.map((n) => n.tensor.data() as Promise<Float32Array>));
  const total = datas.reduce((s, d) => s + d.length, 0);
  const all = new Float32Array(total);
  let off = 0;
  for (const d of datas) {
    all.set(d, off);
    off += d.length;
  }
  const json = Buffer.from(JSON.stringify({ names, header }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  await writeFileAtomic(path, Buffer.concat([len, json, Buffer.from(all.buffer)]));
}

async function restoreOptimizer(optimizer: tf.AdamOptimizer, path: string): Promise<void> {
  const buf = await readFile(path);
  const n = buf.readUInt32LE(0);
  const { header } = JSON.parse(buf.subarray(4, 4 + n).toString()) as { header: { name: string; shape: number[] }[] };
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + 4 + n, buf.byteOffset + buf.byteLength));
  // tfjs's Adam matches moments to variables by position (the order of the gradient map),
  // which is the weight manifest's order in every process, so names need no mapping.
  let off = 0;
  const values: { name: string; tensor: tf.Tensor }[] = header.map((h) => {
    const size = h.shape.reduce((p, d) => p * d, 1);
    const tensor = tf.tensor(data.subarray(off, off + size), h.shape);
    off += size;
    return { name: h.name, tensor };
  });
  await optimizer.setWeights(values);
  tf.dispose(values.map((v) => v.tensor));
}
