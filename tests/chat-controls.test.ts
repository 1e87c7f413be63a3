/**
 * The musical controls in chat (issue 10): key, tempo and score, declared once in
 * commands/controls.ts and rendered by every front end. The pure parts (choices, checks, typed
 * words, the Discord JSON), then one bot driven through the real discord.js client and the real
 * @slack/bolt app against the fakes in src/testing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS } from '../commands/index.ts';
import { KEY_CHOICES, keyChoices } from '../commands/controls.ts';
import { discordCommandJson, discordUsage, DiscordAdapter } from '../src/adapters/discord/discord.ts';
import { SlackAdapter, slackUsage } from '../src/adapters/slack/slack.ts';
import { terminalUsage } from '../src/adapters/terminal/terminal.ts';
import type { Bot } from '../src/chat/bot.ts';
import { autocompleteChoices } from '../src/chat/dispatch.ts';
import { checkOptions, parseOptionWords, splitWords } from '../src/chat/options.ts';
import { composeControls } from '../src/jobs/queue.ts';
import { parseMidi } from '../src/midi/read.ts';
import { jobDataOf, requestOf } from '../src/scaleout/redisQueue.ts';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { FakeSlack, postSigned, slashCommandBody } from '../src/testing/slackApi.ts';
import { chatFixture, midiNoteCount, type ChatFixture } from './support/chatBot.ts';

const compose = COMMANDS.find((c) => c.name === 'compose')!;
const cont = COMMANDS.find((c) => c.name === 'continue')!;
const SECRET = 'test-signing-secret';

let discord: FakeDiscord;
let slack: FakeSlack;
let fixture: ChatFixture;
let bot: Bot;
let discordAdapter: DiscordAdapter;
let slackAdapter: SlackAdapter;
let eventsUrl = '';
let channelSeq = 0;

before(async () => {
  discord = await FakeDiscord.start();
  slack = await FakeSlack.start();
  fixture = await chatFixture('controls');
  bot = await fixture.openBot({ userPerMinute: 100, userMaxOpen: 5 });
  discordAdapter = new DiscordAdapter(bot, { token: 'MTAw.fake.token', apiBase: discord.apiBase, uploadLimitBytes: 10_000_000, attachmentHosts: ['127.0.0.1'] }, fixture.log);
  await discordAdapter.start();
  slackAdapter = new SlackAdapter(bot, { botToken: 'xoxb-fake-token', mode: 'http', signingSecret: SECRET, port: 0, apiUrl: slack.apiUrl, uploadLimitBytes: 1_000_000_000, fileHosts: ['127.0.0.1'] }, fixture.log, { retries: 0 });
  eventsUrl = `http://127.0.0.1:${await slackAdapter.start()}/slack/events`;
});

after(async () => {
  await discordAdapter?.stop();
  await slackAdapter?.stop();
  await bot?.close(5000);
  await discord?.close();
  await slack?.close();
  fixture?.remove();
});

function field(call: RecordedCall, name: string): string | undefined {
  return call.body.embeds[0].fields.find((f: any) => f.name === name)?.value;
}

/** A /compose (or /continue) through discord.js, waiting for its outcome. */
async function discordCommand(name: string, options: Record<string, string | number | boolean>, o: Parameters<FakeDiscord['command']>[2] = {}) {
  const { token } = discord.command(name, options, o);
  return discord.waitForOutcome(token, 60_000);
}

async function discordPiece(options: Record<string, string | number | boolean>, name = 'compose', o: Parameters<FakeDiscord['command']>[2] = {}) {
  const outcome = await discordCommand(name, options, o);
  assert.equal(outcome.kind, 'result', `expected a piece, got ${JSON.stringify(outcome.call.body)}`);
  const job = field(outcome.call, 'Job')!;
  const record = await bot.store.get(job);
  assert.ok(record, `job ${job} is stored`);
  return { call: outcome.call, job, record };
}

function fileNamed(call: RecordedCall, ext: RegExp) {
  return call.files.find((f) => ext.test(f.name));
}

