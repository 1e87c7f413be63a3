/**
 * The community loop's one face for front ends (chat commands, CLI): contributions, moderation,
 * drift, model versions and retraining, over one store, one registry and one corpus profile.
 * A class because it owns those (open … close). Every method returns plain objects with a
 * one-line `reason`/`message` for the user; permission checks belong to the caller.
 *
 *   const community = await Community.open(communityConfigFromEnv());
 *   community.registry.on('serving', (change) => swapEngine(change.dir));
 *   community.startSchedule((outcome) => postToModerators(outcome));
 */
import { join } from 'node:path';
import type { RunCoordinator } from 'node-cron';
import { readModelSpec } from '../model/note/folder.ts';
import type { CommunityConfig } from './config.ts';
import { Contributions, type ContributionInput, type ContributionOutcome, type ContributionRecord, type ContributionStatus } from './contributions.ts';
import { loadCorpusProfile, type CorpusProfile } from './corpusProfile.ts';
import { DriftMonitor, type DriftReport, type OutputSample } from './drift.ts';
import { readRetrainLock, type LockOwner } from './lock.ts';
import { ModelRegistry, type ModelVersionInfo, type ServingChange } from './registry.ts';
import type { RetrainOutcome, RetrainProgress, RetrainRequest, RunRecord } from './retrain.ts';
import { RetrainProcess } from './retrainProcess.ts';
import { RetrainSchedule } from './schedule.ts';
import { CommunityStore } from './store.ts';
import { storeLocation } from '../storage/backend.ts';

export interface RetrainStatusReport {
  /** The run holding the lock, when one is live. */
  running?: RunRecord;
  lock?: { owner: LockOwner; live: boolean };
  /** The latest finished, failed or interrupted run. */
  last?: RunRecord;
}

/**
 * Where retraining runs when it does not run in a child of this process: a queue that `nocturne
 * worker` processes take runs from (src/scaleout/retrainQueue.ts). It answers "busy" itself, from its
 * own lock; progress and the outcome come back from the worker.
 */
export interface RemoteRetraining {
  retrain(config: CommunityConfig, request: RetrainRequest, onProgress: (p: RetrainProgress) => void): Promise<RetrainOutcome>;
  /** Lets only one of several processes run each firing of the schedule. */
  readonly runCoordinator?: RunCoordinator;
  close(): Promise<void>;
}

export class Community {
  private composerNames: string[] = [];
  private schedule: RetrainSchedule | undefined;
  private remote: RemoteRetraining | undefined;

  private constructor(
    readonly config: CommunityConfig,
    readonly store: CommunityStore,
    readonly registry: ModelRegistry,
    readonly profile: CorpusProfile,
    readonly contributions: Contributions,
    readonly drift: DriftMonitor,
  ) {}

