/**
 * Slack replays, end to end through the real @slack/bolt 5 app against the fake Slack in
 * src/testing, with the job store's SQLite file: the same signed slash command posted twice runs
 * one job (the second is answered 200 and logged, not run); Slack's retry of a file-share event
 * (newly signed, same event id, x-slack-retry-num) runs no second job; a timestamp more than the
 * allowed skew in the future is refused with 401 and runs nothing, while one within it is
 * answered; two bots sharing the store, each with its own Slack app, get the same request at once
 * and run it once. Jobs are counted in the store itself, after the bots' queues have emptied.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SlackAdapter } from '../src/adapters/slack/slack.ts';
import { Bot } from '../src/chat/bot.ts';
import type { SlackConfig } from '../src/adapters/slack/slack.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import { Store, storeLocation } from '../src/storage/backend.ts';
import { FakeSlack, fileShareEventBody, slackSignature, slashCommandBody } from '../src/testing/slackApi.ts';
import { chatFixture, pianoMidi, type ChatFixture } from './support/chatBot.ts';

const SECRET = 'test-signing-secret';
/** The clock skew allowed for a timestamp ahead of the bot's clock (docs/chat.md: a minute). */
const SLACK_FUTURE_SKEW_S = 60;
let fake: FakeSlack;
let fixture: ChatFixture;
const bots: Bot[] = [];
const adapters: SlackAdapter[] = [];
const urls: string[] = [];
let channelSeq = 0;

const slackConfig = (): SlackConfig => ({ botToken: 'xoxb-fake-token', mode: 'http', signingSecret: SECRET, port: 0, apiUrl: fake.apiUrl, uploadLimitBytes: 1_000_000_000, fileHosts: ['127.0.0.1'] });

before(async () => {
  fake = await FakeSlack.start();
  fixture = await chatFixture('slack-replays');
  // Two bot instances on the one SQLite file, each with its own Slack app and port.
  for (const name of ['replays-a', 'replays-b']) {
    const bot = await Bot.open({ modelDir: fixture.modelDir, dataDir: fixture.dataDir, outDir: fixture.outDir, limits: { batchWindowMs: 20, userPerMinute: 50, userMaxOpen: 5 }, log: fixture.log, instance: { name } });
    bots.push(bot);
    const adapter = new SlackAdapter(bot, slackConfig(), (line) => fixture.log(`[${name}] ${line}`), { retries: 0 });
    adapters.push(adapter);
    urls.push(`http://127.0.0.1:${await adapter.start()}/slack/events`);
  }
});

after(async () => {
  await Promise.allSettled(adapters.map((a) => a.stop()));
  await Promise.allSettled(bots.map((b) => b.close(5000)));
  await fake?.close();
  fixture?.remove();
});

function newChannel(): string {
  return `C${String(++channelSeq).padStart(8, '0')}`;
}

/** POSTs `body` signed for `timestamp` as Slack does, with extra headers (e.g. x-slack-retry-num). */
async function post(url: string, body: string, contentType: string, timestamp: number, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': contentType, 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': slackSignature(SECRET, timestamp, body), ...headers },
    body,
  });
  await res.text();
  return res.status;
}

const FORM = 'application/x-www-form-urlencoded';
const now = () => Math.floor(Date.now() / 1000);

/** The job records the store holds for requests from `channel`. */
async function jobsIn(channel: string): Promise<JobRecord[]> {
  const store = await Store.open(storeLocation(fixture.dataDir), ['jobs']);
  try {
    return (await store.table<JobRecord>('jobs').list()).map((e) => e.value).filter((r) => r.who.channelId === channel);
  } finally {
    await store.close();
  }
}