test('key choices: 25 (any and the 24 keys, each with its other spelling), filtered by what was typed', () => {
  assert.equal(KEY_CHOICES.length, 25, 'Discord shows at most 25');
  assert.equal(KEY_CHOICES[0].value, 'any');
  assert.equal(new Set(KEY_CHOICES.map((c) => c.value)).size, 25);
  assert.deepEqual(
    KEY_CHOICES.slice(1, 5).map((c) => c.name),
    ['C major', 'C minor', 'C# major / Db major', 'C# minor / Db minor'],
  );
  assert.deepEqual(keyChoices('db').map((c) => c.value), ['C# major', 'C# minor'], 'a flat spelling finds the sharp-named key');
  assert.deepEqual(keyChoices('f#m').map((c) => c.value), ['F# minor', 'F# major'], 'the key the text already names comes first');
  assert.deepEqual(keyChoices('D MIN').map((c) => c.value), ['D minor']);
  assert.deepEqual(keyChoices('eb').map((c) => c.value), ['Eb major', 'Eb minor']);
  assert.deepEqual(keyChoices('d#').map((c) => c.value), ['Eb major', 'Eb minor'], 'D# is Eb');
  assert.deepEqual(keyChoices('h'), [], 'no key starts with h');
  assert.deepEqual(autocompleteChoices(bot, 'compose', 'key', 'bbm').map((c) => c.value), ['Bb minor', 'Bb major']);
  assert.equal(autocompleteChoices(bot, 'continue', 'key', '').length, 25);
});

test('checks: enharmonic spellings are one key, tempo 30–240, score yes/no; each bad value one line saying what to change', () => {
  const ok = checkOptions(compose, { composer: 'chopin', key: 'Db major', tempo: '96', score: 'yes' });
  assert.deepEqual(ok, { options: { composer: 'chopin', key: 'C# major', tempo: 96, score: true }, problems: [] });
  assert.equal(checkOptions(compose, { composer: 'chopin', key: 'C# major' }).options.key, 'C# major', '"Db major" = "C# major"');
  assert.equal(checkOptions(compose, { composer: 'chopin', key: 'f#m' }).options.key, 'F# minor');
  assert.equal(checkOptions(compose, { composer: 'chopin', key: 'ANY' }).options.key, 'any');
  assert.equal(checkOptions(compose, { composer: 'chopin', score: false }).options.score, false, 'Discord sends a real boolean');
  const bad = checkOptions(compose, { composer: 'chopin', key: 'H minor', tempo: '300', score: 'maybe' });
  assert.deepEqual(bad.problems, [
    'key must be a major or minor key such as "D minor", "C# minor", "Db major", "f#m" or "Bb" (sharps #, flats b; a bare letter is major), or "any", got "H minor"',
    'tempo must be a number from 30 to 240, got 300',
    'score must be yes or no, got "maybe"',
  ]);
  assert.deepEqual(checkOptions(cont, { job: 'k3x9q2ab', tempo: '29.5' }).problems, ['tempo must be a number from 30 to 240, got 29.5']);
});

test('typed words (Slack, terminal): key="D minor", key=D minor, tempo=96 and a bare "score"; never filled by an unnamed word', () => {
  const a = parseOptionWords(compose, splitWords('chopin 500 key="D minor" tempo=96 score'));
  assert.deepEqual(a, { raw: { composer: 'chopin', notes: '500', key: 'D minor', tempo: '96', score: 'yes' }, problems: [] });
  assert.deepEqual(parseOptionWords(compose, splitWords('chopin key=Db major 250')).raw, { composer: 'chopin', key: 'Db major', notes: '250' });
  assert.deepEqual(parseOptionWords(compose, splitWords("chopin key:'f# minor' score=no")).raw, { composer: 'chopin', key: 'f# minor', score: 'no' });
  assert.deepEqual(parseOptionWords(compose, splitWords('chopin 250 0.9 7 96')).problems, ['unexpected "96" after /compose'], 'tempo is not positional');
  assert.deepEqual(parseOptionWords(cont, splitWords('k3x9q2ab key=a tempo:90')).raw, { job: 'k3x9q2ab', key: 'a', tempo: '90' });
});

