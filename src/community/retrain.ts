/**
 * One retraining run, start to finish: lock → clean up after crashed runs → gather the data →
 * fine-tune (or train from scratch) → score candidate and serving model on the fixed validation
 * set → publish the candidate as a version → promote it if the gate says so → unlock.
 *
 * It runs inside the retraining child process (retrainWorker.ts), but it is an ordinary async
 * function, so a CLI or a test can run it in-process too.
 *
 * Crash safety (kill -9 at any point):
 *   - training writes only under NOCTURNE_DATA_DIR/runs/<runId>/; the serving model's folder is only read;
 *   - a version appears by renaming a finished folder into NOCTURNE_DATA_DIR/models/ (atomic), and the
 *     serving pointer is replaced atomically, after the version is complete;
 *   - contributions are only read;
 *   - the lock names the run's pid: the next run finds it dead, takes the lock over, marks the
 *     interrupted run as such and deletes its scratch folders. A fresh run then starts; nothing
 *     half-made is ever used.
 *
 * The fixed validation set: the corpus pieces the shipped model was validated on (its spec's
 * data.validationPieces, written once to NOCTURNE_DATA_DIR/validation.json) plus every accepted held-back
 * contribution (decided per contribution, once). Neither model is ever trained on it. Early
 * stopping uses a separate 5% of the corpus training pieces, so the gate's set is not also the
 * set the candidate's best epoch was picked on.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readMidiFile } from '../midi/read.ts';
import { carriedDecoding, readModelSpec } from '../model/note/folder.ts';
import { writeFileAtomic } from '../storage/files.ts';
import { tokenize } from '../tokens/tokenize.ts';
import { composerTable, corpusHash, listCorpus, loadCorpus, splitByPiece, type CorpusPiece } from '../model/corpus.ts';
import { trainModel } from '../model/note/train/fit.ts';
import { DEFAULT_INPUT_NOISE } from '../model/note/train/stream.ts';
import type { CommunityConfig } from './config.ts';
import { composerFor, planComposers, writeExpandedModel } from './composerSlots.ts';
import { Contributions, type ContributionRecord } from './contributions.ts';
import { loadCorpusProfile } from './corpusProfile.ts';
import { gateDecision, scoreModel, type ModelScores } from './gate.ts';
import { acquireRetrainLock, newLockOwner, refreshRetrainLock, releaseRetrainLock } from './lock.ts';
import { ModelRegistry, type VersionRecord } from './registry.ts';
import { CommunityStore } from './store.ts';
import { storeLocation } from '../storage/backend.ts';

export type RetrainTrigger = 'schedule' | 'moderator' | 'cli';

export interface RetrainRequest {
  trigger: RetrainTrigger;
  requestedBy?: string;
  /** Run even when no contribution changed since the serving version was made. */
  force?: boolean;
  /** Train from fresh weights (default: NOCTURNE_RETRAIN_FROM_SCRATCH). */
  fromScratch?: boolean;
  /** Override NOCTURNE_RETRAIN_EPOCHS for this run. */
  epochs?: number;
}

export type RetrainStage = 'starting' | 'preparing' | 'training' | 'evaluating' | 'publishing' | 'promoting' | 'finished';

export interface RetrainProgress {
  runId: string;
  stage: RetrainStage;
  /** One line for the channel, e.g. "epoch 2/3 [####....] loss 4.91 ETA 1m20s". */
  line: string;
}

export type RetrainStatus = 'promoted' | 'rejected' | 'skipped' | 'busy' | 'failed';

export interface RetrainOutcome {
  runId: string;
  status: RetrainStatus;
  /** One line: what happened and why. */
  reason: string;
  servingBefore: string;
  servingAfter: string;
  /** The candidate's version (promoted or kept as rejected). */
  version?: string;
  /** Gate scores on the fixed validation set. */
  before?: ModelScores;
  after?: ModelScores;
  /** The candidate's training curve. */
  curvePng?: string;
  /** The candidate's own training metrics (model.json). */
  metrics?: Record<string, number>;
  contributionsUsed: number;
  heldBack: number;
  newComposers: string[];
  /** New labels still trained as "any" (below NOCTURNE_NEW_LABEL_MIN_PIECES). */
  waitingLabels: { label: string; pieces: number }[];
  seconds: number;
}

