import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tonejs from '@tonejs/midi';
import { loadImage, createCanvas } from '@napi-rs/canvas';
import { describeAudioBudget, readWavHeader, renderAudio } from '../src/render/audio.ts';
import { renderPianoRoll } from '../src/render/pianoRoll.ts';
import { chartFont, plotSeries, plotTrainingCurve } from '../src/render/curve.ts';
import type { PianoNote } from '../src/midi/types.ts';

let dir = '';
let midiPath = '';
const MUSIC_SECONDS = 3;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'nocturne-render-'));
  const midi = new tonejs.Midi();
  midi.header.setTempo(120);
  const track = midi.addTrack();
  // C major arpeggio + a final chord, 3 s at 120 bpm
  const pitches = [60, 64, 67, 72, 67];
  pitches.forEach((p, i) => track.addNote({ midi: p, time: i * 0.5, duration: 0.5, velocity: 0.8 }));
  for (const p of [48, 60, 64, 67]) track.addNote({ midi: p, time: 2.5, duration: 0.5, velocity: 0.9 });
  midiPath = join(dir, 'piece.mid');
  writeFileSync(midiPath, Buffer.from(midi.toArray()));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** RMS of a 16-bit PCM WAV's data, 0..1. */
function wavRms(path: string): number {
  const buf = readFileSync(path);
  const dataAt = buf.indexOf('data', 12, 'latin1');
  const n = buf.readUInt32LE(dataAt + 4) / 2;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += buf.readInt16LE(dataAt + 8 + i * 2) ** 2;
  return Math.sqrt(sum / n) / 32768;
}

function leftovers(): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.raw'));
}

test('WAV stereo 44.1 kHz: valid header, plausible length, not silent', async () => {
  const out = join(dir, 'stereo.wav');
  const r = await renderAudio(midiPath, out, { format: 'wav' });
  console.log(`wav stereo 44.1k: ${r.seconds.toFixed(2)} s audio in ${r.renderMs.toFixed(0)} ms = ${(r.seconds / (r.renderMs / 1000)).toFixed(1)}x real time, ${r.bytes} bytes, peak ${r.peak?.toFixed(3)} rms ${r.rms?.toFixed(4)}`);
  const h = await readWavHeader(out);
  assert.equal(h.channels, 2);
  assert.equal(h.sampleRate, 44100);
  assert.equal(h.fileBytes, r.bytes);
  assert.equal(h.dataOffset + h.dataBytes, h.fileBytes);
  // fluidsynth renders the music plus a release/reverb tail
  assert.ok(r.seconds >= MUSIC_SECONDS, `audio ${r.seconds} s shorter than the music`);
  assert.ok(r.seconds <= MUSIC_SECONDS + 4, `audio ${r.seconds} s: tail far too long`);
  assert.ok(Math.abs(r.midiSeconds - MUSIC_SECONDS) < 0.01);
  const rms = wavRms(out);
  assert.ok(rms > 0.005, `rms ${rms} is near silence`);
  assert.ok(Math.abs(rms - (r.rms ?? 0)) < 1e-3, 'returned rms matches the file');
  assert.equal(describeAudioBudget(r.seconds, 'wav', 44100, 2), r.bytes);
  assert.deepEqual(leftovers(), []);
});

test('WAV mono 22.05 kHz: 1 channel, 44100 bytes per second of audio', async () => {
  const out = join(dir, 'mono.wav');
  const r = await renderAudio(midiPath, out, { format: 'wav', channels: 1, sampleRate: 22050 });
  console.log(`wav mono 22.05k: ${r.seconds.toFixed(2)} s in ${r.renderMs.toFixed(0)} ms, ${r.bytes} bytes = ${((r.bytes / r.seconds) * 60 / 1e6).toFixed(2)} MB/min`);
  const buf = readFileSync(out);
  assert.equal(buf.toString('latin1', 0, 4), 'RIFF');
  assert.equal(buf.readUInt32LE(4) + 8, buf.length);
  assert.equal(buf.readUInt16LE(20), 1, 'PCM');
  assert.equal(buf.readUInt16LE(22), 1, 'channels');
  assert.equal(buf.readUInt32LE(24), 22050, 'sample rate');
  assert.equal(buf.readUInt32LE(28), 44100, 'byte rate');
  assert.equal(buf.readUInt16LE(32), 2, 'block align');
  assert.equal(buf.readUInt16LE(34), 16, 'bits');
  assert.equal(buf.toString('latin1', 36, 40), 'data');
  const dataBytes = buf.readUInt32LE(40);
  assert.equal(dataBytes, buf.length - 44);
  assert.ok(Math.abs(dataBytes / 44100 - r.seconds) < 1e-9);
  assert.ok(r.seconds >= MUSIC_SECONDS && r.seconds <= MUSIC_SECONDS + 4);
  assert.ok(wavRms(out) > 0.005, 'mono downmix is not silent');
  assert.equal(describeAudioBudget(r.seconds, 'wav', 22050, 1), r.bytes);
  assert.deepEqual(leftovers(), []);
});

