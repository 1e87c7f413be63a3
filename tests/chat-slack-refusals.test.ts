/**
 * Unverified Slack requests, end to end through the real @slack/bolt 5 app against the fake Slack
 * in src/testing: anyone can POST to the Request URL, and Bolt warns once per request with a
 * missing, wrong or stale signature, so a flood of them flooded the log. Here 50 such requests
 * each get 401 and make one log line at once, and one more line with their count and reasons
 * when the minute is up (at stop, here; with a short interval, by the timer); a signed request
 * is still answered, and Bolt's other warnings (a signed request with a malformed body) are
 * still logged one by one.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SlackAdapter } from '../src/adapters/slack/slack.ts';
import type { Bot } from '../src/chat/bot.ts';
import type { SlackConfig } from '../src/adapters/slack/slack.ts';
import { FakeSlack, slackSignature, slashCommandBody } from '../src/testing/slackApi.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';

const SECRET = 'test-signing-secret';
const FORM = 'application/x-www-form-urlencoded';
let fake: FakeSlack;
let fixture: ChatFixture;
let bot: Bot;
const adapters: SlackAdapter[] = [];

const slackConfig = (): SlackConfig => ({ botToken: 'xoxb-fake-token', mode: 'http', signingSecret: SECRET, port: 0, apiUrl: fake.apiUrl, uploadLimitBytes: 1_000_000_000, fileHosts: ['127.0.0.1'] });

before(async () => {
  fake = await FakeSlack.start();
  fixture = await chatFixture('slack-refusals');
  bot = await fixture.openBot({ userPerMinute: 50, userMaxOpen: 5 });
});

after(async () => {
  await Promise.allSettled(adapters.map((a) => a.stop()));
  await bot?.close(5000);
  await fake?.close();
  fixture?.remove();
});

/** An adapter on its own port whose log lines are collected in `lines`. */
async function startAdapter(refusalLogIntervalMs?: number): Promise<{ adapter: SlackAdapter; url: string; lines: string[] }> {
  const lines: string[] = [];
  const adapter = new SlackAdapter(bot, slackConfig(), (line) => lines.push(line), { retries: 0, ...(refusalLogIntervalMs ? { refusalLogIntervalMs } : {}) });
  adapters.push(adapter);
  return { adapter, url: `http://127.0.0.1:${await adapter.start()}/slack/events`, lines };
}

const now = () => Math.floor(Date.now() / 1000);

async function post(url: string, body: string, contentType: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body });
  await res.text();
  return res.status;
}

const signed = (secret: string, timestamp: number, body: string) => ({ 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': slackSignature(secret, timestamp, body) });

/** Lines about refused, unverified requests (Bolt's own warning for each, before the change). */
const refusalLines = (lines: string[]) => lines.filter((l) => /refused|verify|signature|stale|authenticity/i.test(l));

test('50 unsigned, wrongly signed or stale requests: all 401, one log line at once and one with the count at the end of the minute; a signed request still works', async () => {
  const { adapter, url, lines } = await startAdapter();
  const body = slashCommandBody('/compose', 'chopin 16', { channel: 'C0FORGED01', responseUrl: fake.responseUrl() });
  const callsBefore = fake.calls.length;
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push(await post(url, body, FORM, {}));
  for (let i = 0; i < 20; i++) statuses.push(await post(url, body, FORM, signed('not-the-secret', now(), body)));
  for (let i = 0; i < 10; i++) statuses.push(await post(url, body, FORM, signed(SECRET, now() - 3600, body)));
  assert.deepEqual(statuses, new Array(50).fill(401), 'every unverified request is refused with 401');
  // (auth.test is Bolt's own check of the bot token when the app starts.)
  assert.deepEqual(fake.calls.slice(callsBefore).map((c) => c.method).filter((m) => m !== 'auth.test'), [], 'nothing reached Slack for them');
  assert.equal(refusalLines(lines).length, 1, `one line at once, not one per request:\n${lines.join('\n')}`);
  assert.match(refusalLines(lines)[0], /refused an unverified request: no x-slack-signature header \(401\).*at most once a minute/);

  // A correctly signed request is still answered.
  const responseUrl = fake.responseUrl();
  const status = slashCommandBody('/nocturne', 'status', { channel: 'C0SIGNED01', responseUrl });
  assert.equal(await post(url, status, FORM, signed(SECRET, now(), status)), 200);
  await fake.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, 10_000, 'the status answer');

  // Bolt's other warnings are not counted away: a signed request with a malformed body, twice.
  for (let i = 0; i < 2; i++) assert.equal(await post(url, '{"not json', 'application/json', signed(SECRET, now(), '{"not json')), 400);
  assert.equal(lines.filter((l) => /bolt warn.*Malformed request body/.test(l)).length, 2, `each other warning is logged:\n${lines.join('\n')}`);
  assert.equal(refusalLines(lines).length, 1);

  // The minute is not up; stopping logs the count so far.
  await adapter.stop();
  const refusals = refusalLines(lines);
  if (process.env.NOCTURNE_TEST_LOG === '1') process.stderr.write(`${lines.join('\n')}\n`);
  assert.equal(refusals.length, 2, `at most two lines about the 50 refusals:\n${refusals.join('\n')}`);
  assert.match(refusals[1], /refused 49 unverified requests since the last such line/);
  assert.match(refusals[1], /20 × signature mismatch \(401\)/);
  assert.match(refusals[1], /19 × no x-slack-signature header \(401\)/);
  assert.match(refusals[1], /10 × .*stale \(401\)/);
});

test('with refusals still coming, the count is logged when the interval is up, without a stop (also for future timestamps)', async () => {
  const { url, lines } = await startAdapter(2000);
  const body = slashCommandBody('/compose', 'chopin 16', { channel: 'C0FORGED02', responseUrl: fake.responseUrl() });
  for (let i = 0; i < 10; i++) assert.equal(await post(url, body, FORM, signed('not-the-secret', now(), body)), 401);
  // Correctly signed but timestamped ahead of the clock (refused by the adapter, before Bolt).
  for (const ahead of [7200, 7200, 120]) assert.equal(await post(url, body, FORM, signed(SECRET, now() + ahead, body)), 401);
  const end = Date.now() + 10_000;
  while (refusalLines(lines).length < 4 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  const unverified = lines.filter((l) => /unverified/.test(l));
  assert.equal(unverified.length, 2, lines.join('\n'));
  assert.match(unverified[0], /refused an unverified request: signature mismatch \(401\)/);
  assert.match(unverified[1], /refused 9 unverified requests since the last such line: 9 × signature mismatch \(401\)/);
  const future = lines.filter((l) => /timestamped/.test(l));
  assert.equal(future.length, 2, lines.join('\n'));
  assert.match(future[0], /refused a request timestamped 7[12]\d\d s ahead of this machine's clock/);
  assert.match(future[1], /refused 2 requests timestamped more than 60 s ahead of this machine's clock since the last such line \(over an hour ahead; up to 5 minutes ahead; the latest 1[12]\d s ahead\)/);
  assert.equal(refusalLines(lines).length, 4, lines.join('\n'));
});