export type RunState = 'running' | 'finished' | 'failed' | 'interrupted';

export interface RunRecord {
  runId: string;
  state: RunState;
  pid: number;
  trigger: RetrainTrigger;
  requestedBy?: string;
  startedAt: string;
  updatedAt: string;
  stage: RetrainStage;
  line: string;
  outcome?: RetrainOutcome;
}

export const VALIDATION_FILE = 'validation.json';
/** Share of the corpus training pieces used for early stopping (not for the gate). */
const SELECTION_FRACTION = 0.05;

export function newRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
}

/**
 * The corpus part of the fixed validation set: read from NOCTURNE_DATA_DIR/validation.json, or created
 * there once from the initial model's validation pieces (or a by-piece split of the corpus when
 * that model lists none that exist).
 */
export async function corpusValidationNames(dataDir: string, initialValidation: readonly string[], corpus: readonly CorpusPiece[]): Promise<string[]> {
  const path = join(dataDir, VALIDATION_FILE);
  if (existsSync(path)) return (JSON.parse(await readFile(path, 'utf8')) as { corpusPieces: string[] }).corpusPieces;
  const present = new Set(corpus.map((p) => p.name));
  let names = initialValidation.filter((n) => present.has(n));
  let source = 'the initial model\'s validation pieces';
  if (names.length === 0) {
    names = splitByPiece(corpus).validation.map((p) => p.name);
    source = 'a by-piece split of the corpus (10% per composer)';
  }
  await writeFileAtomic(path, JSON.stringify({ note: `fixed validation pieces for the promotion gate, from ${source}; never trained on`, createdAt: new Date().toISOString(), corpusPieces: names }, null, 2) + '\n');
  return names;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

async function contributionPieces(contributions: Contributions, records: ContributionRecord[], warn: (line: string) => void): Promise<{ record: ContributionRecord; tokens: CorpusPiece['tokens'] }[]> {
  const out: { record: ContributionRecord; tokens: CorpusPiece['tokens'] }[] = [];
  for (const record of records) {
    try {
      const piece = await readMidiFile(contributions.filePath(record.id));
      out.push({ record, tokens: tokenize(piece.notes) });
    } catch (e) {
      warn(`contribution ${record.id} skipped: ${(e as Error).message}`);
    }
  }
  return out;
}

export interface RunOptions {
  /**
   * The caller already holds the one-at-a-time lock elsewhere (the Redis lock of a `nocturne
   * worker`, src/scaleout/retrainQueue.ts): the store's lock row is then taken over whoever holds it,
   * since its holder can only be a run that died (possibly on another host, where its pid cannot
   * be checked). The row is still written, so the run records and status work as before.
   */
  externalLock?: boolean;
}

/** Runs one retraining. Never throws: every failure is an outcome with a one-line reason. */
export async function runRetraining(config: CommunityConfig, request: RetrainRequest, onProgress: (p: RetrainProgress) => void = () => {}, options: RunOptions = {}): Promise<RetrainOutcome> {
  const started = Date.now();
  const runId = newRunId();
  const base = { runId, contributionsUsed: 0, heldBack: 0, newComposers: [] as string[], waitingLabels: [] as RetrainOutcome['waitingLabels'] };
  let store: CommunityStore | undefined;
  let servingBefore = '';
  try {
    store = await CommunityStore.open(storeLocation(config.dataDir, config.storeUrl));
    const registry = await ModelRegistry.open(config.dataDir, config.initialModelDir);
    servingBefore = registry.serving;
    // -Infinity: no heartbeat counts as fresh (not even one from a host whose clock is ahead).
    const staleMs = options.externalLock ? Number.NEGATIVE_INFINITY : config.retrain.staleLockMinutes * 60_000;
    const lock = await acquireRetrainLock(store, newLockOwner(runId, { trigger: request.trigger, requestedBy: request.requestedBy }), staleMs);
    if (!lock.acquired) {
      const h = lock.holder;
      return { ...base, status: 'busy', reason: `a retraining run is already in progress (run ${h.runId}, ${h.trigger ?? 'started'}${h.requestedBy ? ` by ${h.requestedBy}` : ''} at ${h.startedAt.slice(0, 16).replace('T', ' ')} UTC)`, servingBefore, servingAfter: servingBefore, seconds: (Date.now() - started) / 1000 };
    }
    try {
      const outcome = await runLocked(config, request, store, registry, runId, lock.replaced?.runId, onProgress, started);
      return outcome;
    } finally {
      await releaseRetrainLock(store, runId).catch(() => undefined);
    }
  } catch (e) {
    const reason = `retraining failed: ${((e as Error).message ?? String(e)).split('\n')[0]}`;
    if (store) {
      const record = await store.get<RunRecord>(`run:${runId}`).catch(() => undefined);
      if (record) await store.set(`run:${runId}`, { ...record, state: 'failed', updatedAt: new Date().toISOString(), line: reason } satisfies RunRecord).catch(() => undefined);
    }
    return { ...base, status: 'failed', reason, servingBefore, servingAfter: servingBefore, seconds: (Date.now() - started) / 1000 };
  } finally {
    await rm(join(config.dataDir, 'runs', runId), { recursive: true, force: true }).catch(() => undefined);
    await store?.close().catch(() => undefined);
  }
}

/** Marks runs left 'running' by a dead process as interrupted and deletes every scratch folder. */
export async function cleanUpInterruptedRuns(store: CommunityStore, registry: ModelRegistry, dataDir: string, currentRunId: string): Promise<string[]> {
  const interrupted: string[] = [];
  for (const { key, value } of await store.list<RunRecord>('run:')) {
    if (value.state !== 'running' || value.runId === currentRunId) continue;
    await store.set(key, { ...value, state: 'interrupted', updatedAt: new Date().toISOString(), line: `interrupted during ${value.stage}: the retraining process stopped before finishing; nothing it made was used` } satisfies RunRecord);
    interrupted.push(value.runId);
  }
  const runs = join(dataDir, 'runs');
  if (existsSync(runs)) {
    for (const name of await readdir(runs)) if (name !== currentRunId) await rm(join(runs, name), { recursive: true, force: true });
  }
  await registry.removeStaging();
  return interrupted;
}

/** The run's progress: shown through onProgress, kept in the run record, with the lock refreshed. */
class RunReport {
  private lastSaved = 0;
  private lastShown = 0;
  // Progress and heartbeat are written in the background, one write after another (so an old
  // progress line never lands after the final record); a failed write is not fatal.
  private writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: CommunityStore,
    private readonly runId: string,
    private record: RunRecord,
    private readonly onProgress: (p: RetrainProgress) => void,
  ) {}

  /**
   * `save` marks a line that matters (a stage change, an epoch's end): always shown and saved;
   * the others (each training batch) at most once a second, and saved every 10 s.
   */
  readonly line = (stage: RetrainStage, line: string, save = true): void => {
    const now = Date.now();
    if (save || now - this.lastShown >= 1000) {
      this.lastShown = now;
      this.onProgress({ runId: this.runId, stage, line });
    }
    this.record = { ...this.record, stage, line, updatedAt: new Date().toISOString() };
    if (save || now - this.lastSaved > 10_000) {
      this.lastSaved = now;
      const snapshot = this.record;
      this.writes = this.writes.then(() => this.store.set(`run:${this.runId}`, snapshot)).then(() => refreshRetrainLock(this.store, this.runId)).catch(() => undefined);
    }
  };

  /** Stores the record as it is now (the run's first write, awaited). */
  async save(): Promise<void> {
    await this.store.set(`run:${this.runId}`, this.record);
  }

  /** The run's end: after the background writes, the final record, then the last progress line. */
  readonly finish = async (outcome: RetrainOutcome): Promise<RetrainOutcome> => {
    await this.writes;
    this.record = { ...this.record, state: 'finished', stage: 'finished', line: outcome.reason, updatedAt: new Date().toISOString(), outcome };
    await this.store.set(`run:${this.runId}`, this.record);
    this.onProgress({ runId: this.runId, stage: 'finished', line: outcome.reason });
    return outcome;
  };
}

