/**
 * A member's own settings (issue 10, "mp3 as a per-user setting"): `/settings audio:mp3 for:me`
 * makes that member's pieces (compose, and the buttons) MP3 while everyone else in the server
 * keeps the server's default; clearing returns to it; a bad value is one line. One bot driven
 * through the real discord.js client and the real @slack/bolt app against the fakes in src/testing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { COMMANDS } from '../commands/index.ts';
import { discordCommandJson } from '../src/adapters/discord/discord.ts';
import { parseOptionWords } from '../src/chat/options.ts';
import { MANAGE_GUILD, type FakeDiscord, type FakeUser, type RecordedCall } from '../src/testing/discordServer.ts';
import { postSigned, slashCommandBody, type SlackCall } from '../src/testing/slackApi.ts';
import { isOgg, isWav, midiNoteCount, pianoMidi, writeTemp } from './support/chatBot.ts';
import { SLACK_SIGNING_SECRET, twoPlatforms, type TwoPlatforms } from './support/twoPlatforms.ts';

let p: TwoPlatforms;

before(async () => {
  p = await twoPlatforms('user-settings');
});

after(() => p?.stop());

const GUILD = '800000000000000321';
const ada: FakeUser = { id: '700000000000000401', username: 'ada' };
const ben: FakeUser = { id: '700000000000000402', username: 'ben' };
const max: FakeUser = { id: '700000000000000403', username: 'max' };

/** MPEG audio: an ID3 tag or a frame sync right away. */
function isMp3(b: Buffer): boolean {
  return b.toString('latin1', 0, 3) === 'ID3' || (b[0] === 0xff && (b[1]! & 0xe0) === 0xe0);
}

async function discord(name: string, options: Parameters<FakeDiscord['command']>[1], user: FakeUser, permissions?: string) {
  const { token } = p.discord.command(name, options, { guildId: GUILD, user, ...(permissions ? { permissions } : {}) });
  return p.discord.waitForOutcome(token, 60_000);
}

const text = (call: RecordedCall): string => {
  const embed = call.body.data?.embeds?.[0] ?? call.body.embeds?.[0];
  return embed ? `${embed.title ?? ''}\n${embed.description ?? ''}` : (call.body.content ?? call.body.data?.content ?? '');
};

/** The audio file of a /compose (or a button press) by `user`, as posted. */
async function audioOf(outcome: Promise<{ kind: string; call: RecordedCall }>) {
  const r = await outcome;
  assert.equal(r.kind, 'result', `expected a piece, got ${JSON.stringify(r.call.body)}`);
  const audio = r.call.files.find((f) => /\.(wav|ogg|mp3|opus)$/.test(f.name));
  assert.ok(audio, `files: ${r.call.files.map((f) => f.name).join(', ')}`);
  const job = r.call.body.embeds[0].fields.find((f: any) => f.name === 'Job').value as string;
  return { ...audio, job };
}
const piece = (user: FakeUser) => audioOf(discord('compose', { composer: 'chopin', notes: 16 }, user));

test('the declaration: for and clear are named options, settings is open to every member on Discord', () => {
  const spec = COMMANDS.find((c) => c.name === 'settings')!;
  const json = discordCommandJson(spec);
  assert.equal(json.default_member_permissions, undefined);
  assert.deepEqual(json.options!.map((o) => o.name), ['audio', 'score', 'for', 'clear']);
  assert.ok(json.options!.every((o) => o.description.length <= 100 && ((o as any).choices ?? []).every((c: any) => c.name.length <= 100)));
  assert.deepEqual(parseOptionWords(spec, ['mp3', 'for:me']).raw, { audio: 'mp3', for: 'me' });
  assert.deepEqual(parseOptionWords(spec, ['clear', 'for=me']).raw, { clear: 'yes', for: 'me' });
});

