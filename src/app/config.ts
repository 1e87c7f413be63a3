/**
 * Configuration for `npm start`, from environment variables (and `.env`, loaded by the launcher).
 * loadConfig checks everything at once and throws one ConfigError that lists every missing or
 * invalid variable. .env.example documents each of them.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { COMMUNITY_ENV_DEFAULTS, CommunityConfigError, communityConfigFromEnv, type CommunityConfig } from '../community/config.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../model/backend.ts';
import { DEFAULT_QUEUE_LIMITS, type QueueLimits } from '../jobs/queue.ts';
import type { WorkerOptions } from '../scaleout/worker.ts';
import { DISCORD_ATTACHMENT_HOSTS, SLACK_FILE_HOSTS, parseHostList } from '../chat/download.ts';
import type { DiscordConfig } from '../adapters/discord/discord.ts';
import type { SlackConfig } from '../adapters/slack/slack.ts';
import { redactedUrl } from '../redact.ts';
import { MUSIC_MAX_SECONDS } from '../engine/types.ts';
import { checkStoreUrl } from '../storage/backend.ts';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_SCAN_MS, DEFAULT_STALE_MS, INSTANCE_NAME_PATTERN, defaultInstanceName, type InstanceSettings } from '../scaleout/instances.ts';

export const DEFAULT_DISCORD_API_BASE = 'https://discord.com/api';
export const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';
/** Discord's upload limit for bots without boosts: 10 MB per request. */
export const DEFAULT_DISCORD_UPLOAD_LIMIT_MB = 10;
export const DEFAULT_SLACK_UPLOAD_LIMIT_MB = 1000;

export interface Config {
  modelDir: string;
  dataDir: string;
  outDir: string;
  backend: BackendChoice;
  /** Run the terminal prompt: 'auto' means only when no chat platform is configured. */
  terminal: boolean;
  limits: QueueLimits;
  shutdownGraceMs: number;
  /**
   * NOCTURNE_SHUTDOWN_DEADLINE_S: after a SIGTERM/SIGINT the process exits by then whatever still
   * hangs (a chat platform that went away keeps reconnecting); jobs not finished stay open in the store.
   */
  shutdownDeadlineMs: number;
  discord?: DiscordConfig;
  slack?: SlackConfig;
  /** The community loop's settings (src/community/config.ts), when it runs. */
  community?: CommunityConfig;
  /** Why the community loop is off, when NOCTURNE_COMMUNITY=auto turned it off (for the log). */
  communityNote?: string;
  /** REDIS_URL: jobs go to `nocturne worker` processes through BullMQ; unset, they run in this process. */
  redisUrl?: string;
  /**
   * STORE_URL: job records, server settings and the community loop's records go to this Redis or
   * Postgres store; unset, to the SQLite file in dataDir. May hold a password: log it only
   * through describeStore/redactedStoreUrl.
   */
  storeUrl?: string;
  /**
   * NOCTURNE_INSTANCE (default: the host name) and the heartbeat timing: job records name their
   * owner, and bots sharing a store take over only the jobs of instances that are gone.
   */
  instance?: InstanceSettings;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`configuration: ${problems.length} problem${problems.length === 1 ? '' : 's'} (see .env.example):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads one variable; empty counts as unset. */
function get(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

/** A whole-number setting in [min, max]; a bad value is recorded in `problems` and the fallback used. */
function intSetting(env: Env, problems: string[], name: string, fallback: number, min: number, max: number): number {
  const raw = get(env, name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    problems.push(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  return v;
}

/** STORE_URL, checked (the password never appears in a problem); unset: the SQLite file. */
function storeSetting(env: Env, problems: string[]): string | undefined {
  const raw = get(env, 'STORE_URL');
  if (raw === undefined) return undefined;
  const checked = checkStoreUrl(raw);
  if ('problem' in checked) {
    problems.push(checked.problem);
    return undefined;
  }
  return checked.url;
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => intSetting(env, problems, name, fallback, min, max);
  const url = (name: string, fallback: string, protocols: string[]): string => {
    const raw = get(env, name);
    if (raw === undefined) return fallback;
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) throw new Error('protocol');
      return raw;
    } catch {
      // Shown without its password (REDIS_URL may carry one).
      problems.push(`${name} must be an ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL, got ${JSON.stringify(redactedUrl(raw, 'a value that does not parse as a URL'))}`);
      return fallback;
    }
  };

  const modelDir = resolve(cwd, get(env, 'NOCTURNE_MODEL_DIR') ?? 'models/default');
  if (!existsSync(join(modelDir, 'model.json'))) problems.push(`NOCTURNE_MODEL_DIR: no model.json in ${modelDir} (train one with \`nocturne train\`, or point this at a model folder)`);
  const dataDir = resolve(cwd, get(env, 'NOCTURNE_DATA_DIR') ?? 'data');
  const outDir = resolve(cwd, get(env, 'NOCTURNE_OUT_DIR') ?? 'out');
  const backendRaw = get(env, 'NOCTURNE_BACKEND') ?? 'auto';
  if (!(BACKEND_CHOICES as readonly string[]).includes(backendRaw)) problems.push(`NOCTURNE_BACKEND must be one of ${BACKEND_CHOICES.join(', ')}, got ${JSON.stringify(backendRaw)}`);
  const terminalRaw = (get(env, 'NOCTURNE_TERMINAL') ?? 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(terminalRaw)) problems.push(`NOCTURNE_TERMINAL must be auto, on or off, got ${JSON.stringify(terminalRaw)}`);