test('OGG: OggS magic and a duration', async () => {
  const out = join(dir, 'piece.ogg');
  const r = await renderAudio(midiPath, out, { format: 'ogg' });
  console.log(`ogg: ${r.seconds.toFixed(2)} s in ${r.renderMs.toFixed(0)} ms, ${r.bytes} bytes`);
  const buf = readFileSync(out);
  assert.equal(buf.toString('latin1', 0, 4), 'OggS');
  assert.ok(buf.includes('vorbis', 0, 'latin1'));
  assert.ok(r.bytes > 4096);
  assert.ok(r.seconds >= MUSIC_SECONDS && r.seconds <= MUSIC_SECONDS + 4);
  // fluidsynth renders stereo; ffmpeg encodes the downmix (tests/audio-formats.test.ts checks every format further)
  const mono = await renderAudio(midiPath, join(dir, 'mono.ogg'), { format: 'ogg', channels: 1 });
  assert.equal(mono.channels, 1);
  assert.ok(readFileSync(mono.path).includes('vorbis', 0, 'latin1'));
});

test('truncated MIDI rejects and leaves nothing at outPath', async () => {
  const bad = join(dir, 'truncated.mid');
  const whole = readFileSync(midiPath);
  writeFileSync(bad, whole.subarray(0, Math.floor(whole.length * 0.6)));
  const out = join(dir, 'truncated.wav');
  await assert.rejects(renderAudio(bad, out, { format: 'wav' }), /truncated/);
  assert.equal(existsSync(out), false);
  const garbage = join(dir, 'garbage.mid');
  writeFileSync(garbage, 'not a midi file at all');
  await assert.rejects(renderAudio(garbage, out, { format: 'wav' }), /invalid MIDI/);
  assert.equal(existsSync(out), false);
  assert.deepEqual(leftovers(), []);
});

test('unwritable output location rejects', async () => {
  // a path below a regular file can't be created even as root
  await assert.rejects(renderAudio(midiPath, join(midiPath, 'out.wav'), { format: 'wav' }), /not a directory/);
  await assert.rejects(renderAudio(midiPath, join(dir, 'no-such-dir', 'out.wav'), { format: 'wav' }), /not a directory/);
});

test('fluidsynth that exits 0 after an error, or writes junk, is caught; missing binary has a fix', async () => {
  const liar = join(dir, 'fake-fluidsynth.sh');
  writeFileSync(liar, "#!/bin/sh\necho \"fluidsynth: error: Failed to open audio file 'x' for writing\" >&2\nexit 0\n");
  chmodSync(liar, 0o755);
  const out = join(dir, 'fake.wav');
  await assert.rejects(renderAudio(midiPath, out, { format: 'wav', fluidsynth: liar }), /Failed to open audio file/);
  assert.equal(existsSync(out), false);

  // writes a tiny header-only WAV to the -F target and exits 0, like a truncated render
  const junk = join(dir, 'junk-fluidsynth.sh');
  writeFileSync(junk, '#!/bin/sh\nwhile [ "$1" != "-F" ]; do shift; done\nprintf \'RIFF\\044\\000\\000\\000WAVEjunk\' > "$2"\nexit 0\n');
  chmodSync(junk, 0o755);
  await assert.rejects(renderAudio(midiPath, out, { format: 'wav', fluidsynth: junk }), /invalid WAV/);
  assert.equal(existsSync(out), false);

  await assert.rejects(renderAudio(midiPath, out, { format: 'wav', fluidsynth: join(dir, 'no-fluidsynth-here') }), /fluidsynth not found: install it with `apt-get install fluidsynth fluid-soundfont-gm`/);
  await assert.rejects(renderAudio(midiPath, out, { format: 'wav', soundFont: join(dir, 'none.sf2') }), /soundfont not found/);
  assert.deepEqual(leftovers(), []);
});

