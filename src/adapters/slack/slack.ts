/**
 * The Slack front end (@slack/bolt 5). HTTP mode (requests signed with the signing secret; a bad
 * signature gets 401 from Bolt) or Socket Mode (app-level token), chosen by the configuration.
 *
 * - Slash commands: `/compose chopin 500` and the others, each its own Slack command, plus the
 *   umbrella `/nocturne <command> ...` (Slack reserves some names, e.g. /status). Acknowledged at
 *   once; progress is a message that is updated; the files go to the channel with
 *   files.uploadV2; the summary message gets the Continue / Variation / Regenerate buttons.
 * - A seed MIDI arrives as a file shared with the bot (in a channel, a DM or a thread) with a
 *   message that starts with `continue` (e.g. "continue chopin 500"); contributions likewise, with
 *   `contribute` (e.g. "contribute Chopin" and up to five files).
 * - Moderator commands run for the user ids in NOCTURNE_SLACK_MODERATORS; notices for the
 *   moderators go to NOCTURNE_SLACK_MODERATOR_CHANNEL.
 * - Errors and help are ephemeral (only the person who asked sees them).
 * - Replays: a signed request is valid for Bolt's 5 minutes, so the same request posted again
 *   would run again. Before a request is acted on, its signature (with its timestamp) is claimed
 *   in the job store, and an Events API event's id too (Slack's own retries are newly signed but
 *   keep the event id); a request whose claim is already taken, by this bot or another sharing the
 *   store, is acknowledged (200, so Slack does not retry) and not acted on, with one log line.
 *   A timestamp more than a minute ahead of this machine's clock is refused with 401, as a stale
 *   one is by Bolt.
 * - Refusals anyone can cause (a missing, wrong or stale signature, a body Bolt could not read,
 *   a future timestamp) are logged at most once a minute: the first at once, the rest counted,
 *   with their reasons, in one line when the minute is up (or when the adapter stops). Bolt
 *   would write a warning for each; its other warnings are logged as they come.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { App, HTTPReceiver, LogLevel, type Context, type Logger, type SlashCommand } from '@slack/bolt';
import type { KnownBlock } from '@slack/types';
import type { WebClient } from '@slack/web-api';
import type { Attachment, BotContext, ChannelRef, CommandSpec, InfoMessage, Reply, ResultPost } from '../../../commands/shared/command.ts';
import { findCommand, oneLine, orderedReply, runButton, runCommand } from '../../chat/dispatch.ts';
import { parseOptionWords, splitWords, usageText, type RawOptions } from '../../chat/options.ts';
import { SLACK_FILE_HOSTS, attachmentByteLimit, downloadAttachment } from '../../chat/download.ts';
import type { JobRecord, ReplyAddress, Requester } from '../../jobs/types.ts';
import type { FrontEnd } from '../frontEnd.ts';

/** What this adapter needs from the configuration (src/app/config.ts reads it from the environment). */
export interface SlackConfig {
  botToken: string;
  mode: 'http' | 'socket';
  signingSecret?: string;
  appToken?: string;
  port: number;
  apiUrl: string;
  uploadLimitBytes: number;
  /** User ids that moderate the community loop. */
  moderators?: string[];
  /** Channel for the moderators' notices. */
  moderatorChannelId?: string;
  /** Hosts shared files may be downloaded from (SLACK_FILE_HOSTS; default files.slack.com). */
  fileHosts?: readonly string[];
}


/** The umbrella command: `/nocturne compose chopin 500`, `/nocturne status`. */
export const UMBRELLA_COMMAND = 'nocturne';

export interface SlackAdapterOptions {
  /** Retries of failed Web API calls (tests use 0). */
  retries?: number;
  /** At most one log line per this many ms for each kind of refused request (default a minute; tests use less). */
  refusalLogIntervalMs?: number;
}

/** Commands whose files arrive as a message that shares them and starts with the command's name. */
export const FILE_COMMANDS = ['continue', 'contribute'];

/** Bolt refuses a request whose timestamp is more than this many seconds old (a stale signature). */
const BOLT_STALE_S = 5 * 60;
/** A request whose timestamp is more than this many seconds ahead of this machine's clock is refused with 401. */
export const SLACK_FUTURE_SKEW_S = 60;
/**
 * How long a handled request's signature stays claimed. A signed request is accepted from
 * SLACK_FUTURE_SKEW_S before its timestamp until BOLT_STALE_S after it; a claim made at the
 * earliest moment still covers the latest, with a minute to spare for the clocks of bots sharing
 * the store.
 */
