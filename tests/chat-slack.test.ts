/**
 * End to end through the real @slack/bolt 5 app against the fake Slack in src/testing: signed
 * slash commands (and a forged one), progress and files.uploadV2, Block Kit buttons, MIDI files
 * shared with "continue" (good, not MIDI, drums, too big), the umbrella command, and Socket Mode.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SlackAdapter } from '../src/adapters/slack/slack.ts';
import type { Bot } from '../src/chat/bot.ts';
import type { SlackConfig } from '../src/adapters/slack/slack.ts';
import { FakeSlack, buttonBody, fileShareEventBody, postSigned, slashCommandBody, slashCommandPayload, type SlackCall } from '../src/testing/slackApi.ts';
import { chatFixture, drumMidi, isOgg, isPng, isWav, midiNoteCount, pianoMidi, type ChatFixture } from './support/chatBot.ts';

const SECRET = 'test-signing-secret';
let fake: FakeSlack;
let fixture: ChatFixture;
let bot: Bot;
let adapter: SlackAdapter;
let eventsUrl = '';
let channelSeq = 0;

const slackConfig = (mode: 'http' | 'socket'): SlackConfig => ({
  botToken: 'xoxb-fake-token',
  mode,
  signingSecret: mode === 'http' ? SECRET : undefined,
  appToken: mode === 'socket' ? 'xapp-fake-token' : undefined,
  port: 0,
  apiUrl: fake.apiUrl,
  uploadLimitBytes: 1_000_000_000,
  fileHosts: ['127.0.0.1'],
});

before(async () => {
  fake = await FakeSlack.start();
  fixture = await chatFixture('slack');
  bot = await fixture.openBot({ userPerMinute: 50, userMaxOpen: 5 });
  adapter = new SlackAdapter(bot, slackConfig('http'), fixture.log, { retries: 0 });
  const port = await adapter.start();
  eventsUrl = `http://127.0.0.1:${port}/slack/events`;
});

after(async () => {
  await adapter?.stop();
  await bot?.close(5000);
  await fake?.close();
  fixture?.remove();
});

function newChannel(): string {
  return `C${String(++channelSeq).padStart(8, '0')}`;
}

async function slash(command: string, text: string, channel = newChannel(), user?: string) {
  const responseUrl = fake.responseUrl();
  const res = await postSigned(eventsUrl, slashCommandBody(command, text, { channel, responseUrl, user }), 'application/x-www-form-urlencoded', SECRET);
  assert.equal(res.status, 200, `Slack request answered ${res.status}: ${res.text}`);
  return { channel, responseUrl };
}

/** Waits for the files and the summary with buttons posted to `channel`. */
async function result(channel: string, timeoutMs = 30_000) {
  const complete = await fake.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel, timeoutMs, `files uploaded to ${channel}`);
  const summary = await fake.waitFor((c) => (c.method === 'chat.update' || c.method === 'chat.postMessage') && c.params.channel === channel && String(c.params.blocks ?? '').includes('"actions"'), 10_000, `summary in ${channel}`);
  const blocks = JSON.parse(summary.params.blocks);
  const files = fake.uploadedFiles(complete);
  return { complete, summary, blocks, files };
}

function respondedTo(responseUrl: string, timeoutMs = 20_000): Promise<SlackCall> {
  return fake.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, timeoutMs, `a response to ${responseUrl}`);
}


test('a request with a bad signature is rejected with 401 and does nothing', async () => {
  const body = slashCommandBody('/compose', 'chopin 16', { responseUrl: fake.responseUrl(), channel: 'C0FORGED00' });
  const before = fake.calls.length;
  const res = await postSigned(eventsUrl, body, 'application/x-www-form-urlencoded', 'not-the-secret');
  assert.equal(res.status, 401);
  const stale = await postSigned(eventsUrl, body, 'application/x-www-form-urlencoded', SECRET, Math.floor(Date.now() / 1000) - 3600);
  assert.equal(stale.status, 401, 'a replayed (old) request is rejected too');
  assert.equal(fake.calls.slice(before).filter((c) => c.params.channel === 'C0FORGED00' || c.params.channel_id === 'C0FORGED00').length, 0);
});

