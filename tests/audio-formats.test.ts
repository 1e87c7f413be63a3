/**
 * Every audio format (WAV, OGG Vorbis, MP3, Opus) is written, decodes to the right length, and is
 * loudness-normalised alike: about −16 LUFS integrated with the true peak at most −1 dBTP (issue
 * 10, "Audio that plays everywhere"), for a quiet piece and a loud one. The loudness is measured
 * independently of src/render/loudness.ts, by ffmpeg's ebur128 filter (BS.1770 / EBU R128, true
 * peak by its own oversampling). Also: the upload-size fitting for the lossy formats, the engine
 * writing MP3, and the encoder's output being checked like fluidsynth's.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import tonejs from '@tonejs/midi';
import { Engine } from '../src/engine/engine.ts';
import { AUDIO_FORMATS } from '../src/engine/types.ts';
import { fitAudio } from '../src/jobs/audioFit.ts';
import { AudioTooLargeError, FIT_LADDER, RELEASE_TAIL_SECONDS, describeAudioBudget, renderAudio, renderAudioWithin, type RenderAudioResult, type RenderFormat } from '../src/render/audio.ts';
import { TARGET_LUFS, TRUE_PEAK_MAX_DBTP } from '../src/render/loudness.ts';
import { createTinyModel } from './support/tinyModel.ts';

const run = promisify(execFile);
let dir = '';
const pieces = { quiet: '', loud: '' };
/** Each piece's rendered files by format, and their un-normalised loudness. */
const rendered: Record<string, Partial<Record<RenderFormat, RenderAudioResult>>> = { quiet: {}, loud: {} };

/** A sparse line of soft single notes: fluidsynth renders it far under −16 LUFS. */
function quietMidi(): Buffer {
  const midi = new tonejs.Midi();
  midi.header.setTempo(90);
  const track = midi.addTrack();
  const line = [60, 62, 64, 65, 67, 65, 64, 62];
  for (let i = 0; i < 12; i++) track.addNote({ midi: line[i % line.length]!, time: i * 0.5, duration: 0.45, velocity: 0.16 });
  return Buffer.from(midi.toArray());
}

/** Full chords hammered at full velocity across the keyboard: fluidsynth renders it near or over full scale. */
function loudMidi(): Buffer {
  const midi = new tonejs.Midi();
  midi.header.setTempo(120);
  const track = midi.addTrack();
  const chords = [
    [36, 48, 55, 60, 64, 67, 72, 76],
    [41, 53, 60, 65, 69, 72, 77, 81],
    [43, 55, 62, 67, 71, 74, 79, 83],
  ];
  for (let i = 0; i < 24; i++) for (const p of chords[Math.floor(i / 4) % 3]!) track.addNote({ midi: p, time: i * 0.25, duration: 0.3, velocity: 1 });
  return Buffer.from(midi.toArray());
}

/** ffmpeg's own EBU R128 measure of a file: integrated loudness (LUFS) and true peak (dBTP). */
async function ebur128(path: string): Promise<{ lufs: number; truePeakDb: number }> {
  const { stderr } = await run('ffmpeg', ['-hide_banner', '-nostats', '-i', path, '-af', 'ebur128=peak=true:framelog=verbose', '-f', 'null', '-'], { maxBuffer: 16 << 20 });
  const summary = stderr.slice(stderr.lastIndexOf('Summary:'));
  const lufs = Number(/I:\s+(-?[\d.]+|-inf) LUFS/.exec(summary)?.[1]);
  const truePeakDb = Number(/True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/.exec(summary)?.[1]);
  assert.ok(Number.isFinite(lufs) && Number.isFinite(truePeakDb), `no ebur128 summary for ${path}:\n${summary}`);
  return { lufs, truePeakDb };
}