test('Discord: a member sets mp3 for themselves; their pieces and buttons are MP3, another member still gets the server default', async () => {
  const set = await discord('settings', { audio: 'mp3', for: 'me' }, ada);
  assert.equal(set.kind, 'info', JSON.stringify(set.call.body));
  assert.match(text(set.call), /Your settings saved/);
  assert.match(text(set.call), /audio: MP3 always .*, your own \(this server's: WAV\)/);
  assert.deepEqual(await p.bot.store.memberSettings(`discord:user:${ada.id}`), { audio: 'mp3' }, 'kept by platform and user id, beside the server settings');
  assert.deepEqual(await p.bot.store.serverSettings(`discord:${GUILD}`), { audio: 'wav', score: false }, 'the server default is untouched');

  const mine = await piece(ada);
  assert.match(mine.name, /\.mp3$/);
  assert.ok(isMp3(mine.bytes), 'an MP3 file');
  const theirs = await piece(ben);
  assert.match(theirs.name, /\.wav$/);
  assert.ok(isWav(theirs.bytes));

  // A button pressed by the member follows their choice; pressed by another member, the server's.
  const variation = await audioOf(p.discord.waitForOutcome(p.discord.button(`nocturne:variation:${theirs.job}`, { guildId: GUILD, user: ada }).token, 60_000));
  assert.match(variation.name, /\.mp3$/);
  const regenerate = await audioOf(p.discord.waitForOutcome(p.discord.button(`nocturne:regenerate:${mine.job}`, { guildId: GUILD, user: ben }).token, 60_000));
  assert.match(regenerate.name, /\.wav$/);

  // /settings without options says which applies, and whose it is.
  assert.match(text((await discord('settings', {}, ada)).call), /audio: MP3 always .*, your own \(this server's: WAV\)\nscore: only when a request asks for it \(score:yes\), this server's/);
  assert.match(text((await discord('settings', {}, ben)).call), /audio: WAV .*, this server's\nscore: .*, this server's\nyours: add for:me to choose your own/);
});

test('a manager changes the server default: it applies to everyone without their own choice, the member\'s own still wins', async () => {
  const refused = await discord('settings', { audio: 'ogg' }, ben);
  assert.equal(refused.kind, 'error');
  assert.match(text(refused.call), /^⚠️ only people who can manage the server change its settings: add for:me to choose your own \(e\.g\. \/settings audio:mp3 for:me\)$/);
  const set = await discord('settings', { audio: 'ogg' }, max, MANAGE_GUILD);
  assert.equal(set.kind, 'info');
  assert.match(text(set.call), /This server's settings saved/);
  const theirs = await piece(ben);
  assert.match(theirs.name, /\.ogg$/);
  assert.ok(isOgg(theirs.bytes));
  assert.match((await piece(ada)).name, /\.mp3$/, 'her own choice wins over the new default');
});

test('clearing returns the member to the server default (audio:default, or clear)', async () => {
  const back = await discord('settings', { audio: 'default', for: 'me' }, ada);
  assert.equal(back.kind, 'info');
  assert.match(text(back.call), /audio: OGG always .*, this server's/);
  assert.deepEqual(await p.bot.store.memberSettings(`discord:user:${ada.id}`), {}, 'nothing of hers is kept');
  assert.match((await piece(ada)).name, /\.ogg$/);

  await discord('settings', { audio: 'mp3', score: true, for: 'me' }, ada);
  assert.deepEqual(await p.bot.store.memberSettings(`discord:user:${ada.id}`), { audio: 'mp3', score: true });
  const cleared = await discord('settings', { clear: true, for: 'me' }, ada);
  assert.match(text(cleared.call), /audio: OGG always .*, this server's\nscore: only when a request asks for it \(score:yes\), this server's/);
  assert.deepEqual(await p.bot.store.memberSettings(`discord:user:${ada.id}`), {});
  const after = await piece(ada);
  assert.match(after.name, /\.ogg$/);
});

// ---------------------------------------------------------------------------------------------
// Slack: typed by name; a bad value is one line

let channelSeq = 0;
async function slack(command: string, words: string, user = 'U0000USER7'): Promise<SlackCall> {
  const responseUrl = p.slack.responseUrl();
  const res = await postSigned(p.eventsUrl, slashCommandBody(command, words, { user, channel: `C0SET${++channelSeq}`, responseUrl }), 'application/x-www-form-urlencoded', SLACK_SIGNING_SECRET);
  assert.equal(res.status, 200);
  return p.slack.waitFor((c) => c.method === 'respond' && c.params.__url === responseUrl, 20_000, `a response to ${command} ${words}`);
}

test('Slack: /settings mp3 for=me saves the member\'s own; a bad value or a member changing the server is one line that says what to change', async () => {
  const bad = await slack('/settings', 'audio=flac for=me');
  assert.equal(bad.params.response_type, 'ephemeral');
  assert.equal(bad.params.text.split('\n').length, 1, bad.params.text);
  assert.match(bad.params.text, /audio must be one of wav, mp3, opus, ogg, default, got "flac"/);
  const badFor = await slack('/settings', 'mp3 for=us');
  assert.match(badFor.params.text, /^⚠️ for must be one of server, me, got "us"\. Usage: \/settings \[audio\] \[score\] \[for=…\] \[clear\]$/);
  const server = await slack('/settings', 'mp3');
  assert.match(server.params.text, /^⚠️ only people who can manage the server change its settings: add for:me/);

  const mine = await slack('/settings', 'mp3 for:me');
  assert.match(mine.params.text, /audio: MP3 always .*, your own/);
  assert.deepEqual(await p.bot.store.memberSettings('slack:user:U0000USER7'), { audio: 'mp3' });
  const cleared = await slack('/settings', 'clear for=me');
  assert.match(cleared.params.text, /audio: WAV .*, this server's/);
  assert.deepEqual(await p.bot.store.memberSettings('slack:user:U0000USER7'), {});

  p.slack.admins.add('U0000ADMIN');
  const admin = await slack('/settings', 'opus', 'U0000ADMIN');
  assert.match(admin.params.text, /audio: OPUS always .*, this server's/, 'a workspace admin still changes the server default');
});

// ---------------------------------------------------------------------------------------------
// The CLI: --include-seed, the engine's includeSeed, for `nocturne compose --seed`

test('CLI: compose --seed --include-seed opens the MIDI with the seed\'s notes; --include-seed alone is one line', async () => {
  const run = (args: string[]) => promisify(execFile)(process.execPath, [join(import.meta.dirname, '../bin/nocturne.js'), 'compose', ...args], { timeout: 120_000 });
  const seed = writeTemp(p.fixture.dir, 'seed.mid', pianoMidi(24));
  const out = join(p.fixture.dir, 'cli');
  const { stdout } = await run(['chopin', '16', '--seed', seed, '--include-seed', '--random-seed', '5', '--model', p.fixture.modelDir, '--out', out, '--json']);
  const result = JSON.parse(stdout);
  assert.ok(result.params.seedNotes > 0, `the seed's notes open the piece: ${stdout}`);
  assert.equal(midiNoteCount(readFileSync(result.midi)), 16 + result.params.seedNotes);
  const refused = await run(['chopin', '16', '--include-seed', '--model', p.fixture.modelDir]).then(
    () => assert.fail('--include-seed without --seed must be refused'),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(refused.code, 2);
  assert.match(refused.stderr.split('\n')[0], /--include-seed opens the piece with the seed's notes: give --seed FILE\.mid too, or leave --include-seed out/);
});
