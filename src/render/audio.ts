/**
 * MIDI -> audio with the fluidsynth command-line synthesizer.
 *
 * fluidsynth exits 0 on several failures (unwritable output, truncated MIDI), so everything it
 * writes is checked before it reaches the caller: the MIDI is validated structurally first, the
 * output is rendered to a temporary name in the destination folder, its header and length are
 * verified, and only then is it renamed onto `outPath`. A failure never leaves a file at `outPath`.
 *
 * fluidsynth only writes stereo, so mono WAV is rendered as raw s16le stereo and downmixed here.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import tonejs from '@tonejs/midi';

export type RenderFormat = 'wav' | 'ogg';

export interface RenderAudioOptions {
  format: RenderFormat;
  /** Output sample rate in Hz: 44100 (default) or 22050 (anything 8000..96000 is passed through). */
  sampleRate?: number;
  /** 2 (default) or 1. Mono is WAV only (fluidsynth writes stereo; we downmix). */
  channels?: 1 | 2;
  /** fluidsynth master gain 0..10 (default 1.0; fluidsynth's own default of 0.2 is very quiet). */
  gain?: number;
  /** A .sf2/.sf3 file; else env NOCTURNE_SOUNDFONT, else the standard Debian/Ubuntu/Fedora/Homebrew paths. */
  soundFont?: string;
  /** Kill fluidsynth and reject after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** The fluidsynth executable; else env NOCTURNE_FLUIDSYNTH, else `fluidsynth` on PATH. */
  fluidsynth?: string;
  /** Accept (near-)silent output instead of rejecting it (WAV only; OGG cannot be checked). */
  allowSilence?: boolean;
  /**
   * Largest output accepted, in bytes. Checked twice: the estimate from the MIDI's length before
   * fluidsynth runs (refused without rendering), and the growing file while it runs (killed).
   */
  maxBytes?: number;
}

export interface RenderAudioResult {
  path: string;
  bytes: number;
  /** Seconds of audio in the file (the MIDI's length plus fluidsynth's release tail). */
  seconds: number;
  format: RenderFormat;
  sampleRate: number;
  channels: 1 | 2;
  /** WAV only: peak |sample| in 0..1. */
  peak?: number;
  /** WAV only: RMS over all samples in 0..1 (silence is 0; a piano piece is typically 0.02..0.2). */
  rms?: number;
  /** Length of the MIDI's music in seconds (end of the last note), from its tempo map. */
  midiSeconds: number;
  /** Wall-clock milliseconds spent rendering (fluidsynth plus checks). */
  renderMs: number;
}

export const FLUIDSYNTH_FIX = 'install it with `apt-get install fluidsynth fluid-soundfont-gm`';

const STANDARD_SOUNDFONTS = [
  '/usr/share/sounds/sf2/FluidR3_GM.sf2',
  '/usr/share/sounds/sf2/default-GM.sf2',
  '/usr/share/sounds/sf3/default-GM.sf3',
  '/usr/share/sounds/sf3/FluidR3_GM.sf3',
  '/usr/share/sounds/sf2/TimGM6mb.sf2',
  '/usr/share/soundfonts/default.sf2',
  '/usr/share/soundfonts/FluidR3_GM.sf2',
  '/usr/share/soundfonts/FluidR3_GM.sf3',
  '/usr/local/share/soundfonts/default.sf2',
  '/opt/homebrew/share/soundfonts/default.sf2',
];

/** fluidsynth renders until the last note has died away: this much after the music, at most. */
export const RELEASE_TAIL_SECONDS = 5;

/** The error renderAudio gives when the output would be (or grows) over `maxBytes`. */
export class AudioTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AudioTooLargeError';
  }
}

/** Peak below this (about 2 LSB of 16-bit) counts as silence. */
const SILENCE_PEAK = 2 / 32768;