export const SLACK_REPLAY_TTL_MS = (SLACK_FUTURE_SKEW_S + BOLT_STALE_S + 60) * 1000;
/**
 * How long an Events API event id stays claimed: Slack retries an unacknowledged delivery about
 * 1 and 5 minutes after the first, each time newly signed but with the same event id.
 */
export const SLACK_EVENT_TTL_MS = 15 * 60_000;

/** Bolt context properties (from the receiver) carrying the request's signature headers. */
const SIGNATURE_PROPERTY = 'nocturneSlackSignature';
const TIMESTAMP_PROPERTY = 'nocturneSlackTimestamp';

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export function slackUsage(spec: CommandSpec): string {
  return usageText(spec, '/', `share the file with the bot in a message that starts with "${spec.name}"`).join('\n');
}

/** Slack's mrkdwn needs &, < and > escaped in user-visible text. */
function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Block Kit JSON, built loosely and handed to the Web API as its KnownBlock type. */
type Block = Record<string, unknown>;
const asBlocks = (blocks: Block[]): KnownBlock[] => blocks as unknown as KnownBlock[];

/** The summary under a piece: title, notice, parameters, attribution and the buttons (Block Kit). */
export function resultBlocks(post: ResultPost): Block[] {
  const blocks: Block[] = [{ type: 'section', text: { type: 'mrkdwn', text: clip(`*${escapeMrkdwn(post.title)}*${post.notice ? `\n_${escapeMrkdwn(post.notice)}_` : ''}`, 3000) } }];
  const fields = post.fields.map(([k, v]) => ({ type: 'mrkdwn', text: clip(`*${escapeMrkdwn(k)}*\n${escapeMrkdwn(v)}`, 2000) }));
  // A section holds at most 10 fields.
  for (let i = 0; i < fields.length; i += 10) blocks.push({ type: 'section', fields: fields.slice(i, i + 10) });
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: clip(escapeMrkdwn(post.attribution), 3000) }] });
  blocks.push({
    type: 'actions',
    block_id: `nocturne-${post.jobId}`,
    elements: post.actions.map((a) => ({ type: 'button', text: { type: 'plain_text', text: a.label }, action_id: a.id, value: post.jobId })),
  });
  return blocks;
}

export function infoBlocks(m: InfoMessage): Block[] {
  return [
    { type: 'section', text: { type: 'mrkdwn', text: clip(`*${escapeMrkdwn(m.title)}*`, 3000) } },
    { type: 'section', text: { type: 'mrkdwn', text: clip(m.lines.map(escapeMrkdwn).join('\n') || '—', 3000) } },
  ];
}

interface Place {
  channel: string;
  user: string;
  threadTs?: string;
}

type Respond = (message: { response_type: 'ephemeral'; text: string; blocks?: KnownBlock[] }) => Promise<unknown>;

class SlackReply implements Reply {
  private progressTs: string | undefined;

  constructor(
    private readonly client: WebClient,
    private readonly place: Place,
    readonly uploadLimitBytes: number,
    private readonly respond?: Respond,
  ) {}

  async progress(text: string): Promise<void> {
    const line = `<@${this.place.user}> ⏳ ${escapeMrkdwn(oneLine(text, 2900))}`;
    if (this.progressTs) {
      await this.client.chat.update({ channel: this.place.channel, ts: this.progressTs, text: line });
      return;
    }
    const posted = await this.client.chat.postMessage({ channel: this.place.channel, text: line, thread_ts: this.place.threadTs });
    this.progressTs = posted.ts;
  }

  private async dropProgress(): Promise<void> {
    if (!this.progressTs) return;
    const ts = this.progressTs;
    this.progressTs = undefined;
    await this.client.chat.delete({ channel: this.place.channel, ts }).catch(() => undefined);
  }

  private async ephemeral(text: string, blocks?: Block[]): Promise<void> {
    if (this.respond) {
      // A response_url lasts 30 minutes (a long retraining run outlives it): then post it instead.
      const sent = await this.respond({ response_type: 'ephemeral', text, ...(blocks ? { blocks: asBlocks(blocks) } : {}) }).then(
        () => true,
        () => false,
      );
      if (sent) return;
    }
    await this.client.chat.postEphemeral({ channel: this.place.channel, user: this.place.user, text, ...(blocks ? { blocks: asBlocks(blocks) } : {}), thread_ts: this.place.threadTs });
  }