  const d = DEFAULT_QUEUE_LIMITS;
  const limits: QueueLimits = {
    maxWaiting: int('NOCTURNE_QUEUE_MAX', d.maxWaiting, 1, 100_000),
    maxBatch: int('NOCTURNE_BATCH_MAX', d.maxBatch, 1, 64),
    batchWindowMs: int('NOCTURNE_BATCH_WINDOW_MS', d.batchWindowMs, 0, 5000),
    userMaxOpen: int('NOCTURNE_USER_MAX_OPEN', d.userMaxOpen, 1, 1000),
    userPerMinute: int('NOCTURNE_USER_PER_MINUTE', d.userPerMinute, 1, 10_000),
    serverPerMinute: int('NOCTURNE_SERVER_PER_MINUTE', d.serverPerMinute, 1, 100_000),
    maxMusicSeconds: int('NOCTURNE_MAX_MUSIC_MINUTES', (d.maxMusicSeconds ?? MUSIC_MAX_SECONDS) / 60, 1, 600) * 60,
  };
  const shutdownGraceMs = int('NOCTURNE_SHUTDOWN_GRACE_S', 30, 0, 600) * 1000;
  // Default: the grace period and 30 s more for the answers, the connections and the stores.
  const shutdownDeadlineMs = int('NOCTURNE_SHUTDOWN_DEADLINE_S', shutdownGraceMs / 1000 + 30, 1, 3600) * 1000;
  if (shutdownDeadlineMs <= shutdownGraceMs) problems.push(`NOCTURNE_SHUTDOWN_DEADLINE_S (${shutdownDeadlineMs / 1000}) must be longer than NOCTURNE_SHUTDOWN_GRACE_S (${shutdownGraceMs / 1000}): the deadline ends the whole shutdown, of which the grace period is the part pieces in progress may use`);
  const redisUrl = get(env, 'REDIS_URL') === undefined ? undefined : url('REDIS_URL', '', ['redis:', 'rediss:']) || undefined;
  const storeUrl = storeSetting(env, problems);
  const instanceRaw = get(env, 'NOCTURNE_INSTANCE');
  if (instanceRaw !== undefined && !INSTANCE_NAME_PATTERN.test(instanceRaw)) problems.push(`NOCTURNE_INSTANCE must be a name of up to 64 letters, digits, dots, dashes and underscores, starting with a letter or digit (one per bot process sharing a store), got ${JSON.stringify(instanceRaw.slice(0, 80))}`);
  const heartbeatS = int('NOCTURNE_HEARTBEAT_S', DEFAULT_HEARTBEAT_MS / 1000, 1, 600);
  const staleS = int('NOCTURNE_INSTANCE_STALE_S', DEFAULT_STALE_MS / 1000, 2, 3600);
  const scanS = int('NOCTURNE_TAKEOVER_SCAN_S', DEFAULT_SCAN_MS / 1000, 1, 3600);
  if (staleS < 2 * heartbeatS) problems.push(`NOCTURNE_INSTANCE_STALE_S (${staleS}) must be at least twice NOCTURNE_HEARTBEAT_S (${heartbeatS}): a running bot whose heartbeat is merely late would otherwise count as gone and lose its jobs`);
  const instance: InstanceSettings = {
    name: instanceRaw !== undefined && INSTANCE_NAME_PATTERN.test(instanceRaw) ? instanceRaw : defaultInstanceName(),
    heartbeatMs: heartbeatS * 1000,
    staleMs: staleS * 1000,
    scanMs: scanS * 1000,
  };