/** Decodes a file with ffmpeg to 16-bit PCM at its own rate: channels, rate, frames, and any sample at full scale. */
async function decode(path: string): Promise<{ codec: string; channels: number; sampleRate: number; seconds: number; clipped: number }> {
  const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,channels,sample_rate', '-of', 'json', path])).stdout).streams[0];
  const channels = Number(probe.channels);
  const sampleRate = Number(probe.sample_rate);
  const pcm = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 's16le', '-ac', String(channels), '-ar', String(sampleRate), 'pipe:1'], { maxBuffer: 256 << 20 });
  assert.equal(pcm.status, 0, String(pcm.stderr));
  const s = new Int16Array(pcm.stdout.buffer, pcm.stdout.byteOffset, pcm.stdout.length / 2);
  let clipped = 0;
  for (let i = 0; i < s.length; i++) if (s[i]! >= 32767 || s[i]! <= -32768) clipped++;
  return { codec: probe.codec_name, channels, sampleRate, seconds: s.length / channels / sampleRate, clipped };
}

/** The container's and codec's own header bytes. */
function assertHeader(format: RenderFormat, buf: Buffer): void {
  if (format === 'wav') {
    assert.equal(buf.toString('latin1', 0, 4), 'RIFF');
    assert.equal(buf.toString('latin1', 8, 12), 'WAVE');
    assert.equal(buf.readUInt16LE(20), 1, 'PCM');
    assert.equal(buf.readUInt16LE(34), 16, '16-bit');
    assert.equal(buf.readUInt32LE(40), buf.length - 44, 'data chunk is the rest of the file');
  } else if (format === 'mp3') {
    let at = 0;
    if (buf.toString('latin1', 0, 3) === 'ID3') at = 10 + ((buf[6]! & 0x7f) << 21) + ((buf[7]! & 0x7f) << 14) + ((buf[8]! & 0x7f) << 7) + (buf[9]! & 0x7f);
    assert.equal(buf[at], 0xff, 'MPEG frame sync');
    assert.equal((buf[at + 1]! >> 1) & 3, 1, 'layer III');
  } else {
    assert.equal(buf.toString('latin1', 0, 4), 'OggS');
    assert.ok(buf.includes(format === 'opus' ? 'OpusHead' : '\x01vorbis', 0, 'latin1'), `${format} identification header`);
  }
}