  async info(m: InfoMessage): Promise<void> {
    if (m.files?.length) {
      // An answer with files (a chart, a training curve) is for the channel: the progress message
      // becomes its text, and the files follow.
      const text = `${m.title}\n${m.lines.join('\n')}`;
      const blocks = asBlocks(infoBlocks(m));
      const ts = this.progressTs;
      this.progressTs = undefined;
      if (ts) await this.client.chat.update({ channel: this.place.channel, ts, text, blocks });
      else await this.client.chat.postMessage({ channel: this.place.channel, text, blocks, thread_ts: this.place.threadTs });
      await uploadInfoFiles(this.client, this.place.channel, m, `<@${this.place.user}> ${m.title}`, this.place.threadTs);
      return;
    }
    await this.dropProgress();
    await this.ephemeral(`${m.title}\n${m.lines.join('\n')}`, infoBlocks(m));
  }

  async result(post: ResultPost): Promise<void> {
    await this.client.filesUploadV2({
      channel_id: this.place.channel,
      ...(this.place.threadTs ? { thread_ts: this.place.threadTs } : {}),
      initial_comment: `<@${this.place.user}> ${post.title} (job ${post.jobId})`,
      file_uploads: post.files.map((f) => ({ file: f.path, filename: f.name, title: f.name })),
    });
    const text = `${post.title} (job ${post.jobId})`;
    const blocks = asBlocks(resultBlocks(post));
    if (this.progressTs) await this.client.chat.update({ channel: this.place.channel, ts: this.progressTs, text, blocks });
    else await this.client.chat.postMessage({ channel: this.place.channel, text, blocks, thread_ts: this.place.threadTs });
  }

  async error(line: string): Promise<void> {
    await this.dropProgress();
    await this.ephemeral(`⚠️ ${escapeMrkdwn(oneLine(line, 2900))}`);
  }
}

async function uploadInfoFiles(client: WebClient, channel: string, m: InfoMessage, comment: string, threadTs?: string): Promise<void> {
  if (!m.files?.length) return;
  await client.filesUploadV2({
    channel_id: channel,
    ...(threadTs ? { thread_ts: threadTs } : {}),
    initial_comment: comment,
    file_uploads: m.files.map((f) => ({ file: f.path, filename: f.name, title: f.name })),
  });
}

interface SlackFile {
  id?: string;
  name?: string;
  size?: number;
  mimetype?: string;
  url_private_download?: string;
  url_private?: string;
}

/** The file a "continue" message shares: a .mid/.midi file if there is one, else the first. */
export function pickSeedFile(files: SlackFile[]): SlackFile | undefined {
  return files.find((f) => /\.midi?$/i.test(f.name ?? '') || /midi/i.test(f.mimetype ?? '')) ?? files[0];
}

/**
 * The log lines for one kind of refused request, which anyone can send (a flood of them would
 * otherwise write a line each): a refusal when none was logged for `intervalMs` is logged at
 * once; later ones are counted, by reason, and logged as one line when the interval since the
 * last line is up (a timer that does not keep the process alive), or at flush().
 */
export class RefusalLog {
  private loggedAt = -Infinity;
  private count = 0;
  private readonly reasons = new Map<string, number>();
  private latest = '';
  private timer: NodeJS.Timeout | undefined;

  /**
   * `line(count, reasons, latest)`: the line for `count` refusals, with each distinct reason and
   * its count (most frequent first) and the latest refusal's detail.
   */
  constructor(
    private readonly log: (line: string) => void,
    private readonly intervalMs: number,
    private readonly line: (count: number, reasons: [string, number][], latest: string) => string,
  ) {}

