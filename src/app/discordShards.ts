/**
 * Discord sharding (DISCORD_SHARDS=auto or a number): `nocturne start` becomes a shard manager.
 *
 * What runs where:
 *   - the manager (this module's startShardManager, in the `nocturne start` process) runs no
 *     Discord client. It registers the slash commands once, over REST, then runs discord.js's
 *     ShardingManager in 'process' mode: one child process per shard, respawned when it dies.
 *     Slack and the terminal, when configured, run here too, once, with a bot of their own.
 *   - each shard process (src/app/discordShardMain.ts → runShard) is a whole bot for its
 *     shards: discord.js reads its shard ids from SHARDS/SHARD_COUNT, Discord sends it the servers
 *     (and the interactions) with (guild_id >> 22) % count among them, and it composes through
 *     Redis (REDIS_URL is required: no shard loads the model). After a restart it re-queues only
 *     the open jobs of its own servers (DMs belong to shard 0). Shard 0 also arms the retraining
 *     schedule and announces model changes made by other processes.
 *
 * A crash loop (a shard that dies five times without becoming ready) stops the manager with a
 * one-line reason instead of respawning forever.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REST, Routes, ShardingManager, type Shard } from 'discord.js';
import { botCommands } from '../chat/bot.ts';
import type { StartRole, Started } from './started.ts';
import type { DiscordConfig } from '../adapters/discord/discord.ts';
import type { Config } from './config.ts';
import type { JobRecord } from '../jobs/types.ts';
import { discordCommandsJson } from '../adapters/discord/discord.ts';

/** The script each shard process runs. */
export const SHARD_ENTRY = fileURLToPath(new URL('./discordShardMain.ts', import.meta.url));
/** Discord allows one IDENTIFY per 5 s per bucket: the manager starts the shards this far apart. */
const SPAWN_DELAY_MS = 5500;
/** How long a shard process may take to start and become ready (generous: it loads TypeScript). */
const READY_TIMEOUT_MS = 180_000;
/** Deaths without a ready in between after which the manager gives up. */
const CRASH_LOOP_DEATHS = 5;

/** The shard that receives a server's events: (guild_id >> 22) % count. Pure. */
export function shardOfGuild(guildId: string, count: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(count));
}

/** Whether a job belongs to a shard process holding `ids`: its server's shard, or shard 0 for DMs. Pure. */
export function ownsJob(record: JobRecord, ids: readonly number[], count: number): boolean {
  if (record.who.platform !== 'discord') return true;
  const guild = record.who.serverId;
  return ids.includes(guild && /^\d+$/.test(guild) ? shardOfGuild(guild, count) : 0);
}

/**
 * Node options for a shard process: this process's own, with tsx's loader (however this process
 * got it: `tsx`, `node --import tsx`, or bin/nocturne.js registering it) replaced by one
 * `--import` of the tsx this module resolves, so the child can run TypeScript.
 */
export function shardExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    const takesValue = a === '--import' || a === '--require' || a === '-r' || a === '--loader' || a === '--experimental-loader';
    if (takesValue && /tsx/.test(execArgv[i + 1] ?? '')) {
      i++;
      continue;
    }
    if (/^--(import|require|loader|experimental-loader)=.*tsx/.test(a)) continue;
    // An inspector port would clash between the manager and every shard.
    if (/^--inspect/.test(a)) continue;
    kept.push(a);
  }
  return [...kept, '--import', import.meta.resolve('tsx')];
}

function restFor(discord: DiscordConfig): REST {
  return new REST({ api: discord.apiBase }).setToken(discord.token);
}

/** Discord's recommended shard count for this bot (GET /gateway/bot on DISCORD_API_BASE). */
async function recommendedShards(discord: DiscordConfig): Promise<number> {
  const body = (await restFor(discord).get(Routes.gatewayBot())) as { shards?: number };
  if (!Number.isInteger(body.shards) || (body.shards ?? 0) < 1) throw new Error(`Discord's /gateway/bot gave no shard count (${JSON.stringify(body).slice(0, 200)})`);
  return body.shards!;
}

/** Registers the slash commands once for all shards (globally, or in DISCORD_GUILD_ID). */
async function registerCommands(config: Config, discord: DiscordConfig, log: (line: string) => void): Promise<void> {
  const rest = restFor(discord);
  const body = discordCommandsJson(botCommands(Boolean(config.community)), discord);
  try {
    const app = (await rest.get(Routes.currentApplication())) as { id: string };
    await rest.put(discord.guildId ? Routes.applicationGuildCommands(app.id, discord.guildId) : Routes.applicationCommands(app.id), { body });
  } catch (e) {
    throw new Error(`could not register the slash commands: ${(e as Error).message}`);
  }
  log(`discord shards: ${body.length} commands registered ${discord.guildId ? `in guild ${discord.guildId}` : 'globally (may take up to an hour to appear)'}, once for all shards`);
}