  /** Opens the store, the registry (seeding it with NOCTURNE_MODEL_DIR) and the corpus profile. */
  static async open(config: CommunityConfig, log: (line: string) => void = () => {}): Promise<Community> {
    const store = await CommunityStore.open(storeLocation(config.dataDir, config.storeUrl), log);
    try {
      const registry = await ModelRegistry.open(config.dataDir, config.initialModelDir, log);
      const profile = await loadCorpusProfile(config.datasetDir, join(config.dataDir, 'corpus-profile.json'), log);
      let community: Community | undefined;
      const contributions = new Contributions(store, profile, config, () => community?.composerNames ?? []);
      const drift = new DriftMonitor(store, profile, contributions, config);
      community = new Community(config, store, registry, profile, contributions, drift);
      await community.loadComposerNames();
      registry.on('serving', () => void community!.loadComposerNames().catch(() => undefined));
      const removed = await contributions.recover();
      if (removed.length) log(`contributions: removed ${removed.length} files left by an interrupted upload`);
      return community;
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
  }

  private async loadComposerNames(): Promise<void> {
    const { dir } = await this.registry.current();
    this.composerNames = (await readModelSpec(dir)).composers.map((c) => c.name);
  }

  // Contributions --------------------------------------------------------------------------

  /** Checks and keeps one uploaded MIDI file; refusals are outcomes with a one-line message. */
  contribute(bytes: Uint8Array, input: ContributionInput): Promise<ContributionOutcome> {
    return this.contributions.contribute(bytes, input);
  }

  listContributions(filter: { status?: ContributionStatus; uploader?: string; platform?: string; limit?: number } = {}): Promise<ContributionRecord[]> {
    return this.contributions.list(filter);
  }

  /** Throws ContributionError (one line) for an unknown id or a no-op. */
  rejectContribution(id: string, moderator: string, reason?: string): Promise<ContributionRecord> {
    return this.contributions.reject(id, moderator, reason);
  }

  /** Accepts a rejected or flagged contribution. Throws ContributionError (one line). */
  restoreContribution(id: string, moderator: string, reason?: string): Promise<ContributionRecord> {
    return this.contributions.restore(id, moderator, reason);
  }

  // Drift -------------------------------------------------------------------------------------

  /** Records a generated piece (a ComposeResult's midiPath and modelVersion) for output drift. */
  recordOutput(midiPath: string, modelVersion: string): Promise<OutputSample> {
    return this.drift.recordOutputFile(midiPath, modelVersion);
  }

  /** Current drift numbers; with `chart`, also a PNG (default NOCTURNE_DATA_DIR/drift.png). */
  driftReport(options: { chart?: boolean; chartPath?: string } = {}): Promise<DriftReport> {
    const chartPath = options.chartPath ?? (options.chart ? this.drift.defaultChartPath() : undefined);
    return this.drift.report({ chartPath });
  }

  // Models --------------------------------------------------------------------------------------

  listModels(): Promise<ModelVersionInfo[]> {
    return this.registry.list();
  }

  servingModel(): Promise<{ version: string; dir: string }> {
    return this.registry.current();
  }

  /** Switches back (to the previous serving version, or to `version`). Throws RegistryError. */
  rollback(version: string | undefined, moderator: string): Promise<ServingChange> {
    return this.registry.rollback(version, moderator);
  }

  /** Serves `version` (e.g. a rejected candidate a moderator wants anyway). Throws RegistryError. */
  promote(version: string, moderator: string): Promise<ServingChange> {
    return this.registry.promote(version, `promoted by ${moderator}`);
  }

  // Retraining ----------------------------------------------------------------------------------

  /** Sends every retraining (command or schedule) to `remote` from now on; close() closes it. */
  useRemoteRetraining(remote: RemoteRetraining): void {
    this.remote = remote;
  }

  /** Whether runs go to workers (then this process never runs or kills a retraining itself). */
  get retrainsRemotely(): boolean {
    return this.remote !== undefined;
  }

  /**
   * Runs one retraining in a child process (or, after useRemoteRetraining, on a worker) and
   * resolves with its outcome (never rejects). Answers 'busy' at once when a run holds the lock.
   * The registry emits 'serving' if the run promoted its candidate.
   */
  async retrain(request: RetrainRequest, onProgress: (p: RetrainProgress) => void = () => {}): Promise<RetrainOutcome> {
    if (this.remote) {
      const outcome = await this.remote.retrain(this.config, request, onProgress);
      // A promotion on a worker changed serving.json on the shared data folder: follow it now.
      await this.registry.refresh().catch(() => undefined);
      return outcome;
    }
    const lock = await readRetrainLock(this.store, this.config.retrain.staleLockMinutes * 60_000);
    if (lock?.live) {
      const serving = this.registry.serving;
      const o = lock.owner;
      return { runId: o.runId, status: 'busy', reason: `a retraining run is already in progress (run ${o.runId}, ${o.trigger ?? 'started'}${o.requestedBy ? ` by ${o.requestedBy}` : ''} at ${o.startedAt.slice(0, 16).replace('T', ' ')} UTC)`, servingBefore: serving, servingAfter: serving, contributionsUsed: 0, heldBack: 0, newComposers: [], waitingLabels: [], seconds: 0 };
    }
    const run = new RetrainProcess(this.config, request, onProgress, this.store);
    const outcome = await run.outcome;
    await this.registry.refresh().catch(() => undefined);
    return outcome;
  }

  /** The run in progress (if any) and the latest finished one. */
  async retrainStatus(): Promise<RetrainStatusReport> {
    const lock = await readRetrainLock(this.store, this.config.retrain.staleLockMinutes * 60_000);
    const runs = (await this.store.list<RunRecord>('run:')).map((e) => e.value);
    const running = lock?.live ? runs.find((r) => r.runId === lock.owner.runId) : undefined;
    const last = [...runs].reverse().find((r) => r.state !== 'running');
    return { running, lock, last };
  }

  /**
   * Arms the NOCTURNE_RETRAIN_SCHEDULE cron task (no-op when the schedule is off); each firing runs
   * `retrain({ trigger: 'schedule' })` and hands the outcome to `onOutcome`.
   */
  async startSchedule(onOutcome: (o: RetrainOutcome) => void, onProgress?: (p: RetrainProgress) => void, log?: (line: string) => void): Promise<RetrainSchedule | undefined> {
    if (!this.config.retrain.schedule || this.schedule) return this.schedule;
    this.schedule = new RetrainSchedule(this.config.retrain.schedule, this.config.retrain.timezone, async () => onOutcome(await this.retrain({ trigger: 'schedule' }, onProgress)), log, this.remote?.runCoordinator);
    await this.schedule.start();
    return this.schedule;
  }

  async close(): Promise<void> {
    await this.schedule?.destroy();
    this.schedule = undefined;
    await this.remote?.close();
    this.registry.close();
    await this.store.close();
  }
}
