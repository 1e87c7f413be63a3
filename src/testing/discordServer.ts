/**
 * A local stand-in for Discord, enough for the real discord.js 14 client: the REST API under
 * /api (gateway discovery, command registration, interaction callbacks, webhook edits and
 * follow-ups, channel messages), the gateway over `ws` (HELLO, heartbeat ACK, READY after
 * IDENTIFY, INTERACTION_CREATE dispatches) and a CDN for attachments. Every REST call is recorded
 * (multipart bodies parsed into payload_json and files) for the tests to inspect.
 *
 * Sharding as Discord does it: /gateway/bot recommends `shards`; each IDENTIFY carries
 * `shard: [id, count]`; a session's READY lists, and GUILD_CREATE then delivers, only the guilds
 * with (guild_id >> 22) % count === id; an interaction in a guild is dispatched only on the
 * connections of the shard that owns it (DMs: shard 0).
 * Listens on 127.0.0.1 only, on a free port.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import type { WebSocket, WebSocketServer } from 'ws';
import { closeLoopback, startLoopback, waitForCall } from './loopback.ts';

export interface RecordedFile {
  field: string;
  name: string;
  bytes: Buffer;
}

export interface RecordedCall {
  method: string;
  /** Path after /api/v10, URL-decoded (e.g. /webhooks/1/tok/messages/@original). */
  path: string;
  query: URLSearchParams;
  /** JSON body, or payload_json of a multipart body. */
  body: any;
  files: RecordedFile[];
  at: number;
  /** The client's User-Agent (a shard process names its shard there). */
  userAgent: string;
}

/** One gateway session: the shard it identified as and the guilds it was sent. */
export interface FakeSession {
  shard: [number, number];
  guilds: string[];
  at: number;
}

export interface FakeDiscordOptions {
  /** What /gateway/bot recommends (default 1). */
  shards?: number;
  /** Guild ids the bot is in: each session gets GUILD_CREATE for those its shard owns. */
  guilds?: string[];
}

/** The shard that owns a guild: (guild_id >> 22) % count. */
export function shardOf(guildId: string, count: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(count));
}

/** A guild id (snowflake) owned by `shard` of `count`, the `nth` such from a fixed base. */
export function guildForShard(shard: number, count: number, nth = 0): string {
  let id = 800_000_000_000_000_000n;
  for (let found = -1; ; id += 1n << 22n) if (shardOf(id.toString(), count) === shard && ++found === nth) return id.toString();
}

export interface FakeUser {
  id: string;
  username: string;
}

export interface InteractionOptions {
  user?: FakeUser;
  guildId?: string | null;
  channelId?: string;
  /** Member permissions bitfield as a decimal string (32 = Manage Server). */
  permissions?: string;
  /** The member's role ids. */
  roles?: string[];
  /** The interaction's attachment_size_limit in bytes (default 10 MiB); null leaves the field out. */
  attachmentSizeLimit?: number | null;
}

export const MANAGE_GUILD = String(1 << 5);

let snowflake = 1_100_000_000_000_000_000n;
export function nextSnowflake(): string {
  snowflake += 1n;
  return snowflake.toString();
}

export class FakeDiscord extends EventEmitter {
  readonly applicationId = '900000000000000001';
  readonly botUserId = '900000000000000002';
  readonly calls: RecordedCall[] = [];
  readonly files = new Map<string, { bytes: Buffer; contentType: string }>();
  /** The path of every request to the attachment CDN (/cdn/…), hosted file or not, in order. */
  readonly fileRequests: string[] = [];
  private readonly sockets = new Set<WebSocket>();
  /** Each connection's shard, once it has identified. */
  private readonly shardOfSocket = new Map<WebSocket, [number, number]>();
  /** Every IDENTIFY so far, in order. */
  readonly sessions: FakeSession[] = [];
  /** For each interaction token, the shard ids of the connections it was dispatched on. */
  readonly deliveries = new Map<string, number[]>();
  private seq = 0;
  private identified = 0;
  /** When set, bot-authenticated REST calls without `Authorization: Bot <requiredToken>` get 401 (a wrong or revoked token). */
  requiredToken: string | undefined;
  /** Fault injection: a status for calls that should fail (e.g. an upload), or undefined. */
  failWith: ((call: RecordedCall) => number | undefined) | undefined;

