/**
 * Bad input and abuse, end to end through the real Discord and Slack adapters against the fakes
 * (loopback only):
 * - a flood of 500 /compose from one user gets polite refusals past the limits, and other users
 *   are still served;
 * - user file names never become paths, and attachments on other hosts are never fetched;
 * - the bot token, Slack's bot token and signing secret appear nowhere in what the run printed or
 *   logged (everything written to stdout/stderr/console and the bot's log) nor in any reply, across
 *   the error paths too: a wrong Discord token, a failed upload on each platform, a failed file
 *   download, a forged Slack request and a configuration with malformed tokens.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiscordAdapter } from '../src/adapters/discord/discord.ts';
import { SlackAdapter } from '../src/adapters/slack/slack.ts';
import type { Bot } from '../src/chat/bot.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { FakeSlack, fileShareEventBody, postSigned, slashCommandBody } from '../src/testing/slackApi.ts';
import { chatFixture, pianoMidi, type ChatFixture } from './support/chatBot.ts';

const DISCORD_TOKEN = 'MTAwSECRETDSC.fakeZZ9.tokenQQ7';
const SLACK_TOKEN = 'xoxb-SECRETSLK-bot-77';
const SIGNING_SECRET = 'SECRETSIGN-signing-55';
const SECRETS = [DISCORD_TOKEN, 'SECRETDSC', 'fakeZZ9', 'tokenQQ7', SLACK_TOKEN, 'SECRETSLK', SIGNING_SECRET, 'SECRETSIGN', 'SECRETAPP'];

let discord: FakeDiscord;
let slack: FakeSlack;
let fixture: ChatFixture;
let bot: Bot;
let discordAdapter: DiscordAdapter;
let slackAdapter: SlackAdapter;
let eventsUrl: string;

/** Everything the process prints while the tests run (the test runner's own output is forwarded). */
const printed: string[] = [];
const restore: (() => void)[] = [];

