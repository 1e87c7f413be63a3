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

/** The helpers every step of loadConfig reads with; each bad value is added to `problems`. */
interface Reader {
  env: Env;
  cwd: string;
  problems: string[];
  get: (name: string) => string | undefined;
  int: (name: string, fallback: number, min: number, max: number) => number;
  url: (name: string, fallback: string, protocols: string[]) => string;
}

function reader(env: Env, cwd: string): Reader {
  const problems: string[] = [];
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
  return { env, cwd, problems, get: (name) => get(env, name), int: (name, fallback, min, max) => intSetting(env, problems, name, fallback, min, max), url };
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const r = reader(env, cwd);
  const { modelDir, dataDir, outDir, backend, terminalRaw } = folderSettings(r);
  const limits = queueLimits(r);
  const { shutdownGraceMs, shutdownDeadlineMs } = shutdownSettings(r);
  const redisUrl = r.get('REDIS_URL') === undefined ? undefined : r.url('REDIS_URL', '', ['redis:', 'rediss:']) || undefined;
  const storeUrl = storeSetting(env, r.problems);
  const instance = instanceSettings(r);
  const attachmentHosts = hostsSetting(r, 'DISCORD_ATTACHMENT_HOSTS', DISCORD_ATTACHMENT_HOSTS);
  const fileHosts = hostsSetting(r, 'SLACK_FILE_HOSTS', SLACK_FILE_HOSTS);
  let discord = discordSettings(r, attachmentHosts, redisUrl);
  let slack = slackSettings(r, fileHosts);
  const moderation = moderationSettings(r);
  if (discord) discord = { ...discord, moderatorRoleIds: moderation.discordRoles ?? [], moderatorChannelId: moderation.discordChannel };
  if (slack) slack = { ...slack, moderators: moderation.slackModerators ?? [], moderatorChannelId: moderation.slackChannel };
  const { community, communityNote } = communitySettings(r);
  if (terminalRaw === 'off' && !r.get('DISCORD_TOKEN') && !r.get('SLACK_BOT_TOKEN')) r.problems.push('NOCTURNE_TERMINAL=off and no chat platform is configured: nothing would run (set DISCORD_TOKEN or the SLACK_ variables)');
  if (r.problems.length) throw new ConfigError(r.problems);
  const terminal = terminalRaw === 'on' || (terminalRaw === 'auto' && !discord && !slack);
  return { modelDir, dataDir, outDir, backend, terminal, limits, shutdownGraceMs, shutdownDeadlineMs, discord, slack, community, communityNote, redisUrl, storeUrl, instance };
}

/** The model, data and output folders, the tfjs backend and NOCTURNE_TERMINAL (auto, on or off). */
function folderSettings(r: Reader): { modelDir: string; dataDir: string; outDir: string; backend: BackendChoice; terminalRaw: string } {
  const modelDir = resolve(r.cwd, r.get('NOCTURNE_MODEL_DIR') ?? 'models/default');
  if (!existsSync(join(modelDir, 'model.json'))) r.problems.push(`NOCTURNE_MODEL_DIR: no model.json in ${modelDir} (train one with \`nocturne train\`, or point this at a model folder)`);
  const dataDir = resolve(r.cwd, r.get('NOCTURNE_DATA_DIR') ?? 'data');
  const outDir = resolve(r.cwd, r.get('NOCTURNE_OUT_DIR') ?? 'out');
  const backendRaw = r.get('NOCTURNE_BACKEND') ?? 'auto';
  if (!(BACKEND_CHOICES as readonly string[]).includes(backendRaw)) r.problems.push(`NOCTURNE_BACKEND must be one of ${BACKEND_CHOICES.join(', ')}, got ${JSON.stringify(backendRaw)}`);
  const terminalRaw = (r.get('NOCTURNE_TERMINAL') ?? 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(terminalRaw)) r.problems.push(`NOCTURNE_TERMINAL must be auto, on or off, got ${JSON.stringify(terminalRaw)}`);
  return { modelDir, dataDir, outDir, backend: backendRaw as BackendChoice, terminalRaw };
}

