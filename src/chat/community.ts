/**
 * The community loop inside the running bot: the glue between the engine side's Community
 * (src/community/) and the chat side's Bot. A class because it has a lifecycle:
 *
 *   - attach(bot): when the registry's serving model changes (a promotion, a rollback, or another
 *     process's run seen by registry.watch()), the bot opens the new model and drops the old one,
 *     one switch after another (in-flight batches finish on the old model);
 *   - recordPiece: each finished piece is recorded for output drift (onPiece);
 *   - retrain: Community.retrain, remembering which runs this process started, so that a
 *     shutdown stops them (a killed run leaves nothing half-made: see src/community/retrain.ts),
 *     unless they run on workers (REDIS_URL);
 *   - startSchedule: the node-cron schedule, whose outcomes go to the moderators;
 *   - announce: a notice to the configured moderator channels, and always to the log. Changes of
 *     the serving model that this process did not make (another bot process sharing the data
 *     folder) are announced here; this process's own runs and rollbacks are announced by the
 *     command or the schedule that made them, with their full verdict.
 *
 * The outcome messages the `retrain` command and the schedule post are commands/shared/community.ts's.
 */
import { hostname } from 'node:os';
import type { Community } from '../community/community.ts';
import type { ServingChange } from '../community/registry.ts';
import type { RetrainOutcome, RetrainProgress, RetrainRequest } from '../community/retrain.ts';
import type { RetrainSchedule } from '../community/schedule.ts';
import type { ModelInfo } from '../engine/types.ts';
import type { JobRecord } from '../jobs/types.ts';
import type { ChannelRef, CommunityContext, InfoFile, InfoMessage, ServingSwitch } from '../../commands/shared/command.ts';
import { retrainMessage } from '../../commands/shared/community.ts';

/** What the service switches when the serving model changes (the Bot). */
export interface ServingTarget {
  readonly model: ModelInfo;
  useModel(dir: string): Promise<ModelInfo>;
}

export type Announcer = (message: InfoMessage, from?: ChannelRef) => Promise<void>;

/** How long a shutdown waits for a stopped retraining run to be tidied up. */
const STOP_WAIT_MS = 5000;

export class CommunityService implements CommunityContext {
  private switching: Promise<ServingSwitch>;
  private readonly ownRuns = new Set<string>();
  /** Rollbacks this process asked for whose 'serving' event has not come yet. */
  private ownRollbacks = 0;
  private lastForeign = '';
  private readonly running = new Set<Promise<unknown>>();
  private readonly recording = new Set<Promise<unknown>>();
  private announcer: Announcer = async () => {};
  private closed = false;
  /**
   * Announce serving changes other processes made (default). Discord shard processes other than
   * shard 0 turn it off, so one change is not posted once per shard.
   */
  foreignNotices = true;
  /** The armed cron schedule, if any (tests fire it with `schedule.task.execute()`). */
  schedule: RetrainSchedule | undefined;

  constructor(
    readonly community: Community,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.switching = Promise.resolve({ ok: true, version: community.registry.serving });
  }

  /** Serves the registry's model changes on `target` from now on, and watches for other processes' changes. */
  attach(target: ServingTarget): void {
    const registry = this.community.registry;
    registry.on('serving', (change) => this.onServing(target, change));
    registry.watch();
    // A change between Community.open and now would otherwise wait for the next one.
    void registry.refresh().catch((e: Error) => this.log(`community: cannot read the serving pointer: ${e.message}`));
  }

  /** Whether a serving change was made by this process (decided when the registry emits it). */
  private isOwn(change: ServingChange): boolean {
    if (change.runId) return this.ownRuns.has(change.runId);
    if (change.rollback && this.ownRollbacks > 0) {
      this.ownRollbacks--;
      return true;
    }
    return false;
  }

  private onServing(target: ServingTarget, change: ServingChange): void {
    const foreign = !this.isOwn(change) && this.lastForeign !== `${change.to} ${change.reason}`;
    if (foreign) this.lastForeign = `${change.to} ${change.reason}`;
    this.switching = this.switching.then(async (): Promise<ServingSwitch> => {
      const switched = await this.switchTo(target, change);
      if (foreign && this.foreignNotices) void this.announceForeign(change, switched);
      return switched;
    });
  }

  private async announceForeign(change: ServingChange, switched: ServingSwitch): Promise<void> {
    const lines = [`was ${change.from ?? '?'}`, change.reason];
    let files: InfoFile[] | undefined;
    try {
      const v = (await this.community.listModels()).find((m) => m.version === change.to);
      if (v?.record.before && v.record.after) lines.push(`validation NLL (nats per note): ${v.record.before.nll.toFixed(4)} → ${v.record.after.nll.toFixed(4)}; similarity of generated pieces to the corpus: ${v.record.before.outputSimilarity.toFixed(3)} → ${v.record.after.outputSimilarity.toFixed(3)}`);
      if (v?.curvePng) files = [{ path: v.curvePng, name: `training-curve-${v.version}.png`, contentType: 'image/png' }];
    } catch {
      // the notice goes out without the details
    }
    lines.push(switched.ok ? `the bot composes with ${switched.version} from now on` : `but the bot could not load it (${switched.error})`);
    await this.announce({ title: `Serving model changed: now ${change.to}`, lines, ...(files ? { files } : {}) });
  }

