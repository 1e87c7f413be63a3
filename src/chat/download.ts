/**
 * The one way the bot downloads a file a user attached: only from the chat platform's own file
 * hosts (an allow-list), with the size checked before the download (the platform's declared size
 * and the Content-Length) and while it runs (the body is read in chunks and the download is
 * aborted as soon as it passes the limit). Redirects are followed only to allowed hosts, and
 * request headers (Slack's bot token) are only ever sent to them.
 *
 * Every failure is a DownloadError with a one-line message fit for the user: it never contains
 * the URL's query string or a header.
 */

/** Discord serves attachments from these hosts. */
export const DISCORD_ATTACHMENT_HOSTS: readonly string[] = Object.freeze(['cdn.discordapp.com', 'media.discordapp.net']);
/** Slack serves shared files (url_private / url_private_download) from these hosts. */
export const SLACK_FILE_HOSTS: readonly string[] = Object.freeze(['files.slack.com']);

/** Longest an attachment download may take. */
export const DOWNLOAD_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 3;
/** The limit when the platform did not declare a size (no attachment option takes more). */
export const UNDECLARED_ATTACHMENT_LIMIT_BYTES = 8 * 1024 * 1024;

/** The most bytes to accept for a file the platform says is `declared` bytes (0: not said). Pure. */
export function attachmentByteLimit(declared: number): number {
  return declared > 0 ? declared + 1024 : UNDECLARED_ATTACHMENT_LIMIT_BYTES;
}

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export interface DownloadOptions {
  /** Host names (exact, lower case) the file may come from. */
  allowedHosts: readonly string[];
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** The size the platform declared for the file, checked before anything is fetched. */
  declaredBytes?: number;
  /** Sent to allowed hosts only (e.g. Slack's Authorization header). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', '[::1]', 'localhost']);

/** Why `url` may not be fetched, or undefined when it may. Pure. */
export function refusedUrl(url: string, allowedHosts: readonly string[]): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'the attachment has no valid address';
  }
  const host = u.hostname.toLowerCase();
  if (!allowedHosts.map((h) => h.toLowerCase()).includes(host)) return `the attachment is not on the platform's file host (${host.slice(0, 80)})`;
  // Plain HTTP only for loopback (the tests' fakes); real file hosts are HTTPS.
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(host))) return `the attachment's address is not HTTPS`;
  return undefined;
}

function overLimit(maxBytes: number): DownloadError {
  return new DownloadError(`the file is over the ${maxBytes}-byte limit`);
}

/** Downloads an attachment under the rules above. Rejects with a DownloadError. */
export async function downloadAttachment(url: string, o: DownloadOptions): Promise<Uint8Array> {
  if (o.declaredBytes !== undefined && o.declaredBytes > o.maxBytes) throw overLimit(o.maxBytes);
  const signal = AbortSignal.timeout(o.timeoutMs ?? DOWNLOAD_TIMEOUT_MS);
  let current = url;
  for (let hop = 0; ; hop++) {
    const refusal = refusedUrl(current, o.allowedHosts);
    if (refusal) throw new DownloadError(refusal);
    let res: Response;
    try {
      res = await fetch(current, { headers: o.headers, redirect: 'manual', signal });
    } catch (e) {
      const name = (e as Error).name;
      throw new DownloadError(name === 'TimeoutError' || name === 'AbortError' ? 'the download took too long' : 'the file host could not be reached');
    }
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel().catch(() => undefined);
      if (hop >= MAX_REDIRECTS) throw new DownloadError('the file host redirected too many times');
      current = new URL(res.headers.get('location')!, current).href;
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new DownloadError(`the file host answered HTTP ${res.status}`);
    }
    const length = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(length) && length > o.maxBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw overLimit(o.maxBytes);
    }
    return readBounded(res, o.maxBytes);
  }
}

async function readBounded(res: Response, maxBytes: number): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw overLimit(maxBytes);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof DownloadError) throw e;
    const name = (e as Error).name;
    throw new DownloadError(name === 'TimeoutError' || name === 'AbortError' ? 'the download took too long' : 'the download was cut off');
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return body;
}

/** Parses an allow-list setting: host names separated by commas or spaces. Pure. */
export function parseHostList(raw: string): { hosts: string[]; bad: string[] } {
  const list = raw.split(/[\s,]+/).filter(Boolean).map((h) => h.toLowerCase());
  const valid = (h: string) => /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/.test(h) || h === '::1';
  return { hosts: list.filter(valid), bad: list.filter((h) => !valid(h)) };
}