function capture(): void {
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream);
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      printed.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof stream.write;
    restore.push(() => (stream.write = original));
  }
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const original = console[level];
    console[level] = (...args: unknown[]) => {
      printed.push(args.map((a) => (a instanceof Error ? `${a.message}\n${a.stack}` : typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
      original(...args);
    };
    restore.push(() => (console[level] = original));
  }
}

before(async () => {
  capture();
  discord = await FakeDiscord.start();
  discord.requiredToken = DISCORD_TOKEN;
  slack = await FakeSlack.start();
  fixture = await chatFixture('abuse');
  bot = await fixture.openBot({ userMaxOpen: 2, userPerMinute: 6, serverPerMinute: 60, maxWaiting: 100 });
  discordAdapter = new DiscordAdapter(bot, { token: DISCORD_TOKEN, apiBase: discord.apiBase, uploadLimitBytes: 10_000_000, attachmentHosts: ['127.0.0.1'] }, fixture.log);
  await discordAdapter.start();
  slackAdapter = new SlackAdapter(bot, { botToken: SLACK_TOKEN, mode: 'http', signingSecret: SIGNING_SECRET, port: 0, apiUrl: slack.apiUrl, uploadLimitBytes: 1_000_000_000, fileHosts: ['127.0.0.1'] }, fixture.log, { retries: 0 });
  eventsUrl = `http://127.0.0.1:${await slackAdapter.start()}/slack/events`;
});

after(async () => {
  await discordAdapter?.stop();
  await slackAdapter?.stop();
  await bot?.close(5000);
  await discord?.close();
  await slack?.close();
  fixture?.remove();
  for (const r of restore.reverse()) r();
});

function ephemeralText(call: RecordedCall): string {
  return call.body?.data?.content ?? call.body?.content ?? '';
}

test('flood: 500 /compose from one user in a burst get polite refusals past the limit; other users are still served', { timeout: 120_000 }, async () => {
  const flooder = { id: '700000000000000500', username: 'flooder' };
  const burst = Array.from({ length: 500 }, () => discord.command('compose', { composer: 'chopin', notes: 16 }, { user: flooder }));
  const others = [
    discord.command('compose', { composer: 'chopin', notes: 16 }, { user: { id: '700000000000000501', username: 'ada' } }),
    discord.command('compose', { composer: 'mozart', notes: 16 }, { user: { id: '700000000000000502', username: 'bea' } }),
  ];
  const outcomes: { kind: string; text: string }[] = [];
  for (const b of burst) {
    const o = await discord.waitForOutcome(b.token, 60_000);
    outcomes.push({ kind: o.kind, text: o.kind === 'error' ? ephemeralText(o.call) : '' });
  }
  const served = outcomes.filter((o) => o.kind === 'result').length;
  const refused = outcomes.filter((o) => o.kind === 'error');
  assert.ok(served >= 1 && served <= 6, `the flooder got ${served} pieces (limit: 2 open, 6 a minute)`);
  assert.equal(served + refused.length, 500, 'every request got exactly one answer');
  for (const r of refused) {
    assert.match(r.text, /you already have 2 pieces on the way: wait for one to finish|you asked for \d+ pieces in the last minute: try again in ~\d+ s/);
    assert.doesNotMatch(r.text, /\n|Error|at .*\.ts/, 'one polite line, no stack trace');
  }
  for (const o of others) assert.equal((await discord.waitForOutcome(o.token, 60_000)).kind, 'result', 'another user is served during the flood');
});

test('user file names never become paths; attachments on other hosts are not fetched', { timeout: 60_000 }, async () => {
  const marker = `escape-${process.pid}-${Date.now()}`;
  const midi = pianoMidi(24);
  const names = [`../../../../../../tmp/${marker}.mid`, `..\\..\\${marker}.mid`, `/tmp/${marker}.mid`];
  for (const [i, name] of names.entries()) {
    const user = { id: `70000000000000060${i}`, username: `path${i}` };
    const c = discord.command('continue', { midi: { attachment: { filename: name, size: midi.length, url: discord.hostFile(name, midi, 'audio/midi') } }, composer: 'chopin', notes: 16 }, { user });
    assert.equal((await discord.waitForOutcome(c.token)).kind, 'result', `continued ${name}`);
  }
  const everywhere = (dir: string): string[] =>
    readdirSync(dir).flatMap((n) => {
      const p = join(dir, n);
      return statSync(p).isDirectory() ? everywhere(p) : [p];
    });
  assert.deepEqual(everywhere(fixture.dir).filter((p) => p.includes(marker)), [], 'no file named after the upload in the bot folders');
  assert.equal(existsSync(join(tmpdir(), `${marker}.mid`)), false);
  assert.ok(everywhere(fixture.outDir).some((p) => p.endsWith('seed.mid')), 'the seed is stored under a fixed name');

  // The same file at an address Discord does not serve from: refused before any request.
  const offHost = discord.hostFile('scale.mid', midi, 'audio/midi').replace('127.0.0.1', 'localhost');
  const c = discord.command('continue', { midi: { attachment: { filename: 'scale.mid', size: midi.length, url: offHost } }, composer: 'chopin', notes: 16 }, { user: { id: '700000000000000610', username: 'offhost' } });
  const o = await discord.waitForOutcome(c.token);
  assert.equal(o.kind, 'error');
  assert.match(ephemeralText(o.call), /could not download scale\.mid \(the attachment is not on the platform's file host \(localhost\)\): attach it again/);
});

test('tokens and the signing secret never appear in logs, printed output or replies, error paths included', { timeout: 120_000 }, async () => {
  // Slack: a piece, a shared file that cannot be downloaded, an upload that fails, a forged request.
  const ok = slashCommandBody('/compose', 'chopin 16', { channel: 'C0SECRET01', responseUrl: slack.responseUrl() });
  assert.equal((await postSigned(eventsUrl, ok, 'application/x-www-form-urlencoded', SIGNING_SECRET)).status, 200);
  await slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === 'C0SECRET01', 30_000, 'a Slack piece');
  const missing = fileShareEventBody('<@U0000BOT1> continue chopin 16', [{ name: 'gone.mid', size: 100, url: `${slack.apiUrl.replace(/\/api\/$/, '')}/files-pri/T0000FAKE-F999/gone.mid?t=${SLACK_TOKEN}` }], { channel: 'C0SECRET02' });
  assert.equal((await postSigned(eventsUrl, missing, 'application/json', SIGNING_SECRET)).status, 200);
  const notice = await slack.waitFor((c) => /could not download gone\.mid/.test(String(c.params.text ?? '')), 20_000, 'the download failure notice');
  assert.match(notice.params.text, /the file host answered HTTP 404/);
  slack.failMethods.add('files.completeUploadExternal');
  const failing = slashCommandBody('/compose', 'chopin 16', { channel: 'C0SECRET03', user: 'U0000USER3', responseUrl: slack.responseUrl() });
  assert.equal((await postSigned(eventsUrl, failing, 'application/x-www-form-urlencoded', SIGNING_SECRET)).status, 200);
  await slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === 'C0SECRET03', 30_000, 'the failing upload');
  await waitUntil(() => fixture.logs.some((l) => /internal_error/.test(l)), 20_000, 'the failed Slack upload in the log');
  slack.failMethods.delete('files.completeUploadExternal');
  const forged = await postSigned(eventsUrl, ok, 'application/x-www-form-urlencoded', 'not-the-secret');
  assert.equal(forged.status, 401);

  // Discord: an upload that fails, then a process with a wrong token.
  discord.failWith = (call) => (call.method === 'PATCH' && call.files.length > 0 ? 500 : undefined);
  const c = discord.command('compose', { composer: 'chopin', notes: 16 }, { user: { id: '700000000000000700', username: 'uploadfail' } });
  await discord.waitFor((call) => call.path.includes(`/${c.token}/`) && call.method === 'PATCH' && call.files.length > 0, 30_000, 'the failing Discord upload');
  await waitUntil(() => fixture.logs.some((l) => /^discord: posting job [a-z2-9]{8} failed/.test(l)), 30_000, 'the failed Discord upload in the log');
  discord.failWith = undefined;
  const wrong = new DiscordAdapter(bot, { token: 'MTAwSECRETDSC.fakeZZ9.wrongQQ8', apiBase: discord.apiBase, uploadLimitBytes: 10_000_000 }, fixture.log);
  const refusal = await wrong.start().then(
    () => undefined,
    (e: Error) => e,
  );
  await wrong.stop().catch(() => undefined);
  assert.ok(refusal, 'a wrong token does not log in');
  printed.push(`start failed: ${refusal.message}\n${refusal.stack ?? ''}`);
  assert.doesNotMatch(refusal.message, /SECRETDSC|wrongQQ8/);

  // Configuration errors describe a malformed token without repeating it.
  try {
    loadConfig({ NOCTURNE_MODEL_DIR: fixture.modelDir, DISCORD_TOKEN: 'SECRETDSC has spaces', SLACK_BOT_TOKEN: 'SECRETSLK-not-xoxb', SLACK_APP_TOKEN: 'SECRETAPP-not-xapp', NOCTURNE_COMMUNITY: 'off' }, fixture.dir);
    assert.fail('malformed tokens are a configuration error');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.ok(e.problems.length >= 3, e.message);
    printed.push(e.message);
  }

  const replies = [...discord.calls.map((call) => JSON.stringify({ path: call.path, body: call.body, files: call.files.map((f) => f.name) })), ...slack.calls.map((call) => {
      // A Web API call may authenticate with a `token` field in its body (Bolt's auth.test does):
      // that is the credential going to Slack itself, not content anyone sees.
      const { token: _credential, ...content } = call.params;
      return JSON.stringify({ method: call.method, params: content });
    })];
  const haystacks: [string, string][] = [
    ['printed output', printed.join('\n')],
    ['bot log', fixture.logs.join('\n')],
    ['replies', replies.join('\n')],
  ];
  assert.ok(fixture.logs.length > 3 && replies.length > 10, 'the run produced logs and replies to search');
  for (const [where, text] of haystacks) for (const secret of SECRETS) assert.ok(!text.includes(secret), `${JSON.stringify(secret)} appears in the ${where}: …${text.slice(Math.max(0, text.indexOf(secret) - 300), text.indexOf(secret) + 60)}…`);
  // And the header the bot does send is only ever sent to the file host it belongs to.
  assert.ok(slack.calls.filter((call) => call.authorization).every((call) => call.authorization === `Bearer ${SLACK_TOKEN}`));
});

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