test('describeAudioBudget: WAV exact, OGG about 1 MB/min', () => {
  assert.equal(describeAudioBudget(60, 'wav', 22050, 1), 44 + 60 * 22050 * 2);
  assert.equal(describeAudioBudget(60, 'wav', 44100, 2), 44 + 60 * 44100 * 4);
  const ogg = describeAudioBudget(60, 'ogg', 44100, 2);
  assert.ok(ogg > 500_000 && ogg < 1_500_000);
});

function note(pitch: number, velocity: number, startSeconds: number, durationSeconds: number): PianoNote {
  return { pitch, velocity, startSeconds, durationSeconds, startBeat: startSeconds * 2, durationBeats: durationSeconds * 2 };
}

test('piano roll: PNG with the requested size, a loud note is drawn', async () => {
  const notes = [note(48, 30, 0, 1), note(60, 127, 1, 2), note(64, 80, 1.5, 1), note(72, 60, 3, 1)];
  const out = join(dir, 'roll.png');
  const r = await renderPianoRoll(notes, out, { width: 800, height: 300, title: 'test roll' });
  assert.deepEqual(r, { path: out, width: 800, height: 300 });
  const png = readFileSync(out);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  assert.equal(png.readUInt32BE(16), 800);
  assert.equal(png.readUInt32BE(20), 300);

  const img = await loadImage(png);
  const c = createCanvas(img.width, img.height);
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  const px = (x: number, y: number) => [...data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 4)];
  // locate the loud note the way the renderer lays it out: pitch range 46..74 over the plot area
  const hasText = chartFont() !== null;
  const left = hasText ? 42 : 6, right = 10, top = hasText ? 28 : 6, bottom = hasText ? 24 : 6;
  const pw = 800 - left - right, ph = 300 - top - bottom;
  const lo = 46, hi = 74, rowH = ph / (hi - lo + 1);
  const x = Math.round(left + (2 / 4) * pw); // middle of the note (1..3 s of 0..4 s)
  const y = Math.round(top + (hi - 60 + 0.5) * rowH);
  const loud = px(x, y);
  const background = px(Math.round(left + 0.1 * pw), Math.round(top + (hi - 62 + 0.5) * rowH)); // D4 row (white key), no note
  assert.deepEqual(background.slice(0, 3), [255, 255, 255]);
  const diff = Math.abs(loud[0]! - background[0]!) + Math.abs(loud[1]! - background[1]!) + Math.abs(loud[2]! - background[2]!);
  assert.ok(diff > 200, `loud note pixel ${loud} too close to background ${background}`);
  assert.ok(loud[2]! > loud[0]!, 'note is blue');
  // the soft note is lighter than the loud one
  const soft = px(Math.round(left + 0.125 * pw), Math.round(top + (hi - 48 + 0.5) * rowH));
  assert.ok(soft[0]! + soft[1]! + soft[2]! > loud[0]! + loud[1]! + loud[2]!, `soft ${soft} should be lighter than loud ${loud}`);
  console.log(`piano roll ${png.length} bytes; font: ${chartFont() ?? 'none (text skipped)'}`);
});

test('piano roll: empty notes rejects', async () => {
  const out = join(dir, 'empty.png');
  await assert.rejects(renderPianoRoll([], out), /no notes/);
  assert.equal(existsSync(out), false);
});

test('training curve and plotSeries write valid PNGs', async () => {
  const history = Array.from({ length: 12 }, (_, i) => ({ epoch: i + 1, trainLoss: 3 / (i + 1) + 0.5, valLoss: 3 / (i + 1) + 0.7 + (i > 7 ? (i - 7) * 0.05 : 0) }));
  const out = join(dir, 'curve.png');
  assert.equal(await plotTrainingCurve(history, out, { width: 700, height: 400 }), out);
  const png = readFileSync(out);
  assert.equal(png.toString('latin1', 1, 4), 'PNG');
  assert.equal(png.readUInt32BE(16), 700);
  assert.equal(png.readUInt32BE(20), 400);
  await assert.rejects(plotTrainingCurve([], join(dir, 'none.png')), /empty/);

  const out2 = join(dir, 'series.png');
  await plotSeries(
    [
      { name: 'a', points: [{ x: 0, y: 1 }, { x: 1, y: NaN }, { x: 2, y: 3 }] },
      { name: 'b', points: [{ x: 0, y: 2 }, { x: 2, y: 2 }] },
    ],
    out2,
    { title: 'drift', xLabel: 'x', yLabel: 'y', yMin: 0, yMax: 4 },
  );
  assert.equal(readFileSync(out2).readUInt32BE(16), 900);
  await assert.rejects(plotSeries([{ name: 'a', points: [] }], join(dir, 'x.png')), /no finite points/);
});