  private async switchTo(target: ServingTarget, change: ServingChange): Promise<ServingSwitch> {
    if (this.closed) return { ok: false, version: change.to, error: 'the bot is shutting down' };
    if (target.model.version === change.to) return { ok: true, version: change.to };
    try {
      const info = await target.useModel(change.dir);
      this.log(`community: serving ${change.to} (was ${change.from ?? 'none'}): ${change.reason}`);
      return { ok: true, version: info.version };
    } catch (e) {
      const error = (e as Error).message.split('\n')[0];
      this.log(`community: the registry now names ${change.to}, but the bot cannot load it (${error}); it keeps composing with ${target.model.version}`);
      return { ok: false, version: change.to, error };
    }
  }

  async rollback(version: string | undefined, moderator: string): Promise<ServingChange> {
    this.ownRollbacks++;
    try {
      return await this.community.rollback(version, moderator);
    } catch (e) {
      this.ownRollbacks--;
      throw e;
    }
  }

  servingSwitched(): Promise<ServingSwitch> {
    return this.switching;
  }

  setAnnouncer(announcer: Announcer): void {
    this.announcer = announcer;
  }

  async announce(message: InfoMessage, from?: ChannelRef): Promise<void> {
    this.log(`moderators: ${message.title}: ${message.lines.join(' | ')}${message.files?.length ? ` [${message.files.map((f) => f.path).join(', ')}]` : ''}`);
    try {
      await this.announcer(message, from);
    } catch (e) {
      this.log(`community: could not post to the moderator channel: ${(e as Error).message}`);
    }
  }

  /** onPiece: records a finished piece for the output drift numbers (never throws). */
  recordPiece(record: JobRecord): void {
    if (this.closed || record.state !== 'done' || !record.outputs) return;
    const work = this.community.recordOutput(record.outputs.midi, record.modelVersion).catch((e: Error) => this.log(`community: could not record job ${record.id} for drift: ${e.message}`));
    this.recording.add(work);
    void work.finally(() => this.recording.delete(work));
  }

  retrain(request: RetrainRequest, onProgress: (p: RetrainProgress) => void = () => {}): Promise<RetrainOutcome> {
    const run = this.community.retrain(request, (p) => {
      this.ownRuns.add(p.runId);
      onProgress(p);
    });
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
    return run;
  }

  /** Arms the cron schedule (unless NOCTURNE_RETRAIN_SCHEDULE=off); each outcome goes to the moderators. */
  async startSchedule(): Promise<void> {
    let stage = '';
    const schedule = await this.community.startSchedule(
      (outcome) => {
        void this.servingSwitched().then((switched) => this.announce(retrainMessage(outcome, 'Scheduled retraining', switched)));
      },
      (p) => {
        this.ownRuns.add(p.runId);
        if (p.stage !== stage) this.log(`scheduled retraining ${p.runId}: ${p.stage}: ${p.line}`);
        stage = p.stage;
      },
      this.log,
    );
    this.schedule = schedule;
    if (schedule) this.log(`community: retraining scheduled "${schedule.expression}" (${schedule.timezone}); next run ${schedule.nextRun().toISOString().slice(0, 16).replace('T', ' ')} UTC`);
    else this.log('community: no retraining schedule (NOCTURNE_RETRAIN_SCHEDULE=off); moderators can /retrain');
  }

  /**
   * Stops a retraining run this process started (SIGKILL, which the engine side is built to
   * survive: the serving model and the contributions stay as they were) and waits for it to be
   * tidied up. Runs of other processes are left alone, and so are runs on `nocturne worker`
   * processes (REDIS_URL): they go on without this bot, and a promotion still reaches the workers.
   */
  async stopRuns(): Promise<void> {
    if (this.community.retrainsRemotely) return;
    const status = await this.community.retrainStatus().catch(() => undefined);
    const run = status?.running;
    const owner = status?.lock?.owner;
    if (run && owner && this.ownRuns.has(run.runId) && owner.runId === run.runId && owner.host === hostname() && owner.pid === run.pid && run.pid !== process.pid) {
      this.log(`stopping retraining run ${run.runId} (pid ${run.pid}); nothing it made is used, and it can be started again`);
      try {
        process.kill(run.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Stops own runs, lets pending drift records land, then closes the schedule, the watch and the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stopRuns();
    this.closed = true;
    await Promise.allSettled([...this.recording]);
    await this.community.close();
  }
}