  private constructor(
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    readonly port: number,
    readonly options: FakeDiscordOptions = {},
  ) {
    super();
    this.setMaxListeners(200);
  }

  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    return startLoopback('/gateway', (server, wss, port) => new FakeDiscord(server, wss, port, options));
  }

  get apiBase(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }

  get readyCount(): number {
    return this.identified;
  }

  /** Shard ids of the open, identified connections (sorted; a shard twice if it has two). */
  connectedShards(): number[] {
    return [...this.shardOfSocket.values()].map(([id]) => id).sort((a, b) => a - b);
  }

  /** Serves bytes at a CDN URL, as Discord does for attachments. */
  hostFile(name: string, bytes: Uint8Array, contentType = 'application/octet-stream'): string {
    const path = `/cdn/attachments/${nextSnowflake()}/${encodeURIComponent(name)}`;
    this.files.set(path, { bytes: Buffer.from(bytes), contentType });
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The first recorded call matching `pred`, waiting for it up to `timeoutMs`. */
  waitFor(pred: (c: RecordedCall) => boolean, timeoutMs = 20_000, what = 'a REST call'): Promise<RecordedCall> {
    return waitForCall(this, this.calls, pred, timeoutMs, () => `fake Discord: no ${what} within ${timeoutMs} ms; calls so far:\n${this.calls.map((c) => `  ${c.method} ${c.path}`).join('\n')}`);
  }

  /** Calls made for one interaction token (callbacks, edits, follow-ups), in order. */
  callsFor(token: string): RecordedCall[] {
    return this.calls.filter((c) => c.path.includes(`/${token}`));
  }

  /** Waits until the interaction's original reply is edited with files, or an ephemeral follow-up/reply arrives. */
  async waitForOutcome(token: string, timeoutMs = 30_000): Promise<{ kind: 'result' | 'error' | 'info'; call: RecordedCall }> {
    const call = await this.waitFor(
      (c) =>
        c.path.includes(`/${token}`) &&
        ((c.method === 'PATCH' && c.files.length > 0) ||
          (c.method === 'POST' && c.path.startsWith('/webhooks/') && (c.body?.flags & 64) === 64) ||
          (c.method === 'POST' && c.path.endsWith('/callback') && c.body?.type === 4) ||
          (c.method === 'PATCH' && (c.body?.embeds?.length ?? 0) > 0)),
      timeoutMs,
      `outcome for interaction ${token}`,
    );
    if (call.files.length > 0) return { kind: 'result', call };
    const flags = call.body?.flags ?? call.body?.data?.flags ?? 0;
    if (flags & 64) return { kind: 'error', call };
    return { kind: 'info', call };
  }

  /** An interaction goes only to the connections of the shard that owns its guild (DMs: shard 0). */
  private dispatchInteraction(d: { token: string; guild_id?: string }): void {
    const frame = JSON.stringify({ op: 0, t: 'INTERACTION_CREATE', s: ++this.seq, d });
    const to: number[] = [];
    for (const ws of this.sockets) {
      const shard = this.shardOfSocket.get(ws);
      if (!shard) continue;
      const [id, count] = shard;
      if ((d.guild_id ? shardOf(d.guild_id, count) : 0) !== id) continue;
      ws.send(frame);
      to.push(id);
    }
    this.deliveries.set(d.token, to);
  }

  private guildObject(id: string) {
    return {
      id,
      name: `guild ${id.slice(-4)}`,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: '700000000000000001',
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      roles: [{ id, name: '@everyone', color: 0, hoist: false, position: 0, permissions: '0', managed: false, mentionable: false, flags: 0 }],
      emojis: [],
      stickers: [],
      features: [],
      mfa_level: 0,
      system_channel_id: null,
      system_channel_flags: 0,
      rules_channel_id: null,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: 0,
      preferred_locale: 'en-US',
      public_updates_channel_id: null,
      nsfw_level: 0,
      premium_progress_bar_enabled: false,
      joined_at: '2026-01-01T00:00:00.000Z',
      large: false,
      unavailable: false,
      member_count: 1,
      voice_states: [],
      members: [],
      channels: [],
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
    };
  }

  private userObject(u: FakeUser) {
    return { id: u.id, username: u.username, discriminator: '0', global_name: u.username, avatar: null, bot: false };
  }

  private base(type: number, o: InteractionOptions) {
    const user = o.user ?? { id: '700000000000000001', username: 'clara' };
    const guildId = o.guildId === undefined ? '800000000000000001' : o.guildId;
    const channelId = o.channelId ?? '810000000000000001';
    const id = nextSnowflake();
    const token = `tok${id}`;
    const common: Record<string, unknown> = {
      id,
      application_id: this.applicationId,
      type,
      token,
      version: 1,
      channel: { id: channelId, type: guildId ? 0 : 1 },
      channel_id: channelId,
      app_permissions: '2248473465835073',
      locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: {},
      context: guildId ? 0 : 1,
    };
    if (o.attachmentSizeLimit !== null) common.attachment_size_limit = o.attachmentSizeLimit ?? 10 * 1024 * 1024;
    if (guildId) {
      common.guild_id = guildId;
      common.guild_locale = 'en-US';
      common.member = { user: this.userObject(user), roles: o.roles ?? [], permissions: o.permissions ?? '0', joined_at: '2026-01-01T00:00:00.000Z', deaf: false, mute: false, flags: 0 };
    } else {
      common.user = this.userObject(user);
    }
    return { id, token, common };
  }

  /**
   * Sends a slash command. `options` maps option names to values (a boolean is a Boolean option); an
   * attachment value is `{ attachment: { filename, size, url, contentType } }`.
   */
  command(name: string, options: Record<string, string | number | boolean | { attachment: { filename: string; size: number; url: string; contentType?: string } }> = {}, o: InteractionOptions = {}): { id: string; token: string } {
    const { id, token, common } = this.base(2, o);
    const resolvedAttachments: Record<string, unknown> = {};
    const opts = Object.entries(options).map(([optionName, value]) => {
      if (typeof value === 'object') {
        const aid = nextSnowflake();
        const a = value.attachment;
        resolvedAttachments[aid] = { id: aid, filename: a.filename, size: a.size, url: a.url, proxy_url: a.url, content_type: a.contentType };
        return { name: optionName, type: 11, value: aid };
      }
      return { name: optionName, type: typeof value === 'boolean' ? 5 : typeof value === 'number' ? (Number.isInteger(value) ? 4 : 10) : 3, value };
    });
    const data: Record<string, unknown> = { id: nextSnowflake(), name, type: 1, options: opts };
    if (Object.keys(resolvedAttachments).length) data.resolved = { attachments: resolvedAttachments };
    this.dispatchInteraction({ ...common, token, data } as { token: string; guild_id?: string });
    return { id, token };
  }

  /** Sends an autocomplete request while `focused` is being typed. */
  autocomplete(name: string, focused: string, typed: string, optionType = 3, others: Record<string, string | number> = {}, o: InteractionOptions = {}): { id: string; token: string } {
    const { id, token, common } = this.base(4, o);
    const options = [
      ...Object.entries(others).map(([n, v]) => ({ name: n, type: typeof v === 'number' ? 4 : 3, value: v })),
      { name: focused, type: optionType, value: typed, focused: true },
    ];
    this.dispatchInteraction({ ...common, token, data: { id: nextSnowflake(), name, type: 1, options } } as { token: string; guild_id?: string });
    return { id, token };
  }

  /** Presses a button with `customId` on a message of the bot's. */
  button(customId: string, o: InteractionOptions = {}): { id: string; token: string } {
    const { id, token, common } = this.base(3, o);
    const message = this.message({ content: '', components: [] }, String(common.channel_id));
    this.dispatchInteraction({ ...common, token, message, data: { custom_id: customId, component_type: 2 } } as { token: string; guild_id?: string });
    return { id, token };
  }

  private message(payload: any, channelId: string, files: RecordedFile[] = []) {
    return {
      id: nextSnowflake(),
      channel_id: channelId,
      type: 0,
      content: payload?.content ?? '',
      author: { id: this.botUserId, username: 'nocturne', discriminator: '0', global_name: null, avatar: null, bot: true },
      attachments: files.map((f) => ({ id: nextSnowflake(), filename: f.name, size: f.bytes.length, url: `http://127.0.0.1:${this.port}/cdn/x/${f.name}`, proxy_url: '' })),
      embeds: payload?.embeds ?? [],
      components: payload?.components ?? [],
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      pinned: false,
      flags: payload?.flags ?? 0,
    };
  }

  /** Called by startLoopback for each WebSocket connection. */
  onSocket(ws: WebSocket): void {
    this.sockets.add(ws);
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.shardOfSocket.delete(ws);
    });
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: 45_000 }, s: null, t: null }));
    ws.on('message', (raw) => {
      let msg: { op: number; d: any };
      try {
        msg = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (msg.op === 1) ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
      else if (msg.op === 2) {
        this.identified++;
        const asked = msg.d?.shard;
        const shard: [number, number] = Array.isArray(asked) && asked.length === 2 ? [Number(asked[0]), Number(asked[1])] : [0, 1];
        const guilds = (this.options.guilds ?? []).filter((g) => shardOf(g, shard[1]) === shard[0]);
        this.shardOfSocket.set(ws, shard);
        this.sessions.push({ shard, guilds, at: Date.now() });
        const ready = {
          v: 10,
          user: { id: this.botUserId, username: 'nocturne', discriminator: '0', global_name: null, avatar: null, bot: true, flags: 0 },
          guilds: guilds.map((id) => ({ id, unavailable: true })),
          session_id: `session-${this.identified}`,
          resume_gateway_url: `ws://127.0.0.1:${this.port}/gateway`,
          shard,
          application: { id: this.applicationId, flags: 0 },
        };
        ws.send(JSON.stringify({ op: 0, t: 'READY', s: ++this.seq, d: ready }));
        for (const id of guilds) ws.send(JSON.stringify({ op: 0, t: 'GUILD_CREATE', s: ++this.seq, d: this.guildObject(id) }));
        this.emit('ready', shard);
      } else if (msg.op === 6) {
        ws.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
      }
    });
  }

  /** Called by startLoopback for each HTTP request. */
  async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${this.port}`);
    if (url.pathname.startsWith('/cdn/')) this.fileRequests.push(url.pathname);
    if (req.method === 'GET' && this.files.has(url.pathname)) {
      const f = this.files.get(url.pathname)!;
      res.writeHead(200, { 'content-type': f.contentType, 'content-length': f.bytes.length });
      res.end(f.bytes);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const path = decodeURIComponent(url.pathname.replace(/^\/api\/v\d+/, ''));
    const call: RecordedCall = { method: req.method ?? 'GET', path, query: url.searchParams, body: undefined, files: [], at: Date.now(), userAgent: String(req.headers['user-agent'] ?? '') };
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('multipart/form-data')) {
      const form = await new Response(raw, { headers: { 'content-type': type } }).formData();
      for (const [field, value] of form.entries()) {
        if (typeof value === 'string') {
          if (field === 'payload_json') call.body = JSON.parse(value);
        } else {
          call.files.push({ field, name: (value as File).name, bytes: Buffer.from(await value.arrayBuffer()) });
        }
      }
    } else if (raw.length && type.includes('json')) {
      call.body = JSON.parse(raw.toString('utf8'));
    }
    this.calls.push(call);
    const json = (status: number, body?: unknown) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
      res.end(text);
    };
    const m = call.method;
    let match: RegExpExecArray | null;
    const injected = this.failWith?.(call);
    // Interaction callbacks and webhook edits carry the interaction token instead, as on Discord.
    const needsAuth = !path.startsWith('/webhooks/') && !path.startsWith('/interactions/');
    if (this.requiredToken !== undefined && needsAuth && req.headers.authorization !== `Bot ${this.requiredToken}`) {
      json(401, { message: '401: Unauthorized', code: 0 });
    } else if (injected !== undefined) {
      json(injected, { message: 'injected failure (fake Discord)', code: 0 });
    } else if (m === 'GET' && path === '/gateway/bot') {
      json(200, { url: `ws://127.0.0.1:${this.port}/gateway`, shards: this.options.shards ?? 1, session_start_limit: { total: 1000, remaining: 999, reset_after: 0, max_concurrency: 1 } });
    } else if (m === 'GET' && path === '/applications/@me') {
      json(200, { id: this.applicationId, name: 'nocturne', icon: null, description: '', bot_public: true, bot_require_code_grant: false, verify_key: '0', flags: 0, team: null });
    } else if (m === 'GET' && path === '/gateway') {
      json(200, { url: `ws://127.0.0.1:${this.port}/gateway` });
    } else if (m === 'PUT' && /^\/applications\/\d+(\/guilds\/\d+)?\/commands$/.test(path)) {
      const commands = (call.body as any[]).map((c) => ({ id: nextSnowflake(), application_id: this.applicationId, version: nextSnowflake(), type: 1, default_member_permissions: null, ...c }));
      json(200, commands);
    } else if (m === 'POST' && /^\/interactions\/\d+\/[^/]+\/callback$/.test(path)) {
      json(204);
    } else if ((match = /^\/webhooks\/\d+\/([^/]+)\/messages\/(@original|\d+)$/.exec(path))) {
      if (m === 'DELETE') json(204);
      else json(200, this.message(call.body, '810000000000000001', call.files));
    } else if (m === 'POST' && /^\/webhooks\/\d+\/[^/]+$/.test(path)) {
      json(200, this.message(call.body, '810000000000000001', call.files));
    } else if ((match = /^\/channels\/(\d+)\/messages(?:\/(\d+))?$/.exec(path)) && (m === 'POST' || m === 'PATCH')) {
      json(200, this.message(call.body, match[1], call.files));
    } else {
      json(404, { message: 'Unknown route (fake Discord)', code: 0 });
    }
    this.emit('call', call);
  }

  async close(): Promise<void> {
    await closeLoopback(this.server, this.wss, this.sockets);
  }
}
