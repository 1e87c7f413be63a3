/**
 * The retraining schedule: a node-cron task (NOCTURNE_RETRAIN_SCHEDULE, NOCTURNE_RETRAIN_TIMEZONE, noOverlap) that
 * calls the same retrain function a moderator's command calls. A class for the task's lifecycle.
 * The task is created stopped; start() arms it. Tests drive it with `task.execute()`.
 *
 * With a run coordinator (several bots on Redis), the task is node-cron's `distributed` kind: each
 * bot's task fires, and the coordinator lets only one of them run each scheduled slot.
 */
import cron, { type RunCoordinator, type ScheduledTask } from 'node-cron';

/** How long a coordinated firing's claim is kept (node-cron's distributedLease). */
const COORDINATED_LEASE_MS = 12 * 60 * 60 * 1000;

export class RetrainSchedule {
  readonly task: ScheduledTask;

  constructor(
    readonly expression: string,
    readonly timezone: string,
    run: () => Promise<unknown>,
    log: (line: string) => void = () => {},
    coordinator?: RunCoordinator,
  ) {
    if (!cron.validate(expression)) throw new Error(`retraining schedule: ${JSON.stringify(expression)} is not a cron expression`);
    this.task = cron.createTask(
      expression,
      async () => {
        try {
          await run();
        } catch (e) {
          log(`scheduled retraining failed: ${(e as Error).message}`);
        }
      },
      { name: 'nocturne-retrain', timezone, noOverlap: true, ...(coordinator ? { distributed: true, runCoordinator: coordinator, distributedLease: COORDINATED_LEASE_MS } : {}) },
    );
  }

  async start(): Promise<void> {
    await this.task.start();
  }

  async stop(): Promise<void> {
    await this.task.stop();
  }

  /** When the next scheduled run is (or, while stopped, would be) due. */
  nextRun(): Date {
    return this.task.getNextRuns(1)[0];
  }

  async destroy(): Promise<void> {
    await this.task.destroy();
  }
}