  const hosts = (name: string, fallback: readonly string[]): readonly string[] => {
    const raw = get(env, name);
    if (raw === undefined) return fallback;
    const { hosts: list, bad } = parseHostList(raw);
    if (bad.length || list.length === 0) problems.push(`${name} must be host names separated by commas (where the platform serves uploaded files), got ${JSON.stringify(raw.slice(0, 200))}`);
    return list.length ? list : fallback;
  };
  const attachmentHosts = hosts('DISCORD_ATTACHMENT_HOSTS', DISCORD_ATTACHMENT_HOSTS);
  const fileHosts = hosts('SLACK_FILE_HOSTS', SLACK_FILE_HOSTS);

  let discord: DiscordConfig | undefined;
  const discordToken = get(env, 'DISCORD_TOKEN');
  const guildId = get(env, 'DISCORD_GUILD_ID');
  const discordApi = url('DISCORD_API_BASE', DEFAULT_DISCORD_API_BASE, ['http:', 'https:']);
  const discordLimit = int('DISCORD_UPLOAD_LIMIT_MB', DEFAULT_DISCORD_UPLOAD_LIMIT_MB, 1, 500);
  if (guildId !== undefined && !/^\d{15,21}$/.test(guildId)) problems.push(`DISCORD_GUILD_ID must be a server id (15–21 digits: right-click the server, Copy Server ID), got ${JSON.stringify(guildId)}`);
  const shardsRaw = get(env, 'DISCORD_SHARDS')?.toLowerCase();
  let shards: number | 'auto' | undefined;
  if (shardsRaw !== undefined) {
    shards = shardsRaw === 'auto' ? 'auto' : Number(shardsRaw);
    if (shards !== 'auto' && (!Number.isInteger(shards) || shards < 1 || shards > 1000)) {
      problems.push(`DISCORD_SHARDS must be auto or a whole number of shards from 1 to 1000, got ${JSON.stringify(shardsRaw)}`);
      shards = undefined;
    }
    if (!discordToken) problems.push('DISCORD_SHARDS is set but DISCORD_TOKEN is not: sharding is for the Discord bot');
    // Every shard is a bot process; without Redis each would load its own copy of the model.
    else if (redisUrl === undefined) problems.push('DISCORD_SHARDS needs REDIS_URL: each shard process would otherwise load its own copy of the model (run redis-server and `nocturne worker`, see docs/scaling.md)');
  }
  if (discordToken) {
    if (/\s/.test(discordToken) || discordToken.split('.').length !== 3) problems.push('DISCORD_TOKEN does not look like a bot token (three dot-separated parts, from the Bot page of your Discord application)');
    discord = { token: discordToken.replace(/^Bot\s+/i, ''), guildId, apiBase: discordApi.replace(/\/+$/, ''), uploadLimitBytes: discordLimit * 1_000_000, attachmentHosts, ...(shards !== undefined ? { shards } : {}) };
  } else if (guildId) {
    problems.push('DISCORD_GUILD_ID is set but DISCORD_TOKEN is not: set the bot token too, or unset DISCORD_GUILD_ID');
  }

