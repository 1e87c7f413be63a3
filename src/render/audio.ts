/**
 * MIDI -> audio: fluidsynth renders 32-bit float samples, they are normalised to one loudness
 * (src/render/loudness.ts: TARGET_LUFS integrated, true peak at most TRUE_PEAK_MAX_DBTP), then
 * written as 16-bit WAV here or encoded by ffmpeg (OGG Vorbis, MP3, Opus).
 *
 * fluidsynth exits 0 on several failures (unwritable output, truncated MIDI), so everything it
 * writes is checked before it reaches the caller: the MIDI is validated structurally first, the
 * output is rendered to a temporary name in the destination folder, its header and length are
 * verified, and only then is it renamed onto `outPath`. A failure never leaves a file at `outPath`.
 * The encoder's output is checked the same way: its header, then decoded back by ffmpeg, whose
 * length must match what went in and whose true peak must be within the limit.
 *
 * Encoding is the slow step (a 17-minute piece takes 8..16 s of one core in ffmpeg), so the lossy
 * formats are encoded once: the gain is settled first on the limited float samples (the limiter
 * and the loudness meter, no encoder), and the limiter's ceiling leaves room for the codec's
 * overshoot (lossyCeilingDb), so the decoded check rarely asks for a second encoding. A piece
 * already rendered as WAV can be encoded from that WAV (`source`) without running fluidsynth again.
 *
 * fluidsynth only writes stereo, so mono is downmixed here ((L+R)/2) before the loudness is measured.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import tonejs from '@tonejs/midi';
import { LIMITER_CEILING_DBTP, LoudnessMeter, MAX_GAIN_DB, TARGET_LUFS, lossyCeilingDb, TRUE_PEAK_MAX_DBTP, TruePeakLimiter, TruePeakMeter, gainToDb } from './loudness.ts';

export type RenderFormat = 'wav' | 'ogg' | 'mp3' | 'opus';
/** Every format renderAudio writes; the file extension is the format's name. */
export const RENDER_FORMATS: readonly RenderFormat[] = ['wav', 'ogg', 'mp3', 'opus'];
/** Sample rates an MP3 can have (MPEG-1, 2 and 2.5 layer III). */
const MP3_RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

export interface RenderAudioOptions {
  format: RenderFormat;
  /** Output sample rate in Hz: 44100 (default) or 22050 (anything 8000..96000 is passed through; MP3 takes the MPEG rates only; Opus is always 48 kHz in the file). */
  sampleRate?: number;
  /** 2 (default) or 1 (downmixed here). */
  channels?: 1 | 2;
  /** MP3 and Opus (and OGG, which otherwise uses Vorbis quality 4): kbit/s; default defaultBitrateKbps(). */
  bitrateKbps?: number;
  /** Loudness-normalise to TARGET_LUFS (default true). Off, the render keeps its level; the true-peak limiter applies either way. */
  normalize?: boolean;
  /** fluidsynth master gain 0..10 (default 1.0; fluidsynth's own default of 0.2 is very quiet). Normalisation undoes it. */
  gain?: number;
  /** A .sf2/.sf3 file; else env NOCTURNE_SOUNDFONT, else the standard Debian/Ubuntu/Fedora/Homebrew paths. */
  soundFont?: string;
  /** Kill fluidsynth (and, separately, the encoder and its decoding check, which get at least 0.1 s per second of audio) and reject after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** The fluidsynth executable; else env NOCTURNE_FLUIDSYNTH, else `fluidsynth` on PATH. */
  fluidsynth?: string;
  /** The ffmpeg executable (OGG, MP3, Opus); else env NOCTURNE_FFMPEG, else `ffmpeg` on PATH. */
  ffmpeg?: string;
  /** Accept (near-)silent output instead of rejecting it. */
  allowSilence?: boolean;
  /**
   * Largest output accepted, in bytes. Checked twice: the estimate from the MIDI's length before
   * fluidsynth runs (refused without rendering), and the growing file while it runs (killed).
   */
  maxBytes?: number;
  /**
   * A 16-bit WAV that renderAudio wrote for this same MIDI (already normalised): when its sample
   * rate is the one asked for and it has at least the channels asked for, its samples are
   * normalised and written instead of running fluidsynth again. Otherwise the MIDI is rendered.
   */
  source?: string;
}