async function runLocked(
  config: CommunityConfig,
  request: RetrainRequest,
  store: CommunityStore,
  registry: ModelRegistry,
  runId: string,
  replacedRun: string | undefined,
  onProgress: (p: RetrainProgress) => void,
  started: number,
): Promise<RetrainOutcome> {
  const runDir = join(config.dataDir, 'runs', runId);
  const report = new RunReport(store, runId, { runId, state: 'running', pid: process.pid, trigger: request.trigger, requestedBy: request.requestedBy, startedAt: new Date(started).toISOString(), updatedAt: new Date().toISOString(), stage: 'starting', line: 'starting' }, onProgress);
  await report.save();
  const interrupted = await cleanUpInterruptedRuns(store, registry, config.dataDir, runId);
  report.line('starting', `run ${runId} started${interrupted.length ? `; earlier run ${interrupted.join(', ')} had been interrupted and was cleaned up` : replacedRun ? `; took over the stale lock of run ${replacedRun}` : ''}`);
  await mkdir(runDir, { recursive: true });
  const seconds = () => (Date.now() - started) / 1000;

  report.line('preparing', 'reading the corpus and the contributions');
  const inputs = await readInputs(config, store, registry);
  const { serving } = inputs;
  const base = { runId, servingBefore: serving.version, contributionsUsed: inputs.usable.training.length, heldBack: inputs.usable.heldBack.length };
  if (!request.force) {
    const reason = await nothingNew(registry, inputs);
    if (reason) return report.finish({ ...base, status: 'skipped', reason: `nothing to do: ${reason}; a moderator can force a run`, servingAfter: serving.version, newComposers: [], waitingLabels: [], seconds: seconds() });
  }
  const data = await trainingData(config, registry, inputs, report.line);
  const fromScratch = request.fromScratch ?? config.retrain.fromScratch;
  const outcomeBase = { ...base, newComposers: data.plan.newComposers, waitingLabels: data.plan.waiting };

  const candidateDir = join(runDir, 'candidate');
  const candidateSpec = await trainCandidate(config, request, store, registry, inputs, data, fromScratch, runDir, candidateDir, report.line);
  const { before, after, decision } = await gate(config, inputs, data, candidateSpec.version, candidateDir, report.line);

  // Publish the candidate (promoted or not, it is kept with its spec, metrics and curve).
  report.line('publishing', `keeping ${candidateSpec.version} as a model version`);
  await rm(join(candidateDir, 'checkpoint'), { recursive: true, force: true });
  const versionRecord: VersionRecord = {
    version: candidateSpec.version,
    verdict: decision.promote ? 'passed' : 'rejected',
    reason: decision.reason,
    createdAt: new Date().toISOString(),
    runId,
    trigger: request.trigger,
    requestedBy: request.requestedBy,
    baseVersion: serving.version,
    fromScratch,
    before,
    after,
    contributions: data.trainingContributions.map((c) => c.record.id),
    heldBack: data.heldBackContributions.map((c) => c.record.id),
    newComposers: data.plan.newComposers,
  };
  const versionDir = await registry.publish(candidateDir, versionRecord);
  const common = { ...outcomeBase, version: candidateSpec.version, before, after, metrics: candidateSpec.metrics, curvePng: existsSync(join(versionDir, 'training-curve.png')) ? join(versionDir, 'training-curve.png') : undefined };

  if (!decision.promote) return report.finish({ ...common, status: 'rejected', reason: `${candidateSpec.version} not promoted, it ${decision.reason}`, servingAfter: serving.version, seconds: seconds() });
  report.line('promoting', `promoting ${candidateSpec.version}`);
  const now = await registry.current();
  if (now.version !== serving.version) {
    return report.finish({ ...common, status: 'rejected', reason: `${candidateSpec.version} passed the gate against ${serving.version}, but ${now.version} started serving during the run; promote it by hand if wanted`, servingAfter: now.version, seconds: seconds() });
  }
  await registry.promote(candidateSpec.version, `${request.trigger} retraining run ${runId}: ${decision.reason}`, runId);
  return report.finish({ ...common, status: 'promoted', reason: `${candidateSpec.version} promoted, it ${decision.reason}`, servingAfter: candidateSpec.version, seconds: seconds() });
}