  /** Counts a refusal for `reason` (a fixed text: a few distinct ones are kept, the rest counted as other). */
  refused(reason: string, detail = reason): void {
    this.count++;
    this.latest = detail;
    const clipped = reason.slice(0, 200);
    const key = this.reasons.has(clipped) || this.reasons.size < 8 ? clipped : 'other';
    this.reasons.set(key, (this.reasons.get(key) ?? 0) + 1);
    const wait = this.loggedAt + this.intervalMs - Date.now();
    if (wait <= 0) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), wait).unref();
  }

  /** Logs the refusals counted since the last line, if any (also when the adapter stops). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.count) return;
    this.log(this.line(this.count, [...this.reasons].sort((a, b) => b[1] - a[1]), this.latest));
    this.loggedAt = Date.now();
    this.count = 0;
    this.reasons.clear();
  }
}

const reasonList = (reasons: [string, number][]) => reasons.map(([r, n]) => (n > 1 ? `${n} × ${r}` : r)).join('; ');

/** Bolt's HTTPReceiver warning for a request it refused with 401 before verifying it (bolt 5.1, receivers/HTTPReceiver.js). */
const BOLT_UNVERIFIED = 'Failed to parse and verify the request data: ';
/** The start of verifySlackRequest's and getHeader's errors: a missing, malformed, stale or wrong signature. */
const BOLT_AUTHENTICITY = 'Failed to verify authenticity: ';
/** Bolt's warning for a request body over its limit, refused with 413 before verification. */
const BOLT_TOO_LARGE = 'Request body exceeded the maximum allowed size';

/**
 * The reason, when `msg` is Bolt's warning for a request it refused before verifying its
 * signature (401, or 413 for a body over the limit); otherwise undefined.
 */
export function unverifiedRefusalReason(msg: unknown[]): string | undefined {
  const text = msg.length === 1 && typeof msg[0] === 'string' ? msg[0] : undefined;
  if (text?.startsWith(BOLT_UNVERIFIED)) {
    let why = text.slice(BOLT_UNVERIFIED.length);
    if (why.startsWith(BOLT_AUTHENTICITY)) why = why.slice(BOLT_AUTHENTICITY.length).replace(/^header (\S+) did not have the expected type \(received undefined, .*\)$/, 'no $1 header');
    return `${why} (401)`;
  }
  if (text?.startsWith(BOLT_TOO_LARGE)) return `${text} (413)`;
  return undefined;
}

const quietLogger = (log: (line: string) => void): Logger => {
  let level = LogLevel.WARN;
  const emit = (lvl: LogLevel, msg: unknown[]) => {
    const order = [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR];
    if (order.indexOf(lvl) >= order.indexOf(level)) log(`slack (bolt ${lvl}): ${msg.map((m) => (m instanceof Error ? m.message : typeof m === 'string' ? m : JSON.stringify(m))).join(' ')}`);
  };
  return {
    debug: (...m) => emit(LogLevel.DEBUG, m),
    info: (...m) => emit(LogLevel.INFO, m),
    warn: (...m) => emit(LogLevel.WARN, m),
    error: (...m) => emit(LogLevel.ERROR, m),
    setLevel: (l) => void (level = l),
    getLevel: () => level,
    setName: () => undefined,
  };
};

export class SlackAdapter implements FrontEnd {
  readonly platform = 'slack' as const;
  readonly app: App;
  private readonly log: (line: string) => void;
  private server: Server | undefined;
  private stopping = false;
  /** Claims whose repeats were logged already (each repeat of one request is logged once). */
  private readonly repeatsLogged = new Set<string>();
  /** Requests refused for a future timestamp: logged at most once a minute, with a count. */
  private readonly futureRefusals: RefusalLog;
  /** Requests Bolt refused before verifying them (no, a wrong or a stale signature): likewise. */
  private readonly unverifiedRefusals: RefusalLog;