  let slack: SlackConfig | undefined;
  const botToken = get(env, 'SLACK_BOT_TOKEN');
  const signingSecret = get(env, 'SLACK_SIGNING_SECRET');
  const appToken = get(env, 'SLACK_APP_TOKEN');
  const slackPort = int('SLACK_PORT', 3000, 0, 65535);
  const slackApi = url('SLACK_API_URL', DEFAULT_SLACK_API_URL, ['http:', 'https:']);
  const slackLimit = int('SLACK_UPLOAD_LIMIT_MB', DEFAULT_SLACK_UPLOAD_LIMIT_MB, 1, 1000);
  if (botToken || signingSecret || appToken) {
    if (!botToken) problems.push('SLACK_BOT_TOKEN is missing (the xoxb- token from OAuth & Permissions), needed with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN');
    else if (!botToken.startsWith('xoxb-')) problems.push('SLACK_BOT_TOKEN must be a bot token starting with xoxb-');
    if (appToken && !appToken.startsWith('xapp-')) problems.push('SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information → App-Level Tokens, scope connections:write)');
    if (!appToken && !signingSecret) problems.push('Slack needs SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)');
    if (botToken) {
      slack = {
        botToken,
        mode: appToken ? 'socket' : 'http',
        signingSecret,
        appToken,
        port: slackPort,
        apiUrl: slackApi.endsWith('/') ? slackApi : `${slackApi}/`,
        uploadLimitBytes: slackLimit * 1_000_000,
        fileHosts,
      };
    }
  }

