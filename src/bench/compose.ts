/** compose-to-OGG end to end through the Engine, as the CLI and the chat bot call it. */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../engine/engine.ts';
import { timeRuns } from './stats.ts';

export interface ComposeFigures {
  /** Median seconds of Engine.compose (warm engine: the model is loaded once, as in the bot). */
  seconds: number;
  /** The first compose of the process (cold caches, fluidsynth's sound font read). */
  firstSeconds: number;
  /** Engine.open: backend and model load. */
  openSeconds: number;
  /** The sampling part alone (Engine.sample, same request), median. */
  samplingSeconds: number;
  oggBytes: number;
  musicSeconds: number;
}

export async function benchCompose(modelDir: string, o: { composer: string; notes: number; reps: number; log: (l: string) => void }): Promise<ComposeFigures> {
  const t0 = performance.now();
  const engine = await Engine.open(modelDir);
  const openSeconds = (performance.now() - t0) / 1000;
  const outDir = await mkdtemp(join(tmpdir(), 'nocturne-bench-'));
  try {
    const request = (seed: number) => ({ composer: o.composer, notes: o.notes, randomSeed: seed, outDir: join(outDir, String(seed)), audio: { format: 'ogg' as const } });
    o.log(`compose: ${o.composer} ${o.notes} notes → OGG (1 cold + ${o.reps} runs)`);
    const t1 = performance.now();
    let result = await engine.compose(request(1));
    const firstSeconds = (performance.now() - t1) / 1000;
    const timing = await timeRuns(async (rep) => {
      result = await engine.compose(request(2 + rep));
    }, 0, o.reps);
    const sampling = await timeRuns((rep) => engine.sample([engine.resolve(request(2 + rep))]), 0, o.reps);
    const oggBytes = (await stat(result.audioPath)).size;
    return { seconds: timing.medianMs / 1000, firstSeconds, openSeconds, samplingSeconds: sampling.medianMs / 1000, oggBytes, musicSeconds: result.musicSeconds };
  } finally {
    engine.dispose();
    await rm(outDir, { recursive: true, force: true });
  }
}