type Report = RunReport['line'];

/** What a run starts from: the serving model, the corpus profile and the usable contributions. */
async function readInputs(config: CommunityConfig, store: CommunityStore, registry: ModelRegistry) {
  const serving = await registry.current();
  const servingSpec = await readModelSpec(serving.dir);
  const profile = await loadCorpusProfile(config.datasetDir, join(config.dataDir, 'corpus-profile.json'));
  const contributions = new Contributions(store, profile, config, () => servingSpec.composers.map((c) => c.name));
  const usable = await contributions.usable();
  const servingRecord = await registry.versionRecord(serving.version);
  return { serving, servingSpec, profile, contributions, usable, servingRecord };
}
type Inputs = Awaited<ReturnType<typeof readInputs>>;

/** Why an unforced run has nothing to do, if it has not: the same contributions as before. */
async function nothingNew(registry: ModelRegistry, { serving, usable, servingRecord }: Inputs): Promise<string | undefined> {
  const trainingIds = usable.training.map((r) => r.id);
  if (sameSet(trainingIds, servingRecord.contributions ?? [])) return `no new accepted contributions since ${serving.version} was made (${trainingIds.length} in use)`;
  // A candidate trained on exactly these contributions after the serving one was made and not promoted: same data, same answer.
  const tried = (await registry.list()).find((v) => v.record.verdict === 'rejected' && v.record.createdAt > servingRecord.createdAt && sameSet(trainingIds, v.record.contributions ?? []));
  if (tried) return `the same ${trainingIds.length} contributions were already tried in ${tried.version}, which was not promoted`;
  return undefined;
}

