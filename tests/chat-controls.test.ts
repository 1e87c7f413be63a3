/**
 * The musical controls in chat (issue 10): key, tempo and score, declared once in
 * commands/controls.ts and rendered by every front end. The pure parts (choices, checks, typed
 * words, the Discord JSON), then one bot driven through the real discord.js client and the real
 * @slack/bolt app against the fakes in src/testing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { COMMANDS } from '../commands/index.ts';
import { KEY_CHOICES, keyChoices } from '../commands/controls.ts';
import { discordCommandJson, discordUploadLimit, discordUsage } from '../src/adapters/discord/discord.ts';
import { slackUsage } from '../src/adapters/slack/slack.ts';
import { TerminalAdapter, terminalUsage } from '../src/adapters/terminal/terminal.ts';
import type { Reply, ResultPost } from '../commands/shared/command.ts';
import { fitUploads } from '../src/jobs/audioFit.ts';
import { autocompleteChoices } from '../src/chat/dispatch.ts';
import { checkOptions, parseOptionWords, splitWords } from '../src/chat/options.ts';
import { keyText, requestText, scoreText, tempoText } from '../commands/shared/results.ts';
import type { JobOutputs, JobRecord } from '../src/jobs/types.ts';
import { composeControls } from '../src/jobs/queue.ts';
import { parseMidi } from '../src/midi/read.ts';
import { jobDataOf, requestOf } from '../src/scaleout/redisQueue.ts';
import type { FakeDiscord, RecordedCall } from '../src/testing/discordServer.ts';
import { postSigned, slashCommandBody } from '../src/testing/slackApi.ts';
import { FAST_TEMPO_BPM, isPng, midiNoteCount, pianoMidi } from './support/chatBot.ts';
import { SLACK_SIGNING_SECRET, twoPlatforms, type TwoPlatforms } from './support/twoPlatforms.ts';

const compose = COMMANDS.find((c) => c.name === 'compose')!;
const cont = COMMANDS.find((c) => c.name === 'continue')!;
/** One bot on Discord and Slack (tests/support/twoPlatforms.ts). */
let p: TwoPlatforms;
let channelSeq = 0;

before(async () => {
  p = await twoPlatforms('controls');
});

after(() => p?.stop());

function field(call: RecordedCall, name: string): string | undefined {
  return call.body.embeds[0].fields.find((f: any) => f.name === name)?.value;
}

/** A /compose (or /continue) through discord.js, waiting for its outcome. */
async function discordCommand(name: string, options: Parameters<FakeDiscord['command']>[1], o: Parameters<FakeDiscord['command']>[2] = {}) {
  const { token } = p.discord.command(name, options, o);
  return p.discord.waitForOutcome(token, 60_000);
}

async function discordPiece(options: Parameters<FakeDiscord['command']>[1], name = 'compose', o: Parameters<FakeDiscord['command']>[2] = {}) {
  const outcome = await discordCommand(name, options, o);
  assert.equal(outcome.kind, 'result', `expected a piece, got ${JSON.stringify(outcome.call.body)}`);
  const job = field(outcome.call, 'Job')!;
  const record = await p.bot.store.get(job);
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
  assert.deepEqual(autocompleteChoices(p.bot, 'compose', 'key', 'bbm').map((c) => c.value), ['Bb minor', 'Bb major']);
  assert.equal(autocompleteChoices(p.bot, 'continue', 'key', '').length, 25);
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
  assert.equal(discordUsage(cont), '/continue [midi] [job] [composer] [notes] [key] [tempo] [score] [include_seed]');
  assert.match(slackUsage(cont), /^\/continue \[job\] \[composer\] \[notes\] \[key=…\] \[tempo=…\] \[score\] \[include_seed\] — /);
  const terminal = terminalUsage(cont);
  assert.match(terminal, /^\/continue \[midi\] \[job\] \[composer\] \[notes\] \[key=…\] \[tempo=…\] \[score\] \[include_seed\]/);
  assert.match(terminal, /\n {4}key \(optional\): one of the 24 major and minor keys, e\.g\. "D minor", "Db major", "f#m"; default any\n/);
  assert.match(terminal, /\n {4}tempo \(optional\): beats per minute; default the composer's \(or the seed's\) tempo \(30–240\)\n/);
  assert.match(terminal, /\n {4}score \(optional\): also post the score: MusicXML and a picture of its first page; default: the \/settings that apply \(yes \| no\)\n/);
  assert.match(slackUsage(COMMANDS.find((c) => c.name === 'settings')!), /score \(optional\): yes: every piece comes with its score .* \(yes \| no, default no\)$/m);
});