/** The queue's bound, batching and rate limits, and the longest music. */
function queueLimits(r: Reader): QueueLimits {
  const d = DEFAULT_QUEUE_LIMITS;
  return {
    maxWaiting: r.int('NOCTURNE_QUEUE_MAX', d.maxWaiting, 1, 100_000),
    maxBatch: r.int('NOCTURNE_BATCH_MAX', d.maxBatch, 1, 64),
    batchWindowMs: r.int('NOCTURNE_BATCH_WINDOW_MS', d.batchWindowMs, 0, 5000),
    userMaxOpen: r.int('NOCTURNE_USER_MAX_OPEN', d.userMaxOpen, 1, 1000),
    userPerMinute: r.int('NOCTURNE_USER_PER_MINUTE', d.userPerMinute, 1, 10_000),
    serverPerMinute: r.int('NOCTURNE_SERVER_PER_MINUTE', d.serverPerMinute, 1, 100_000),
    maxMusicSeconds: r.int('NOCTURNE_MAX_MUSIC_MINUTES', (d.maxMusicSeconds ?? MUSIC_MAX_SECONDS) / 60, 1, 600) * 60,
  };
}

/** The grace period for pieces in progress, and the deadline of the whole shutdown. */
function shutdownSettings(r: Reader): { shutdownGraceMs: number; shutdownDeadlineMs: number } {
  const shutdownGraceMs = r.int('NOCTURNE_SHUTDOWN_GRACE_S', 30, 0, 600) * 1000;
  // Default: the grace period and 30 s more for the answers, the connections and the stores.
  const shutdownDeadlineMs = r.int('NOCTURNE_SHUTDOWN_DEADLINE_S', shutdownGraceMs / 1000 + 30, 1, 3600) * 1000;
  if (shutdownDeadlineMs <= shutdownGraceMs) r.problems.push(`NOCTURNE_SHUTDOWN_DEADLINE_S (${shutdownDeadlineMs / 1000}) must be longer than NOCTURNE_SHUTDOWN_GRACE_S (${shutdownGraceMs / 1000}): the deadline ends the whole shutdown, of which the grace period is the part pieces in progress may use`);
  return { shutdownGraceMs, shutdownDeadlineMs };
}

/** NOCTURNE_INSTANCE and the heartbeat timing. */
function instanceSettings(r: Reader): InstanceSettings {
  const instanceRaw = r.get('NOCTURNE_INSTANCE');
  if (instanceRaw !== undefined && !INSTANCE_NAME_PATTERN.test(instanceRaw)) r.problems.push(`NOCTURNE_INSTANCE must be a name of up to 64 letters, digits, dots, dashes and underscores, starting with a letter or digit (one per bot process sharing a store), got ${JSON.stringify(instanceRaw.slice(0, 80))}`);
  const heartbeatS = r.int('NOCTURNE_HEARTBEAT_S', DEFAULT_HEARTBEAT_MS / 1000, 1, 600);
  const staleS = r.int('NOCTURNE_INSTANCE_STALE_S', DEFAULT_STALE_MS / 1000, 2, 3600);
  const scanS = r.int('NOCTURNE_TAKEOVER_SCAN_S', DEFAULT_SCAN_MS / 1000, 1, 3600);
  if (staleS < 2 * heartbeatS) r.problems.push(`NOCTURNE_INSTANCE_STALE_S (${staleS}) must be at least twice NOCTURNE_HEARTBEAT_S (${heartbeatS}): a running bot whose heartbeat is merely late would otherwise count as gone and lose its jobs`);
  return {
    name: instanceRaw !== undefined && INSTANCE_NAME_PATTERN.test(instanceRaw) ? instanceRaw : defaultInstanceName(),
    heartbeatMs: heartbeatS * 1000,
    staleMs: staleS * 1000,
    scanMs: scanS * 1000,
  };
}