  constructor(
    private readonly bot: BotContext,
    private readonly config: SlackConfig,
    log: (line: string) => void = () => {},
    options: SlackAdapterOptions = {},
  ) {
    this.log = (line) => log(`slack: ${line}`);
    const every = options.refusalLogIntervalMs ?? 60_000;
    const once = `at most once ${every === 60_000 ? 'a minute' : `per ${every} ms`}, with a count`;
    this.futureRefusals = new RefusalLog(this.log, every, (count, reasons, latest) =>
      count === 1
        ? `refused a request timestamped ${latest} s ahead of this machine's clock (more than ${SLACK_FUTURE_SKEW_S} s: forged, or this clock is wrong; such refusals are logged ${once})`
        : `refused ${count} requests timestamped more than ${SLACK_FUTURE_SKEW_S} s ahead of this machine's clock since the last such line (${reasonList(reasons)}; the latest ${latest} s ahead)`,
    );
    this.unverifiedRefusals = new RefusalLog(this.log, every, (count, reasons) =>
      count === 1
        ? `refused an unverified request: ${reasons[0][0]} (such refusals are logged ${once})`
        : `refused ${count} unverified requests since the last such line: ${reasonList(reasons)}`,
    );
    const clientOptions = { slackApiUrl: config.apiUrl, ...(options.retries !== undefined ? { retryConfig: { retries: options.retries } } : {}) };
    const common = { token: config.botToken, clientOptions, logger: quietLogger(log), logLevel: LogLevel.WARN };
    if (config.mode === 'socket') {
      this.app = new App({ ...common, appToken: config.appToken, socketMode: true, installerOptions: { clientOptions } });
    } else {
      // Bolt warns once per request it refuses unverified; those go to the counted log, the rest as they are.
      const receiverLogger: Logger = {
        ...common.logger,
        warn: (...msg) => {
          const reason = unverifiedRefusalReason(msg);
          if (reason) this.unverifiedRefusals.refused(reason);
          else common.logger.warn(...msg);
        },
      };
      const receiver = new HTTPReceiver({
        signingSecret: config.signingSecret ?? '',
        logger: receiverLogger,
        // Bolt verifies the signature; the headers reach the listeners' context for the replay claim.
        customPropertiesExtractor: (req) => ({ [SIGNATURE_PROPERTY]: headerValue(req.headers['x-slack-signature']), [TIMESTAMP_PROPERTY]: headerValue(req.headers['x-slack-request-timestamp']) }),
      });
      const verifyAndHandle = receiver.requestListener;
      receiver.requestListener = (req, res) => {
        if (!this.refuseFutureTimestamp(req, res)) verifyAndHandle(req, res);
      };
      this.app = new App({ ...common, receiver });
    }

    this.app.command(/^\/.+/, async ({ command, ack, respond, body, context }) => {
      await ack();
      if (this.stopping || !(await this.firstDelivery(body, context, `${command.command} from ${command.user_id} in ${command.channel_id}`))) return;
      void this.onSlash(command, respond as Respond);
    });
    this.app.action(/^nocturne:/, async ({ ack, body, action, client, respond, context }) => {
      await ack();
      if (this.stopping || body.type !== 'block_actions' || !('action_id' in action)) return;
      if (!(await this.firstDelivery(body, context, `button ${action.action_id} from ${body.user.id}`))) return;
      const who: Requester = {
        platform: 'slack',
        userId: body.user.id,
        userName: (body.user as { username?: string; name?: string }).username ?? body.user.name ?? body.user.id,
        serverId: body.team?.id,
        channelId: body.channel?.id ?? body.user.id,
        isManager: false,
      };
      const threadTs = (body.message as { thread_ts?: string } | undefined)?.thread_ts;
      const place = { channel: who.channelId, user: who.userId, threadTs };
      const reply = orderedReply(new SlackReply(client, place, this.config.uploadLimitBytes, respond as Respond), this.log);
      void runButton({ bot: this.bot, customId: action.action_id, who, address: this.address(place), reply, log: this.log });
    });
    this.app.event('message', async ({ event, client, body, context }) => {
      if (this.stopping) return;
      const m = event as { subtype?: string; text?: string; files?: SlackFile[]; user?: string; channel: string; team?: string; thread_ts?: string; bot_id?: string };
      if (m.bot_id || !m.user || !m.files?.length) return;
      const words = splitWords((m.text ?? '').replace(/<@[A-Z0-9]+>/g, ' '));
      const name = words[0]?.replace(/^\//, '').toLowerCase() ?? '';
      if (!FILE_COMMANDS.includes(name)) return;
      if (!(await this.firstDelivery(body, context, `"${name}" with files from ${m.user} in ${m.channel}`))) return;
      await this.onFileShare(client, m as Required<Pick<typeof m, 'user' | 'channel'>> & typeof m, name, words.slice(1));
    });
    this.app.error(async (e) => this.log(`error: ${e.message}`));
  }

  /** Starts the HTTP server (HTTP mode) or opens the socket (Socket Mode). Returns the HTTP port. */
  async start(): Promise<number | undefined> {
    if (this.config.mode === 'socket') {
      await this.app.start();
      this.log('connected in Socket Mode');
      return undefined;
    }
    this.server = (await this.app.start(this.config.port)) as Server;
    const port = (this.server.address() as AddressInfo).port;
    this.log(`listening for Slack requests on port ${port} (Request URL: https://<your host>:${port}/slack/events)`);
    return port;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.server?.closeAllConnections?.();
    await this.app.stop().catch((e: Error) => this.log(`stop: ${e.message}`));
    this.futureRefusals.flush();
    this.unverifiedRefusals.flush();
  }

  /** A reply to the person who asked for a job, for jobs recovered after a restart. */
  replyFor(record: JobRecord): Reply | undefined {
    const a = record.address;
    if (!a?.channelId) return undefined;
    const place = { channel: a.channelId, user: record.who.userId, threadTs: a.threadTs };
    return orderedReply(new SlackReply(this.app.client, place, this.config.uploadLimitBytes), this.log);
  }

  /** Posts a notice to the moderators' channel (NOCTURNE_SLACK_MODERATOR_CHANNEL), unless it was answered there. */
  async announce(m: InfoMessage, from?: ChannelRef): Promise<void> {
    const channel = this.config.moderatorChannelId;
    if (!channel || (from?.platform === 'slack' && from.channelId === channel)) return;
    await this.app.client.chat.postMessage({ channel, text: `${m.title}\n${m.lines.join('\n')}`, blocks: asBlocks(infoBlocks(m)) });
    await uploadInfoFiles(this.app.client, channel, m, m.title);
  }

  /**
   * Refuses (401) a request whose timestamp is more than SLACK_FUTURE_SKEW_S ahead of this
   * machine's clock, before Bolt reads it: Bolt refuses only stale ones, and a request signed for
   * the future would stay valid for longer than its 5 minutes. Returns whether it refused.
   */
  private refuseFutureTimestamp(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'POST') return false;
    const timestamp = Number(headerValue(req.headers['x-slack-request-timestamp']));
    const now = Date.now();
    const ahead = Math.round(timestamp - now / 1000);
    if (!Number.isFinite(timestamp) || ahead <= SLACK_FUTURE_SKEW_S) return false;
    req.resume();
    res.writeHead(401);
    res.end();
    this.futureRefusals.refused(ahead > 3600 ? 'over an hour ahead' : ahead > 300 ? '5 minutes to an hour ahead' : 'up to 5 minutes ahead', String(ahead));
    return true;
  }