test('a job\'s controls reach the engine, in process and through Redis to a worker', () => {
  const params = { composer: 'Chopin', notes: 20, randomSeed: 3, format: 'mp3' as const, key: 'C# minor', tempoBpm: 96, score: true };
  assert.deepEqual(composeControls(params), { key: 13, tempoBpm: 96, score: true });
  assert.deepEqual(composeControls({ ...params, key: undefined, tempoBpm: undefined, score: undefined }), { key: undefined, tempoBpm: undefined, score: undefined });
  const request = { composer: 'Chopin', notes: 20, randomSeed: 3, outDir: '/tmp/nocturne-x', audio: { format: 'mp3' as const }, ...composeControls(params) };
  const back = requestOf(JSON.parse(JSON.stringify(jobDataOf(request))), '/tmp/nocturne-x');
  assert.deepEqual([back.key, back.tempoBpm, back.score, back.randomSeed, back.audio], [13, 96, true, 3, { format: 'mp3' }]);
  const seeded = { ...request, ...composeControls({ ...params, includeSeed: true }) };
  assert.equal(requestOf(JSON.parse(JSON.stringify(jobDataOf(seeded))), '/tmp/nocturne-x').includeSeed, true, 'include_seed travels too');
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

  const auto = p.discord.autocomplete('compose', 'key', 'gb');
  const answered = await p.discord.waitFor((c) => c.path.includes(`/${auto.token}/callback`));
  assert.deepEqual(answered.body.data.choices.map((c: any) => c.value), ['F# major', 'F# minor']);
  assert.equal(answered.body.data.choices[0].name, 'F# major / Gb major');
});

test('Slack: /compose chopin 16 key=f#m tempo=150 composes in F# minor at 150 BPM', async () => {
  const channel = `C${String(++channelSeq).padStart(8, '0')}`;
  const res = await postSigned(p.eventsUrl, slashCommandBody('/compose', 'chopin 16 key=f#m tempo=150', { channel, responseUrl: p.slack.responseUrl() }), 'application/x-www-form-urlencoded', SLACK_SIGNING_SECRET);
  assert.equal(res.status, 200);
  const complete = await p.slack.waitFor((c) => c.method === 'files.completeUploadExternal' && c.params.channel_id === channel, 60_000, 'the files');
  const job = /job ([a-z2-9]{8})/.exec(complete.params.initial_comment)![1];
  const record = await p.bot.store.get(job);
  assert.equal(record?.params.key, 'F# minor');
  assert.equal(record?.params.tempoBpm, 150);
  const midi = p.slack.uploadedFiles(complete).find((f) => f.filename.endsWith('.mid'))!;
  assert.equal(Math.round(parseMidi(new Uint8Array(midi.bytes), 'piece.mid').tempoBpm), 150);
  const summary = await p.slack.waitFor((c) => (c.method === 'chat.update' || c.method === 'chat.postMessage') && c.params.channel === channel && String(c.params.blocks ?? '').includes('"actions"'), 10_000, 'the summary');
  const sections = JSON.parse(summary.params.blocks).filter((b: any) => b.fields);
  assert.ok(sections.every((b: any) => b.fields.length <= 10), 'Slack takes at most 10 fields a section');
  const fields = sections.flatMap((b: any) => b.fields.map((f: any) => f.text));
  assert.ok(fields.includes('*Tempo*\n150 BPM') && fields.some((f: string) => f.startsWith('*Length*')), `every field is shown: ${fields.join(' | ')}`);
});

