/**
 * A local stand-in for Slack, enough for the real @slack/bolt 5 app: the Web API under /api/
 * (auth.test, chat.postMessage/update/delete/postEphemeral, files.getUploadURLExternal, the upload
 * URL, files.completeUploadExternal, files.info, users.info, apps.connections.open), response_url
 * endpoints, private file downloads, and a Socket Mode WebSocket. Every call is recorded. Also the
 * client side of Slack's HTTP requests: signed slash commands, events and button presses.
 * Listens on 127.0.0.1 only, on a free port.
 */
import { createHmac } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { WebSocket, WebSocketServer } from 'ws';
import { closeLoopback, startLoopback, waitForCall } from './loopback.ts';

export interface SlackCall {
  /** Web API method ("chat.postMessage"), or "upload", or "respond". */
  method: string;
  params: Record<string, any>;
  /** Upload bytes (method "upload"). */
  bytes?: Buffer;
  fileId?: string;
  authorization?: string;
  at: number;
}

export interface UploadedFile {
  id: string;
  filename: string;
  bytes: Buffer;
}

export const TEAM_ID = 'T0000FAKE';
export const BOT_USER_ID = 'U0000BOT1';

/** Slack's request signature: v0=HMAC-SHA256(secret, "v0:timestamp:body"). */
export function slackSignature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

/** POSTs a signed request the way Slack does; returns the status and body. */
export async function postSigned(url: string, body: string, contentType: string, secret: string, timestamp = Math.floor(Date.now() / 1000)): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': contentType, 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': slackSignature(secret, timestamp, body) },
    body,
  });
  return { status: res.status, text: await res.text() };
}

export class FakeSlack extends EventEmitter {
  readonly calls: SlackCall[] = [];
  readonly uploads = new Map<string, UploadedFile>();
  readonly files = new Map<string, Buffer>();
  private readonly pendingNames = new Map<string, string>();
  private readonly sockets = new Set<WebSocket>();
  private seq = 0;
  admins = new Set<string>();
  /** Fault injection: Web API methods that answer { ok: false, error: 'internal_error' }. */
  readonly failMethods = new Set<string>();

  private constructor(
    private readonly server: Server,
    private readonly wss: WebSocketServer,
    readonly port: number,
  ) {
    super();
    this.setMaxListeners(200);
  }