/** The training pieces, the early-stopping selection, the fixed validation set of the gate and the composer plan. */
async function trainingData(config: CommunityConfig, registry: ModelRegistry, { serving, servingSpec, contributions, usable }: Inputs, report: Report) {
  const warn = (line: string) => report('preparing', line, false);
  const corpus = await loadCorpus(listCorpus(config.datasetDir), warn);
  const initialVersion = (await registry.readPointer()).history[0]?.version ?? serving.version;
  const initialSpec = await readModelSpec(registry.dirOf(initialVersion)).catch(() => servingSpec);
  const validationNames = new Set(await corpusValidationNames(config.dataDir, initialSpec.data.validationPieces, corpus));
  const corpusValidation = corpus.filter((p) => validationNames.has(p.name));
  const corpusTrainAll = corpus.filter((p) => !validationNames.has(p.name));
  const { train: corpusTrain, validation: selection } = splitByPiece(corpusTrainAll, SELECTION_FRACTION);

  const trainingContributions = await contributionPieces(contributions, usable.training, warn);
  const heldBackContributions = await contributionPieces(contributions, usable.heldBack, warn);
  const corpusComposers = new Map(composerTable(corpus).map((c) => [c.name, { pieces: c.pieces, tempoBpm: c.tempoBpm }]));
  const plan = planComposers(servingSpec.composers, corpusComposers, trainingContributions.map((c) => ({ label: c.record.label, tempoBpm: c.record.tempoBpm })), config.newLabelMinPieces);
  const asPiece = (c: { record: ContributionRecord; tokens: CorpusPiece['tokens'] }): CorpusPiece => ({ composer: composerFor(plan, c.record.label), name: `contributions/${c.record.id}.mid`, tokens: c.tokens, tempoBpm: c.record.tempoBpm });
  const train = [...corpusTrain, ...trainingContributions.map(asPiece)];
  const gateSet = [...corpusValidation, ...heldBackContributions.map(asPiece)];
  if (gateSet.length === 0) throw new Error('the fixed validation set is empty (no validation pieces in the corpus and no held-back contributions)');
  report('preparing', `${train.length} training pieces (${trainingContributions.length} contributions), ${selection.length} for early stopping, ${gateSet.length} in the validation set (${heldBackContributions.length} held-back contributions)${plan.newComposers.length ? `; new composers: ${plan.newComposers.join(', ')}` : ''}${plan.waiting.length ? `; trained as "any" until ${config.newLabelMinPieces} pieces: ${plan.waiting.map((w) => `${w.label} (${w.pieces})`).join(', ')}` : ''}`);
  return { train, selection, gateSet, plan, trainingContributions, heldBackContributions };
}
type TrainingData = Awaited<ReturnType<typeof trainingData>>;