export interface RenderAudioResult {
  path: string;
  bytes: number;
  /** Seconds of audio in the file (the MIDI's length plus fluidsynth's release tail). */
  seconds: number;
  format: RenderFormat;
  /** The file's sample rate (Opus: 48000 whatever was rendered). */
  sampleRate: number;
  channels: 1 | 2;
  /** MP3, Opus, and OGG given a bitrate: the encoder's bitrate, kbit/s. */
  bitrateKbps?: number;
  /** Peak |sample| in 0..1, of what is in the file (lossy formats: decoded). */
  peak?: number;
  /** RMS over all samples in 0..1 (silence is 0; a normalised piano piece is typically 0.05..0.15). */
  rms?: number;
  /** Integrated loudness of what is in the file (lossy formats: decoded by ffmpeg), LUFS. */
  lufs: number;
  /** True peak (4x oversampled) of what is in the file, dBTP. */
  truePeakDb: number;
  /** Loudness of fluidsynth's render before normalisation, LUFS (−Infinity for silence). */
  renderedLufs: number;
  /** The gain normalisation applied, dB. */
  gainDb: number;
  /** The limiter's deepest gain reduction, dB (0 or negative). */
  limitedDb: number;
  /** Length of the MIDI's music in seconds (end of the last note), from its tempo map. */
  midiSeconds: number;
  /** Wall-clock milliseconds spent rendering (fluidsynth, normalising, encoding and checks). */
  renderMs: number;
}

export const FLUIDSYNTH_FIX = 'install it with `apt-get install fluidsynth fluid-soundfont-gm`';
export const FFMPEG_FIX = 'install it with `apt-get install ffmpeg` (OGG, MP3 and Opus are encoded by ffmpeg; WAV needs only fluidsynth)';

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

/** The bitrate a lossy format is encoded at unless asked otherwise, kbit/s (WAV, and OGG at Vorbis quality 4: undefined). */
export function defaultBitrateKbps(format: RenderFormat, channels: 1 | 2 = 2): number | undefined {
  if (format === 'mp3') return channels === 1 ? 96 : 192;
  if (format === 'opus') return channels === 1 ? 64 : 128;
  return undefined;
}

/**
 * Estimated output size in bytes, for choosing a format under an upload limit.
 * WAV is exact up to fluidsynth's release tail (pass the rendered seconds for an exact figure);
 * MP3 (constant bitrate) is within a frame or two; Opus (variable bitrate) and OGG at a bitrate
 * are given 10 % over theirs; OGG at its default quality is a rough 1 MB per minute (usually
 * 0.5..1 MB/min for solo piano).
 */
export function describeAudioBudget(seconds: number, format: RenderFormat, sampleRate = 44100, channels: 1 | 2 = 2, bitrateKbps?: number): number {
  const s = Math.max(0, seconds);
  const kbps = bitrateKbps ?? defaultBitrateKbps(format, channels);
  if (format === 'mp3') return Math.round(4096 + s * kbps! * 125 * 1.01);
  if (format === 'opus' || (format === 'ogg' && kbps !== undefined)) return Math.round(8192 + s * kbps! * 125 * 1.1);
  if (format === 'ogg') return Math.round(8192 + (s / 60) * 1_000_000);
  return 44 + Math.ceil(s * sampleRate) * channels * 2;
}

/** Seconds of audio whose estimate (describeAudioBudget) is `bytes`. */
function secondsWithin(bytes: number, format: RenderFormat, sampleRate: number, channels: 1 | 2, bitrateKbps?: number): number {
  const perHour = describeAudioBudget(3600, format, sampleRate, channels, bitrateKbps) - describeAudioBudget(0, format, sampleRate, channels, bitrateKbps);
  return (bytes / perHour) * 3600;
}

/** The MIDI's musical length in seconds, after the same structural check renderAudio makes. */
export async function midiSeconds(midiPath: string): Promise<number> {
  return checkMidi(midiPath);
}

/** The encodings tried, best first, when a lossy file has to fit under a size (renderAudioWithin). */
export const FIT_LADDER: Record<Exclude<RenderFormat, 'wav'>, { bitrateKbps?: number; channels: 1 | 2; sampleRate: number }[]> = {
  mp3: [
    { bitrateKbps: 192, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 128, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 96, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 64, channels: 1, sampleRate: 44100 },
    { bitrateKbps: 48, channels: 1, sampleRate: 22050 },
    { bitrateKbps: 32, channels: 1, sampleRate: 22050 },
  ],
  opus: [
    { bitrateKbps: 128, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 96, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 64, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 48, channels: 1, sampleRate: 44100 },
    { bitrateKbps: 32, channels: 1, sampleRate: 44100 },
    { bitrateKbps: 24, channels: 1, sampleRate: 44100 },
  ],
  ogg: [
    { channels: 2, sampleRate: 44100 },
    { bitrateKbps: 96, channels: 2, sampleRate: 44100 },
    { bitrateKbps: 64, channels: 1, sampleRate: 44100 },
    { bitrateKbps: 40, channels: 1, sampleRate: 22050 },
  ],
};