  /**
   * Claims this request in the job store, so that it is acted on once by all bots sharing the
   * store: its signature with its timestamp (HTTP mode), and an Events API event's id. False (and
   * one log line) when a claim is taken already: a replay of a request handled before, or Slack's
   * retry of an event handled before. If the store fails the request goes ahead (logged): a
   * store that is down fails the job itself visibly.
   */
  private async firstDelivery(body: unknown, context: Context, what: string): Promise<boolean> {
    const claims: { key: string; ttlMs: number; why: string }[] = [];
    const signature = context[SIGNATURE_PROPERTY];
    const timestamp = context[TIMESTAMP_PROPERTY];
    if (typeof signature === 'string' && typeof timestamp === 'string') {
      claims.push({ key: `slack-request:${sha256(`${signature}:${timestamp}`)}`, ttlMs: SLACK_REPLAY_TTL_MS, why: 'the same signed request was handled already (a replay)' });
    }
    const b = body as { type?: string; event_id?: unknown; team_id?: unknown };
    if (b.type === 'event_callback' && typeof b.event_id === 'string') {
      claims.push({ key: `slack-event:${sha256(`${String(b.team_id ?? '')}:${b.event_id}`)}`, ttlMs: SLACK_EVENT_TTL_MS, why: `event ${b.event_id} was handled already` });
    }
    for (const claim of claims) {
      let first: boolean;
      try {
        first = await this.bot.store.claimDelivery(claim.key, claim.ttlMs);
      } catch (e) {
        this.log(`could not check whether ${what} was handled already (${(e as Error).message}); handling it`);
        return true;
      }
      if (first) continue;
      if (!this.repeatsLogged.has(claim.key)) {
        if (this.repeatsLogged.size >= 1000) this.repeatsLogged.clear();
        this.repeatsLogged.add(claim.key);
        const retry = typeof context.retryNum === 'number' ? ` (Slack's retry #${context.retryNum}${context.retryReason ? `, ${context.retryReason}` : ''})` : '';
        this.log(`acknowledged but ignored ${what}${retry}: ${claim.why}`);
      }
      return false;
    }
    return true;
  }

  private isModerator(userId: string): boolean {
    return (this.config.moderators ?? []).includes(userId);
  }