/** Hosts a platform's uploaded files may be downloaded from. */
function hostsSetting(r: Reader, name: string, fallback: readonly string[]): readonly string[] {
  const raw = r.get(name);
  if (raw === undefined) return fallback;
  const { hosts: list, bad } = parseHostList(raw);
  if (bad.length || list.length === 0) r.problems.push(`${name} must be host names separated by commas (where the platform serves uploaded files), got ${JSON.stringify(raw.slice(0, 200))}`);
  return list.length ? list : fallback;
}

/** The Discord bot, when DISCORD_TOKEN is set (moderation is added by loadConfig). */
function discordSettings(r: Reader, attachmentHosts: readonly string[], redisUrl: string | undefined): DiscordConfig | undefined {
  const discordToken = r.get('DISCORD_TOKEN');
  const guildId = r.get('DISCORD_GUILD_ID');
  const discordApi = r.url('DISCORD_API_BASE', DEFAULT_DISCORD_API_BASE, ['http:', 'https:']);
  const discordLimit = r.int('DISCORD_UPLOAD_LIMIT_MB', DEFAULT_DISCORD_UPLOAD_LIMIT_MB, 1, 500);
  if (guildId !== undefined && !/^\d{15,21}$/.test(guildId)) r.problems.push(`DISCORD_GUILD_ID must be a server id (15–21 digits: right-click the server, Copy Server ID), got ${JSON.stringify(guildId)}`);
  const shardsRaw = r.get('DISCORD_SHARDS')?.toLowerCase();
  let shards: number | 'auto' | undefined;
  if (shardsRaw !== undefined) {
    shards = shardsRaw === 'auto' ? 'auto' : Number(shardsRaw);
    if (shards !== 'auto' && (!Number.isInteger(shards) || shards < 1 || shards > 1000)) {
      r.problems.push(`DISCORD_SHARDS must be auto or a whole number of shards from 1 to 1000, got ${JSON.stringify(shardsRaw)}`);
      shards = undefined;
    }
    if (!discordToken) r.problems.push('DISCORD_SHARDS is set but DISCORD_TOKEN is not: sharding is for the Discord bot');
    // Every shard is a bot process; without Redis each would load its own copy of the model.
    else if (redisUrl === undefined) r.problems.push('DISCORD_SHARDS needs REDIS_URL: each shard process would otherwise load its own copy of the model (run redis-server and `nocturne worker`, see docs/scaling.md)');
  }
  if (discordToken) {
    if (/\s/.test(discordToken) || discordToken.split('.').length !== 3) r.problems.push('DISCORD_TOKEN does not look like a bot token (three dot-separated parts, from the Bot page of your Discord application)');
    return { token: discordToken.replace(/^Bot\s+/i, ''), guildId, apiBase: discordApi.replace(/\/+$/, ''), uploadLimitBytes: discordLimit * 1_000_000, attachmentHosts, ...(shards !== undefined ? { shards } : {}) };
  }
  if (guildId) r.problems.push('DISCORD_GUILD_ID is set but DISCORD_TOKEN is not: set the bot token too, or unset DISCORD_GUILD_ID');
  return undefined;
}