/**
 * Renders `format` (OGG, MP3 or Opus) at the best rung of FIT_LADDER whose file is at most
 * `limitBytes`: rungs whose estimate is over are skipped without rendering, a rung whose file
 * comes out over is replaced by the next. Undefined when none fits (nothing is left at outPath).
 */
export async function renderAudioWithin(
  midiPath: string,
  outPath: string,
  format: Exclude<RenderFormat, 'wav'>,
  limitBytes: number,
  opts: Omit<RenderAudioOptions, 'format' | 'sampleRate' | 'channels' | 'bitrateKbps' | 'maxBytes'> = {},
  /** The first rung to try: 1 when the file at the format's defaults (rung 0) is known to be over. */
  firstRung = 0,
): Promise<RenderAudioResult | undefined> {
  const seconds = (await checkMidi(midiPath)) + RELEASE_TAIL_SECONDS;
  for (const rung of FIT_LADDER[format].slice(firstRung)) {
    if (describeAudioBudget(seconds, format, rung.sampleRate, rung.channels, rung.bitrateKbps) > limitBytes) continue;
    const r = await renderAudio(midiPath, outPath, { ...opts, format, ...rung });
    if (r.bytes <= limitBytes) return r;
  }
  await unlink(outPath).catch(() => undefined);
  return undefined;
}