// ---------------------------------------------------------------------------------------------
// What a piece shows: key, tempo, score, in the post, /show and the terminal

const piece = (params: Partial<JobRecord['params']>, outputs?: Partial<JobOutputs>): JobRecord =>
  ({ id: 'k3x9q2ab', kind: 'compose', params: { composer: 'Chopin', notes: 500, randomSeed: 7, format: 'wav', ...params }, outputs: outputs && { midi: 'm', png: 'p', noteCount: 500, musicSeconds: 60, composeSeconds: 1, composer: 'Chopin', ...outputs } }) as JobRecord;

test('the fields: the key asked for, written and estimated; the tempo and whose it is; whether the score was made', () => {
  assert.equal(keyText(piece({})), 'any');
  assert.equal(keyText(piece({}, { key: 'any', estimatedKey: 'C major' })), 'any (estimated C major)');
  assert.equal(keyText(piece({ key: 'D minor' }, { key: 'D minor', estimatedKey: 'D minor' })), 'D minor');
  assert.equal(keyText(piece({ key: 'D minor' }, { key: 'D minor', estimatedKey: 'F major' })), 'D minor (estimated F major)');
  assert.equal(keyText(piece({ key: 'D minor' }, { key: 'D major', estimatedKey: 'D major' })), 'D minor asked, written in D major');
  assert.equal(tempoText(piece({}, { tempoBpm: 122.04 })), "122 BPM (Chopin's)");
  assert.equal(tempoText(piece({ tempoBpm: 96 }, { tempoBpm: 96 })), '96 BPM');
  assert.equal(tempoText(piece({ seedName: 'song.mid' })), "the seed's");
  assert.equal(tempoText(piece({ composer: 'any' }, { composer: 'any', tempoBpm: 100 })), '100 BPM (the default)');
  assert.equal(scoreText(piece({})), 'no');
  assert.equal(scoreText(piece({ score: true })), 'yes');
  assert.equal(scoreText(piece({ score: true }, { score: 'x.musicxml', scorePicture: 'x.png' })), 'yes: MusicXML and a picture of its first page');
  assert.equal(requestText(piece({ key: 'D minor', tempoBpm: 96, score: true })), 'compose Chopin 500 key="D minor" tempo=96 score');
  assert.equal(requestText(piece({ key: 'Bb major' })), 'compose Chopin 500 key="Bb major"');
});

/** The notes of a MIDI file as comparable tuples. */
const notesOf = (bytes: Buffer) => parseMidi(new Uint8Array(bytes), 'piece.mid').notes.map((n) => [n.pitch, n.startSeconds.toFixed(4), n.durationSeconds.toFixed(4)].join(':'));

