/**
 * The one shape of a front end (src/adapters/discord/, slack/, terminal/), as the process that runs
 * them sees it (src/app/start.ts): it starts and stops each alike, finds the reply for a job
 * recovered after a restart on its platform, and posts the moderators' notices through it.
 */
import type { ChannelRef, InfoMessage, Reply } from '../../commands/shared/command.ts';
import type { JobRecord, Platform } from '../jobs/types.ts';

export interface FrontEnd {
  /** The platform its requests come from; job records name it (JobRecord.who.platform). */
  readonly platform: Platform;
  /** Connects (logs in, listens, opens the prompt); resolves once it takes requests. */
  start(): Promise<unknown>;
  /** Stops taking requests and closes its connections. */
  stop(): Promise<void>;
  /** A reply to the person who asked for `record`, for jobs recovered after a restart. */
  replyFor(record: JobRecord): Reply | undefined;
  /** Resolves when the front end ends by itself (the terminal at end of input); absent: it runs until stopped. */
  readonly ended?: Promise<void>;
  /** Posts a notice to this platform's moderator channel, if one is configured. */
  announce?(message: InfoMessage, from?: ChannelRef): Promise<void>;
}
