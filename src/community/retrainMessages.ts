/**
 * What the bot's process (retrainProcess.ts) and the retraining child (retrainWorker.ts) pass each
 * other: the options in the child's argv and the messages it sends back over IPC. In a file of
 * their own so that neither side imports the other.
 */
import type { RetrainOutcome, RetrainProgress, RunOptions } from './retrain.ts';

export interface RetrainProcessOptions extends RunOptions {
  /**
   * The child ends as soon as this process is gone (its IPC channel closes), and never promotes
   * after that. A `nocturne worker` sets it: its Redis lock dies with it, so a run that outlived
   * it would overlap with the run that takes the lock over.
   */
  exitWithParent?: boolean;
}

export type FromRetrainWorker = { type: 'progress'; progress: RetrainProgress } | { type: 'outcome'; outcome: RetrainOutcome };