  static async start(): Promise<FakeSlack> {
    return startLoopback('/socket', (server, wss, port) => new FakeSlack(server, wss, port));
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  private base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A response_url for one slash command or button press. */
  responseUrl(): string {
    return `${this.base()}/respond/${++this.seq}`;
  }

  /** Serves a private file (downloads need the bot token). */
  hostFile(name: string, bytes: Uint8Array): string {
    const path = `/files-pri/${TEAM_ID}-F${++this.seq}/${encodeURIComponent(name)}`;
    this.files.set(path, Buffer.from(bytes));
    return `${this.base()}${path}`;
  }

  waitFor(pred: (c: SlackCall) => boolean, timeoutMs = 20_000, what = 'a Slack call'): Promise<SlackCall> {
    return waitForCall(this, this.calls, pred, timeoutMs, () => `fake Slack: no ${what} within ${timeoutMs} ms; calls so far:\n${this.calls.map((c) => `  ${c.method} ${JSON.stringify(c.params).slice(0, 160)}`).join('\n')}`);
  }

  /** The files of a completed upload (files.completeUploadExternal call). */
  uploadedFiles(complete: SlackCall): UploadedFile[] {
    const files = typeof complete.params.files === 'string' ? JSON.parse(complete.params.files) : complete.params.files;
    return (files as { id: string }[]).map((f) => this.uploads.get(f.id)!).filter(Boolean);
  }

  // -------------------------------------------------------------------------------------------
  // Socket Mode

  /** Sends an envelope over every open Socket Mode connection; resolves with the app's ack. */
  sendEnvelope(type: 'slash_commands' | 'events_api' | 'interactive', payload: unknown, timeoutMs = 10_000): Promise<unknown> {
    const envelopeId = `env-${++this.seq}`;
    const frame = JSON.stringify({ envelope_id: envelopeId, type, payload, accepts_response_payload: type !== 'events_api', retry_attempt: 0, retry_reason: '' });
    for (const ws of this.sockets) ws.send(frame);
    return new Promise((resolve, reject) => {
      const onAck = (ack: { envelope_id: string }) => {
        if (ack.envelope_id !== envelopeId) return;
        clearTimeout(timer);
        this.off('ack', onAck);
        resolve(ack);
      };
      const timer = setTimeout(() => {
        this.off('ack', onAck);
        reject(new Error(`fake Slack: envelope ${envelopeId} not acknowledged within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('ack', onAck);
    });
  }

  get socketCount(): number {
    return this.sockets.size;
  }

  /** Called by startLoopback for each WebSocket connection. */
  onSocket(ws: WebSocket): void {
    this.sockets.add(ws);
    ws.on('close', () => this.sockets.delete(ws));
    ws.on('message', (raw) => {
      try {
        this.emit('ack', JSON.parse(raw.toString()));
      } catch {
        // not JSON: ignore
      }
    });
    ws.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: { host: 'fake', approximate_connection_time: 3600 }, connection_info: { app_id: 'A0000FAKE' } }));
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  private record(call: Omit<SlackCall, 'at'>): SlackCall {
    const full = { ...call, at: Date.now() };
    this.calls.push(full);
    this.emit('call', full);
    return full;
  }

  /** Called by startLoopback for each HTTP request. */
  async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.base());
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const type = req.headers['content-type'] ?? '';
    const json = (body: unknown, status = 200) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && this.files.has(url.pathname)) {
      if (!req.headers.authorization?.startsWith('Bearer xoxb-')) return json({ ok: false, error: 'not_authed' }, 403);
      const bytes = this.files.get(url.pathname)!;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
      res.end(bytes);
      return;
    }
    if (url.pathname.startsWith('/upload/')) {
      const fileId = url.pathname.slice('/upload/'.length);
      let bytes = raw;
      if (type.startsWith('multipart/form-data')) {
        const form = await new Response(raw, { headers: { 'content-type': type } }).formData();
        const part = [...form.values()].find((v) => typeof v !== 'string') as Blob | undefined;
        bytes = part ? Buffer.from(await part.arrayBuffer()) : Buffer.alloc(0);
      }
      this.uploads.set(fileId, { id: fileId, filename: this.pendingNames.get(fileId) ?? 'unknown', bytes });
      this.record({ method: 'upload', params: {}, bytes, fileId });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK - ' + bytes.length);
      return;
    }
    let params: Record<string, any> = {};
    if (type.includes('application/json') && raw.length) params = JSON.parse(raw.toString('utf8'));
    else if (raw.length) params = Object.fromEntries(new URLSearchParams(raw.toString('utf8')));
    if (url.pathname.startsWith('/respond/')) {
      this.record({ method: 'respond', params: { ...params, __url: `${this.base()}${url.pathname}` } });
      return json({ ok: true });
    }
    if (!url.pathname.startsWith('/api/')) return json({ ok: false, error: 'not_found' }, 404);
    const method = url.pathname.slice('/api/'.length);
    const call = this.record({ method, params, authorization: req.headers.authorization });
    const ts = () => `${Math.floor(Date.now() / 1000)}.${String(++this.seq).padStart(6, '0')}`;
    if (this.failMethods.has(method)) return json({ ok: false, error: 'internal_error' });
    switch (method) {
      case 'auth.test':
        return json({ ok: true, url: 'https://fake.slack.com/', team: 'Fake', user: 'nocturne', team_id: TEAM_ID, user_id: BOT_USER_ID, bot_id: 'B0000BOT1', is_enterprise_install: false });
      case 'apps.connections.open':
        return json({ ok: true, url: `ws://127.0.0.1:${this.port}/socket` });
      case 'chat.postMessage':
        return json({ ok: true, channel: params.channel, ts: ts(), message: { text: params.text, user: BOT_USER_ID, bot_id: 'B0000BOT1', type: 'message' } });
      case 'chat.update':
        return json({ ok: true, channel: params.channel, ts: params.ts, text: params.text });
      case 'chat.delete':
        return json({ ok: true, channel: params.channel, ts: params.ts });
      case 'chat.postEphemeral':
        return json({ ok: true, message_ts: ts() });
      case 'files.getUploadURLExternal': {
        const id = `F${String(++this.seq).padStart(8, '0')}`;
        this.pendingNames.set(id, String(params.filename));
        return json({ ok: true, upload_url: `${this.base()}/upload/${id}`, file_id: id });
      }
      case 'files.completeUploadExternal': {
        const files = typeof params.files === 'string' ? JSON.parse(params.files) : params.files;
        return json({ ok: true, files: (files as { id: string; title?: string }[]).map((f) => ({ id: f.id, title: f.title, name: this.pendingNames.get(f.id) })) });
      }
      case 'users.info':
        return json({ ok: true, user: { id: params.user, name: params.user, is_admin: this.admins.has(params.user), is_owner: false } });
      default:
        void call;
        return json({ ok: false, error: 'unknown_method' });
    }
  }

  async close(): Promise<void> {
    await closeLoopback(this.server, this.wss, this.sockets);
  }
}

/** The form body Slack POSTs for a slash command. */
export function slashCommandBody(command: string, text: string, opts: { user?: string; channel?: string; responseUrl: string }): string {
  return new URLSearchParams({
    token: 'legacy-verification-token',
    team_id: TEAM_ID,
    team_domain: 'fake',
    channel_id: opts.channel ?? 'C0000CHAN1',
    channel_name: 'music',
    user_id: opts.user ?? 'U0000USER1',
    user_name: 'clara',
    command,
    text,
    api_app_id: 'A0000FAKE',
    is_enterprise_install: 'false',
    response_url: opts.responseUrl,
    trigger_id: `trigger-${Date.now()}`,
  }).toString();
}

/** The JSON Slack sends for a slash command over Socket Mode (same fields as the form). */
export function slashCommandPayload(command: string, text: string, opts: { user?: string; channel?: string; responseUrl: string }): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(slashCommandBody(command, text, opts)));
}

/** The form body Slack POSTs when a button in a message is pressed. */
export function buttonBody(actionId: string, opts: { user?: string; channel?: string; responseUrl: string }): string {
  const channel = opts.channel ?? 'C0000CHAN1';
  const payload = {
    type: 'block_actions',
    user: { id: opts.user ?? 'U0000USER1', username: 'clara', name: 'clara', team_id: TEAM_ID },
    api_app_id: 'A0000FAKE',
    token: 'legacy-verification-token',
    container: { type: 'message', message_ts: '1700000000.000100', channel_id: channel, is_ephemeral: false },
    trigger_id: `trigger-${Date.now()}`,
    team: { id: TEAM_ID, domain: 'fake' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: channel, name: 'music' },
    message: { type: 'message', ts: '1700000000.000100', text: 'a piece', user: BOT_USER_ID },
    response_url: opts.responseUrl,
    actions: [{ action_id: actionId, block_id: 'b1', text: { type: 'plain_text', text: 'button' }, value: 'x', type: 'button', action_ts: `${Date.now() / 1000}` }],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** The JSON body of an Events API callback for a message that shares files with the bot. */
export function fileShareEventBody(text: string, files: { name: string; size: number; url: string; mimetype?: string }[], opts: { user?: string; channel?: string; threadTs?: string } = {}): string {
  return JSON.stringify({
    token: 'legacy-verification-token',
    team_id: TEAM_ID,
    api_app_id: 'A0000FAKE',
    type: 'event_callback',
    event_id: `Ev${Date.now()}${Math.floor(Math.random() * 1000)}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [{ enterprise_id: null, team_id: TEAM_ID, user_id: BOT_USER_ID, is_bot: true, is_enterprise_install: false }],
    event: {
      type: 'message',
      subtype: 'file_share',
      text,
      user: opts.user ?? 'U0000USER1',
      channel: opts.channel ?? 'C0000CHAN1',
      channel_type: 'channel',
      team: TEAM_ID,
      ts: `${Math.floor(Date.now() / 1000)}.000200`,
      ...(opts.threadTs ? { thread_ts: opts.threadTs } : {}),
      files: files.map((f, i) => ({ id: `FUP${i}${Date.now()}`, name: f.name, size: f.size, mimetype: f.mimetype ?? 'application/octet-stream', url_private_download: f.url, url_private: f.url })),
    },
  });
}
