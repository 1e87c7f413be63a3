/**
 * `npm start` / `nocturne start`: checks the configuration, opens the community loop (when it is
 * on) and the bot on the model the registry says serves, starts the front ends (the terminal
 * prompt when no chat tokens are set; Discord and/or Slack when they are), answers the jobs a
 * previous run left unfinished, arms the retraining schedule, and shuts down gracefully on
 * SIGTERM/SIGINT: stop a retraining run this process started, stop taking jobs, finish (or leave
 * queued) the ones in flight, close connections, the schedule and the community store.
 * With DISCORD_SHARDS it runs the Discord shard processes instead of a Discord client
 * (src/app/discordShards.ts).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.ts';
import type { FrontEnd } from '../adapters/frontEnd.ts';
import type { StartRole, Started } from './started.ts';
import type { JobRecord } from '../jobs/types.ts';
import type { Bot } from '../chat/bot.ts';
import type { CommunityService } from '../chat/community.ts';

export const START_USAGE = `usage: nocturne start   (npm start)
Runs the chat bot. With no chat tokens set, opens a prompt in this terminal where
/compose chopin 500, /styles, /help ... work; files go to ./out/<job-id>/.
Piped input runs each line and exits when all jobs are done:
  echo "/compose chopin 32" | npm start
With DISCORD_TOKEN and/or SLACK_BOT_TOKEN (+ SLACK_SIGNING_SECRET or SLACK_APP_TOKEN) set, runs those
instead (NOCTURNE_TERMINAL=on for both). Every variable is described in .env.example; a .env file
in the current folder is read first.`;

/**
 * Starts everything per `config`; resolves with a stop function once all front ends are up. With
 * DISCORD_SHARDS (and no shard role) this process becomes the shard manager instead.
 */
export async function startBot(config: Config, log: (line: string) => void, role: StartRole = {}): Promise<Started> {
  if (config.discord?.shards !== undefined && !role.shard) {
    // The shard manager: no Discord client here; one process per shard runs startBot with its role.
    const { startShardManager } = await import('./discordShards.ts');
    return startShardManager(config, log, (rest, restRole) => startBot(rest, log, restRole));
  }
  // Loaded only once the configuration is known to be good, so a bad one fails fast.
  const { describeStore, storeLocation } = await import('../storage/backend.ts');
  log(`store: job records, settings${config.community ? ' and the community loop\'s records' : ''} in ${describeStore(storeLocation(config.dataDir, config.storeUrl))}${config.storeUrl ? ` (STORE_URL; contributed files and model versions stay in ${config.dataDir})` : ''}`);
  const community = await openCommunity(config, log);
  const modelDir = community ? await servingModelDir(community, log) : config.modelDir;
  const bot = await openBot(config, log, role, modelDir, community);
  community?.attach(bot);
  const fronts = await startFrontEnds(config, log, role, bot, community);
  const owns = await shardOwnership(role);
  await recoverJobs(bot, fronts, owns, log);
  if (community) await armCommunity(community, fronts, role, log);
  const stop = stopper(config, bot, fronts, community);
  // Only the terminal ends by itself; with a chat platform running, the bot runs until a signal.
  const ended = fronts.every((f) => f.ended) ? Promise.all(fronts.map((f) => f.ended)).then(() => undefined) : new Promise<void>(() => {});
  return { bot, community, ended, stop };
}

/** The community loop, when it is on (with retraining on the workers when REDIS_URL is set). */
async function openCommunity(config: Config, log: (line: string) => void): Promise<CommunityService | undefined> {
  if (!config.community) {
    if (config.communityNote) log(config.communityNote);
    return undefined;
  }
  const { Community } = await import('../community/community.ts');
  const { CommunityService } = await import('../chat/community.ts');
  const community = new CommunityService(await Community.open(config.community, log), log);
  if (config.redisUrl) {
    // Retraining runs on `nocturne worker` processes too (src/scaleout/retrainQueue.ts).
    try {
      const { RedisRetraining } = await import('../scaleout/retrainQueue.ts');
      community.community.useRemoteRetraining(await RedisRetraining.open(config.redisUrl, log));
      log('community: retraining runs on nocturne worker processes (Redis queue "retrain"), one at a time across all of them');
    } catch (e) {
      await community.close();
      throw e;
    }
  }
  return community;
}