/** Fine-tunes the serving model (widened when composers are new) or trains from scratch, into `candidateDir`. */
async function trainCandidate(config: CommunityConfig, request: RetrainRequest, store: CommunityStore, registry: ModelRegistry, { serving, servingSpec }: Inputs, { train, selection, plan, trainingContributions }: TrainingData, fromScratch: boolean, runDir: string, candidateDir: string, report: Report) {
  let initialWeights: string | undefined;
  if (!fromScratch) {
    if (plan.composers.length > servingSpec.composers.length) {
      initialWeights = join(runDir, 'base');
      await writeExpandedModel(serving.dir, initialWeights, plan);
    } else initialWeights = serving.dir;
  }

  const seq = Math.max((await store.get<number>('retrain:seq')) ?? 0, ...(await registry.list()).map((v) => Number(/^r(\d+)-/.exec(v.version)?.[1] ?? 0))) + 1;
  await store.set('retrain:seq', seq);
  const epochs = request.epochs ?? config.retrain.epochs;
  report('training', `${fromScratch ? 'training from scratch' : `fine-tuning ${serving.version}`} for up to ${epochs} epochs (${config.retrain.maxMinutes} min at most)`);
  await new Promise((r) => setImmediate(r));
  return trainModel({
    outDir: candidateDir,
    train,
    validation: selection,
    composers: plan.composers,
    dataHash: corpusHash(train),
    dataSource: `${servingSpec.data.source} + ${trainingContributions.length} community contributions`,
    hyperparameters: servingSpec.hyperparameters,
    epochs,
    batchSize: config.retrain.batchSize,
    learningRate: fromScratch ? config.retrain.scratchLearningRate : config.retrain.learningRate,
    clipNorm: 1,
    patience: config.retrain.patience,
    transpose: 3,
    composerDropout: 0.1,
    keyDropout: 0.2,
    inputNoise: DEFAULT_INPUT_NOISE,
    decoding: fromScratch ? undefined : carriedDecoding(servingSpec),
    seed: seq,
    resume: false,
    maxMinutes: config.retrain.maxMinutes,
    name: `r${seq}`,
    initialWeights,
    log: (line) => report('training', line),
    progress: (line, done) => report('training', line, done),
  });
}

/** Scores the serving model and the candidate on the fixed validation set; the gate's decision. */
async function gate(config: CommunityConfig, { serving, profile }: Inputs, { gateSet }: TrainingData, candidateVersion: string, candidateDir: string, report: Report) {
  report('evaluating', `scoring ${serving.version} and ${candidateVersion} on ${gateSet.length} validation pieces`);
  await new Promise((r) => setImmediate(r));
  const samples = { samples: config.gate.samples, sampleNotes: config.gate.sampleNotes };
  const before = await scoreModel(serving.dir, gateSet, profile.histograms, samples, config.retrain.batchSize);
  const after = await scoreModel(candidateDir, gateSet, profile.histograms, samples, config.retrain.batchSize);
  const decision = gateDecision(before, after, { nllTolerance: config.gate.nllTolerance, driftThreshold: config.driftThreshold, driftTolerance: config.gate.driftTolerance });
  report('evaluating', decision.reason);
  return { before, after, decision };
}