test('Discord: the post shows key, tempo and score; Regenerate (same seed) gives the same notes and controls; /show shows them again', async () => {
  const first = await discordPiece({ composer: 'mozart', notes: 16, key: 'A minor', tempo: 180, seed: 4242 });
  assert.match(field(first.call, 'Key')!, /^A minor( asked, written in A major)?( \(estimated [A-G][#b]? (major|minor)\))?$/);
  assert.match(first.call.body.embeds[0].description ?? '', /this model has no key input: the piece was transposed/, 'the tiny model has no key input: the post says it transposed');
  assert.equal(field(first.call, 'Tempo'), '180 BPM');
  assert.equal(field(first.call, 'Score'), 'no');
  assert.equal(first.record.outputs?.tempoBpm, 180);

  const regen = p.discord.button(`nocturne:regenerate:${first.job}`);
  const again = await p.discord.waitForOutcome(regen.token, 60_000);
  assert.equal(again.kind, 'result');
  for (const name of ['Random seed', 'Key', 'Tempo', 'Score']) assert.equal(field(again.call, name), field(first.call, name), name);
  assert.deepEqual(notesOf(fileNamed(again.call, /\.mid$/)!.bytes), notesOf(fileNamed(first.call, /\.mid$/)!.bytes), 'the same seed and controls give the same notes');

  const plain = await discordPiece({ composer: 'chopin', notes: 16 });
  assert.match(field(plain.call, 'Key')!, /^any \(estimated [A-G][#b]? (major|minor)\)$/);
  assert.equal(field(plain.call, 'Tempo'), `${FAST_TEMPO_BPM} BPM (Chopin's)`);

  const shown = await discordCommand('show', { job: first.job });
  assert.equal(shown.kind, 'result');
  for (const name of ['Key', 'Tempo', 'Score', 'Random seed']) assert.equal(field(shown.call, name), field(first.call, name), name);
});

test('the terminal prints the controls with the piece', async () => {
  const output = new PassThrough();
  let text = '';
  output.on('data', (d) => (text += d));
  const terminal = new TerminalAdapter(p.bot, { input: new PassThrough(), output, interactive: false, log: p.fixture.log });
  await terminal.runLine('/compose chopin 16 seed=5 key="E minor" tempo=150');
  assert.match(text, /Random seed 5 · Key E minor[^·]* · Tempo 150 BPM · Score no/);
  await terminal.runLine('/compose chopin 16 tempo=fast');
  assert.match(text, /error: tempo must be a number from 30 to 240, got "fast"\. Usage: \/compose <composer>/);
});

// ---------------------------------------------------------------------------------------------
// The score in chat: attached beside the piano roll, counted in the upload fitting, a setting

test('upload fitting: one post\'s files share the limit; MIDI, piano roll and score first, the audio gets what is left', () => {
  const files = [
    { kind: 'audio' as const, bytes: 5 },
    { kind: 'midi' as const, bytes: 1 },
    { kind: 'image' as const, bytes: 2 },
    { kind: 'score' as const, bytes: 3 },
    { kind: 'score-picture' as const, bytes: 2 },
  ];
  const kinds = (fs: { kind: string }[]) => fs.map((f) => f.kind);
  const all = fitUploads(files, 13);
  assert.deepEqual([kinds(all.kept), all.leftOut, all.room], [['midi', 'image', 'score-picture', 'score', 'audio'], [], 0]);
  const tight = fitUploads(files, 7);
  assert.deepEqual([kinds(tight.kept), kinds(tight.leftOut), tight.room], [['midi', 'image', 'score-picture'], ['score', 'audio'], 2]);
  assert.deepEqual(fitUploads(files, undefined).leftOut, [], 'no limit: everything');
});

/** A job run straight through the bot with a reply that keeps what it is given. */
async function runWithLimit(params: Partial<JobRecord['params']>, uploadLimitBytes?: number) {
  const posts: ResultPost[] = [];
  const errors: string[] = [];
  const reply: Reply = { uploadLimitBytes, progress: async () => {}, info: async () => {}, error: async (l) => void errors.push(l), result: async (p) => void posts.push(p) };
  const who = { platform: 'discord' as const, userId: 'u-fit', userName: 'fit', serverId: '800000000000000555', channelId: 'c-fit', isManager: false };
  const record = await p.bot.runJob({ kind: 'compose', who, uploadLimitBytes, params: { composer: 'Chopin', notes: 16, format: 'wav', randomSeed: 77, score: true, ...params } }, reply);
  assert.deepEqual(errors, []);
  assert.equal(posts.length, 1);
  return { post: posts[0], record: record! };
}

const sizeOf = (path: string) => statSync(path).size;

test('Discord: score:true attaches piece.musicxml and the score picture beside the piano roll', async () => {
  const { call, record } = await discordPiece({ composer: 'chopin', notes: 16, score: true, key: 'G major', seed: 9 });
  const xml = fileNamed(call, /\.musicxml$/);
  const picture = fileNamed(call, /-score\.png$/);
  assert.ok(xml && picture, `files: ${call.files.map((f) => f.name).join(', ')}`);
  assert.equal(xml.name, `nocturne-${record.id}.musicxml`);
  assert.match(xml.bytes.toString('utf8', 0, 400), /<score-partwise/);
  assert.ok(isPng(picture.bytes));
  assert.ok(fileNamed(call, /^nocturne-[a-z2-9]{8}\.png$/), 'the piano roll stays');
  assert.match(call.body.embeds[0].image.url, /^attachment:\/\/nocturne-[a-z2-9]{8}\.png$/, 'the embed still shows the piano roll');
  assert.equal(field(call, 'Score'), 'yes: MusicXML and a picture of its first page');
  const none = await discordPiece({ composer: 'chopin', notes: 16 });
  assert.equal(none.call.files.length, 3, 'no score unless asked for');
});

test('settings: score:true makes every piece in that server come with its score; score:false on a request leaves it out', async () => {
  const guild = '800000000000000088';
  const set = await discordCommand('settings', { score: true }, { guildId: guild, permissions: '32' });
  assert.equal(set.kind, 'info');
  assert.match(set.call.body.data?.embeds?.[0]?.description ?? set.call.body.embeds?.[0]?.description, /score: with every piece/);
  const withScore = await discordPiece({ composer: 'mozart', notes: 16 }, 'compose', { guildId: guild });
  assert.ok(fileNamed(withScore.call, /\.musicxml$/), 'the server setting applies');
  assert.equal(withScore.record.params.score, true);
  const without = await discordPiece({ composer: 'mozart', notes: 16, score: false }, 'compose', { guildId: guild });
  assert.equal(fileNamed(without.call, /\.musicxml$/), undefined, 'a request can say no');
  const shown = await discordCommand('settings', {}, { guildId: guild, permissions: '32' });
  assert.match(shown.call.body.data?.embeds?.[0]?.description ?? '', /audio: WAV .*\nscore: with every piece/s);
});

test('the score counts in the upload fitting: the audio is made smaller to fit beside it, and what does not fit is left out and said', async () => {
  const free = await runWithLimit({});
  const o = free.record.outputs!;
  assert.ok(o.score && o.scorePicture && o.audio);
  const others = sizeOf(o.midi) + sizeOf(o.png) + sizeOf(o.score) + sizeOf(o.scorePicture);
  const stereo = sizeOf(o.audio);

  // Room beside the score for half the stereo WAV: the audio becomes mono 22.05 kHz, and all five go.
  const limit = others + Math.ceil(stereo / 2);
  const fitted = await runWithLimit({}, limit);
  assert.deepEqual(fitted.post.files.map((f) => f.kind), ['audio', 'midi', 'image', 'score-picture', 'score']);
  assert.match(fitted.post.files[0].name, /-mono\.wav$/);
  assert.ok(fitted.post.files.reduce((n, f) => n + sizeOf(f.path), 0) <= limit, 'together under the limit');
  assert.match(fitted.post.notice!, /audio is mono 22\.05 kHz WAV: .* over the [\d.]+ MB upload limit \([\d.]+ MB beside the other files\)/);

  // Room for the MIDI, the piano roll and the picture only: the MusicXML and the audio are left out, and the post says so.
  const small = sizeOf(o.midi) + sizeOf(o.png) + sizeOf(o.scorePicture) + 10;
  const cramped = await runWithLimit({}, small);
  assert.deepEqual(cramped.post.files.map((f) => f.kind), ['midi', 'image', 'score-picture']);
  assert.match(cramped.post.notice!, /no audio: /);
  assert.match(cramped.post.notice!, /left out: the MusicXML score \([\d.]+ MB\), over the [\d.]+ MB upload limit here with the other files/);
});

// ---------------------------------------------------------------------------------------------
// /continue include_seed: the seed's own notes open the piece posted

const pitchesOf = (bytes: Buffer) => parseMidi(new Uint8Array(bytes), 'piece.mid').notes.map((n) => n.pitch);

test('/continue include_seed: the seed\'s notes open the MIDI, then the new ones; without it only the new notes (a file or a job id)', async () => {
  const seed = pianoMidi(24);
  const upload = (name: string) => ({ attachment: { filename: name, size: seed.length, url: p.discord.hostFile(name, seed, 'audio/midi') } });
  const whole = await discordPiece({ midi: upload('scale.mid'), composer: 'chopin', notes: 16, include_seed: true }, 'continue');
  const wholePitches = pitchesOf(fileNamed(whole.call, /\.mid$/)!.bytes);
  assert.equal(wholePitches.length, 24 + 16);
  assert.deepEqual(wholePitches.slice(0, 24), pitchesOf(seed), 'the seed first, pitch for pitch');
  assert.equal(field(whole.call, 'Continues'), 'scale.mid, whose 24 notes open this piece');
  assert.equal(field(whole.call, 'Notes'), '40');
  assert.equal(whole.record.params.includeSeed, true);

  const newOnly = await discordPiece({ midi: upload('scale2.mid'), composer: 'chopin', notes: 16 }, 'continue');
  assert.equal(midiNoteCount(fileNamed(newOnly.call, /\.mid$/)!.bytes), 16, 'by default only the new notes, as before');
  assert.equal(field(newOnly.call, 'Continues'), 'scale2.mid');

  const parentPitches = pitchesOf(fileNamed(newOnly.call, /\.mid$/)!.bytes);
  const fromJob = await discordPiece({ job: newOnly.job, notes: 16, include_seed: true }, 'continue');
  const fromJobPitches = pitchesOf(fileNamed(fromJob.call, /\.mid$/)!.bytes);
  assert.equal(fromJobPitches.length, 32);
  assert.deepEqual(fromJobPitches.slice(0, 16), parentPitches, 'the piece it continues opens it: its posted notes, not the upload before it');

  const regen = p.discord.button(`nocturne:regenerate:${whole.job}`);
  const again = await p.discord.waitForOutcome(regen.token, 60_000);
  assert.equal(again.kind, 'result');
  assert.deepEqual(notesOf(fileNamed(again.call, /\.mid$/)!.bytes), notesOf(fileNamed(whole.call, /\.mid$/)!.bytes), 'Regenerate keeps include_seed: the same 40 notes');
});

// ---------------------------------------------------------------------------------------------
// Discord's upload limit, read from each interaction

test('Discord: the upload limit is the interaction\'s attachment_size_limit, else the configured one', async () => {
  assert.equal(discordUploadLimit({ attachmentSizeLimit: 52_428_800 }, 10_000_000), 52_428_800);
  assert.equal(discordUploadLimit({}, 10_000_000), 10_000_000);
  assert.equal(discordUploadLimit({ attachmentSizeLimit: 0 }, 10_000_000), 10_000_000);

  const boosted = await discordPiece({ composer: 'chopin', notes: 16, seed: 31 }, 'compose', { attachmentSizeLimit: 52_428_800 });
  assert.equal(boosted.record.uploadLimitBytes, 52_428_800, 'a boosted server\'s limit');
  const unsaid = await discordPiece({ composer: 'chopin', notes: 16, seed: 31 }, 'compose', { attachmentSizeLimit: null });
  assert.equal(unsaid.record.uploadLimitBytes, 10_000_000, 'DISCORD_UPLOAD_LIMIT_MB when Discord does not say');

  // A limit that leaves half the stereo WAV beside the MIDI and the piano roll: the audio goes mono.
  const size = (re: RegExp) => fileNamed(boosted.call, re)!.bytes.length;
  const limit = size(/\.mid$/) + size(/\.png$/) + Math.ceil(size(/\.wav$/) / 2);
  const tight = await discordPiece({ composer: 'chopin', notes: 16, seed: 31 }, 'compose', { attachmentSizeLimit: limit });
  assert.equal(tight.record.uploadLimitBytes, limit);
  assert.match(fileNamed(tight.call, /\.wav$/)!.name, /-mono\.wav$/);
  assert.ok(tight.call.files.reduce((n, f) => n + f.bytes.length, 0) <= limit);
  assert.match(tight.call.body.embeds[0].description, /audio is mono 22\.05 kHz WAV/);

  const regen = p.discord.button(`nocturne:regenerate:${boosted.job}`, { attachmentSizeLimit: limit });
  const again = await p.discord.waitForOutcome(regen.token, 60_000);
  assert.equal(again.kind, 'result');
  assert.match(fileNamed(again.call, /\.wav$/)!.name, /-mono\.wav$/, 'a button press reads the limit where it is pressed');
});
