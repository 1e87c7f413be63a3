/**
 * The script discord.js's ShardingManager forks for each shard (see discordShards.ts). It runs
 * under tsx: the manager passes `--import tsx` in the child's execArgv.
 */
import { runShard } from './discordShards.ts';

const code = await runShard((line) => process.stderr.write(`${line}\n`)).catch((e: Error) => {
  if (process.env.NOCTURNE_DEBUG === '1') console.error(e);
  process.stderr.write(`nocturne shard: ${e.message.split('\n')[0]}\n`);
  return 1;
});
// Connections (Redis, the gateway) may keep the loop alive; the bot is closed by now.
process.exit(code);
