/**
 * End to end through the real discord.js 14 client against the fake Discord in src/testing:
 * command registration, autocomplete, /compose with its attachments and buttons, bad input,
 * uploads that are refused, rate limits, and job records that survive a restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscordAdapter } from '../src/adapters/discord/discord.ts';
import type { Bot } from '../src/chat/bot.ts';
import { startBot } from '../src/app/start.ts';
import { DEFAULT_QUEUE_LIMITS } from '../src/jobs/queue.ts';
import { JobStore } from '../src/jobs/store.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import { FakeDiscord, MANAGE_GUILD, type RecordedCall } from '../src/testing/discordServer.ts';
import { chatFixture, drumMidi, isOgg, isPng, isWav, midiNoteCount, pianoMidi, type ChatFixture } from './support/chatBot.ts';

let fake: FakeDiscord;
let fixture: ChatFixture;
let bot: Bot;
let adapter: DiscordAdapter;

const config = () => ({ token: 'MTAw.fake.token', apiBase: fake.apiBase, uploadLimitBytes: 10_000_000, attachmentHosts: ['127.0.0.1'] });

before(async () => {
  fake = await FakeDiscord.start();
  fixture = await chatFixture('discord');
  bot = await fixture.openBot({ userMaxOpen: 2, userPerMinute: 50 });
  adapter = new DiscordAdapter(bot, config(), fixture.log);
  await adapter.start();
});

let restarted: { stop: () => Promise<void> } | undefined;

after(async () => {
  await adapter?.stop();
  await bot?.close(5000);
  await restarted?.stop();
  await fake?.close();
  fixture?.remove();
});

function fileNamed(call: RecordedCall, ext: RegExp) {
  return call.files.find((f) => ext.test(f.name));
}

test('registers the slash commands from their declarations', async () => {
  const put = await fake.waitFor((c) => c.method === 'PUT' && c.path.endsWith('/commands'));
  const names = (put.body as any[]).map((c) => c.name);
  assert.deepEqual(names.sort(), ['compose', 'continue', 'help', 'settings', 'show', 'status', 'styles']);
  const compose = (put.body as any[]).find((c) => c.name === 'compose');
  const composer = compose.options.find((o: any) => o.name === 'composer');
  assert.equal(composer.required, true);
  assert.equal(composer.autocomplete, true);
  const notes = compose.options.find((o: any) => o.name === 'notes');
  assert.equal(notes.type, 4);
  assert.equal(notes.min_value, 16);
  assert.equal(notes.max_value, 2000);
  assert.equal(notes.autocomplete, true, 'notes offers 250/500 by autocomplete so that any 16–2000 stays allowed');
  const cont = (put.body as any[]).find((c) => c.name === 'continue');
  assert.equal(cont.options.find((o: any) => o.name === 'midi').type, 11);
  const settings = (put.body as any[]).find((c) => c.name === 'settings');
  assert.equal(settings.default_member_permissions, undefined, 'every member sets their own (for:me); the server\'s stay for managers');
});

test('/compose: deferred, progress edits, then WAV/OGG + MIDI with the requested notes + PNG, embed and buttons', async () => {
  const { token } = fake.command('compose', { composer: 'chopin', notes: 16 });
  const outcome = await fake.waitForOutcome(token);
  assert.equal(outcome.kind, 'result', JSON.stringify(outcome.call.body));
  const calls = fake.callsFor(token);
  assert.equal(calls[0].path.endsWith('/callback'), true);
  assert.equal(calls[0].body.type, 5, 'the first answer is a deferral');
  const progress = calls.filter((c) => c.method === 'PATCH' && c.files.length === 0).map((c) => c.body.content);
  assert.ok(progress.some((p) => /queued #1|composing|rendering/.test(p)), `progress edits: ${JSON.stringify(progress)}`);

  const result = outcome.call;
  const audio = fileNamed(result, /\.(wav|ogg)$/);
  const midi = fileNamed(result, /\.mid$/);
  const png = fileNamed(result, /\.png$/);
  assert.ok(audio && midi && png, `files: ${result.files.map((f) => f.name).join(', ')}`);
  assert.ok(isWav(audio.bytes) || isOgg(audio.bytes), 'valid WAV or OGG');
  assert.ok(audio.bytes.length <= 10_000_000, 'under the upload limit');
  assert.equal(midiNoteCount(midi.bytes), 16);
  assert.ok(isPng(png.bytes));

  const embed = result.body.embeds[0];
  const job = embed.fields.find((f: any) => f.name === 'Job').value;
  assert.match(job, /^[a-z2-9]{8}$/);
  assert.match(embed.footer.text, /Bernd Krueger, http:\/\/www\.piano-midi\.de, CC BY-SA 3\.0 DE/);
  assert.equal(embed.fields.find((f: any) => f.name === 'Composer').value, 'Chopin');
  const buttons = result.body.components[0].components;
  assert.deepEqual(
    buttons.map((b: any) => [b.label, b.custom_id]),
    [
      ['Continue +250', `nocturne:continue:${job}`],
      ['Variation', `nocturne:variation:${job}`],
      ['Regenerate', `nocturne:regenerate:${job}`],
    ],
  );
  assert.equal(embed.image.url, `attachment://${png.name}`);
  assert.deepEqual(result.body.allowed_mentions?.parse, [], 'nothing the bot writes pings anyone');
});

async function composeJob(options: Record<string, string | number>): Promise<{ job: string; call: RecordedCall }> {
  const { token } = fake.command('compose', options);
  const outcome = await fake.waitForOutcome(token);
  assert.equal(outcome.kind, 'result', `expected a result, got ${JSON.stringify(outcome.call.body)}`);
  const job = outcome.call.body.embeds[0].fields.find((f: any) => f.name === 'Job').value as string;
  return { job, call: outcome.call };
}

function field(call: RecordedCall, name: string): string {
  return call.body.embeds[0].fields.find((f: any) => f.name === name)?.value;
}

function ephemeralText(call: RecordedCall): string {
  return call.body?.data?.content ?? call.body?.content ?? '';
}

test('autocomplete: composer names from the loaded model, notes offers 250 and 500 and any typed number', async () => {
  const composer = fake.autocomplete('compose', 'composer', 'cho');
  const c1 = await fake.waitFor((c) => c.path.includes(`/${composer.token}/callback`));
  assert.equal(c1.body.type, 8);
  assert.equal(c1.body.data.choices[0].value, 'Chopin');
  const all = fake.autocomplete('compose', 'composer', '');
  const c2 = await fake.waitFor((c) => c.path.includes(`/${all.token}/callback`));
  assert.deepEqual(c2.body.data.choices.map((c: any) => c.value), ['Chopin', 'Mozart', 'any']);
  const notes = fake.autocomplete('compose', 'notes', '', 4, { composer: 'chopin' });
  const c3 = await fake.waitFor((c) => c.path.includes(`/${notes.token}/callback`));
  assert.deepEqual(c3.body.data.choices.map((c: any) => c.value), [250, 500]);
  const typed = fake.autocomplete('compose', 'notes', '777', 4);
  const c4 = await fake.waitFor((c) => c.path.includes(`/${typed.token}/callback`));
  assert.deepEqual(c4.body.data.choices.map((c: any) => c.value), [777]);
});

test('buttons: Regenerate gives the same notes, Variation a new seed, Continue +250 continues the piece', async () => {
  const first = await composeJob({ composer: 'mozart', notes: 20, seed: 1234 });
  const regen = fake.button(`nocturne:regenerate:${first.job}`);
  const variation = fake.button(`nocturne:variation:${first.job}`);
  const r = await fake.waitForOutcome(regen.token);
  const v = await fake.waitForOutcome(variation.token);
  assert.equal(r.kind, 'result');
  assert.equal(v.kind, 'result');
  assert.equal(field(r.call, 'Random seed'), '1234');
  assert.equal(field(r.call, 'Composer'), 'Mozart');
  assert.deepEqual(fileNamed(r.call, /\.mid$/)!.bytes.subarray(200), fileNamed(first.call, /\.mid$/)!.bytes.subarray(200), 'same seed and model: same notes');
  assert.equal(midiNoteCount(fileNamed(r.call, /\.mid$/)!.bytes), 20);
  assert.notEqual(field(v.call, 'Random seed'), '1234');
  assert.equal(field(v.call, 'Composer'), 'Mozart');
  assert.equal(field(v.call, 'Notes'), '20');
  assert.notEqual(field(v.call, 'Job'), first.job);

  const cont = fake.button(`nocturne:continue:${first.job}`);
  const c = await fake.waitForOutcome(cont.token, 60_000);
  assert.equal(c.kind, 'result');
  assert.equal(field(c.call, 'Continues'), `job ${first.job}`);
  assert.equal(midiNoteCount(fileNamed(c.call, /\.mid$/)!.bytes), 250);
  const audio = fileNamed(c.call, /\.(wav|ogg)$/);
  if (audio) assert.ok(isWav(audio.bytes) || isOgg(audio.bytes));
  else assert.match(c.call.body.embeds[0].description, /no audio/);
});

test('bad input gets one clear ephemeral line and the bot stays up', async () => {
  const unknown = fake.command('compose', { composer: 'chopim', notes: 16 });
  const huge = fake.command('compose', { composer: 'chopin', notes: 99999 });
  const u = await fake.waitForOutcome(unknown.token);
  const h = await fake.waitForOutcome(huge.token);
  assert.equal(u.kind, 'error');
  assert.match(ephemeralText(u.call), /unknown composer "chopim"\. Did you mean Chopin\?/);
  assert.equal(h.kind, 'error');
  assert.match(ephemeralText(h.call), /notes must be a whole number from 16 to 2000.*got 99999/);
  for (const o of [u, h]) assert.doesNotMatch(ephemeralText(o.call), /\n/, 'one line');

  const text = Buffer.from('these are my notes, not a MIDI file\n');
  const notMidi = fake.command('continue', { midi: { attachment: { filename: 'notes.txt', size: text.length, url: fake.hostFile('notes.txt', text, 'text/plain') } } });
  const drums = drumMidi();
  const drum = fake.command('continue', { midi: { attachment: { filename: 'drums.mid', size: drums.length, url: fake.hostFile('drums.mid', drums, 'audio/midi') } } });
  const big = fake.command('continue', { midi: { attachment: { filename: 'huge.mid', size: 3 * 1024 * 1024, url: fake.hostFile('huge.mid', Buffer.alloc(16)) } } });
  const none = fake.command('continue', {});
  const n = await fake.waitForOutcome(notMidi.token);
  const d = await fake.waitForOutcome(drum.token);
  const b = await fake.waitForOutcome(big.token);
  const z = await fake.waitForOutcome(none.token);
  assert.equal(n.kind, 'error');
  assert.match(ephemeralText(n.call), /notes\.txt is unreadable: not a MIDI file/);
  assert.equal(d.kind, 'error');
  assert.match(ephemeralText(d.call), /drums\.mid is unacceptable: drums on channel 10/);
  assert.equal(b.kind, 'error');
  assert.match(ephemeralText(b.call), /huge\.mid is 3 MiB, over the 2 MiB limit/);
  assert.equal(z.kind, 'error');
  assert.match(ephemeralText(z.call), /attach a solo-piano MIDI file/);
  // A refused upload after the deferral: the public "thinking" reply is deleted, the error is private.
  assert.ok(fake.callsFor(notMidi.token).some((c) => c.method === 'DELETE'), 'deferred reply removed');

  const ok = pianoMidi(24);
  const good = fake.command('continue', { midi: { attachment: { filename: 'scale.mid', size: ok.length, url: fake.hostFile('scale.mid', ok, 'audio/midi') } }, composer: 'chopin', notes: 16 });
  const g = await fake.waitForOutcome(good.token);
  assert.equal(g.kind, 'result');
  assert.equal(field(g.call, 'Continues'), 'scale.mid');
  assert.equal(midiNoteCount(fileNamed(g.call, /\.mid$/)!.bytes), 16);

  const styles = fake.command('styles');
  const s = await fake.waitForOutcome(styles.token);
  assert.equal(s.kind, 'info', 'still answering');
  assert.match(s.call.body.data.embeds[0].description, /Chopin: trained on 10 pieces/);
});

test('per-user limit: a third piece while two are on the way is refused with a wait time', async () => {
  const user = { id: '700000000000000099', username: 'eager' };
  const a = fake.command('compose', { composer: 'chopin', notes: 16 }, { user });
  const b = fake.command('compose', { composer: 'mozart', notes: 16 }, { user });
  await fake.waitFor((c) => c.path.includes(`/${b.token}/`) && c.method === 'PATCH', 20_000, 'progress of the second job');
  const c = fake.command('compose', { composer: 'chopin', notes: 16 }, { user });
  const refused = await fake.waitForOutcome(c.token);
  assert.equal(refused.kind, 'error');
  assert.match(ephemeralText(refused.call), /you already have 2 pieces on the way: wait for one to finish \(~\d+ s\)/);
  assert.equal((await fake.waitForOutcome(a.token)).kind, 'result');
  assert.equal((await fake.waitForOutcome(b.token)).kind, 'result');
});

test('settings: managers only; "ogg" makes every audio file OGG', async () => {
  const denied = fake.command('settings', { audio: 'ogg' });
  assert.match(ephemeralText((await fake.waitForOutcome(denied.token)).call), /only people who can manage the server/);
  const guild = '800000000000000077';
  const set = fake.command('settings', { audio: 'ogg' }, { guildId: guild, permissions: MANAGE_GUILD });
  const saved = await fake.waitForOutcome(set.token);
  assert.equal(saved.kind, 'info');
  const piece = fake.command('compose', { composer: 'chopin', notes: 16 }, { guildId: guild });
  const r = await fake.waitForOutcome(piece.token);
  assert.equal(r.kind, 'result');
  const audio = fileNamed(r.call, /\.(wav|ogg)$/)!;
  assert.match(audio.name, /\.ogg$/);
  assert.ok(isOgg(audio.bytes));
});

test('SIGTERM-style shutdown and restart: the waiting job resumes, an old one gets an apology, records survive', async () => {
  // A bot of its own with a long batching window, so that which job waits is not left to timing:
  // a is queued first; b (too different in length to share a's batch) arrives behind it; once a's
  // batch is taken, the queue sleeps a full window before it would take b, and the shutdown comes
  // in that window. (With the 20 ms window a busy machine could start b first, or start it before
  // the shutdown.)
  await adapter.stop();
  await bot.close(5000);
  bot = await fixture.openBot({ userMaxOpen: 2, userPerMinute: 50, batchWindowMs: 1500 });
  adapter = new DiscordAdapter(bot, config(), fixture.log);
  await adapter.start();
  const a = fake.command('compose', { composer: 'chopin', notes: 16 }, { user: { id: '700000000000000201', username: 'ana' } });
  await fake.waitFor((c) => c.path.includes(`/${a.token}/`) && /queued #1/.test(c.body?.content ?? ''), 20_000, 'job a queued');
  const b = fake.command('compose', { composer: 'mozart', notes: 40 }, { user: { id: '700000000000000202', username: 'ben' } });
  await fake.waitFor((c) => c.path.includes(`/${b.token}/`) && /queued #\d/.test(c.body?.content ?? ''), 20_000, 'job b queued');
  await fake.waitFor((c) => c.path.includes(`/${a.token}/`) && c.body?.content?.includes('composing'), 20_000, 'job a composing');
  adapter.pause();
  await bot.close(20_000);
  await adapter.stop();
  const aResult = await fake.waitForOutcome(a.token);
  assert.equal(aResult.kind, 'result', 'the job in flight is finished before shutting down');
  const aJob = field(aResult.call, 'Job');
  const paused = await fake.waitFor((c) => c.path.includes(`/${b.token}/`) && /stays queued/.test(c.body?.content ?? ''), 5000, 'the paused notice');
  const bJob = /job ([a-z2-9]{8})/.exec(paused.body.content)![1];

  // A job left open by a crash two hours ago: too old to resume.
  const store = await JobStore.open(fixture.dataDir);
  const old = new Date(Date.now() - 2 * 3600_000).toISOString();
  const stale: JobRecord = {
    id: 'zz22zz22',
    kind: 'compose',
    who: { platform: 'discord', userId: '700000000000000203', userName: 'cy', serverId: '800000000000000001', channelId: '810000000000000555', isManager: false },
    address: { applicationId: fake.applicationId, token: 'expired', channelId: '810000000000000555', createdAt: String(Date.parse(old)) },
    params: { composer: 'chopin', notes: 16, randomSeed: 5, format: 'wav' },
    outDir: fixture.outDir + '/zz22zz22',
    modelVersion: 'tiny-3',
    state: 'composing',
    createdAt: old,
    updatedAt: old,
  };
  await store.create(stale);
  assert.deepEqual((await store.openJobs()).map((j) => j.id).sort(), [bJob, 'zz22zz22'].sort());
  await store.close();

  const readiesBefore = fake.readyCount;
  restarted = await startBot(
    { modelDir: fixture.modelDir, dataDir: fixture.dataDir, outDir: fixture.outDir, backend: 'auto', terminal: false, limits: { ...DEFAULT_QUEUE_LIMITS, batchWindowMs: 20 }, shutdownGraceMs: 10_000, shutdownDeadlineMs: 40_000, discord: { ...config(), guildId: '800000000000000001' } },
    fixture.log,
  );
  assert.equal(fake.readyCount, readiesBefore + 1, 'logged in again');
  assert.ok(fake.calls.some((c) => c.method === 'PUT' && c.path === `/applications/${fake.applicationId}/guilds/800000000000000001/commands`), 'DISCORD_GUILD_ID registers in that guild');
  const bResult = await fake.waitForOutcome(b.token);
  assert.equal(bResult.kind, 'result', 'the waiting job was composed after the restart and posted to its interaction');
  assert.equal(field(bResult.call, 'Job'), bJob);
  assert.equal(midiNoteCount(fileNamed(bResult.call, /\.mid$/)!.bytes), 40);
  const apology = await fake.waitFor((c) => c.method === 'POST' && c.path === '/channels/810000000000000555/messages', 10_000, 'the apology');
  assert.deepEqual(apology.body.allowed_mentions, { parse: [], users: ['700000000000000203'] }, 'only the requester is pinged');
  assert.match(apology.body.content, /<@700000000000000203>.*sorry: job zz22zz22 \(compose chopin 16\) was interrupted by a restart/);

  const show = fake.command('show', { job: aJob });
  const shown = await fake.waitForOutcome(show.token);
  assert.equal(shown.kind, 'result');
  assert.equal(field(shown.call, 'Job'), aJob);
  assert.equal(field(shown.call, 'Random seed'), field(aResult.call, 'Random seed'));
  assert.equal(field(shown.call, 'Model'), 'tiny-3');
  assert.deepEqual(fileNamed(shown.call, /\.mid$/)!.bytes, fileNamed(aResult.call, /\.mid$/)!.bytes);
  const missing = fake.command('show', { job: 'k3x9q2ab' });
  assert.match(ephemeralText((await fake.waitForOutcome(missing.token)).call), /no piece with job id "k3x9q2ab"/);
});
