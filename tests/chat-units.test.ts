/**
 * The pure and in-process parts of the chat layer: option parsing and checking, the Discord JSON
 * and text usage derived from the declarations, configuration checks, the queue's batching and
 * limits (with a stand-in engine), and the job store's open-job bookkeeping.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS } from '../commands/index.ts';
import { discordCommandJson, discordUsage } from '../src/adapters/discord/discord.ts';
import { slackUsage } from '../src/adapters/slack/slack.ts';
import { parseActionId, actionId } from '../commands/shared/actions.ts';
import { autocompleteChoices } from '../src/chat/dispatch.ts';
import { checkOptions, parseOptionWords, splitWords } from '../src/chat/options.ts';
import { ConfigError, loadConfig } from '../src/app/config.ts';
import type { ComposeRequest, ComposeResult, ModelInfo } from '../src/engine/types.ts';
import type { ComposeBackend } from '../src/jobs/engineThread.ts';
import { JobQueue, QueueRefusal, type QueueLimits } from '../src/jobs/queue.ts';
import { JobStore, looksLikeJobId, newJobId } from '../src/jobs/store.ts';
import type { JobInput, JobRecord } from '../src/jobs/types.ts';
import type { BotContext } from '../commands/shared/command.ts';
import { createTinyModel } from './support/tinyModel.ts';
import { isOgg, pianoMidi } from './support/chatBot.ts';
import { fitAudio } from '../src/jobs/audioFit.ts';
import { readWavHeader, renderAudio } from '../src/render/audio.ts';

const compose = COMMANDS.find((c) => c.name === 'compose')!;
const cont = COMMANDS.find((c) => c.name === 'continue')!;
let dir = '';
let modelDir = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nocturne-units-'));
  modelDir = join(dir, 'model');
  await createTinyModel(modelDir);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('typed options: positional words fill options in order, name=value and name:value by name', () => {
  const a = parseOptionWords(compose, splitWords('chopin 500 temperature=0.9 seed:42'));
  assert.deepEqual(a, { raw: { composer: 'chopin', notes: '500', temperature: '0.9', seed: '42' }, problems: [] });
  const checked = checkOptions(compose, a.raw);
  assert.deepEqual(checked, { options: { composer: 'chopin', notes: 500, temperature: 0.9, seed: 42 }, problems: [] });
  assert.deepEqual(parseOptionWords(compose, ['500']).raw, { notes: '500' }, 'a number is never taken for a composer');
  assert.deepEqual(parseOptionWords(cont, ['k3x9q2ab', 'mozart']).raw, { job: 'k3x9q2ab', composer: 'mozart' }, 'a job id goes to job');
  assert.deepEqual(parseOptionWords(cont, ['schumann', '300']).raw, { composer: 'schumann', notes: '300' }, 'a name without digits is not a job id');
  assert.deepEqual(parseOptionWords(compose, splitWords('"any" 20 0.5 7 extra')).problems, ['unexpected "extra" after /compose']);
});

test('option checks: every problem at once, each saying what to change', () => {
  const r = checkOptions(compose, { notes: '12.5', temperature: 'hot', colour: 'blue' });
  assert.deepEqual(r.problems, [
    '/compose has no option "colour" (options: composer, notes, temperature, seed, key, tempo, score)',
    'give composer: a composer the model knows (see /styles), or "any"',
    'notes must be a whole number from 16 to 2000 (250 or 500 are typical), got "12.5"',
    'temperature must be a number from 0 to 5, got "hot"',
  ]);
  const big = checkOptions(cont, { midi: { name: 'big.mid', bytes: 5 * 1024 * 1024, download: async () => new Uint8Array() } });
  assert.deepEqual(big.problems, ['big.mid is 5 MiB, over the 2 MiB limit for midi: attach a smaller file']);
});

test('one declaration, three renderings: Discord JSON, Discord usage, Slack/terminal usage', () => {
  const json = discordCommandJson(cont);
  assert.deepEqual(json.options!.map((o) => o.name), ['midi', 'job', 'composer', 'notes', 'key', 'tempo', 'score', 'include_seed']);
  assert.ok(json.options!.every((o) => o.description.length <= 100));
  const settings = discordCommandJson(COMMANDS.find((c) => c.name === 'settings')!);
  assert.deepEqual((settings.options![0] as any).choices.map((c: any) => c.value), ['wav', 'mp3', 'opus', 'ogg', 'default']);
  assert.equal((settings.options![0] as any).autocomplete, undefined, 'choices and autocomplete exclude each other');
  const show = discordCommandJson(COMMANDS.find((c) => c.name === 'show')!);
  assert.equal(show.options![0].required, true);
  assert.equal(discordUsage(compose), '/compose composer:<composer> [notes] [temperature] [seed] [key] [tempo] [score]');
  const text = slackUsage(compose).split('\n');
  assert.equal(text[0], '/compose <composer> [notes] [temperature] [seed] [key=…] [tempo=…] [score] — Compose a piano piece in the style of a composer');
  assert.match(text[2], /notes \(optional\): .*\(250 or 500; 16–2000, default 250\)/);
});

test('button ids name the action and the job; anything else is refused', () => {
  assert.deepEqual(parseActionId(actionId('variation', 'k3x9q2ab')), { action: 'variation', jobId: 'k3x9q2ab' });
  assert.equal(parseActionId('nocturne:delete:k3x9q2ab'), undefined);
  assert.equal(parseActionId('other:variation:k3x9q2ab'), undefined);
  for (let i = 0; i < 200; i++) assert.ok(looksLikeJobId(newJobId()));
  for (const word of ['schumann', 'chopin', '250', 'k3x9q2a']) assert.equal(looksLikeJobId(word), false, word);
});

test('autocomplete falls back to suggestions and offers a typed number within the limits', () => {
  const bot = { commands: COMMANDS, composerNames: ['Chopin', 'Mozart'] } as unknown as BotContext;
  assert.deepEqual(autocompleteChoices(bot, 'compose', 'notes', '5').map((c) => c.value), [5, 500].filter((v) => v >= 16));
  assert.deepEqual(autocompleteChoices(bot, 'compose', 'notes', '99999'), []);
  assert.deepEqual(autocompleteChoices(bot, 'compose', 'composer', 'moz').map((c) => c.value), ['Mozart']);
});

test('configuration: defaults with no tokens run the terminal; tokens select the platforms and Slack mode', () => {
  const base = { NOCTURNE_MODEL_DIR: modelDir };
  const plain = loadConfig(base, dir);
  assert.equal(plain.terminal, true);
  assert.equal(plain.discord, undefined);
  assert.equal(plain.slack, undefined);
  const both = loadConfig({ ...base, DISCORD_TOKEN: 'MTAw.abc.def', DISCORD_GUILD_ID: '123456789012345678', SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's', DISCORD_API_BASE: 'http://127.0.0.1:9/api/' }, dir);
  assert.equal(both.terminal, false);
  assert.equal(both.discord?.apiBase, 'http://127.0.0.1:9/api');
  assert.equal(both.discord?.uploadLimitBytes, 10_000_000);
  assert.equal(both.slack?.mode, 'http');
  const socket = loadConfig({ ...base, SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', NOCTURNE_TERMINAL: 'on' }, dir);
  assert.equal(socket.slack?.mode, 'socket');
  assert.equal(socket.terminal, true);
  assert.throws(
    () => loadConfig({ ...base, SLACK_SIGNING_SECRET: 's', DISCORD_API_BASE: 'ftp://x', NOCTURNE_BACKEND: 'gpu' }, dir),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 3 && /SLACK_BOT_TOKEN is missing/.test(e.message) && /DISCORD_API_BASE must be an http or https URL/.test(e.message),
  );
});

// ---------------------------------------------------------------------------------------------
// Queue, with a stand-in engine that records its batches

class RecordingBackend implements ComposeBackend {
  readonly batches: ComposeRequest[][] = [];
  readonly composerNames = ['Chopin'];
  private release: (() => void) | undefined;
  gate: Promise<void> | undefined;
  info(): ModelInfo {
    return { version: 'stand-in', composers: [{ name: 'Chopin', pieces: 1 }], metrics: {}, trainedAt: '' };
  }
  hold(): void {
    this.gate = new Promise((r) => (this.release = r));
  }
  open(): void {
    this.release?.();
    this.gate = undefined;
  }
  async composeMany(requests: ComposeRequest[], onStage?: (i: number, s: 'composing' | 'rendering' | 'done') => void): Promise<PromiseSettledResult<ComposeResult>[]> {
    this.batches.push(requests);
    requests.forEach((_, i) => onStage?.(i, 'composing'));
    await this.gate;
    return requests.map((r) =>
      r.composer === 'bad'
        ? { status: 'rejected', reason: Object.assign(new Error('unknown composer "bad"'), { name: 'ComposeInputError' }) }
        : {
            status: 'fulfilled',
            value: {
              midiPath: join(r.outDir, 'piece.mid'),
              audioPath: join(r.outDir, 'piece.wav'),
              pngPath: join(r.outDir, 'piece.png'),
              noteCount: r.notes,
              composer: 'Chopin',
              modelVersion: 'stand-in',
              seconds: 0.01,
              musicSeconds: 1,
              params: { temperature: 1, topP: 0.95, decoding: 'temperature 1, top-p 0.95', randomSeed: r.randomSeed ?? 0, notes: r.notes, seeded: false, format: 'wav', key: 'any', estimatedKey: 'C major', tempoBpm: 100 },
            },
          },
    );
  }
}

/** Polls `cond` every 10 ms, failing after `timeoutMs` (a bounded wait, not a timing check). */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  for (let waited = 0; !cond(); waited += 10) {
    if (waited > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function input(user: string, notes = 100, composer = 'chopin', server = 'S1'): JobInput {
  return { kind: 'compose', who: { platform: 'discord', userId: user, userName: user, serverId: server, channelId: 'C1', isManager: false }, params: { composer, notes, format: 'wav' } };
}

async function queueWith(limits: Partial<QueueLimits>, name: string) {
  const backend = new RecordingBackend();
  const store = await JobStore.open(join(dir, name));
  const queue = new JobQueue(backend, store, join(dir, name, 'out'), { maxWaiting: 100, maxBatch: 8, batchWindowMs: 30, userMaxOpen: 5, userPerMinute: 100, serverPerMinute: 100, ...limits });
  return { backend, store, queue };
}

function submitAndWait(queue: JobQueue, job: JobInput, positions: number[] = []): { submitted: Promise<JobRecord>; finished: Promise<JobRecord> } {
  let done!: (r: JobRecord) => void;
  const finished = new Promise<JobRecord>((r) => (done = r));
  const submitted = queue.submit(job, { position: (p) => positions.push(p), finished: done });
  return { submitted, finished };
}

test('queue: requests that arrive together share one sampling pass; very different lengths do not', async () => {
  // "Together" made deterministic: a first job holds the engine while six more arrive, so they
  // are all waiting when it frees up, however slow the disk or the machine is.
  const { backend, store, queue } = await queueWith({}, 'q1');
  backend.hold();
  const blocker = submitAndWait(queue, input('z', 2000));
  await blocker.submitted;
  await until(() => backend.batches.length === 1, 'the first batch to start');
  const jobs = ['a', 'b', 'c', 'd', 'e'].map((u) => submitAndWait(queue, input(u, 100)));
  // A job joins the line when its record is stored; concurrent store writes may finish in any
  // order, so the long one is sent only once the short ones are in line.
  await Promise.all(jobs.map((j) => j.submitted));
  const odd = submitAndWait(queue, input('f', 1000));
  await odd.submitted;
  backend.open();
  const records = await Promise.all([...jobs, odd].map((j) => j.finished));
  await blocker.finished;
  assert.deepEqual(records.map((r) => r.state), Array(6).fill('done'));
  assert.deepEqual(backend.batches.map((b) => b.map((r) => r.notes)), [[2000], [100, 100, 100, 100, 100], [1000]]);
  const stored = await store.get(records[0].id);
  assert.equal(stored?.state, 'done');
  assert.equal(stored?.outputs?.noteCount, 100);
  assert.equal(typeof stored?.params.randomSeed, 'number', 'the seed is fixed when the job is stored');
  assert.deepEqual(await store.openJobs(), []);
  assert.equal(queue.stats().meanBatchSize, 7 / 3);
  await store.close();
});

test('queue: positions, a bounded length ("busy, try again in ~N s"), per-user and per-server limits', async () => {
  const { backend, store, queue } = await queueWith({ maxWaiting: 3, maxBatch: 1, userMaxOpen: 2, userPerMinute: 3, serverPerMinute: 4 }, 'q2');
  backend.hold();
  const positions: number[] = [];
  const first = submitAndWait(queue, input('u1', 100, 'chopin', 'S9'));
  await first.submitted;
  await until(() => backend.batches.length === 1, 'the first batch to start');
  const rest = [];
  for (const [user, server] of [['u2', 'S2'], ['u3', 'S3'], ['u4', 'S4']]) {
    const r = submitAndWait(queue, input(user, 100, 'chopin', server), user === 'u4' ? positions : []);
    await r.submitted;
    rest.push(r);
  }
  assert.deepEqual(positions, [3]);
  await assert.rejects(queue.submit(input('u5', 100, 'chopin', 'S5'), { finished: () => {} }), (e: unknown) => e instanceof QueueRefusal && /^busy: 3 pieces are queued, try again in ~\d+ s$/.test(e.message));
  backend.open();
  await Promise.all([first, ...rest].map((r) => r.finished));
  assert.deepEqual(positions, [3, 2, 1], 'the last in line hears it move up');

  const limited = await queueWith({ userMaxOpen: 2, userPerMinute: 3, serverPerMinute: 4 }, 'q3');
  limited.backend.hold();
  const a = submitAndWait(limited.queue, input('same', 100, 'chopin', 'S1'));
  const b = submitAndWait(limited.queue, input('same', 100, 'chopin', 'S1'));
  await Promise.all([a.submitted, b.submitted]);
  await assert.rejects(limited.queue.submit(input('same', 100, 'chopin', 'S1'), { finished: () => {} }), /you already have 2 pieces on the way: wait for one to finish \(~\d+ s\), then ask again/);
  limited.backend.open();
  await Promise.all([a.finished, b.finished]);
  const c = submitAndWait(limited.queue, input('same', 100, 'chopin', 'S1'));
  await c.finished;
  await assert.rejects(limited.queue.submit(input('same', 100, 'chopin', 'S1'), { finished: () => {} }), /you asked for 3 pieces in the last minute: try again in ~\d+ s/);
  const d = submitAndWait(limited.queue, input('other', 100, 'chopin', 'S1'));
  await d.finished;
  await assert.rejects(limited.queue.submit(input('third', 100, 'chopin', 'S1'), { finished: () => {} }), /this server asked for 4 pieces in the last minute/);
  await limited.queue.submit(input('third', 100, 'chopin', 'S2'), { finished: () => {} });
  await limited.queue.stop(5000);
  await Promise.all([store.close(), limited.store.close()]);
});

test('queue: a bad request fails alone; stop() leaves waiting jobs open for the next start', async () => {
  const { backend, store, queue } = await queueWith({ maxBatch: 1 }, 'q4');
  const good = submitAndWait(queue, input('g', 100));
  const bad = submitAndWait(queue, input('b', 100, 'bad'));
  const [g, b] = await Promise.all([good.finished, bad.finished]);
  assert.equal(g.state, 'done');
  assert.equal(b.state, 'failed');
  assert.equal(b.errorKind, 'input');
  assert.equal(b.error, 'unknown composer "bad"');

  backend.hold();
  const paused: string[] = [];
  const running = queue.submit(input('r', 100), { finished: () => {} });
  await running;
  await until(() => backend.batches.length === 3, 'the held batch to start');
  const waiting = await queue.submit(input('w', 100), { finished: () => {}, paused: (rec) => paused.push(rec.id) });
  const stopping = queue.stop(200); // the held batch cannot finish in time
  await stopping;
  assert.deepEqual(paused, [waiting.id]);
  await assert.rejects(queue.submit(input('late', 100), { finished: () => {} }), /the bot is restarting/);
  const open = await store.openJobs();
  assert.deepEqual(open.map((j) => j.state).sort(), ['composing', 'queued']);
  backend.open();
  await store.close();
});

test('audio over the upload limit: mono 22.05 kHz WAV, then OGG, then none, each saying so', async () => {
  const midi = join(dir, 'fit.mid');
  writeFileSync(midi, pianoMidi(24)); // 6 s of music
  const fresh = async (name: string) => {
    mkdirSync(join(dir, name), { recursive: true });
    const wav = join(dir, name, 'piece.wav');
    await renderAudio(midi, wav, { format: 'wav' });
    return wav;
  };
  const stereo = await fresh('fit-a');
  const bytes = statSync(stereo).size;
  assert.deepEqual(await fitAudio(midi, stereo, bytes), { audioPath: stereo }, 'at the limit: unchanged');

  const mono = await fitAudio(midi, stereo, Math.floor(bytes / 2));
  assert.match(mono.audioPath!, /piece-mono-22k\.wav$/);
  assert.match(mono.note!, /mono 22\.05 kHz WAV: the stereo WAV would be [\d.]+ MB, over the [\d.]+ MB upload limit/);
  const h = await readWavHeader(mono.audioPath!);
  assert.deepEqual([h.channels, h.sampleRate], [1, 22050]);
  assert.equal(existsSync(stereo), false, 'the oversized file is removed');

  const stereo2 = await fresh('fit-b');
  const ogg = await fitAudio(midi, stereo2, Math.floor(bytes / 6));
  assert.match(ogg.audioPath!, /piece\.ogg$/);
  assert.ok(isOgg(readFileSync(ogg.audioPath!)));
  assert.match(ogg.note!, /audio is OGG/);

  const stereo3 = await fresh('fit-c');
  const none = await fitAudio(midi, stereo3, 1000);
  assert.equal(none.audioPath, undefined);
  assert.match(none.note!, /no audio: .* play the MIDI file instead/);
  assert.equal(existsSync(stereo3), false);
});

test('a promoted model is served from the next piece on, and each finished piece is reported', async () => {
  const { Bot } = await import('../src/chat/bot.ts');
  const otherModel = join(dir, 'model-b');
  await createTinyModel(otherModel, ['Bach', 'Haydn'], 5);
  const pieces: string[] = [];
  const bot = await Bot.open({ modelDir, dataDir: join(dir, 'swap-data'), outDir: join(dir, 'swap-out'), limits: { batchWindowMs: 10 }, onPiece: (r) => pieces.push(`${r.modelVersion}:${r.outputs?.composer}`) });
  const errors: string[] = [];
  const reply = { progress: async () => {}, info: async () => {}, result: async () => {}, error: async (line: string) => void errors.push(line) };
  const who = { platform: 'terminal' as const, userId: 'me', userName: 'me', channelId: 'terminal', isManager: true };
  try {
    assert.deepEqual(bot.composerNames, ['Chopin', 'Mozart']);
    const first = await bot.runJob({ kind: 'compose', who, params: { composer: 'Chopin', notes: 16, format: 'wav' } }, reply);
    assert.equal(first?.state, 'done');
    await assert.rejects(bot.useModel(join(dir, 'no-model')), /model\.json|no such|ENOENT|not/i);
    assert.equal(bot.model.version, 'tiny-3', 'a model that cannot be opened changes nothing');
    const info = await bot.useModel(otherModel);
    assert.equal(info.version, 'tiny-5');
    assert.deepEqual(bot.composerNames, ['Bach', 'Haydn']);
    const second = await bot.runJob({ kind: 'compose', who, params: { composer: 'bach', notes: 16, format: 'wav' } }, reply);
    assert.equal(second?.state, 'done');
    assert.equal(second?.modelVersion, 'tiny-5');
    assert.deepEqual(pieces, ['tiny-3:Chopin', 'tiny-5:Bach']);
    assert.deepEqual(errors, []);
  } finally {
    await bot.close(5000);
  }
});