const CODEC: Record<RenderFormat, string> = { wav: 'pcm_s16le', ogg: 'vorbis', mp3: 'mp3', opus: 'opus' };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nocturne-audio-formats-'));
  pieces.quiet = join(dir, 'quiet.mid');
  pieces.loud = join(dir, 'loud.mid');
  writeFileSync(pieces.quiet, quietMidi());
  writeFileSync(pieces.loud, loudMidi());
  for (const name of ['quiet', 'loud'] as const) {
    mkdirSync(join(dir, name));
    for (const format of AUDIO_FORMATS) rendered[name]![format] = await renderAudio(pieces[name], join(dir, name, `piece.${format}`), { format });
  }
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('every format, a quiet piece and a loud one', () => {
  test('the two pieces start far apart: one far under −16 LUFS, one near full scale', async () => {
    const raw = {
      quiet: await renderAudio(pieces.quiet, join(dir, 'quiet-raw.wav'), { format: 'wav', normalize: false }),
      loud: await renderAudio(pieces.loud, join(dir, 'loud-raw.wav'), { format: 'wav', normalize: false }),
    };
    const quiet = await ebur128(raw.quiet.path);
    const loud = await ebur128(raw.loud.path);
    console.log(`un-normalised: quiet ${quiet.lufs} LUFS / ${quiet.truePeakDb} dBTP, loud ${loud.lufs} LUFS / ${loud.truePeakDb} dBTP`);
    assert.ok(quiet.lufs < TARGET_LUFS - 10, `quiet piece renders at ${quiet.lufs} LUFS`);
    assert.ok(loud.lufs > TARGET_LUFS - 4, `loud piece renders at ${loud.lufs} LUFS`);
    // un-normalised, the limiter still keeps the loud one from clipping
    assert.ok(loud.truePeakDb <= TRUE_PEAK_MAX_DBTP, `un-normalised loud piece: true peak ${loud.truePeakDb} dBTP`);
    assert.ok(rendered.quiet.wav!.gainDb > 10 && rendered.loud.wav!.gainDb < 4, `gains ${rendered.quiet.wav!.gainDb} and ${rendered.loud.wav!.gainDb} dB`);
  });

  for (const name of ['quiet', 'loud'] as const) {
    for (const format of AUDIO_FORMATS) {
      test(`${name} ${format}: header, decodes to the rendered length, −16 ± 1 LUFS, true peak ≤ −1 dBTP, nothing clipped`, async () => {
        const r = rendered[name]![format]!;
        assert.equal(r.path, join(dir, name, `piece.${format}`));
        const buf = readFileSync(r.path);
        assert.equal(buf.length, r.bytes);
        assertHeader(format, buf);
        const d = await decode(r.path);
        assert.equal(d.codec, CODEC[format]);
        assert.equal(d.channels, 2);
        assert.equal(d.sampleRate, format === 'opus' ? 48000 : 44100);
        assert.ok(Math.abs(d.seconds - r.seconds) < 0.06, `${format}: decodes to ${d.seconds} s, rendered ${r.seconds} s`);
        assert.ok(d.seconds >= r.midiSeconds && d.seconds <= r.midiSeconds + RELEASE_TAIL_SECONDS + 1, `${d.seconds} s of audio for ${r.midiSeconds} s of music`);
        assert.equal(d.clipped, 0, 'no sample at full scale');
        const m = await ebur128(r.path);
        console.log(`${name} ${format}: ${m.lufs} LUFS, true peak ${m.truePeakDb} dBTP (ffmpeg ebur128); own measure ${r.lufs.toFixed(2)} LUFS, ${r.truePeakDb.toFixed(2)} dBTP; gain ${r.gainDb.toFixed(1)} dB, limiter ${r.limitedDb.toFixed(1)} dB; ${r.bytes} bytes; ${r.renderMs.toFixed(0)} ms`);
        assert.ok(Math.abs(m.lufs - TARGET_LUFS) <= 1, `${name} ${format}: ${m.lufs} LUFS`);
        assert.ok(m.truePeakDb <= TRUE_PEAK_MAX_DBTP, `${name} ${format}: true peak ${m.truePeakDb} dBTP`);
        // the renderer's own meter agrees with ffmpeg's (which prints one decimal)
        assert.ok(Math.abs(r.lufs - m.lufs) <= 0.3, `own ${r.lufs} LUFS against ffmpeg's ${m.lufs}`);
      });
    }
  }

  test('a piece the model wrote (assets/examples): brought up 19 dB, its peaks limited, in WAV and MP3', async () => {
    const midi = resolve(import.meta.dirname, '../assets/examples/chopin-250-seed2026/piece.mid');
    for (const format of ['wav', 'mp3'] as const) {
      const r = await renderAudio(midi, join(dir, `example.${format}`), { format });
      const m = await ebur128(r.path);
      console.log(`example ${format}: ${m.lufs} LUFS, true peak ${m.truePeakDb} dBTP (ffmpeg); rendered at ${r.renderedLufs.toFixed(1)} LUFS, gain ${r.gainDb.toFixed(1)} dB, limiter ${r.limitedDb.toFixed(1)} dB; ${r.seconds.toFixed(1)} s in ${r.renderMs.toFixed(0)} ms`);
      assert.ok(r.gainDb > 10 && r.limitedDb < -1, `gain ${r.gainDb} dB, limiter ${r.limitedDb} dB`);
      assert.ok(Math.abs(m.lufs - TARGET_LUFS) <= 1 && m.truePeakDb <= TRUE_PEAK_MAX_DBTP, `${m.lufs} LUFS, ${m.truePeakDb} dBTP`);
      assert.equal((await decode(r.path)).clipped, 0);
    }
  });

  test('the formats agree with each other within 1 LU', () => {
    for (const name of ['quiet', 'loud'] as const) {
      const all = AUDIO_FORMATS.map((f) => rendered[name]![f]!.lufs);
      assert.ok(Math.max(...all) - Math.min(...all) <= 1, `${name}: ${all.join(', ')}`);
    }
  });

  test('mono MP3 at 22.05 kHz and 32 kbit/s: one channel, same loudness', async () => {
    const r = await renderAudio(pieces.loud, join(dir, 'mono.mp3'), { format: 'mp3', channels: 1, sampleRate: 22050, bitrateKbps: 32 });
    const d = await decode(r.path);
    assert.deepEqual([d.codec, d.channels, d.sampleRate], ['mp3', 1, 22050]);
    const m = await ebur128(r.path);
    assert.ok(Math.abs(m.lufs - TARGET_LUFS) <= 1 && m.truePeakDb <= TRUE_PEAK_MAX_DBTP, `${m.lufs} LUFS, ${m.truePeakDb} dBTP`);
    assert.equal(r.bitrateKbps, 32);
  });
});

