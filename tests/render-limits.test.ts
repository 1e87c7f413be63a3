/**
 * Bounding one request by what it produces (issue 11, items 1 and 5), with the real fluidsynth
 * behind a wrapper script that records each run:
 * - the 353-byte seed at 3.58 BPM (tests/fixtures/slow-tempo.mid) is refused with one line before
 *   sampling or rendering; so is a piece over the music-length cap (NOCTURNE_MAX_MUSIC_MINUTES);
 * - renderAudio refuses audio whose estimated size is over its limit without running fluidsynth;
 * - a job that fails after its audio was rendered (the OGG fallback failing) leaves no partial
 *   file in out/<job>/, and every failure is a line in the bot's log with the job id and cause;
 * - an engine whose render fails removes the piece.mid it wrote (the CLI's --out folder).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import tonejs from '@tonejs/midi';
import type { Bot } from '../src/chat/bot.ts';
import type { Reply } from '../commands/shared/command.ts';
import { Engine } from '../src/engine/engine.ts';
import type { JobInput, JobRecord } from '../src/jobs/types.ts';
import { AudioTooLargeError, renderAudio } from '../src/render/audio.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';

const SLOW_SEED = readFileSync(resolve(import.meta.dirname, 'fixtures/slow-tempo.mid'));
let fixture: ChatFixture;
let calls: string;
const saved = { synth: process.env.NOCTURNE_FLUIDSYNTH, font: process.env.NOCTURNE_SOUNDFONT, ffmpeg: process.env.NOCTURNE_FFMPEG };

before(async () => {
  fixture = await chatFixture('render-limits');
  calls = join(fixture.dir, 'fluidsynth-calls.log');
  const wrapper = join(fixture.dir, 'fluidsynth.sh');
  writeFileSync(wrapper, `#!/bin/sh\necho run >> '${calls}'\nexec fluidsynth "$@"\n`);
  chmodSync(wrapper, 0o755);
  // Engine threads copy the environment when they start: set before any bot opens.
  process.env.NOCTURNE_FLUIDSYNTH = wrapper;
});

after(() => {
  for (const [k, v] of [['NOCTURNE_FLUIDSYNTH', saved.synth], ['NOCTURNE_SOUNDFONT', saved.font]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  fixture?.remove();
});

const fluidsynthRuns = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean).length : 0);

const silentReply: Reply = { progress: async () => {}, info: async () => {}, result: async () => {}, error: async () => {} };

function job(params: Partial<JobInput['params']>, extra: Partial<JobInput> = {}): JobInput {
  return {
    kind: extra.seedMidi ? 'continue' : 'compose',
    who: { platform: 'terminal', userId: 'local', userName: 'you', channelId: 'terminal', isManager: true },
    params: { composer: 'chopin', notes: 16, format: 'wav', ...params },
    ...extra,
  };
}

function midiAt(bpm: number, notes = 24): Uint8Array {
  const midi = new tonejs.Midi();
  midi.header.setTempo(bpm);
  const track = midi.addTrack();
  for (let i = 0; i < notes; i++) track.addNote({ midi: 60 + (i % 12), time: (i * 60) / bpm / 2, duration: 60 / bpm / 2, velocity: 0.7 });
  return new Uint8Array(midi.toArray());
}

test('the 353-byte seed at 3.58 BPM and a piece over the length cap are refused before fluidsynth runs; failures are logged', async () => {
  const bot: Bot = await fixture.openBot({ maxMusicSeconds: 60 });
  try {
    const before = fluidsynthRuns();
    const slow = (await bot.runJob(job({ notes: 2000, seedName: 'slow.mid' }, { seedMidi: SLOW_SEED }), silentReply)) as JobRecord;
    assert.equal(slow.state, 'failed');
    assert.equal(slow.errorKind, 'input');
    assert.match(slow.error!, /tempo is 3\.58 BPM.*must be 20 to 1000 BPM/);
    assert.deepEqual(readdirSync(slow.outDir), ['seed.mid'], 'nothing but the seed in the job folder');

    // 30 BPM is a real tempo, but 400 of the untrained model's notes (far apart) last far over a minute.
    const long = (await bot.runJob(job({ notes: 400, seedName: 'adagio.mid' }, { seedMidi: midiAt(30) }), silentReply)) as JobRecord;
    assert.equal(long.state, 'failed');
    assert.equal(long.errorKind, 'input');
    assert.match(long.error!, /400 notes at 30\.0 BPM would last \d+:\d\d.*over the limit of 1:00 of music: ask for fewer notes or use a faster seed/);
    assert.deepEqual(readdirSync(long.outDir), ['seed.mid']);
    assert.equal(fluidsynthRuns(), before, 'fluidsynth never ran for the refused requests');

    for (const r of [slow, long]) assert.ok(fixture.logs.some((l) => l.includes(`job ${r.id} (continue chopin`) && l.includes('failed (input)')), `a log line for ${r.id}`);

    const ok = (await bot.runJob(job({ notes: 16 }), silentReply)) as JobRecord;
    assert.equal(ok.state, 'done', ok.error);
    assert.equal(fluidsynthRuns(), before + 1, 'a piece within the limits is rendered (by the wrapper around the real fluidsynth)');
  } finally {
    await bot.close(1000);
  }
});

test('renderAudio refuses audio estimated over maxBytes without running fluidsynth', async () => {
  const midiPath = join(fixture.dir, 'slow.mid');
  writeFileSync(midiPath, SLOW_SEED);
  const before = fluidsynthRuns();
  await assert.rejects(renderAudio(midiPath, join(fixture.dir, 'slow.wav'), { format: 'wav', maxBytes: 10_000_000 }), (e: Error) => {
    assert.ok(e instanceof AudioTooLargeError);
    assert.match(e.message, /the audio would be about 50 MB \(277 s of music\), over the 10 MB limit: not rendered/);
    return true;
  });
  assert.equal(fluidsynthRuns(), before);
  assert.deepEqual(readdirSync(fixture.dir).filter((f) => f.includes('slow.wav')), []);
});

test('a job that fails after its audio was rendered leaves no partial file, and the failure is logged', async () => {
  const bot: Bot = await fixture.openBot();
  try {
    // The engine thread renders the WAV with the real fluidsynth; the audio-fitting step in this
    // thread (the OGG fallback that timed out in the probe, encoded from that WAV) then fails on
    // an encoder that is not there.
    process.env.NOCTURNE_FFMPEG = join(fixture.dir, 'no-such-ffmpeg');
    const failed = (await bot.runJob(job({ notes: 16 }, { uploadLimitBytes: 1000 }), silentReply)) as JobRecord;
    assert.equal(failed.state, 'failed');
    assert.equal(failed.errorKind, 'internal');
    assert.match(failed.error!, /could not finish the files: ffmpeg not found/);
    assert.equal(existsSync(failed.outDir), false, `no partial files: ${existsSync(failed.outDir) ? readdirSync(failed.outDir).join(', ') : ''}`);
    assert.ok(fixture.logs.some((l) => l.includes(`job ${failed.id} (compose chopin 16, terminal) failed (internal): could not finish the files: ffmpeg not found`)), fixture.logs.join('\n'));
  } finally {
    if (saved.ffmpeg === undefined) delete process.env.NOCTURNE_FFMPEG;
    else process.env.NOCTURNE_FFMPEG = saved.ffmpeg;
    await bot.close(1000);
  }
});

test('an engine whose render fails removes the piece.mid it wrote', async () => {
  const engine = await Engine.open(fixture.modelDir, 'auto');
  const outDir = join(fixture.dir, 'cli-out');
  const bogus = join(fixture.dir, 'not-a-soundfont.sf2');
  writeFileSync(bogus, 'not a soundfont');
  process.env.NOCTURNE_SOUNDFONT = bogus;
  try {
    await assert.rejects(engine.compose({ composer: 'chopin', notes: 16, randomSeed: 1, outDir }), /fluidsynth failed/);
    assert.deepEqual(readdirSync(outDir), []);
  } finally {
    if (saved.font === undefined) delete process.env.NOCTURNE_SOUNDFONT;
    else process.env.NOCTURNE_SOUNDFONT = saved.font;
    engine.dispose();
  }
});

test('`nocturne compose chopin 2000 --seed slow-tempo.mid` (a real process) refuses the seed with one line, exit 2, no files', async () => {
  const { spawnSync } = await import('node:child_process');
  const out = join(fixture.dir, 'cli-slow');
  const run = spawnSync(process.execPath, [resolve(import.meta.dirname, '../bin/nocturne.js'), 'compose', 'chopin', '2000', '--seed', resolve(import.meta.dirname, 'fixtures/slow-tempo.mid'), '--model', fixture.modelDir, '--out', out], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /the seed MIDI's tempo is 3\.58 BPM; a continuation keeps it, so it must be 20 to 1000 BPM: fix the tempo in the file/);
  assert.equal(existsSync(out), false);
});

test('NOCTURNE_MAX_MUSIC_MINUTES: minutes to the queue limit in seconds; a bad value is listed with the other problems', async () => {
  const { ConfigError, loadConfig } = await import('../src/app/config.ts');
  const base = { NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_COMMUNITY: 'off' };
  assert.equal(loadConfig(base, fixture.dir).limits.maxMusicSeconds, 30 * 60);
  assert.equal(loadConfig({ ...base, NOCTURNE_MAX_MUSIC_MINUTES: '5' }, fixture.dir).limits.maxMusicSeconds, 300);
  assert.throws(() => loadConfig({ ...base, NOCTURNE_MAX_MUSIC_MINUTES: '0', NOCTURNE_QUEUE_MAX: 'x' }, fixture.dir), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /2 problems/);
    assert.match(e.message, /NOCTURNE_MAX_MUSIC_MINUTES must be a whole number from 1 to 600, got "0"/);
    return true;
  });
});
