/**
 * What a start of the bot is asked to be (its role under DISCORD_SHARDS) and what it gives back:
 * shared by app/start.ts (startBot) and app/discordShards.ts (the shard manager), which calls
 * startBot for the front ends it runs besides the shards.
 */
import type { Bot } from '../chat/bot.ts';
import type { CommunityService } from '../chat/community.ts';

/** This process's part when DISCORD_SHARDS is set (src/app/discordShards.ts). */
export interface StartRole {
  /** This process is a shard process: its Discord client holds these shard ids of `count`. */
  shard?: { ids: number[]; count: number };
  /** Arm the retraining schedule here (default true; with sharding only shard 0 does). */
  schedule?: boolean;
}

export interface Started {
  /** Absent in a shard manager that runs no other front end (it then runs no bot itself). */
  bot?: Bot;
  community?: CommunityService;
  ended: Promise<void>;
  stop: () => Promise<void>;
}