describe('sizes and upload limits', () => {
  test('describeAudioBudget covers what MP3 and Opus come out at', () => {
    for (const name of ['quiet', 'loud'] as const) {
      for (const format of ['mp3', 'opus'] as const) {
        const r = rendered[name]![format]!;
        const estimate = describeAudioBudget(r.seconds, format, 44100, 2);
        assert.ok(estimate >= r.bytes, `${name} ${format}: estimate ${estimate} under the ${r.bytes} bytes written`);
        if (format === 'mp3') assert.ok(estimate <= r.bytes * 1.1 + 8192, `mp3 estimate ${estimate} far over ${r.bytes}`);
      }
    }
    assert.equal(describeAudioBudget(60, 'mp3', 44100, 2), 4096 + Math.round(60 * 192 * 125 * 1.01));
  });

  test('renderAudio refuses an MP3 estimated over maxBytes without rendering', async () => {
    const out = join(dir, 'refused.mp3');
    await assert.rejects(renderAudio(pieces.loud, out, { format: 'mp3', maxBytes: 50_000 }), (e: Error) => e instanceof AudioTooLargeError && /over the 0\.1 MB limit: not rendered/.test(e.message));
    assert.equal(existsSync(out), false);
  });

  test('renderAudioWithin steps an MP3 down its ladder until it fits, or leaves nothing', async () => {
    const full = rendered.loud.mp3!;
    const limit = full.bytes - 1;
    const out = join(dir, 'fit.mp3');
    const r = (await renderAudioWithin(pieces.loud, out, 'mp3', limit))!;
    assert.ok(r.bytes <= limit, `${r.bytes} bytes over ${limit}`);
    assert.ok(r.bitrateKbps! < 192);
    const m = await ebur128(out);
    assert.ok(Math.abs(m.lufs - TARGET_LUFS) <= 1 && m.truePeakDb <= TRUE_PEAK_MAX_DBTP, `fitted: ${m.lufs} LUFS, ${m.truePeakDb} dBTP`);
    // the last rung (32 kbit/s mono 22.05 kHz) is 4 KB a second, the one before 6 KB: estimated for the
    // music plus the longest release tail (11 s here), 49 and 71 KB
    const lowest = FIT_LADDER.mp3.at(-1)!;
    const tiny = await renderAudioWithin(pieces.loud, out, 'mp3', 60_000);
    assert.ok(tiny && tiny.bytes <= 60_000 && tiny.bitrateKbps === lowest.bitrateKbps && tiny.channels === 1 && tiny.sampleRate === 22050, JSON.stringify(tiny));
    assert.equal(await renderAudioWithin(pieces.loud, out, 'mp3', 1000), undefined);
    assert.equal(existsSync(out), false);
  });

  for (const format of ['mp3', 'opus', 'ogg'] as const) {
    test(`fitAudio: a ${format} over the upload limit is sent at a lower bitrate, and none at all when nothing fits`, async () => {
      const sub = join(dir, `fit-${format}`);
      mkdirSync(sub);
      const path = join(sub, `piece.${format}`);
      const first = await renderAudio(pieces.loud, path, { format });
      const fitted = await fitAudio(pieces.loud, path, first.bytes - 1);
      assert.equal(fitted.audioPath, path);
      assert.ok(statSync(path).size < first.bytes);
      assert.match(fitted.note!, new RegExp(`audio is ${format.toUpperCase()} at \\d+ kbit/s( mono)?: at its usual bitrate it would be [\\d.]+ MB, over the [\\d.]+ MB upload limit`));
      const none = await fitAudio(pieces.loud, path, 1000);
      assert.equal(none.audioPath, undefined);
      assert.match(none.note!, new RegExp(`no audio: .*even as ${format.toUpperCase()} at its lowest bitrate.*play the MIDI file instead`));
      assert.equal(existsSync(path), false);
    });
  }
});

