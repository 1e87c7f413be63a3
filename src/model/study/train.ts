/**
 * Trains the study's baseline: one target per window of `window` events (many-to-one), within a
 * fixed budget. Every window costs `window` LSTM steps for a single target, which is why the
 * study's approach is slow; the budget is a window stride (train on every stride-th target
 * per epoch, each epoch from a fresh random phase) and a wall-clock limit checked after every
 * batch. The budget actually spent is written into model.json beside the metrics.
 */
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { plotSeries } from '../../render/curve.ts';
import { clippedAdamStep, formatSeconds, type TrainingRunOptions } from '../training.ts';
import { currentBackend } from '../backend.ts';
import { DATA_ATTRIBUTION, trainingMachine, versionName } from '../folder.ts';
import { seededRandom, shuffleInPlace } from '../random.ts';
import { saveStudyModel, type StudyBudget, type StudyModelSpec } from './folder.ts';
import { buildStudyBatch, createStudyWeights, evenlySpread, studyLoss, studyWindows, type StudyHyperparameters } from './network.ts';
import { scoreStudyWindows } from './predict.ts';
import { buildVocabulary, encodeEvents, studyEvents, studyTokenSpec } from './tokens.ts';

/** maxMinutes is checked after every batch here. */
export interface StudyTrainOptions extends TrainingRunOptions {
  hyperparameters: Omit<StudyHyperparameters, 'vocabulary'>;
  /** Events seen fewer times in training become the unknown token. */
  minCount: number;
  stride: number;
  /** Validation windows scored at the end (evenly spread over the held-out pieces). */
  maxValidationWindows: number;
}

const SAVE_EVERY_SECONDS = 180;