export async function renderAudio(midiPath: string, outPath: string, opts: RenderAudioOptions): Promise<RenderAudioResult> {
  const t0 = performance.now();
  const format = opts.format;
  if (!RENDER_FORMATS.includes(format)) throw new Error(`unsupported audio format: ${String(format)} (use ${RENDER_FORMATS.map((f) => `'${f}'`).join(', ')})`);
  const sampleRate = opts.sampleRate ?? 44100;
  if (!Number.isInteger(sampleRate) || sampleRate < 8000 || sampleRate > 96000) {
    throw new Error(`sampleRate must be an integer 8000..96000 (44100 or 22050), got ${sampleRate}`);
  }
  if (format === 'mp3' && !MP3_RATES.includes(sampleRate)) throw new Error(`an MP3's sample rate is one of ${MP3_RATES.join(', ')}, got ${sampleRate}`);
  const channels = opts.channels ?? 2;
  if (channels !== 1 && channels !== 2) throw new Error(`channels must be 1 or 2, got ${String(channels)}`);
  const bitrateKbps = format === 'wav' ? undefined : (opts.bitrateKbps ?? defaultBitrateKbps(format, channels));
  if (bitrateKbps !== undefined && (!Number.isInteger(bitrateKbps) || bitrateKbps < 8 || bitrateKbps > 320)) throw new Error(`bitrateKbps must be a whole number 8..320, got ${bitrateKbps}`);
  const gain = opts.gain ?? 1.0;
  if (!Number.isFinite(gain) || gain < 0 || gain > 10) throw new Error(`gain must be 0..10, got ${gain}`);
  const timeoutMs = opts.timeoutMs ?? 60_000;

  const midiSeconds = await checkMidi(midiPath);
  const maxBytes = opts.maxBytes;
  if (maxBytes !== undefined) {
    const estimate = describeAudioBudget(midiSeconds + RELEASE_TAIL_SECONDS, format, sampleRate, channels, bitrateKbps);
    if (estimate > maxBytes) {
      throw new AudioTooLargeError(`the audio would be about ${megabytes(estimate)} (${Math.round(midiSeconds)} s of music), over the ${megabytes(maxBytes)} limit: not rendered`);
    }
  }
  const soundFont = findSoundFont(opts.soundFont);
  const exe = opts.fluidsynth ?? (process.env.NOCTURNE_FLUIDSYNTH || 'fluidsynth');
  const ffmpeg = opts.ffmpeg ?? (process.env.NOCTURNE_FFMPEG || 'ffmpeg');

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
  // fluidsynth's own output: 32-bit float stereo WAV (no clipping before the gain is set; 8 bytes a frame)
  const tmpSynth = join(outDir, `.${basename(outPath)}.${tag}.synth.tmp`);
  const args = ['-ni', '-q', '-F', tmpSynth, '-T', 'wav', '-O', 'float', '-E', 'little', '-r', String(sampleRate), '-g', String(gain), soundFont, midiPath];

  try {
    let src: SampleFile | undefined = opts.source === undefined ? undefined : await usableSource(opts.source, sampleRate, channels);
    if (src === undefined) {
      // A margin covers the estimate's roughness (lossy formats).
      const watch = maxBytes === undefined ? undefined : { path: tmpSynth, maxBytes: Math.ceil(secondsWithin(maxBytes, format, sampleRate, channels, bitrateKbps) * sampleRate * 8 * 1.25) + 1_000_000 };
      await runFluidsynth(exe, args, timeoutMs, watch);
      if (!existsSync(tmpSynth)) throw new Error('fluidsynth wrote no output file');
      const synth = await readWavHeader(tmpSynth, 'fluidsynth');
      if (synth.channels !== 2 || synth.sampleRate !== sampleRate || !synth.float) {
        throw new Error(`fluidsynth wrote ${synth.channels} ch ${synth.sampleRate} Hz ${synth.bitsPerSample}-bit ${synth.float ? 'float' : 'integer'}, expected 2 ch ${sampleRate} Hz 32-bit float`);
      }
      src = { path: tmpSynth, dataOffset: synth.dataOffset, frames: synth.dataBytes / 8, channels: 2, float: true, seconds: synth.seconds };
    }
    const seconds = src.seconds;
    // fluidsynth renders until the last note's release has died away, so anything shorter than
    // the music means it stopped early (e.g. a file it only partly understood).
    if (seconds + 0.05 < midiSeconds) {
      throw new Error(`${src.float ? 'fluidsynth stopped early' : `the source WAV ${src.path} is short`}: ${seconds.toFixed(2)} s of audio for ${midiSeconds.toFixed(2)} s of music`);
    }
    const frames = src.frames;

    // Pass 1: the render's loudness and peak.
    const inMeter = new LoudnessMeter(sampleRate, channels);
    let inPeak = 0;
    for await (const chunk of readFloatFrames(src, channels)) {
      inMeter.add(chunk);
      let p = inPeak;
      for (let i = 0; i < chunk.length; i++) {
        const v = chunk[i]!;
        const a = v < 0 ? -v : v;
        if (a > p) p = a;
      }
      inPeak = p;
    }
    if (!opts.allowSilence && inPeak < SILENCE_PEAK) {
      throw new Error(`rendered audio is silent (peak ${inPeak.toExponential(2)}): does ${soundFont} have a piano preset?`);
    }
    const renderedLufs = inMeter.integrated();
    const normalize = opts.normalize ?? true;
    let gainDb = normalize && Number.isFinite(renderedLufs) ? Math.min(MAX_GAIN_DB, TARGET_LUFS - renderedLufs) : 0;
    const lossy = format !== 'wav';
    let ceilingDb = lossy ? lossyCeilingDb(bitrateKbps) : LIMITER_CEILING_DBTP;

    // Pass 2: gain, limiter, the file; measured as written. A limiter that took the loudness
    // more than 0.5 LU off, or a codec whose overshoot passed the true-peak limit, is met by
    // doing it again with the gain or the ceiling corrected (rare: at most three times).
    // ffmpeg gets at least 0.1 s per second of audio (a 30-minute piece encodes in about 40 s on one busy core)
    const toolTimeoutMs = Math.max(timeoutMs, Math.ceil(seconds * 100));
    const job: OutputJob = { src, frames, sampleRate, channels, format, bitrateKbps, tmpOut, ffmpeg, timeoutMs: toolTimeoutMs };
    let out: OutputMeasure;
    // Lossy: the gain is settled on the limited float samples (cheap) before the encoder runs
    // (slow), so that the file is encoded once. The codec moves the loudness by < 0.1 LU; should
    // it move it more, the float samples are aimed that much the other way next time.
    let aim = TARGET_LUFS;
    let settled = NaN;
    for (let attempt = 1; ; attempt++) {
      if (lossy && normalize) ({ gainDb, lufs: settled } = await settleGain(job, gainDb, ceilingDb, aim));
      out = await writeOutput(job, gainDb, ceilingDb);
      if (Math.abs(out.seconds - seconds) > 0.1) throw new Error(`the ${format.toUpperCase()} file holds ${out.seconds.toFixed(2)} s of audio, ${seconds.toFixed(2)} s went in`);
      const off = TARGET_LUFS - out.lufs;
      const retry = attempt < 4;
      if (out.truePeakDb > TRUE_PEAK_MAX_DBTP) {
        if (!retry) throw new Error(`the ${format.toUpperCase()} file's true peak is ${out.truePeakDb.toFixed(2)} dBTP, over ${TRUE_PEAK_MAX_DBTP}, after ${attempt} tries`);
        ceilingDb -= out.truePeakDb - TRUE_PEAK_MAX_DBTP + 0.3;
        continue;
      }
      if (normalize && retry && Number.isFinite(off) && Math.abs(off) > 0.5 && gainDb + off <= MAX_GAIN_DB) {
        gainDb += off;
        if (Number.isFinite(settled)) aim = settled + off;
        continue;
      }
      break;
    }
    await rename(tmpOut, outPath);
    const bytes = (await stat(outPath)).size;
    const result: RenderAudioResult = {
      path: outPath,
      bytes,
      seconds: out.seconds,
      format,
      sampleRate: format === 'opus' ? 48000 : sampleRate,
      channels,
      peak: out.peak,
      rms: out.rms,
      lufs: out.lufs,
      truePeakDb: out.truePeakDb,
      renderedLufs,
      gainDb,
      limitedDb: out.limitedDb,
      midiSeconds,
      renderMs: performance.now() - t0,
    };
    if (bitrateKbps !== undefined) result.bitrateKbps = bitrateKbps;
    return result;
  } finally {
    await unlink(tmpSynth).catch(() => undefined);
    await unlink(tmpOut).catch(() => undefined);
  }
}