describe('the encoder is checked like fluidsynth', () => {
  const leftovers = (d: string) => readdirSync(d).filter((f) => f.endsWith('.tmp'));

  test('no ffmpeg: one line with the fix, nothing left behind', async () => {
    const out = join(dir, 'none.mp3');
    await assert.rejects(renderAudio(pieces.quiet, out, { format: 'mp3', ffmpeg: join(dir, 'no-ffmpeg-here') }), /ffmpeg not found: install it with `apt-get install ffmpeg`/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(dir), []);
  });

  test('an encoder that exits 0 after writing junk, or nothing, is caught', async () => {
    const junk = join(dir, 'junk-ffmpeg.sh');
    // reads its input, writes 4 KB of zeros to the output (the argument after -y) and exits 0
    writeFileSync(junk, '#!/bin/sh\nwhile [ "$1" != "-y" ]; do shift; done\ncat > /dev/null\nhead -c 4096 /dev/zero > "$2"\nexit 0\n');
    chmodSync(junk, 0o755);
    const out = join(dir, 'junk.mp3');
    await assert.rejects(renderAudio(pieces.quiet, out, { format: 'mp3', ffmpeg: junk }), /the encoder \(ffmpeg\) wrote an invalid MP3 \(4096 bytes\): no MPEG layer III frame/);
    await assert.rejects(renderAudio(pieces.quiet, join(dir, 'junk.opus'), { format: 'opus', ffmpeg: junk }), /invalid OPUS \(4096 bytes\): no OggS magic/);
    const silent = join(dir, 'silent-ffmpeg.sh');
    writeFileSync(silent, '#!/bin/sh\ncat > /dev/null\nexit 0\n');
    chmodSync(silent, 0o755);
    await assert.rejects(renderAudio(pieces.quiet, out, { format: 'ogg', ffmpeg: silent }), /the encoder \(ffmpeg\) wrote no output file/);
    const failing = join(dir, 'failing-ffmpeg.sh');
    writeFileSync(failing, '#!/bin/sh\necho "Unknown encoder \'libmp3lame\'" >&2\nexit 1\n');
    chmodSync(failing, 0o755);
    await assert.rejects(renderAudio(pieces.quiet, out, { format: 'mp3', ffmpeg: failing }), /the encoder \(ffmpeg\) failed: Unknown encoder 'libmp3lame'/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(dir), []);
  });

  test('bad options are refused before anything runs', async () => {
    await assert.rejects(renderAudio(pieces.quiet, join(dir, 'x.mp3'), { format: 'mp3', sampleRate: 44000 }), /an MP3's sample rate is one of/);
    await assert.rejects(renderAudio(pieces.quiet, join(dir, 'x.mp3'), { format: 'mp3', bitrateKbps: 1000 }), /bitrateKbps must be/);
    await assert.rejects(renderAudio(pieces.quiet, join(dir, 'x.aiff'), { format: 'aiff' as RenderFormat }), /unsupported audio format: aiff \(use 'wav', 'ogg', 'mp3', 'opus'\)/);
  });
});

test('the engine writes piece.mp3 on request', async () => {
  await createTinyModel(join(dir, 'model'), ['Chopin', 'Mozart']);
  const engine = await Engine.open(join(dir, 'model'), 'wasm');
  try {
    for (const format of ['mp3'] as const) {
      const r = await engine.compose({ composer: 'chopin', notes: 24, randomSeed: 2, outDir: join(dir, `engine-${format}`), audio: { format } });
      assert.equal(r.audioPath, join(dir, `engine-${format}`, `piece.${format}`));
      assert.equal(r.params.format, format);
      const d = await decode(r.audioPath);
      assert.equal(d.codec, format);
      assert.ok(d.seconds >= r.musicSeconds);
    }
  } finally {
    engine.dispose();
  }
});