export async function trainStudyModel(o: StudyTrainOptions): Promise<StudyModelSpec> {
  const trainEvents = o.train.map((p) => studyEvents(p.tokens));
  const vocabulary = buildVocabulary(trainEvents, o.minCount);
  const h: StudyHyperparameters = { ...o.hyperparameters, vocabulary: vocabulary.length };
  const trainSeqs = trainEvents.map((e) => encodeEvents(e, vocabulary));
  const valSeqs = o.validation.map((p) => encodeEvents(studyEvents(p.tokens), vocabulary));
  const eventCount = trainSeqs.reduce((s, q) => s + q.length, 0) + valSeqs.reduce((s, q) => s + q.length, 0);
  const windowsPerEpoch = studyWindows(trainSeqs, h.window, o.stride).length;
  if (windowsPerEpoch === 0) throw new Error(`no training piece has more than ${h.window} events; lower --window`);
  o.log(`study model: vocabulary ${vocabulary.length} events (min count ${o.minCount}), ${trainSeqs.length} training pieces, ${windowsPerEpoch} windows per epoch at stride ${o.stride}, LSTM ${h.layers}×${h.hidden}`);

  const weights = createStudyWeights(h, o.seed);
  const names = Object.keys(weights);
  const optimizer = tf.train.adam(o.learningRate);
  const rng = seededRandom(o.seed);
  const started = Date.now();
  const deadline = o.maxMinutes ? started + o.maxMinutes * 60_000 : Infinity;
  const lossPoints: { x: number; y: number }[] = [];
  const recent: number[] = [];
  let windowsTrained = 0;
  let steps = 0;
  let stoppedBy: StudyBudget['stoppedBy'] = 'epochs';
  let lastSave = Date.now();

  const budget = (): StudyBudget => ({
    maxMinutes: o.maxMinutes ?? null,
    stride: o.stride,
    windowsPerEpoch,
    windowsTrained,
    epochs: Math.round((windowsTrained / windowsPerEpoch) * 1000) / 1000,
    steps,
    trainSeconds: Math.round((Date.now() - started) / 1000),
    stoppedBy,
  });
  const save = (metrics: Record<string, number>, spent = budget()) =>
    saveStudyModel(
      o.outDir,
      {
        version: versionName(o.name),
        tokens: studyTokenSpec(),
        vocabulary,
        window: h.window,
        hyperparameters: h,
        composers: o.composers,
        data: {
          hash: o.dataHash,
          source: o.dataSource,
          pieces: o.train.length + o.validation.length,
          events: eventCount,
          validationPieces: o.validation.map((p) => p.name),
          attribution: DATA_ATTRIBUTION,
        },
        budget: spent,
        training: {
          optimizer: 'adam',
          learningRate: o.learningRate,
          clipNorm: o.clipNorm,
          batchSize: o.batchSize,
          minCount: o.minCount,
          epochsLimit: o.epochs,
          seed: o.seed,
          backend: currentBackend() ?? 'unknown',
          machine: trainingMachine(),
          startedAt: new Date(started).toISOString(),
        },
        metrics,
      },
      weights,
    );
  const trainNll = () => (recent.length ? recent.reduce((s, x) => s + x, 0) / recent.length : NaN);

  try {
    outer: for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const windows = shuffleInPlace(studyWindows(trainSeqs, h.window, o.stride, () => Math.floor(rng.next() * o.stride)), rng);
      const batches = Math.ceil(windows.length / o.batchSize);
      for (let i = 0; i < batches; i++) {
        const batch = buildStudyBatch(trainSeqs, windows.slice(i * o.batchSize, (i + 1) * o.batchSize), h.window, h.vocabulary);
        const loss = clippedAdamStep(optimizer, weights, names, () => studyLoss(weights, h, batch), o.clipNorm);
        batch.inputs.dispose();
        windowsTrained += batch.batch;
        steps++;
        recent.push(loss);
        if (recent.length > 50) recent.shift();
        const elapsed = (Date.now() - started) / 1000;
        lossPoints.push({ x: elapsed / 60, y: loss });
        const left = deadline === Infinity ? ((batches - i - 1) * elapsed) / steps : Math.min((batches - i - 1) * (elapsed / steps), (deadline - Date.now()) / 1000);
        o.progress(`study epoch ${epoch}/${o.epochs} ${i + 1}/${batches} loss ${trainNll().toFixed(4)} ${Math.round(windowsTrained / elapsed)} windows/s (${Math.round((windowsTrained * h.window) / elapsed)} steps/s) left ${formatSeconds(Math.max(0, left))}`, false);
        if (Date.now() >= deadline) {
          stoppedBy = 'time limit';
          break outer;
        }
        if (Date.now() - lastSave > SAVE_EVERY_SECONDS * 1000) {
          await save({ trainNll: trainNll() });
          lastSave = Date.now();
        }
      }
    }
    o.progress(`study training stopped (${stoppedBy}) after ${windowsTrained} windows, ${steps} steps, ${formatSeconds((Date.now() - started) / 1000)}; train loss ${trainNll().toFixed(4)}`, true);
    const finalBudget = budget();
    const valWindows = evenlySpread(studyWindows(valSeqs, h.window), o.maxValidationWindows);
    let metrics: Record<string, number> = { trainNll: trainNll() };
    if (valWindows.length) {
      o.log(`scoring ${valWindows.length} validation windows from ${valSeqs.length} held-out pieces`);
      const score = scoreStudyWindows(weights, h, valSeqs, valWindows);
      metrics = { valNll: score.nll / score.targets, valAccuracy: score.correct / score.targets, valWindows: score.targets, trainNll: trainNll() };
    }
    // The budget is the training loop's, not the time spent scoring afterwards.
    const final = await save(metrics, finalBudget);
    await plotSeries([{ name: 'batch loss', points: lossPoints }], join(o.outDir, 'training-curve.png'), {
      title: `${o.name}: study model NLL per event (nats)`,
      xLabel: 'minutes',
      yLabel: 'nats per event',
    });
    return final;
  } finally {
    tf.dispose(Object.values(weights));
    optimizer.dispose();
  }
}