/** The soundfont renderAudio would use, or an Error explaining how to get one. */
export function findSoundFont(explicit?: string): string {
  if (explicit !== undefined && explicit !== '') {
    if (!isFile(explicit)) throw new Error(`soundfont not found: ${explicit} (pass an existing .sf2/.sf3 file)`);
    return explicit;
  }
  const env = process.env.NOCTURNE_SOUNDFONT;
  if (env !== undefined && env !== '') {
    if (!isFile(env)) throw new Error(`soundfont not found: NOCTURNE_SOUNDFONT=${env} is not a file`);
    return env;
  }
  for (const p of STANDARD_SOUNDFONTS) if (isFile(p)) return p;
  throw new Error(`soundfont not found: ${FLUIDSYNTH_FIX} (or set NOCTURNE_SOUNDFONT to a .sf2 file)`);
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Estimated output size in bytes, for choosing a format under an upload limit.
 * WAV is exact up to fluidsynth's release tail (pass the rendered seconds for an exact figure);
 * OGG is a rough 1 MB per minute (fluidsynth's Vorbis is usually 0.5..1 MB/min for solo piano).
 */
export function describeAudioBudget(seconds: number, format: RenderFormat, sampleRate = 44100, channels: 1 | 2 = 2): number {
  const s = Math.max(0, seconds);
  if (format === 'ogg') return Math.round(8192 + (s / 60) * 1_000_000);
  return 44 + Math.ceil(s * sampleRate) * channels * 2;
}

export async function renderAudio(midiPath: string, outPath: string, opts: RenderAudioOptions): Promise<RenderAudioResult> {
  const t0 = performance.now();
  const format = opts.format;
  if (format !== 'wav' && format !== 'ogg') throw new Error(`unsupported audio format: ${String(format)} (use 'wav' or 'ogg')`);
  const sampleRate = opts.sampleRate ?? 44100;
  if (!Number.isInteger(sampleRate) || sampleRate < 8000 || sampleRate > 96000) {
    throw new Error(`sampleRate must be an integer 8000..96000 (44100 or 22050), got ${sampleRate}`);
  }
  const channels = opts.channels ?? 2;
  if (channels !== 1 && channels !== 2) throw new Error(`channels must be 1 or 2, got ${String(channels)}`);
  if (channels === 1 && format === 'ogg') throw new Error('mono output is WAV only: fluidsynth writes stereo Ogg Vorbis (already compact)');
  const gain = opts.gain ?? 1.0;
  if (!Number.isFinite(gain) || gain < 0 || gain > 10) throw new Error(`gain must be 0..10, got ${gain}`);
  const timeoutMs = opts.timeoutMs ?? 60_000;

  const midiSeconds = await checkMidi(midiPath);
  const maxBytes = opts.maxBytes;
  if (maxBytes !== undefined) {
    const estimate = describeAudioBudget(midiSeconds + RELEASE_TAIL_SECONDS, format, sampleRate, channels);
    if (estimate > maxBytes) {
      throw new AudioTooLargeError(`the audio would be about ${megabytes(estimate)} (${Math.round(midiSeconds)} s of music), over the ${megabytes(maxBytes)} limit: not rendered`);
    }
  }
  const soundFont = findSoundFont(opts.soundFont);
  const exe = opts.fluidsynth ?? (process.env.NOCTURNE_FLUIDSYNTH || 'fluidsynth');

  const outDir = dirname(outPath);
  let dirOk = false;
  try {
    dirOk = (await stat(outDir)).isDirectory();
  } catch {
    dirOk = false;
  }
  if (!dirOk) throw new Error(`cannot write ${outPath}: ${outDir} is not a directory`);

  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmpOut = join(outDir, `.${basename(outPath)}.${tag}.tmp`);
  const tmpRaw = join(outDir, `.${basename(outPath)}.${tag}.raw`);
  const mono = channels === 1;
  const synthTarget = mono ? tmpRaw : tmpOut;
  const fileType = mono ? 'raw' : format === 'wav' ? 'wav' : 'oga';

  const args = ['-ni', '-q', '-F', synthTarget, '-T', fileType, '-r', String(sampleRate), '-g', String(gain)];
  if (fileType !== 'oga') args.push('-O', 's16', '-E', 'little');
  args.push(soundFont, midiPath);

  try {
    // Raw mono input is stereo until downmixed: twice the bytes. A margin covers the estimate's roughness (OGG).
    const watch = maxBytes === undefined ? undefined : { path: synthTarget, maxBytes: Math.ceil(maxBytes * (mono ? 2 : 1) * 1.25) + 1_000_000 };
    await runFluidsynth(exe, args, timeoutMs, watch);
    let stats: WavStats | undefined;
    let seconds: number;
    if (mono) {
      stats = await downmixRawToMonoWav(tmpRaw, tmpOut, sampleRate);
      seconds = stats.seconds;
    } else if (format === 'wav') {
      stats = await checkWav(tmpOut, 2, sampleRate);
      seconds = stats.seconds;
    } else {
      seconds = await checkOgg(tmpOut);
    }
    // fluidsynth renders until the last note's release has died away, so anything shorter than
    // the music means it stopped early (e.g. a file it only partly understood).
    if (seconds + 0.05 < midiSeconds) {
      throw new Error(`fluidsynth stopped early: ${seconds.toFixed(2)} s of audio for ${midiSeconds.toFixed(2)} s of music`);
    }
    if (stats && !opts.allowSilence && stats.peak < SILENCE_PEAK) {
      throw new Error(`rendered audio is silent (peak ${stats.peak.toExponential(2)}): does ${soundFont} have a piano preset?`);
    }
    await rename(tmpOut, outPath);
    const bytes = (await stat(outPath)).size;
    const result: RenderAudioResult = {
      path: outPath,
      bytes,
      seconds,
      format,
      sampleRate,
      channels,
      midiSeconds,
      renderMs: performance.now() - t0,
    };
    if (stats) {
      result.peak = stats.peak;
      result.rms = stats.rms;
    }
    return result;
  } finally {
    await unlink(tmpRaw).catch(() => undefined);
    await unlink(tmpOut).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// fluidsynth process

function megabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 1 : 0)} MB`;
}

/** Runs fluidsynth; with `watch`, kills it if its output file grows past `watch.maxBytes`. */
function runFluidsynth(exe: string, args: string[], timeoutMs: number, watch?: { path: string; maxBytes: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    let settled = false;
    const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const watcher = watch
      ? setInterval(() => {
          stat(watch.path).then(
            (st) => {
              if (st.size <= watch.maxBytes) return;
              child.kill('SIGKILL');
              done(new AudioTooLargeError(`fluidsynth's output passed ${megabytes(watch.maxBytes)}, over the limit, and it was stopped`));
            },
            () => undefined,
          );
        }, 200)
      : undefined;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(watcher);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done(new Error(`fluidsynth timed out after ${timeoutMs} ms and was killed`));
    }, timeoutMs);
    child.stdout.on('data', () => undefined); // drain; -q keeps it nearly empty
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 16_384) stderr += d.toString('utf8');
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') done(new Error(`fluidsynth not found: ${FLUIDSYNTH_FIX}`));
      else done(new Error(`could not run fluidsynth (${exe}): ${e.message}`));
    });
    child.on('close', (code, signal) => {
      const errors = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /error/i.test(l) && !/priority|sched|realtime|real-time/i.test(l));
      if (code !== 0) {
        const why = errors[0] ?? (signal ? `killed by ${signal}` : `exit code ${code}`);
        done(new Error(`fluidsynth failed: ${why}`));
      } else if (errors.length > 0) {
        // fluidsynth reports e.g. unwritable output or a truncated MIDI on stderr but still exits 0
        done(new Error(`fluidsynth failed: ${errors[0]}`));
      } else {
        done();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// MIDI check

/**
 * Structural check of a Standard MIDI File (header, every chunk's length within the file, as many
 * MTrk chunks as the header says), then its musical length from the tempo map. fluidsynth renders
 * a truncated file without complaint, so this is where truncation is caught.
 */
async function checkMidi(midiPath: string): Promise<number> {
  let buf: Buffer;
  try {
    buf = await readFile(midiPath);
  } catch (e) {
    throw new Error(`cannot read MIDI file ${midiPath}: ${(e as Error).message}`);
  }
  const bad = (why: string) => new Error(`invalid MIDI file ${midiPath}: ${why}`);
  if (buf.length < 14 || buf.toString('latin1', 0, 4) !== 'MThd') throw bad('no MThd header');
  const hdrLen = buf.readUInt32BE(4);
  if (hdrLen < 6 || 8 + hdrLen > buf.length) throw bad('bad header length');
  const ntrks = buf.readUInt16BE(10);
  if (ntrks === 0) throw bad('no tracks');
  let off = 8 + hdrLen;
  let tracks = 0;
  while (off + 8 <= buf.length && tracks < ntrks) {
    const id = buf.toString('latin1', off, off + 4);
    const len = buf.readUInt32BE(off + 4);
    if (off + 8 + len > buf.length) throw bad(`truncated: chunk ${JSON.stringify(id)} needs ${len} bytes, file ends after ${buf.length - off - 8}`);
    if (id === 'MTrk') tracks++;
    off += 8 + len;
  }
  if (tracks < ntrks) throw bad(`truncated: header promises ${ntrks} tracks, found ${tracks}`);
  let seconds: number;
  try {
    seconds = new tonejs.Midi(buf).duration;
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (!Number.isFinite(seconds) || seconds <= 0) throw bad('no notes');
  return seconds;
}

// ---------------------------------------------------------------------------------------------
// WAV / OGG checks

interface WavStats {
  seconds: number;
  peak: number;
  rms: number;
}

const CHUNK = 1 << 20;

/** Walks s16le interleaved samples of a file region in chunks, for peak and RMS. */
class SampleStats {
  private peakAbs = 0;
  private sumSq = 0;
  private n = 0;
  add(samples: Int16Array): void {
    let peak = this.peakAbs;
    let sum = 0;
    for (let i = 0; i < samples.length; i++) {
      const v = samples[i]!;
      const a = v < 0 ? -v : v;
      if (a > peak) peak = a;
      sum += v * v;
    }
    this.peakAbs = peak;
    this.sumSq += sum;
    this.n += samples.length;
  }
  result(): { peak: number; rms: number } {
    return { peak: this.peakAbs / 32768, rms: this.n === 0 ? 0 : Math.sqrt(this.sumSq / this.n) / 32768 };
  }
}

/** Parses a RIFF/WAVE file's header: PCM 16-bit, the expected channels and rate, a data chunk that fits the file. */
export async function readWavHeader(path: string): Promise<{ channels: number; sampleRate: number; bitsPerSample: number; dataOffset: number; dataBytes: number; fileBytes: number; seconds: number }> {
  const fh = await open(path, 'r');
  try {
    const fileBytes = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(fileBytes, 4096));
    await fh.read(head, 0, head.length, 0);
    const bad = (why: string) => new Error(`fluidsynth wrote an invalid WAV (${fileBytes} bytes): ${why}`);
    if (head.length < 44 || head.toString('latin1', 0, 4) !== 'RIFF' || head.toString('latin1', 8, 12) !== 'WAVE') throw bad('no RIFF/WAVE header');
    const riffSize = head.readUInt32LE(4);
    if (riffSize + 8 > fileBytes + 1 || riffSize + 8 < fileBytes - 1) throw bad(`RIFF size ${riffSize} does not match the file`);
    let off = 12;
    let fmt: { channels: number; sampleRate: number; bitsPerSample: number; formatTag: number } | undefined;
    while (off + 8 <= head.length) {
      const id = head.toString('latin1', off, off + 4);
      const len = head.readUInt32LE(off + 4);
      if (id === 'fmt ') {
        if (off + 8 + 16 > head.length) throw bad('short fmt chunk');
        fmt = {
          formatTag: head.readUInt16LE(off + 8),
          channels: head.readUInt16LE(off + 10),
          sampleRate: head.readUInt32LE(off + 12),
          bitsPerSample: head.readUInt16LE(off + 22),
        };
      } else if (id === 'data') {
        if (!fmt) throw bad('data before fmt');
        if (fmt.formatTag !== 1 && fmt.formatTag !== 0xfffe) throw bad(`not PCM (format ${fmt.formatTag})`);
        if (fmt.bitsPerSample !== 16) throw bad(`${fmt.bitsPerSample}-bit, expected 16`);
        const dataOffset = off + 8;
        const frame = fmt.channels * 2;
        if (len === 0) throw bad('empty data chunk');
        if (dataOffset + len > fileBytes) throw bad(`data chunk says ${len} bytes, file has ${fileBytes - dataOffset}`);
        if (len % frame !== 0) throw bad(`data size ${len} is not whole frames`);
        return { channels: fmt.channels, sampleRate: fmt.sampleRate, bitsPerSample: 16, dataOffset, dataBytes: len, fileBytes, seconds: len / frame / fmt.sampleRate };
      }
      off += 8 + len + (len & 1);
    }
    throw bad('no data chunk');
  } finally {
    await fh.close();
  }
}

async function checkWav(path: string, channels: number, sampleRate: number): Promise<WavStats> {
  if (!existsSync(path)) throw new Error('fluidsynth wrote no output file');
  const h = await readWavHeader(path);
  if (h.channels !== channels || h.sampleRate !== sampleRate) {
    throw new Error(`fluidsynth wrote ${h.channels} ch ${h.sampleRate} Hz, expected ${channels} ch ${sampleRate} Hz`);
  }
  const stats = new SampleStats();
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    let pos = h.dataOffset;
    const end = h.dataOffset + h.dataBytes;
    while (pos < end) {
      const want = Math.min(CHUNK, end - pos);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead <= 0) break;
      const even = bytesRead & ~1;
      stats.add(new Int16Array(buf.buffer, buf.byteOffset, even / 2));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { seconds: h.seconds, ...stats.result() };
}

/** Writes a canonical 44-byte PCM 16-bit WAV header. */
export function wavHeader(dataBytes: number, sampleRate: number, channels: number): Buffer {
  const b = Buffer.alloc(44);
  b.write('RIFF', 0, 'latin1');
  b.writeUInt32LE(36 + dataBytes, 4);
  b.write('WAVE', 8, 'latin1');
  b.write('fmt ', 12, 'latin1');
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(channels, 22);
  b.writeUInt32LE(sampleRate, 24);
  b.writeUInt32LE(sampleRate * channels * 2, 28); // byte rate
  b.writeUInt16LE(channels * 2, 32); // block align
  b.writeUInt16LE(16, 34);
  b.write('data', 36, 'latin1');
  b.writeUInt32LE(dataBytes, 40);
  return b;
}

/** Raw s16le stereo -> mono 16-bit WAV ((L+R)/2), computing stats on the way. */
async function downmixRawToMonoWav(rawPath: string, wavPath: string, sampleRate: number): Promise<WavStats> {
  if (!existsSync(rawPath)) throw new Error('fluidsynth wrote no output file');
  const inFh = await open(rawPath, 'r');
  const outFh = await open(wavPath, 'w');
  const stats = new SampleStats();
  try {
    const rawBytes = (await inFh.stat()).size;
    const frames = Math.floor(rawBytes / 4);
    if (frames === 0) throw new Error('fluidsynth wrote no audio');
    const dataBytes = frames * 2;
    await outFh.write(wavHeader(dataBytes, sampleRate, 1), 0, 44, 0);
    const inBuf = Buffer.alloc(CHUNK); // multiple of 4
    const outBuf = Buffer.alloc(CHUNK / 2);
    let inPos = 0;
    let outPos = 44;
    const end = frames * 4;
    while (inPos < end) {
      const want = Math.min(CHUNK, end - inPos);
      const { bytesRead } = await inFh.read(inBuf, 0, want, inPos);
      if (bytesRead <= 0) throw new Error('raw audio ended early');
      const n = Math.floor(bytesRead / 4);
      const src = new Int16Array(inBuf.buffer, inBuf.byteOffset, n * 2);
      const dst = new Int16Array(outBuf.buffer, outBuf.byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = (src[2 * i]! + src[2 * i + 1]!) >> 1;
      stats.add(dst);
      await outFh.write(outBuf, 0, n * 2, outPos);
      outPos += n * 2;
      inPos += n * 4;
    }
  } finally {
    await outFh.close();
    await inFh.close();
  }
  const h = await readWavHeader(wavPath); // re-read what we wrote: cheap, and catches a short write
  return { seconds: h.seconds, ...stats.result() };
}

/** Checks an Ogg Vorbis file's magic and size; returns its duration from the last page's granule position. */
async function checkOgg(path: string): Promise<number> {
  if (!existsSync(path)) throw new Error('fluidsynth wrote no output file');
  const buf = await readFile(path);
  const bad = (why: string) => new Error(`fluidsynth wrote an invalid OGG (${buf.length} bytes): ${why}`);
  if (buf.length < 4 || buf.toString('latin1', 0, 4) !== 'OggS') throw bad('no OggS magic');
  if (buf.length < 4096) throw bad('too small to hold any audio');
  // Vorbis identification header: first packet, "\x01vorbis", version u32, channels u8, rate u32
  const id = buf.indexOf('\x01vorbis', 0, 'latin1');
  if (id < 0 || id + 16 > buf.length) throw bad('no Vorbis identification header');
  const rate = buf.readUInt32LE(id + 12);
  if (rate <= 0) throw bad('sample rate 0');
  const last = buf.lastIndexOf('OggS', buf.length - 4, 'latin1');
  if (last < 0 || last + 14 > buf.length) throw bad('no final page');
  const granule = Number(buf.readBigInt64LE(last + 6));
  if (!(granule > 0)) throw bad('no audio samples');
  return granule / rate;
}