/** The loudness a lossy file's limited samples are settled to before encoding: within this of TARGET_LUFS. */
const SETTLE_LU = 0.4;

/** The gain whose limited output measures within SETTLE_LU of `aim` LUFS (a few limiter passes, no encoder), and that loudness. */
async function settleGain(job: OutputJob, gainDb: number, ceilingDb: number, aim: number): Promise<{ gainDb: number; lufs: number }> {
  // Limiting takes back part of each dB added (about half for a piano piece with a high crest
  // factor), so after the first step the next ones follow the measured slope (secant).
  let prev: { gainDb: number; lufs: number } | undefined;
  for (let pass = 1; ; pass++) {
    const limiter = new TruePeakLimiter(job.sampleRate, job.channels, gainDb, ceilingDb);
    const loud = new LoudnessMeter(job.sampleRate, job.channels);
    for await (const chunk of readFloatFrames(job.src, job.channels)) loud.add(limiter.process(chunk));
    loud.add(limiter.flush());
    const lufs = loud.integrated();
    const off = aim - lufs;
    if (pass === 4 || !Number.isFinite(off) || Math.abs(off) <= SETTLE_LU) return { gainDb, lufs };
    const slope = prev && gainDb !== prev.gainDb ? (lufs - prev.lufs) / (gainDb - prev.gainDb) : 1;
    const step = off / Math.min(1, Math.max(0.25, slope));
    prev = { gainDb, lufs };
    if (gainDb + step > MAX_GAIN_DB) return { gainDb, lufs };
    gainDb += step;
  }
}

/** A 16-bit WAV to encode from instead of fluidsynth's render, when it has the rate and channels asked for. */
async function usableSource(path: string, sampleRate: number, channels: 1 | 2): Promise<SampleFile | undefined> {
  let h: Awaited<ReturnType<typeof readWavHeader>>;
  try {
    h = await readWavHeader(path, 'the source WAV');
  } catch {
    return undefined;
  }
  if (h.float || h.bitsPerSample !== 16 || h.sampleRate !== sampleRate || (h.channels !== 1 && h.channels !== 2) || h.channels < channels) return undefined;
  return { path, dataOffset: h.dataOffset, frames: h.dataBytes / (2 * h.channels), channels: h.channels, float: false, seconds: h.seconds };
}

// ---------------------------------------------------------------------------------------------
// Normalised output: WAV here, the lossy formats through ffmpeg

/** Samples to normalise: fluidsynth's 32-bit float stereo render, or a 16-bit WAV renderAudio wrote. */
interface SampleFile {
  path: string;
  dataOffset: number;
  frames: number;
  channels: 1 | 2;
  float: boolean;
  seconds: number;
}

interface OutputJob {
  src: SampleFile;
  frames: number;
  sampleRate: number;
  channels: 1 | 2;
  format: RenderFormat;
  bitrateKbps?: number;
  tmpOut: string;
  ffmpeg: string;
  timeoutMs: number;
}

interface OutputMeasure {
  seconds: number;
  lufs: number;
  truePeakDb: number;
  peak: number;
  rms: number;
  limitedDb: number;
}

/** Float frames of `src` as `channels` per frame (stereo to mono: (L+R)/2), a chunk at a time. */
async function* readFloatFrames(src: SampleFile, channels: 1 | 2): AsyncGenerator<Float32Array> {
  const { path, dataOffset, frames } = src;
  const frameBytes = src.channels * (src.float ? 4 : 2);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(CHUNK); // a multiple of 8 bytes: whole frames in every layout
    const f32 = new Float32Array(buf.buffer, buf.byteOffset, CHUNK / 4);
    const i16 = new Int16Array(buf.buffer, buf.byteOffset, CHUNK / 2);
    const perChunk = CHUNK / frameBytes;
    let done = 0;
    while (done < frames) {
      const want = Math.min(perChunk, frames - done);
      const { bytesRead } = await fh.read(buf, 0, want * frameBytes, dataOffset + done * frameBytes);
      if (bytesRead !== want * frameBytes) throw new Error(`${src.float ? "fluidsynth's output" : `the source WAV ${path}`} ended early at frame ${done + Math.floor(bytesRead / frameBytes)} of ${frames}`);
      const out = new Float32Array(want * channels);
      if (src.float) {
        if (channels === 2) out.set(f32.subarray(0, want * 2));
        else for (let i = 0; i < want; i++) out[i] = (f32[2 * i]! + f32[2 * i + 1]!) * 0.5;
      } else if (src.channels === channels) {
        for (let i = 0; i < want * channels; i++) out[i] = i16[i]! / 32768;
      } else {
        for (let i = 0; i < want; i++) out[i] = (i16[2 * i]! + i16[2 * i + 1]!) / 65536;
      }
      yield out;
      done += want;
    }
  } finally {
    await fh.close();
  }
}