test('one declaration, every front end: Discord options and usage, Slack and terminal usage', () => {
  for (const spec of [compose, cont]) {
    const json = discordCommandJson(spec);
    const byName = Object.fromEntries(json.options!.map((o) => [o.name, o as any]));
    assert.equal(byName.key.type, 3);
    assert.equal(byName.key.autocomplete, true, 'the key is autocompleted, not a fixed choice list');
    assert.equal(byName.key.choices, undefined);
    assert.deepEqual([byName.tempo.type, byName.tempo.min_value, byName.tempo.max_value], [10, 30, 240]);
    assert.equal(byName.score.type, 5, 'score is a Boolean option');
    assert.ok(json.options!.every((o) => o.description.length <= 100));
  }
  assert.equal(discordUsage(cont), '/continue [midi] [job] [composer] [notes] [key] [tempo] [score]');
  assert.match(slackUsage(cont), /^\/continue \[job\] \[composer\] \[notes\] \[key=…\] \[tempo=…\] \[score\] — /);
  const terminal = terminalUsage(cont);
  assert.match(terminal, /^\/continue \[midi\] \[job\] \[composer\] \[notes\] \[key=…\] \[tempo=…\] \[score\]/);
  assert.match(terminal, /score \(optional\): also post the score.*\(yes \| no, default no\)/);
});

test('a job\'s controls reach the engine, in process and through Redis to a worker', () => {
  const params = { composer: 'Chopin', notes: 20, randomSeed: 3, format: 'mp3' as const, key: 'C# minor', tempoBpm: 96, score: true };
  assert.deepEqual(composeControls(params), { key: 13, tempoBpm: 96, score: true });
  assert.deepEqual(composeControls({ ...params, key: undefined, tempoBpm: undefined, score: undefined }), { key: undefined, tempoBpm: undefined, score: undefined });
  const request = { composer: 'Chopin', notes: 20, randomSeed: 3, outDir: '/tmp/nocturne-x', audio: { format: 'mp3' as const }, ...composeControls(params) };
  const back = requestOf(JSON.parse(JSON.stringify(jobDataOf(request))), '/tmp/nocturne-x');
  assert.deepEqual([back.key, back.tempoBpm, back.score, back.randomSeed, back.audio], [13, 96, true, 3, { format: 'mp3' }]);
});

test('Discord: /compose key:"Db major" tempo:200 runs in C# major at 200 BPM; a bad key is one ephemeral line', async () => {
  const { record, call } = await discordPiece({ composer: 'chopin', notes: 16, key: 'Db major', tempo: 200, seed: 11 });
  assert.equal(record.params.key, 'C# major');
  assert.equal(record.params.tempoBpm, 200);
  assert.equal(record.params.score, false);
  const midi = fileNamed(call, /\.mid$/)!;
  assert.equal(midiNoteCount(midi.bytes), 16);
  assert.equal(Math.round(parseMidi(new Uint8Array(midi.bytes), 'piece.mid').tempoBpm), 200, 'the MIDI follows the tempo asked for');

  const bad = await discordCommand('compose', { composer: 'chopin', key: 'H minor' });
  assert.equal(bad.kind, 'error');
  const line = bad.call.body?.data?.content ?? bad.call.body?.content;
  assert.match(line, /key must be a major or minor key such as "D minor".*got "H minor"/);
  assert.doesNotMatch(line, /\n/);

  const auto = discord.autocomplete('compose', 'key', 'gb');
  const answered = await discord.waitFor((c) => c.path.includes(`/${auto.token}/callback`));
  assert.deepEqual(answered.body.data.choices.map((c: any) => c.value), ['F# major', 'F# minor']);
  assert.equal(answered.body.data.choices[0].name, 'F# major / Gb major');
});

test('Slack: /compose chopin 16 key=f#m tempo=150 composes in F# minor at 150 BPM', async () => {
  const channel = `C${String(++channelSeq).padStart(8, '0')}`;
  const res = await postSigned(eventsUrl, slashCommandBody('/compose', 'chopin 16 key=f#m tempo=150', { channel, responseUrl: slack.responseUrl() }), 'application/x-www-form-urlencoded', SECRET);
  assert.equal(res.status, 200);
  const complete = await slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel, 60_000, 'the files');
  const job = /job ([a-z2-9]{8})/.exec(complete.params.initial_comment)![1];
  const record = await bot.store.get(job);
  assert.equal(record?.params.key, 'F# minor');
  assert.equal(record?.params.tempoBpm, 150);
  const midi = slack.uploadedFiles(complete).find((f) => f.filename.endsWith('.mid'))!;
  assert.equal(Math.round(parseMidi(new Uint8Array(midi.bytes), 'piece.mid').tempoBpm), 150);
});