/** The registry decides what serves (the shipped model at first, then promotions and rollbacks). */
async function servingModelDir(community: CommunityService, log: (line: string) => void): Promise<string> {
  const serving = await community.community.registry.current();
  log(`community: serving model ${serving.version} from ${serving.dir}`);
  return serving.dir;
}

/** The bot on `modelDir`, under this process's instance name (closes the community loop if it cannot open). */
async function openBot(config: Config, log: (line: string) => void, role: StartRole, modelDir: string, community: CommunityService | undefined): Promise<Bot> {
  const { Bot } = await import('../chat/bot.ts');
  // Each shard process is a bot process of its own on the shared store: its own instance name.
  const { defaultInstanceSettings } = await import('../scaleout/instances.ts');
  const base = config.instance ?? defaultInstanceSettings();
  const instance = role.shard ? { ...base, name: `${base.name.slice(0, 48)}-shard${role.shard.ids.join('.')}` } : base;
  let bot: Bot;
  try {
    bot = await Bot.open({
      instance,
      modelDir,
      dataDir: config.dataDir,
      outDir: config.outDir,
      backend: config.backend,
      limits: config.limits,
      log,
      community,
      redisUrl: config.redisUrl,
      storeUrl: config.storeUrl,
      onPiece: community ? (record) => community.recordPiece(record) : undefined,
    });
  } catch (e) {
    await community?.close();
    throw e;
  }
  log(`instance ${instance.name} (NOCTURNE_INSTANCE): heartbeat every ${instance.heartbeatMs / 1000} s; open jobs of instances silent for ${instance.staleMs / 1000} s are taken over`);
  return bot;
}

/** The configured front ends, started; if one cannot start, everything opened so far is closed. */
async function startFrontEnds(config: Config, log: (line: string) => void, role: StartRole, bot: Bot, community: CommunityService | undefined): Promise<FrontEnd[]> {
  const fronts: FrontEnd[] = [];
  try {
    if (config.discord) {
      const { DiscordAdapter } = await import('../adapters/discord/discord.ts');
      const shard = role.shard;
      fronts.push(new DiscordAdapter(bot, config.discord, log, shard ? { registerCommands: false, shardLabel: `shard ${shard.ids.join(',')} of ${shard.count}` } : {}));
    }
    if (config.slack) {
      const { SlackAdapter } = await import('../adapters/slack/slack.ts');
      fronts.push(new SlackAdapter(bot, config.slack, log));
    }
    if (config.terminal) {
      const { TerminalAdapter } = await import('../adapters/terminal/terminal.ts');
      fronts.push(new TerminalAdapter(bot, { log }));
    }
    for (const f of fronts) await f.start();
  } catch (e) {
    await Promise.allSettled(fronts.map((f) => f.stop()));
    await bot.close(0);
    await community?.close();
    throw e;
  }
  return fronts;
}

/** In a shard process, which open jobs are its own (its servers' and, on shard 0, the DMs). */
async function shardOwnership(role: StartRole): Promise<((record: JobRecord) => boolean) | undefined> {
  if (!role.shard) return undefined;
  const { ownsJob } = await import('./discordShards.ts');
  const { ids, count } = role.shard;
  return (record) => ownsJob(record, ids, count);
}

/** Answers the jobs a previous run left open, and watches for those of instances that go away. */
async function recoverJobs(bot: Bot, fronts: FrontEnd[], owns: ((record: JobRecord) => boolean) | undefined, log: (line: string) => void): Promise<void> {
  const platforms = fronts.map((f) => f.platform);
  const replyFor = (record: JobRecord) => fronts.find((f) => f.platform === record.who.platform)?.replyFor(record);
  const outcome = await bot.recover(platforms, replyFor, owns);
  if (outcome.requeued.length) log(`resumed ${outcome.requeued.length} job(s) a previous run left unfinished: ${outcome.requeued.join(', ')}`);
  if (outcome.apologized.length) log(`apologized for ${outcome.apologized.length} job(s) that could not be resumed (too old, or in progress during two crashes): ${outcome.apologized.join(', ')}`);
  if (outcome.waiting.length) log(`${outcome.waiting.length} unfinished job(s) wait for a platform that is not running now: ${outcome.waiting.join(', ')}`);
  if (outcome.takenOver.length) log(`took over ${outcome.takenOver.length} job(s) of gone instance(s): ${outcome.takenOver.join(', ')}`);
  if (outcome.othersLive.length) log(`left ${outcome.othersLive.length} open job(s) to the other running bot instance(s) on this store`);
  // A bot that crashed and does not come back: its jobs are taken over while this one runs.
  bot.watchOrphans(platforms, replyFor, owns);
}