/** Peak and RMS of float samples. */
class FloatStats {
  private peakAbs = 0;
  private sumSq = 0;
  private n = 0;
  add(x: Float32Array): void {
    let peak = this.peakAbs;
    let sum = 0;
    for (let i = 0; i < x.length; i++) {
      const v = x[i]!;
      const a = v < 0 ? -v : v;
      if (a > peak) peak = a;
      sum += v * v;
    }
    this.peakAbs = peak;
    this.sumSq += sum;
    this.n += x.length;
  }
  result(): { peak: number; rms: number } {
    return { peak: this.peakAbs, rms: this.n === 0 ? 0 : Math.sqrt(this.sumSq / this.n) };
  }
}

/** One pass: gain and limiter over the synth file into job.tmpOut, then what was written, measured. */
async function writeOutput(job: OutputJob, gainDb: number, ceilingDb: number): Promise<OutputMeasure> {
  const { sampleRate, channels } = job;
  const limiter = new TruePeakLimiter(sampleRate, channels, gainDb, ceilingDb);
  if (job.format === 'wav') {
    // The float output is what is quantised: measure it on the way (16-bit rounding moves it by < 0.001 dB).
    const loud = new LoudnessMeter(sampleRate, channels);
    const tp = new TruePeakMeter(channels);
    const stats = new SampleStats();
    const dataBytes = job.frames * channels * 2;
    const fh = await open(job.tmpOut, 'w');
    let pos = 44;
    try {
      await fh.write(wavHeader(dataBytes, sampleRate, channels), 0, 44, 0);
      const put = async (y: Float32Array) => {
        if (y.length === 0) return;
        loud.add(y);
        tp.add(y);
        const s16 = toInt16(y, stats);
        await fh.write(Buffer.from(s16.buffer, s16.byteOffset, s16.byteLength), 0, s16.byteLength, pos);
        pos += s16.byteLength;
      };
      for await (const chunk of readFloatFrames(job.src, channels)) await put(limiter.process(chunk));
      await put(limiter.flush());
    } finally {
      await fh.close();
    }
    const h = await readWavHeader(job.tmpOut, 'the WAV writer'); // re-read what we wrote: cheap, and catches a short write
    if (h.fileBytes !== 44 + dataBytes || pos !== 44 + dataBytes) throw new Error(`the WAV writer wrote ${h.fileBytes} bytes, expected ${44 + dataBytes}`);
    return { seconds: h.seconds, lufs: loud.integrated(), truePeakDb: gainToDb(tp.truePeak()), ...stats.result(), limitedDb: limiter.reductionDb };
  }
  await encode(job, limiter);
  await checkEncodedHeader(job.tmpOut, job.format);
  return { ...(await decodeAndMeasure(job)), limitedDb: limiter.reductionDb };
}

/** Float -> s16 (round to nearest; the limiter keeps |x| < 1, the clamp is a guard), counted into `stats`. */
function toInt16(y: Float32Array, stats: SampleStats): Int16Array {
  const out = new Int16Array(y.length);
  let peak = 0;
  let sumSq = 0;
  for (let i = 0; i < y.length; i++) {
    const v = y[i]! * 32768;
    let q = v < 0 ? -((0.5 - v) | 0) : (v + 0.5) | 0;
    if (q > 32767) q = 32767;
    else if (q < -32768) q = -32768;
    out[i] = q;
    const a = q < 0 ? -q : q;
    if (a > peak) peak = a;
    sumSq += q * q;
  }
  stats.addCounted(peak, sumSq, y.length);
  return out;
}