/** The Slack app, when its tokens are set (moderation is added by loadConfig). */
function slackSettings(r: Reader, fileHosts: readonly string[]): SlackConfig | undefined {
  const botToken = r.get('SLACK_BOT_TOKEN');
  const signingSecret = r.get('SLACK_SIGNING_SECRET');
  const appToken = r.get('SLACK_APP_TOKEN');
  const slackPort = r.int('SLACK_PORT', 3000, 0, 65535);
  const slackApi = r.url('SLACK_API_URL', DEFAULT_SLACK_API_URL, ['http:', 'https:']);
  const slackLimit = r.int('SLACK_UPLOAD_LIMIT_MB', DEFAULT_SLACK_UPLOAD_LIMIT_MB, 1, 1000);
  if (!botToken && !signingSecret && !appToken) return undefined;
  if (!botToken) r.problems.push('SLACK_BOT_TOKEN is missing (the xoxb- token from OAuth & Permissions), needed with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN');
  else if (!botToken.startsWith('xoxb-')) r.problems.push('SLACK_BOT_TOKEN must be a bot token starting with xoxb-');
  if (appToken && !appToken.startsWith('xapp-')) r.problems.push('SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information → App-Level Tokens, scope connections:write)');
  if (!appToken && !signingSecret) r.problems.push('Slack needs SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)');
  if (!botToken) return undefined;
  return {
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

/** Who moderates the community loop on each platform, and where its notices go. */
function moderationSettings(r: Reader): { discordRoles?: string[]; discordChannel?: string; slackModerators?: string[]; slackChannel?: string } {
  const ids = (name: string, pattern: RegExp, what: string): string[] | undefined => {
    const raw = r.get(name);
    if (raw === undefined) return undefined;
    const list = raw.split(/[\s,]+/).filter(Boolean);
    const bad = list.filter((id) => !pattern.test(id));
    if (bad.length) r.problems.push(`${name} must be ${what}, got ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
    return list.filter((id) => pattern.test(id));
  };
  const discordRoles = ids('NOCTURNE_MODERATOR_ROLE_IDS', /^\d{15,21}$/, 'Discord role ids separated by commas (15–21 digits: Server Settings → Roles → right-click a role → Copy Role ID)');
  const discordChannel = ids('NOCTURNE_DISCORD_MODERATOR_CHANNEL', /^\d{15,21}$/, 'one Discord channel id (15–21 digits: right-click the channel → Copy Channel ID)');
  const slackModerators = ids('NOCTURNE_SLACK_MODERATORS', /^[UW][A-Z0-9]{2,}$/, 'Slack user ids separated by commas (U… or W…: a profile → ⋮ → Copy member ID)');
  const slackChannel = ids('NOCTURNE_SLACK_MODERATOR_CHANNEL', /^[CG][A-Z0-9]{2,}$/, 'one Slack channel id (C… or G…: the channel\'s details, at the bottom)');
  if ((discordChannel?.length ?? 0) > 1) r.problems.push('NOCTURNE_DISCORD_MODERATOR_CHANNEL must be one channel id');
  if ((slackChannel?.length ?? 0) > 1) r.problems.push('NOCTURNE_SLACK_MODERATOR_CHANNEL must be one channel id');
  return { discordRoles, discordChannel: discordChannel?.[0], slackModerators, slackChannel: slackChannel?.[0] };
}

/** The community loop's settings, checked with the rest (its problems join the one message), or why it is off. */
function communitySettings(r: Reader): { community?: CommunityConfig; communityNote?: string } {
  const communityRaw = (r.get('NOCTURNE_COMMUNITY') ?? 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(communityRaw)) r.problems.push(`NOCTURNE_COMMUNITY must be auto, on or off, got ${JSON.stringify(communityRaw)}`);
  const defaultDataset = resolve(r.cwd, COMMUNITY_ENV_DEFAULTS.NOCTURNE_DATASET_DIR);
  if (communityRaw === 'off') return { communityNote: 'community: contributions and retraining are off (NOCTURNE_COMMUNITY=off)' };
  if (communityRaw === 'auto' && r.get('NOCTURNE_DATASET_DIR') === undefined && !existsSync(defaultDataset)) {
    // A bot without the training corpus cannot measure drift or retrain: compose only.
    return { communityNote: `community: contributions and retraining are off: no training corpus at ${defaultDataset} (set NOCTURNE_DATASET_DIR, or NOCTURNE_COMMUNITY=on to require it)` };
  }
  try {
    return { community: communityConfigFromEnv(r.env, r.cwd) };
  } catch (e) {
    if (!(e instanceof CommunityConfigError)) throw e;
    // The model folder and STORE_URL are reported once, by the checks above.
    const variable = (p: string) => /^([A-Z][A-Z0-9_]+)\b/.exec(p)?.[1];
    const reported = new Set(r.problems.map(variable).filter(Boolean));
    r.problems.push(...e.problems.filter((p) => !reported.has(variable(p))));
    return {};
  }
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