test('/compose chopin 16: progress, files.uploadV2 with audio + MIDI + PNG, buttons naming the job', async () => {
  const { channel } = await slash('/compose', 'chopin 16');
  const progress = await fake.waitFor((c) => c.method === 'chat.postMessage' && c.params.channel === channel, 10_000, 'progress');
  assert.match(progress.params.text, /<@U0000USER1> ⏳ (queued #\d|composing)/);
  const r = await result(channel);
  const names = r.files.map((f) => f.filename);
  const audio = r.files.find((f) => /\.(wav|ogg)$/.test(f.filename));
  const midi = r.files.find((f) => f.filename.endsWith('.mid'));
  const png = r.files.find((f) => f.filename.endsWith('.png'));
  assert.ok(audio && midi && png, `uploaded: ${names.join(', ')}`);
  assert.ok(isWav(audio.bytes) || isOgg(audio.bytes));
  assert.equal(midiNoteCount(midi.bytes), 16);
  assert.ok(isPng(png.bytes));
  assert.match(r.complete.params.initial_comment, /Piece in the style of Chopin, 16 notes \(job [a-z2-9]{8}\)/);
  const job = /job ([a-z2-9]{8})/.exec(r.complete.params.initial_comment)![1];
  const actions = r.blocks.find((b: any) => b.type === 'actions');
  assert.deepEqual(actions.elements.map((e: any) => e.action_id), [`nocturne:continue:${job}`, `nocturne:variation:${job}`, `nocturne:regenerate:${job}`]);
  assert.equal(r.summary.method, 'chat.update', 'the progress message becomes the summary');
  assert.match(JSON.stringify(r.blocks), /Bernd Krueger, http:\/\/www\.piano-midi\.de, CC BY-SA 3\.0 DE/);

  // The Variation button: same composer and notes, a new seed, posted where it was pressed.
  const channel2 = newChannel();
  const press = await postSigned(eventsUrl, buttonBody(`nocturne:variation:${job}`, { channel: channel2, responseUrl: fake.responseUrl() }), 'application/x-www-form-urlencoded', SECRET);
  assert.equal(press.status, 200);
  const v = await result(channel2);
  assert.match(v.complete.params.initial_comment, /Variation in the style of Chopin, 16 notes/);
  assert.equal(midiNoteCount(v.files.find((f) => f.filename.endsWith('.mid'))!.bytes), 16);
});

test('bad input: one ephemeral line each, and the bot keeps answering', async () => {
  const unknown = await slash('/compose', 'chopim 16');
  const huge = await slash('/compose', 'chopin 99999');
  const none = await slash('/continue', '');
  const u = await respondedTo(unknown.responseUrl);
  const h = await respondedTo(huge.responseUrl);
  const n = await respondedTo(none.responseUrl);
  for (const r of [u, h, n]) assert.equal(r.params.response_type, 'ephemeral');
  assert.match(u.params.text, /unknown composer "chopim"\. Did you mean Chopin\?/);
  assert.match(h.params.text, /notes must be a whole number from 16 to 2000.*got 99999/);
  assert.match(n.params.text, /share it with me in a message that starts with "continue"/);

  const send = async (name: string, bytes: Buffer, size = bytes.length, threadTs?: string) => {
    const channel = newChannel();
    const body = fileShareEventBody(`<@U0000BOT1> continue chopin 16`, [{ name, size, url: fake.hostFile(name, bytes) }], { channel, threadTs });
    const res = await postSigned(eventsUrl, body, 'application/json', SECRET);
    assert.equal(res.status, 200);
    return channel;
  };
  const ephemeralIn = (channel: string) => fake.waitFor((c) => c.method === 'chat.postEphemeral' && c.params.channel === channel, 20_000, `an ephemeral message in ${channel}`);
  const notMidi = await send('notes.txt', Buffer.from('just some text, not a MIDI file'));
  const drums = await send('drums.mid', drumMidi());
  const big = await send('huge.mid', Buffer.alloc(64), 3 * 1024 * 1024);
  assert.match((await ephemeralIn(notMidi)).params.text, /notes\.txt is unreadable: not a MIDI file/);
  assert.match((await ephemeralIn(drums)).params.text, /drums\.mid is unacceptable: drums on channel 10/);
  const bigReply = await ephemeralIn(big);
  assert.match(bigReply.params.text, /huge\.mid is 3 MiB, over the 2 MiB limit/);
  assert.equal(bigReply.params.user, 'U0000USER1', 'only the uploader sees it');

  const good = await send('scale.mid', pianoMidi(24), undefined, '1700000000.000900');
  const r = await result(good);
  assert.equal(r.complete.params.thread_ts, '1700000000.000900', 'answered in the thread');
  assert.match(r.complete.params.initial_comment, /Continuation in the style of Chopin, 16 notes/);
  assert.equal(midiNoteCount(r.files.find((f) => f.filename.endsWith('.mid'))!.bytes), 16);

  const status = await slash('/nocturne', 'status');
  const s = await respondedTo(status.responseUrl);
  assert.match(s.params.text, /nocturne status\nQueue: \d+ waiting/);
});

test('Socket Mode: connects with the app token and answers a slash command envelope', async () => {
  const socketAdapter = new SlackAdapter(bot, slackConfig('socket'), fixture.log, { retries: 0 });
  try {
    await socketAdapter.start();
    const open = await fake.waitFor((c) => c.method === 'apps.connections.open', 5000, 'apps.connections.open');
    assert.equal(open.authorization, 'Bearer xapp-fake-token');
    assert.equal(fake.socketCount, 1);
    const responseUrl = fake.responseUrl();
    await fake.sendEnvelope('slash_commands', slashCommandPayload('/styles', '', { responseUrl }));
    const styles = await respondedTo(responseUrl);
    assert.match(styles.params.text, /Model tiny-3: 2 composers\nChopin: trained on 10 pieces/);
  } finally {
    await socketAdapter.stop();
  }
});