function encoderArgs(job: OutputJob): string[] {
  const input = ['-hide_banner', '-loglevel', 'error', '-f', 'f32le', '-ar', String(job.sampleRate), '-ac', String(job.channels), '-i', 'pipe:0', '-map_metadata', '-1'];
  const kbps = job.bitrateKbps;
  const out = ['-y', job.tmpOut];
  if (job.format === 'mp3') return [...input, '-c:a', 'libmp3lame', '-b:a', `${kbps}k`, '-f', 'mp3', ...out];
  // Opus: constrained VBR, so that the size follows the bitrate (plain VBR spent 170 kbit/s on a quiet piece at 128)
  if (job.format === 'opus') return [...input, '-c:a', 'libopus', '-b:a', `${kbps}k`, '-vbr', 'constrained', '-ar', '48000', '-f', 'opus', ...out];
  return [...input, '-c:a', 'libvorbis', ...(kbps === undefined ? ['-q:a', '4'] : ['-b:a', `${kbps}k`]), '-f', 'ogg', ...out];
}

/** Streams the limited float samples into ffmpeg, which writes job.tmpOut. */
async function encode(job: OutputJob, limiter: TruePeakLimiter): Promise<void> {
  const tool = startTool(job.ffmpeg, encoderArgs(job), job.timeoutMs, 'the encoder (ffmpeg)');
  try {
    for await (const chunk of readFloatFrames(job.src, job.channels)) await tool.write(limiter.process(chunk));
    await tool.write(limiter.flush());
    await tool.end();
  } catch (e) {
    tool.kill();
    await tool.end().catch(() => undefined);
    throw e;
  }
}

/** The encoder's file: the container's magic and the codec's header, before it is decoded. */
async function checkEncodedHeader(path: string, format: RenderFormat): Promise<void> {
  if (!existsSync(path)) throw new Error('the encoder (ffmpeg) wrote no output file');
  const fh = await open(path, 'r');
  let head: Buffer;
  let size: number;
  try {
    size = (await fh.stat()).size;
    head = Buffer.alloc(Math.min(size, 8192));
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const bad = (why: string) => new Error(`the encoder (ffmpeg) wrote an invalid ${format.toUpperCase()} (${size} bytes): ${why}`);
  if (size < 1024) throw bad('too small to hold any audio');
  if (format === 'mp3') {
    let at = 0;
    if (head.toString('latin1', 0, 3) === 'ID3') at = 10 + ((head[6]! & 0x7f) << 21) + ((head[7]! & 0x7f) << 14) + ((head[8]! & 0x7f) << 7) + (head[9]! & 0x7f);
    if (at + 4 > head.length || head[at] !== 0xff || (head[at + 1]! & 0xe6) !== 0xe2) throw bad('no MPEG layer III frame after the ID3 tag');
    return;
  }
  if (head.toString('latin1', 0, 4) !== 'OggS') throw bad('no OggS magic');
  const id = format === 'opus' ? 'OpusHead' : '\x01vorbis';
  if (head.indexOf(id, 0, 'latin1') < 0) throw bad(`no ${format === 'opus' ? 'Opus' : 'Vorbis'} identification header`);
}

/** Decodes job.tmpOut with ffmpeg: its length, loudness, true peak, peak and RMS. */
async function decodeAndMeasure(job: OutputJob): Promise<Omit<OutputMeasure, 'limitedDb'>> {
  const rate = job.format === 'opus' ? 48000 : job.sampleRate;
  const ch = job.channels;
  const loud = new LoudnessMeter(rate, ch);
  const tp = new TruePeakMeter(ch);
  const stats = new FloatStats();
  let carry = Buffer.alloc(0);
  let samples = 0;
  const onData = (d: Buffer) => {
    const all = carry.length ? Buffer.concat([carry, d]) : d;
    const whole = all.length - (all.length % (4 * ch));
    if (whole > 0) {
      const copy = Buffer.from(all.subarray(0, whole)); // own, aligned memory
      const x = new Float32Array(copy.buffer, copy.byteOffset, whole / 4);
      loud.add(x);
      tp.add(x);
      stats.add(x);
      samples += x.length;
    }
    carry = Buffer.from(all.subarray(whole));
  };
  const args = ['-hide_banner', '-loglevel', 'error', '-i', job.tmpOut, '-f', 'f32le', '-ac', String(ch), '-ar', String(rate), 'pipe:1'];
  const tool = startTool(job.ffmpeg, args, job.timeoutMs, 'the decoder check (ffmpeg)', onData);
  await tool.end();
  return { seconds: samples / ch / rate, lufs: loud.integrated(), truePeakDb: gainToDb(tp.truePeak()), ...stats.result() };
}

interface Tool {
  write(x: Float32Array): Promise<void>;
  /** Closes its stdin and waits for it; rejects on a non-zero exit, a timeout or a spawn error. */
  end(): Promise<void>;
  kill(): void;
}

/** Chunks (about 1 MB each) written to ffmpeg and not yet taken by it, at most. */
const WRITES_IN_FLIGHT = 4;

/** Runs ffmpeg: stdin takes float samples (when written to), stdout goes to `onStdout`. */
function startTool(exe: string, args: string[], timeoutMs: number, what: string, onStdout?: (d: Buffer) => void): Tool {
  const child = spawn(exe, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let failure: Error | undefined;
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 16_384) stderr += d.toString('utf8');
  });
  child.stdout.on('data', (d: Buffer) => onStdout?.(d));
  child.stdin.on('error', () => undefined); // EPIPE when it exits early: the exit code says why
  const exited = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      failure = new Error(`${what} timed out after ${timeoutMs} ms and was killed`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? new Error(`ffmpeg not found: ${FFMPEG_FIX}`) : new Error(`could not run ${what} (${exe}): ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else if (code !== 0) reject(new Error(`${what} failed: ${stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}` : `exit code ${code}`)}`));
      else resolve();
    });
  });
  exited.catch(() => undefined); // observed by end(); a write to a dead process rejects on its own
  // A few chunks stay queued for ffmpeg, so that it encodes while the next chunk is computed here
  // (waiting for each write to drain left one of them idle at a time).
  const inFlight: Promise<void>[] = [];
  return {
    write: async (x) => {
      if (x.length === 0) return;
      const written = new Promise<void>((resolve, reject) => {
        child.stdin.write(Buffer.from(x.buffer, x.byteOffset, x.byteLength), (e) => (e ? exited.then(() => reject(e), reject) : resolve()));
      });
      written.catch(() => undefined); // observed below, or by end() through the exit
      inFlight.push(written);
      while (inFlight.length > WRITES_IN_FLIGHT) await inFlight.shift();
    },
    end: async () => {
      child.stdin.end();
      await Promise.allSettled(inFlight);
      return exited;
    },
    kill: () => {
      child.kill('SIGKILL');
    },
  };
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
// WAV headers and sample statistics

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
  /** Adds samples already counted elsewhere: their largest |value|, sum of squares and number. */
  addCounted(peak: number, sumSq: number, n: number): void {
    if (peak > this.peakAbs) this.peakAbs = peak;
    this.sumSq += sumSq;
    this.n += n;
  }
  result(): { peak: number; rms: number } {
    return { peak: this.peakAbs / 32768, rms: this.n === 0 ? 0 : Math.sqrt(this.sumSq / this.n) / 32768 };
  }
}