  private address(place: Place): ReplyAddress {
    return { channelId: place.channel, ...(place.threadTs ? { threadTs: place.threadTs } : {}) };
  }

  private async isManager(userId: string): Promise<boolean> {
    try {
      const info = await this.app.client.users.info({ user: userId });
      return Boolean(info.user?.is_admin || info.user?.is_owner);
    } catch (e) {
      this.log(`users.info failed: ${(e as Error).message}`);
      return false;
    }
  }

  private async onSlash(command: SlashCommand, respond: Respond): Promise<void> {
    let name = command.command.replace(/^\//, '').toLowerCase();
    let words = splitWords(command.text ?? '');
    if (name === UMBRELLA_COMMAND) {
      name = words[0]?.replace(/^\//, '').toLowerCase() ?? 'help';
      words = words.slice(1);
    }
    const place = { channel: command.channel_id, user: command.user_id };
    const reply = orderedReply(new SlackReply(this.app.client, place, this.config.uploadLimitBytes, respond), this.log);
    const spec = findCommand(this.bot, name);
    const parsed = spec ? parseOptionWords(spec, words) : { raw: {}, problems: [] };
    if (name === 'continue' && spec && !parsed.problems.length && parsed.raw.job === undefined) {
      await reply.error('to continue a MIDI file, share it with me in a message that starts with "continue" (e.g. "continue chopin 250"); to continue one of my pieces, /continue <job-id>');
      return;
    }
    if (name === 'contribute' && spec) {
      await reply.error('slash commands cannot carry files: share your MIDI files with me in a message that starts with "contribute" (e.g. "contribute Chopin", up to 5 files)');
      return;
    }
    const who: Requester = {
      platform: 'slack',
      userId: command.user_id,
      userName: command.user_name,
      serverId: command.team_id,
      channelId: command.channel_id,
      isManager: spec?.permission === 'manager' || spec?.usesManager ? await this.isManager(command.user_id) : false,
    };
    await runCommand({ bot: this.bot, name, raw: parsed.raw, who, isModerator: this.isModerator(command.user_id), address: this.address(place), reply, usage: slackUsage, problems: parsed.problems, log: this.log });
  }

  /** A message that shares files and starts with `continue` or `contribute`: runs that command with them. */
  private async onFileShare(client: WebClient, m: { user: string; channel: string; team?: string; thread_ts?: string; files?: SlackFile[] }, name: string, words: string[]): Promise<void> {
    const spec = findCommand(this.bot, name);
    if (!spec) return;
    const place = { channel: m.channel, user: m.user, threadTs: m.thread_ts };
    const reply = orderedReply(new SlackReply(client, place, this.config.uploadLimitBytes), this.log);
    const parsed = parseOptionWords(spec, words);
    const raw: RawOptions = { ...parsed.raw };
    const problems = [...parsed.problems];
    const slots = spec.options.filter((o) => o.kind === 'attachment');
    // One slot (continue): the MIDI file among those shared. Several (contribute): each file in turn.
    const shared = slots.length === 1 ? [pickSeedFile(m.files ?? [])].filter((f) => f !== undefined) : (m.files ?? []);
    if (shared.length > slots.length) problems.push(`at most ${slots.length} files at a time (you shared ${shared.length}): share the others in another message`);
    for (const [i, original] of shared.slice(0, slots.length).entries()) {
      let file = original;
      if (file.id && !file.url_private_download && !file.url_private) {
        file = ((await client.files.info({ file: file.id }).catch(() => undefined))?.file as SlackFile | undefined) ?? file;
      }
      const url = file.url_private_download ?? file.url_private;
      if (!url) continue;
      const size = file.size ?? 0;
      const attachment: Attachment = { name: file.name ?? 'upload', bytes: size, contentType: file.mimetype, download: () => downloadAttachment(url, { allowedHosts: this.config.fileHosts ?? SLACK_FILE_HOSTS, maxBytes: attachmentByteLimit(size), declaredBytes: size, headers: { Authorization: `Bearer ${this.config.botToken}` } }) };
      raw[slots[i].name] = attachment;
    }
    const who: Requester = { platform: 'slack', userId: m.user, userName: m.user, serverId: m.team, channelId: m.channel, isManager: false };
    await runCommand({ bot: this.bot, name, raw, who, isModerator: this.isModerator(m.user), address: this.address(place), reply, usage: slackUsage, problems, log: this.log });
  }
}
