/**
 * Attachment downloads (src/chat/download.ts) against a loopback file host: only allowed hosts,
 * the declared size and Content-Length checked before, the body's size checked while it streams,
 * redirects only to allowed hosts, headers never sent elsewhere, one-line errors without the URL's
 * query or the headers. Also the allow-list settings in loadConfig.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, attachmentByteLimit, downloadAttachment, parseHostList, refusedUrl } from '../src/chat/download.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';

let server: Server;
let base: string;
const seen: IncomingMessage[] = [];
let streamedBytes = 0;

before(async () => {
  server = createServer((req, res) => {
    seen.push(req);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/small') return void res.end(Buffer.alloc(100, 1));
    if (url.pathname === '/lying-length') {
      res.writeHead(200, { 'content-length': '999999999' });
      return void res.end();
    }
    if (url.pathname === '/endless') {
      // No Content-Length: chunks until the client hangs up.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {
          streamedBytes += chunk.length;
          if (streamedBytes > 200 * 1024 * 1024) return void res.end();
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => undefined);
      return pump();
    }
    if (url.pathname === '/to-elsewhere') {
      res.writeHead(302, { location: 'http://localhost.invalid:1/x' });
      return void res.end();
    }
    if (url.pathname === '/to-small') {
      res.writeHead(302, { location: '/small' });
      return void res.end();
    }
    if (url.pathname === '/gone') {
      res.writeHead(404);
      return void res.end();
    }
    res.writeHead(500);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

const loopback = { allowedHosts: ['127.0.0.1'] };

test('downloads from an allowed host, and refuses any other host without connecting', async () => {
  const bytes = await downloadAttachment(`${base}/small`, { ...loopback, maxBytes: 1000 });
  assert.equal(bytes.length, 100);
  const before = seen.length;
  await assert.rejects(downloadAttachment(`${base}/small`, { allowedHosts: ['cdn.discordapp.com'], maxBytes: 1000 }), (e: unknown) => e instanceof DownloadError && /not on the platform's file host \(127\.0\.0\.1\)/.test((e as Error).message));
  await assert.rejects(downloadAttachment('file:///etc/passwd', { ...loopback, maxBytes: 1000 }), DownloadError);
  await assert.rejects(downloadAttachment('not a url', { ...loopback, maxBytes: 1000 }), /no valid address/);
  assert.equal(seen.length, before, 'nothing was fetched');
  assert.equal(refusedUrl('http://cdn.discordapp.com/a.mid', ['cdn.discordapp.com']), "the attachment's address is not HTTPS");
  assert.equal(refusedUrl('https://cdn.discordapp.com/a.mid', ['cdn.discordapp.com']), undefined);
  assert.match(refusedUrl('https://cdn.discordapp.com.evil.example/a.mid', ['cdn.discordapp.com']) ?? '', /not on the platform's file host/);
});

test('the declared size and Content-Length are checked before the body is read', async () => {
  const before = seen.length;
  await assert.rejects(downloadAttachment(`${base}/small`, { ...loopback, maxBytes: 1000, declaredBytes: 5000 }), /over the 1000-byte limit/);
  assert.equal(seen.length, before, 'a declared size over the limit fetches nothing');
  await assert.rejects(downloadAttachment(`${base}/lying-length`, { ...loopback, maxBytes: 1000 }), /over the 1000-byte limit/);
});

test('a body without a length is aborted as soon as it passes the limit', async () => {
  streamedBytes = 0;
  const started = Date.now();
  await assert.rejects(downloadAttachment(`${base}/endless`, { ...loopback, maxBytes: 256 * 1024 }), /over the 262144-byte limit/);
  assert.ok(Date.now() - started < 5000, 'aborted quickly');
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(streamedBytes < 32 * 1024 * 1024, `the server stopped sending (${streamedBytes} bytes sent), the body was not read to the end`);
});

test('redirects: followed on allowed hosts only; headers go to allowed hosts only; errors are one line without secrets', async () => {
  const ok = await downloadAttachment(`${base}/to-small`, { ...loopback, maxBytes: 1000, headers: { Authorization: 'Bearer xoxb-secret' } });
  assert.equal(ok.length, 100);
  await assert.rejects(downloadAttachment(`${base}/to-elsewhere`, { ...loopback, maxBytes: 1000, headers: { Authorization: 'Bearer xoxb-secret' } }), /not on the platform's file host \(localhost\.invalid\)/);
  for (const url of [`${base}/gone?token=xoxb-secret`, `${base}/boom?sig=xoxb-secret`]) {
    const e = await downloadAttachment(url, { ...loopback, maxBytes: 1000, headers: { Authorization: 'Bearer xoxb-secret' } }).catch((x: Error) => x);
    assert.ok(e instanceof DownloadError);
    assert.match(e.message, /^the file host answered HTTP (404|500)$/);
    assert.doesNotMatch(e.message, /xoxb|token|sig=/);
  }
  const unreachable = await downloadAttachment('http://127.0.0.1:1/x?token=xoxb-secret', { ...loopback, maxBytes: 1000 }).catch((x: Error) => x);
  assert.equal((unreachable as Error).message, 'the file host could not be reached');
});

test('limits and allow-list settings', () => {
  assert.equal(attachmentByteLimit(1000), 2024);
  assert.ok(attachmentByteLimit(0) >= 2 * 1024 * 1024, 'an undeclared size still allows a MIDI file at the limit');
  assert.deepEqual(parseHostList('cdn.example.com, 127.0.0.1 media.Example.net'), { hosts: ['cdn.example.com', '127.0.0.1', 'media.example.net'], bad: [] });
  assert.deepEqual(parseHostList('https://x.com/, a b').bad, ['https://x.com/']);

  const dir = mkdtempSync(join(tmpdir(), 'nocturne-dl-'));
  try {
    mkdirSync(join(dir, 'model'), { recursive: true });
    writeFileSync(join(dir, 'model', 'model.json'), '{}');
    const env = { NOCTURNE_MODEL_DIR: join(dir, 'model'), NOCTURNE_COMMUNITY: 'off' };
    const withDefaults = loadConfig({ ...env, DISCORD_TOKEN: 'MTAw.abc.def', SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's' }, dir);
    assert.deepEqual(withDefaults.discord?.attachmentHosts, ['cdn.discordapp.com', 'media.discordapp.net']);
    assert.deepEqual(withDefaults.slack?.fileHosts, ['files.slack.com']);
    const loop = loadConfig({ ...env, DISCORD_TOKEN: 'MTAw.abc.def', DISCORD_ATTACHMENT_HOSTS: '127.0.0.1' }, dir);
    assert.deepEqual(loop.discord?.attachmentHosts, ['127.0.0.1']);
    assert.throws(
      () => loadConfig({ ...env, DISCORD_ATTACHMENT_HOSTS: 'https://cdn.example.com/', SLACK_FILE_HOSTS: ' , ' }, dir),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 2 && /DISCORD_ATTACHMENT_HOSTS must be host names/.test(e.message) && /SLACK_FILE_HOSTS must be host names/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