/**
 * Parses a RIFF/WAVE file's header: PCM 16-bit (what renderAudio writes) or 32-bit float (what
 * fluidsynth renders for it), a data chunk that fits the file. `writer` names who wrote it in errors.
 */
export async function readWavHeader(path: string, writer = 'fluidsynth'): Promise<{ channels: number; sampleRate: number; bitsPerSample: number; float: boolean; dataOffset: number; dataBytes: number; fileBytes: number; seconds: number }> {
  const fh = await open(path, 'r');
  try {
    const fileBytes = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(fileBytes, 4096));
    await fh.read(head, 0, head.length, 0);
    const bad = (why: string) => new Error(`${writer} wrote an invalid WAV (${fileBytes} bytes): ${why}`);
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
        // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID's first two bytes are the real format tag
        if (fmt.formatTag === 0xfffe && len >= 40 && off + 8 + 26 <= head.length) fmt.formatTag = head.readUInt16LE(off + 8 + 24);
      } else if (id === 'data') {
        if (!fmt) throw bad('data before fmt');
        if (fmt.formatTag !== 1 && fmt.formatTag !== 3) throw bad(`not PCM (format ${fmt.formatTag})`);
        const float = fmt.formatTag === 3;
        if (float ? fmt.bitsPerSample !== 32 : fmt.bitsPerSample !== 16) throw bad(`${fmt.bitsPerSample}-bit, expected 16 (or 32-bit float)`);
        const dataOffset = off + 8;
        const frame = (fmt.channels * fmt.bitsPerSample) / 8;
        if (len === 0) throw bad('empty data chunk');
        if (dataOffset + len > fileBytes) throw bad(`data chunk says ${len} bytes, file has ${fileBytes - dataOffset}`);
        if (len % frame !== 0) throw bad(`data size ${len} is not whole frames`);
        if (fmt.channels < 1 || fmt.sampleRate < 1) throw bad(`${fmt.channels} channels at ${fmt.sampleRate} Hz`);
        return { channels: fmt.channels, sampleRate: fmt.sampleRate, bitsPerSample: fmt.bitsPerSample, float, dataOffset, dataBytes: len, fileBytes, seconds: len / frame / fmt.sampleRate };
      }
      off += 8 + len + (len & 1);
    }
    throw bad('no data chunk');
  } finally {
    await fh.close();
  }
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
