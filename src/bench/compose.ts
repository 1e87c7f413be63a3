/**
 * compose-to-audio end to end through the Engine, as the CLI and the chat bot call it: WAV (the
 * product's default format) and OGG (the smaller one a server or member can choose), the same
 * pieces (random seeds) for both, so the two figures differ only by the encoding.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../engine/engine.ts';
import type { AudioFormat } from '../engine/types.ts';
import { median, timeRuns } from './stats.ts';

export interface ComposeFormatFigures {
  /** Median seconds of Engine.compose (warm engine: the model is loaded once, as in the bot). */
  seconds: number;
  /** Size of the last file written. */
  bytes: number;
}

export interface ComposeFigures {
  wav: ComposeFormatFigures;
  ogg: ComposeFormatFigures;
  /** The first compose of the process (WAV; cold caches, fluidsynth's sound font read). */
  firstSeconds: number;
  /** Engine.open: backend and model load. */
  openSeconds: number;
  /** The sampling part alone (Engine.sample, same requests), median. */
  samplingSeconds: number;
  /** Median length of the measured pieces: rendering and encoding take time in proportion to it. */
  musicSeconds: number;
  /** The shortest and longest measured piece, seconds. */
  musicRange: [number, number];
}

export async function benchCompose(modelDir: string, o: { composer: string; notes: number; reps: number; log: (l: string) => void }): Promise<ComposeFigures> {
  const t0 = performance.now();
  const engine = await Engine.open(modelDir);
  const openSeconds = (performance.now() - t0) / 1000;
  const outDir = await mkdtemp(join(tmpdir(), 'nocturne-bench-'));
  try {
    const request = (seed: number, format: AudioFormat) => ({ composer: o.composer, notes: o.notes, randomSeed: seed, outDir: join(outDir, `${format}-${seed}`), audio: { format } });
    o.log(`compose: ${o.composer} ${o.notes} notes → WAV and → OGG (1 cold + ${o.reps} runs each, the same pieces)`);
    const t1 = performance.now();
    await engine.compose(request(1, 'wav'));
    const firstSeconds = (performance.now() - t1) / 1000;
    const music: number[] = [];
    const measure = async (format: AudioFormat): Promise<ComposeFormatFigures> => {
      let bytes = 0;
      const timing = await timeRuns(async (rep) => {
        const result = await engine.compose(request(2 + rep, format));
        bytes = (await stat(result.audioPath)).size;
        if (format === 'wav') music.push(result.musicSeconds);
      }, 0, o.reps);
      return { seconds: timing.medianMs / 1000, bytes };
    };
    const wav = await measure('wav');
    const ogg = await measure('ogg');
    const sampling = await timeRuns((rep) => engine.sample([engine.resolve(request(2 + rep, 'wav'))]), 0, o.reps);
    return { wav, ogg, firstSeconds, openSeconds, samplingSeconds: sampling.medianMs / 1000, musicSeconds: median(music), musicRange: [Math.min(...music), Math.max(...music)] };
  } finally {
    engine.dispose();
    await rm(outDir, { recursive: true, force: true });
  }
}