  // Moderation of the community loop.
  const ids = (name: string, pattern: RegExp, what: string): string[] | undefined => {
    const raw = get(env, name);
    if (raw === undefined) return undefined;
    const list = raw.split(/[\s,]+/).filter(Boolean);
    const bad = list.filter((id) => !pattern.test(id));
    if (bad.length) problems.push(`${name} must be ${what}, got ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
    return list.filter((id) => pattern.test(id));
  };
  const moderatorRoleIds = ids('NOCTURNE_MODERATOR_ROLE_IDS', /^\d{15,21}$/, 'Discord role ids separated by commas (15–21 digits: Server Settings → Roles → right-click a role → Copy Role ID)');
  const discordChannel = ids('NOCTURNE_DISCORD_MODERATOR_CHANNEL', /^\d{15,21}$/, 'one Discord channel id (15–21 digits: right-click the channel → Copy Channel ID)');
  const slackModerators = ids('NOCTURNE_SLACK_MODERATORS', /^[UW][A-Z0-9]{2,}$/, 'Slack user ids separated by commas (U… or W…: a profile → ⋮ → Copy member ID)');
  const slackChannel = ids('NOCTURNE_SLACK_MODERATOR_CHANNEL', /^[CG][A-Z0-9]{2,}$/, 'one Slack channel id (C… or G…: the channel\'s details, at the bottom)');
  if ((discordChannel?.length ?? 0) > 1) problems.push('NOCTURNE_DISCORD_MODERATOR_CHANNEL must be one channel id');
  if ((slackChannel?.length ?? 0) > 1) problems.push('NOCTURNE_SLACK_MODERATOR_CHANNEL must be one channel id');
  if (discord) discord = { ...discord, moderatorRoleIds: moderatorRoleIds ?? [], moderatorChannelId: discordChannel?.[0] };
  if (slack) slack = { ...slack, moderators: slackModerators ?? [], moderatorChannelId: slackChannel?.[0] };

  // The community loop: its settings are checked with the rest, and its problems join this message.
  const communityRaw = (get(env, 'NOCTURNE_COMMUNITY') ?? 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(communityRaw)) problems.push(`NOCTURNE_COMMUNITY must be auto, on or off, got ${JSON.stringify(communityRaw)}`);
  let community: CommunityConfig | undefined;
  let communityNote: string | undefined;
  const defaultDataset = resolve(cwd, COMMUNITY_ENV_DEFAULTS.NOCTURNE_DATASET_DIR);
  if (communityRaw === 'off') {
    communityNote = 'community: contributions and retraining are off (NOCTURNE_COMMUNITY=off)';
  } else if (communityRaw === 'auto' && get(env, 'NOCTURNE_DATASET_DIR') === undefined && !existsSync(defaultDataset)) {
    // A bot without the training corpus cannot measure drift or retrain: compose only.
    communityNote = `community: contributions and retraining are off: no training corpus at ${defaultDataset} (set NOCTURNE_DATASET_DIR, or NOCTURNE_COMMUNITY=on to require it)`;
  } else {
    try {
      community = communityConfigFromEnv(env, cwd);
    } catch (e) {
      if (!(e instanceof CommunityConfigError)) throw e;
      // The model folder and STORE_URL are reported once, by the checks above.
      const variable = (p: string) => /^([A-Z][A-Z0-9_]+)\b/.exec(p)?.[1];
      const reported = new Set(problems.map(variable).filter(Boolean));
      problems.push(...e.problems.filter((p) => !reported.has(variable(p))));
    }
  }

  if (terminalRaw === 'off' && !discordToken && !botToken) problems.push('NOCTURNE_TERMINAL=off and no chat platform is configured: nothing would run (set DISCORD_TOKEN or the SLACK_ variables)');
  if (problems.length) throw new ConfigError(problems);
  const terminal = terminalRaw === 'on' || (terminalRaw === 'auto' && !discord && !slack);
  return { modelDir, dataDir, outDir, backend: backendRaw as BackendChoice, terminal, limits, shutdownGraceMs, shutdownDeadlineMs, discord, slack, community, communityNote, redisUrl, storeUrl, instance };
}

/**
 * What `nocturne worker` reads from the environment: the worker's options less its prefix and log,
 * and whether it takes retraining jobs (NOCTURNE_WORKER_RETRAIN) with which lock TTL.
 */
export type WorkerConfig = Omit<WorkerOptions, 'prefix' | 'log'> & { retrain: boolean; retrainLockMs: number; storeUrl?: string };

/** Configuration for `nocturne worker`: REDIS_URL is required; one ConfigError lists every problem. */
export function loadWorkerConfig(env: Env = process.env, cwd = process.cwd()): WorkerConfig {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => intSetting(env, problems, name, fallback, min, max);
  const redisRaw = get(env, 'REDIS_URL');
  let redisUrl = '';
  if (redisRaw === undefined) problems.push('REDIS_URL is not set: a worker takes its jobs from Redis (e.g. redis://127.0.0.1:6379)');
  else {
    try {
      const u = new URL(redisRaw);
      if (!['redis:', 'rediss:'].includes(u.protocol)) throw new Error('protocol');
      redisUrl = redisRaw;
    } catch {
      problems.push('REDIS_URL must be a redis or rediss URL (e.g. redis://127.0.0.1:6379)');
    }
  }
  const modelDir = resolve(cwd, get(env, 'NOCTURNE_MODEL_DIR') ?? 'models/default');
  if (!existsSync(join(modelDir, 'model.json'))) problems.push(`NOCTURNE_MODEL_DIR: no model.json in ${modelDir} (train one with \`nocturne train\`, or point this at a model folder)`);
  const backendRaw = get(env, 'NOCTURNE_BACKEND') ?? 'auto';
  if (!(BACKEND_CHOICES as readonly string[]).includes(backendRaw)) problems.push(`NOCTURNE_BACKEND must be one of ${BACKEND_CHOICES.join(', ')}, got ${JSON.stringify(backendRaw)}`);
  const maxBatch = int('NOCTURNE_BATCH_MAX', DEFAULT_QUEUE_LIMITS.maxBatch, 1, 64);
  const batchWindowMs = int('NOCTURNE_BATCH_WINDOW_MS', DEFAULT_QUEUE_LIMITS.batchWindowMs, 0, 5000);
  const lockDurationMs = int('NOCTURNE_WORKER_LOCK_MS', 30_000, 1000, 600_000);
  const retrainRaw = (get(env, 'NOCTURNE_WORKER_RETRAIN') ?? 'on').toLowerCase();
  if (!['on', 'off'].includes(retrainRaw)) problems.push(`NOCTURNE_WORKER_RETRAIN must be on or off, got ${JSON.stringify(retrainRaw)}`);
  const retrainLockMs = int('NOCTURNE_RETRAIN_LOCK_MS', 60_000, 1000, 3_600_000);
  // A retraining run reads and writes the bots' community records: the same store as theirs.
  const storeUrl = storeSetting(env, problems);
  if (problems.length) throw new ConfigError(problems);
  return { redisUrl, modelDir, backend: backendRaw as BackendChoice, maxBatch, batchWindowMs, lockDurationMs, retrain: retrainRaw === 'on', retrainLockMs, storeUrl };
}