function exitOf(child: ChildProcess | null | undefined): string {
  if (!child) return 'exited';
  return child.signalCode ? `was killed (${child.signalCode})` : `exited (code ${child.exitCode})`;
}

/** SIGTERM to a shard process (it finishes what it can), SIGKILL after `graceMs`; resolves once it is gone. */
async function stopShard(shard: Shard, graceMs: number): Promise<void> {
  const child = shard.process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * The `nocturne start` process when DISCORD_SHARDS is set: registers the commands, starts the
 * other front ends (via `startRest`, without Discord), spawns the shard processes and keeps them
 * running. Resolves once every shard is ready.
 */
export async function startShardManager(config: Config, log: (line: string) => void, startRest: (config: Config, role: StartRole) => Promise<Started>): Promise<Started> {
  const discord = config.discord!;
  const total = discord.shards === 'auto' ? await recommendedShards(discord) : discord.shards!;
  await registerCommands(config, discord, log);

  let inner: Started | undefined;
  if (config.slack || config.terminal) {
    // One bot here for the other platforms; shard 0 runs the retraining schedule.
    inner = await startRest({ ...config, discord: undefined }, { schedule: false });
  }

  // No respawns until every shard has been ready once: a shard that cannot start fails the start.
  const manager = new ShardingManager(SHARD_ENTRY, { totalShards: total, mode: 'process', respawn: false, token: discord.token, execArgv: shardExecArgv() });
  let stopping = false;
  let giveUp!: (e: Error) => void;
  const failed = new Promise<never>((_, reject) => (giveUp = reject));
  failed.catch(() => undefined);
  const deathsSinceReady = new Map<number, number>();

  const killAll = async (graceMs: number) => {
    manager.respawn = false;
    await Promise.allSettled([...manager.shards.values()].map((s) => stopShard(s, graceMs)));
  };

  manager.on('shardCreate', (shard: Shard) => {
    // Mode 'process': the child is always a ChildProcess.
    shard.on('spawn', (child) => log(`discord shards: shard ${shard.id} of ${total} started (pid ${(child as ChildProcess).pid})`));
    shard.on('ready', () => {
      deathsSinceReady.set(shard.id, 0);
      log(`discord shards: shard ${shard.id} of ${total} ready`);
    });
    shard.on('death', (dead) => {
      const child = dead as ChildProcess;
      if (stopping) return;
      if (!manager.respawn) {
        log(`discord shards: shard ${shard.id} (pid ${child?.pid}) ${exitOf(child)} before it was ready`);
        return;
      }
      const deaths = (deathsSinceReady.get(shard.id) ?? 0) + 1;
      deathsSinceReady.set(shard.id, deaths);
      if (deaths >= CRASH_LOOP_DEATHS) {
        stopping = true;
        log(`discord shards: shard ${shard.id} died ${deaths} times without becoming ready (last: ${exitOf(child)}); stopping`);
        // Shard has already decided to respawn this one (it reads manager.respawn before telling us
        // of the death): stop after that, so that the new process is stopped too.
        manager.respawn = false;
        setImmediate(() => void killAll(5000).then(() => giveUp(new Error(`discord shard ${shard.id} keeps dying before it is ready (see its log lines above)`))));
        return;
      }
      log(`discord shards: shard ${shard.id} (pid ${child?.pid}) ${exitOf(child)}; respawning it`);
    });
    shard.on('error', (e: Error) => {
      if (!stopping) log(`discord shards: shard ${shard.id}: ${e.message}`);
    });
  });

  log(`discord shards: starting ${total} shard process${total === 1 ? '' : 'es'} (no Discord client in this process)`);
  try {
    await Promise.race([manager.spawn({ amount: total, delay: SPAWN_DELAY_MS, timeout: READY_TIMEOUT_MS }), failed]);
  } catch (e) {
    stopping = true;
    await killAll(5000);
    await inner?.stop();
    throw new Error(`the Discord shards did not start: ${(e as Error).message}`);
  }
  manager.respawn = true;
  log(`discord shards: all ${total} ready`);

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      stopping = true;
      // Each shard finishes its jobs in flight (NOCTURNE_SHUTDOWN_GRACE_S) before it exits.
      await killAll(config.shutdownGraceMs + 15_000);
      await inner?.stop();
    })());
  return { bot: inner?.bot, community: inner?.community, ended: failed, stop };
}

/** The shard ids and count the ShardingManager gave this process (SHARDS, SHARD_COUNT). */
export function shardRoleFromEnv(env: Record<string, string | undefined> = process.env): { ids: number[]; count: number } {
  const parsed: unknown = JSON.parse(env.SHARDS ?? 'null');
  const ids = (Array.isArray(parsed) ? parsed : [parsed]).map(Number);
  const count = Number(env.SHARD_COUNT);
  if (!ids.length || ids.some((id) => !Number.isInteger(id) || id < 0) || !Number.isInteger(count) || count < 1) throw new Error(`not started by the shard manager (SHARDS=${env.SHARDS}, SHARD_COUNT=${env.SHARD_COUNT})`);
  return { ids, count };
}