/** Waits for the files of a finished piece in `channel`, then until no bot has an open job. */
async function settled(channel: string): Promise<void> {
  await fake.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel, 60_000, `files uploaded to ${channel}`);
  const end = Date.now() + 60_000;
  while ((await bots[0].store.openJobs()).length > 0) {
    if (Date.now() > end) throw new Error('jobs still open after 60 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ignoredLines = (pattern: RegExp) => fixture.logs.filter((l) => /acknowledged but ignored/.test(l) && pattern.test(l));

test('the same signed slash command posted twice is answered 200 both times and runs one job', async () => {
  const channel = newChannel();
  const body = slashCommandBody('/compose', 'chopin 16', { channel, responseUrl: fake.responseUrl() });
  const timestamp = now();
  assert.equal(await post(urls[0], body, FORM, timestamp), 200);
  assert.equal(await post(urls[0], body, FORM, timestamp), 200, 'a replay is acknowledged, so Slack would not retry it');
  await settled(channel);
  assert.equal((await jobsIn(channel)).length, 1, 'exactly one job');
  assert.equal(fake.calls.filter((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel).length, 1, 'one piece posted');
  assert.equal(ignoredLines(new RegExp(`/compose from U0000USER1 in ${channel}.*a replay`)).length, 1, 'one log line for the replay');
});

test("Slack's retry of a file-share event already handled (new signature, same event id) runs no second job", async () => {
  const channel = newChannel();
  const url = fake.hostFile('seed.mid', pianoMidi(24));
  const body = fileShareEventBody('<@U0000BOT1> continue chopin 16', [{ name: 'seed.mid', size: pianoMidi(24).length, url }], { channel });
  const eventId = JSON.parse(body).event_id as string;
  assert.equal(await post(urls[0], body, 'application/json', now()), 200);
  // Slack signs each retry anew (one second later here), so only the event id tells it apart.
  assert.equal(await post(urls[0], body, 'application/json', now() + 1, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' }), 200);
  await settled(channel);
  assert.equal((await jobsIn(channel)).length, 1, 'exactly one job');
  assert.equal(ignoredLines(new RegExp(`retry #1, http_timeout.*event ${eventId} was handled already`)).length, 1);
});

test(`a timestamp more than ${SLACK_FUTURE_SKEW_S} s in the future is refused with 401 and runs nothing; one within that is answered`, async () => {
  const channel = newChannel();
  const body = slashCommandBody('/compose', 'chopin 16', { channel, responseUrl: fake.responseUrl() });
  const callsBefore = fake.calls.length;
  assert.equal(await post(urls[0], body, FORM, now() + 3600), 401, 'an hour ahead');
  assert.equal(await post(urls[0], body, FORM, now() + SLACK_FUTURE_SKEW_S + 30), 401, 'just past the skew');
  // Within the skew (a clock a little behind Slack's) the request is handled.
  const responseUrl = fake.responseUrl();
  assert.equal(await post(urls[0], slashCommandBody('/nocturne', 'status', { channel: newChannel(), responseUrl }), FORM, now() + 20), 200);
  await fake.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, 10_000, 'the status answer');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(fake.calls.slice(callsBefore).filter((c) => c.params.channel === channel || c.params.channel_id === channel).length, 0, 'nothing posted for the refused requests');
  assert.deepEqual(await jobsIn(channel), [], 'no job');
  assert.equal(fixture.logs.filter((l) => /refused a request timestamped \d+ s ahead/.test(l)).length, 1, 'one log line a minute, not one per request');
});

test('two bots sharing one SQLite store get the same signed request at once: one job', async () => {
  const channel = newChannel();
  const body = slashCommandBody('/compose', 'chopin 16', { channel, responseUrl: fake.responseUrl() });
  const timestamp = now();
  const statuses = await Promise.all([post(urls[0], body, FORM, timestamp), post(urls[1], body, FORM, timestamp), post(urls[0], body, FORM, timestamp), post(urls[1], body, FORM, timestamp)]);
  assert.deepEqual(statuses, [200, 200, 200, 200]);
  await settled(channel);
  const jobs = await jobsIn(channel);
  assert.equal(jobs.length, 1, `exactly one job, got ${jobs.map((j) => `${j.id} (${j.owner})`).join(', ')}`);
  assert.equal(ignoredLines(new RegExp(`/compose from U0000USER1 in ${channel}`)).length, 2, 'each bot that ignored a copy logged it once');
});
