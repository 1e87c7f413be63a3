/**
 * The script discord.js's ShardingManager forks for each shard (see discordShards.ts). It runs
 * under tsx: the manager passes `--import tsx` in the child's execArgv.
 * runShard lives here, in the shard process's entry, and not in discordShards.ts: it starts the
 * bot (app/start.ts), which itself imports discordShards.ts for the manager, and the two files
 * would import each other.
 */
import type { Started } from './started.ts';
import type { Config } from './config.ts';
import { shardRoleFromEnv } from './discordShards.ts';

/**
 * A shard process: the bot for its shards, until the manager sends SIGTERM (or goes away).
 * SIGINT is left to the manager (Ctrl-C reaches every process of the terminal's group; the manager
 * then stops each shard once).
 */
export async function runShard(write: (line: string) => void): Promise<number> {
  const { ConfigError, loadConfig } = await import('./config.ts');
  const { startBot } = await import('./start.ts');
  let role: { ids: number[]; count: number };
  try {
    role = shardRoleFromEnv();
  } catch (e) {
    write(`nocturne shard: ${(e as Error).message}`);
    return 2;
  }
  const log = (line: string) => write(`shard ${role.ids.join(',')}: ${line}`);
  let config: Config;
  try {
    // Slack and the terminal run once, in the manager: a shard runs Discord only.
    config = { ...loadConfig(), slack: undefined, terminal: false };
  } catch (e) {
    if (e instanceof ConfigError) {
      log(e.message);
      return 2;
    }
    throw e;
  }
  process.on('SIGINT', () => undefined);
  // discord.js tells the manager of each disconnect over IPC; with the manager gone that send fails
  // (while this shard stops), which must not crash the stop.
  process.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'ERR_IPC_CHANNEL_CLOSED') log(`ipc: ${e.message}`);
  });
  let started: Started;
  // Listening from the start: a stop asked for while this shard starts (the manager reports it
  // ready before its bot has re-queued its jobs; or the manager went away) comes right after.
  const stopAsked = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('disconnect', () => resolve('the shard manager is gone'));
  });
  try {
    started = await startBot(config, log, { shard: role, schedule: role.ids.includes(0) });
  } catch (e) {
    if (process.env.NOCTURNE_DEBUG === '1') console.error(e);
    log(`could not start: ${(e as Error).message.split('\n')[0]}`);
    return 1;
  }
  const why = await stopAsked;
  log(`${why}: finishing the jobs in flight, then stopping`);
  process.once('SIGTERM', () => process.exit(130));
  await started.stop();
  return 0;
}


const code = await runShard((line) => process.stderr.write(`${line}\n`)).catch((e: Error) => {
  if (process.env.NOCTURNE_DEBUG === '1') console.error(e);
  process.stderr.write(`nocturne shard: ${e.message.split('\n')[0]}\n`);
  return 1;
});
// Connections (Redis, the gateway) may keep the loop alive; the bot is closed by now.
process.exit(code);