/** The moderators' notices go to each platform's moderator channel; the retraining schedule is armed. */
async function armCommunity(community: CommunityService, fronts: FrontEnd[], role: StartRole, log: (line: string) => void): Promise<void> {
  // The service also logs each notice.
  community.setAnnouncer(async (m, from) => {
    const results = await Promise.allSettled(fronts.filter((f) => f.announce).map((f) => f.announce!(m, from)));
    for (const r of results) if (r.status === 'rejected') log(`could not post to a moderator channel: ${(r.reason as Error).message}`);
  });
  if (role.shard && !role.shard.ids.includes(0)) community.foreignNotices = false;
  if (role.schedule !== false) await community.startSchedule().catch((e: Error) => log(`community: the retraining schedule could not start (${e.message}); moderators can still /retrain`));
}

/** The graceful stop, once however often it is asked for. */
function stopper(config: Config, bot: Bot, fronts: FrontEnd[], community: CommunityService | undefined): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= (async () => {
      // A retraining run is stopped first (it is safe to kill); its command then reports that.
      await community?.stopRuns();
      // The grace period leaves time before the deadline for the answers, connections and stores.
      await bot.close(Math.min(config.shutdownGraceMs, Math.max(0, config.shutdownDeadlineMs - 10_000)));
      // A front end whose platform went away may never finish closing: wait a few seconds at most.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(fronts.map((f) => f.stop())), new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      await community?.close();
    })());
}

export async function runStart(argv: string[], log: (line: string) => void): Promise<number> {
  if (argv.length) {
    log(`nocturne start takes no arguments (got ${argv.join(' ')}); configure it with environment variables\n\n${START_USAGE}`);
    return 2;
  }
  const envFile = resolve('.env');
  if (existsSync(envFile)) process.loadEnvFile(envFile);
  let config: Config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      log(e.message);
      return 2;
    }
    throw e;
  }
  // Listening before the start (a signal then quits at once, as it did without a listener), so that
  // one that arrives just as the start ends is not missed.
  let up = false;
  const signalled = new Promise<string>((resolveSignal) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => (up ? resolveSignal(signal) : process.exit(130)));
  });
  const { ended, stop } = await startBot(config, log);
  up = true;
  const why = await Promise.race([ended.then(() => 'end of input'), signalled]);
  const hard = (signal: NodeJS.Signals) => process.once(signal, () => process.exit(130));
  hard('SIGTERM');
  hard('SIGINT');
  if (why === 'end of input') {
    await stop();
    return 0;
  }
  const deadlineS = config.shutdownDeadlineMs / 1000;
  log(`${why}: finishing the jobs in flight, then stopping, ${deadlineS} s at most (send it again to quit at once)`);
  // A shutdown must end even when a platform went away at the same moment (discord.js then keeps
  // reconnecting after its client is destroyed, and answers to the dropped platform never go out):
  // at the deadline the process exits, and the jobs not finished stay open in the store, resumed
  // by the next start.
  const deadline = setTimeout(() => {
    log(`shutdown deadline (NOCTURNE_SHUTDOWN_DEADLINE_S=${deadlineS}) passed: exiting now; unfinished jobs stay queued for the next start`);
    process.exit(1);
  }, config.shutdownDeadlineMs);
  await stop();
  clearTimeout(deadline);
  // Everything of ours is closed; a connection that a library keeps reopening must not hold the
  // process (the timer is unref'd, so a process with nothing left exits at once without it).
  setTimeout(() => {
    log('stopped, but a connection is still open (a chat platform that went away): exiting');
    process.exit(0);
  }, 1000).unref();
  return 0;
}
