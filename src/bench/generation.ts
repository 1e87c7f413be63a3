/**
 * Generation figures: 500 notes stateful at batch 1 and 16 (generateTokens, as compose uses
 * it), and whole-window re-feed against stateful stepping per note, in the same run.
 */
import type { Hyperparameters, Weights } from '../model/network.ts';
import { generateTokensRefeed } from '../model/refeed.ts';
import { generateTokens, type SampleRequest } from '../model/sampling.ts';
import type { NoteToken } from '../tokens/tokenize.ts';
import { timeRuns, type Timing } from './stats.ts';

export interface GenerationModel {
  weights: Weights;
  h: Hyperparameters;
  composerCount: number;
  /** Composer index used for every request (Chopin where the model knows him). */
  composer: number;
}

const request = (m: GenerationModel, notes: number, seed: number, primer?: NoteToken[]): SampleRequest => ({
  composer: m.composer,
  notes,
  temperature: 1,
  topP: 0.95,
  randomSeed: seed,
  primer,
});

export interface GenerationFigures {
  batch1: Timing;
  batch16: Timing;
}

/** 500 notes for 1 and for 16 requests at once (default sampling parameters, fresh seeds). */
export async function benchGeneration(m: GenerationModel, o: { notes: number; warmup: number; reps: number; log: (l: string) => void }): Promise<GenerationFigures> {
  const run = (rows: number, rep: number) => generateTokens(m.weights, m.h, m.composerCount, Array.from({ length: rows }, (_, r) => request(m, o.notes, 1000 + rep * 16 + r)));
  o.log(`generation: ${o.notes} notes, batch 1 (${o.warmup} warm-up + ${o.reps} runs)`);
  const batch1 = await timeRuns((rep) => run(1, rep), o.warmup, o.reps);
  o.log(`generation: ${o.notes} notes, batch 16`);
  const batch16 = await timeRuns((rep) => run(16, rep), o.warmup, Math.max(1, Math.ceil(o.reps / 2)));
  return { batch1, batch16 };
}

export interface RefeedFigures {
  /** ms per note, re-running the whole window for every note. */
  refeedMsPerNote: number;
  /** ms per note, stateful, measured in the same call on the same primer. */
  statefulMsPerNote: number;
  notes: number;
  window: number;
}

/**
 * Per-note cost of re-feed against stateful stepping. Both start from the same primer of
 * `window` notes, so every re-feed step runs a full window (its steady state), and both sample
 * the same way; stateful is timed over more notes because it is cheap.
 */
export async function benchRefeed(m: GenerationModel, primer: NoteToken[], o: { notes: number; statefulNotes: number; reps: number; log: (l: string) => void }): Promise<RefeedFigures> {
  const window = m.h.window;
  if (primer.length < window) throw new Error(`re-feed bench: the primer has ${primer.length} notes, it needs ${window}`);
  o.log(`re-feed: ${o.notes} notes re-running a ${window}-note window each (${o.reps} runs) vs stateful`);
  generateTokensRefeed(m.weights, m.h, m.composerCount, [request(m, 2, 1, primer)]); // warm-up
  const refeed = await timeRuns((rep) => generateTokensRefeed(m.weights, m.h, m.composerCount, [request(m, o.notes, 7 + rep, primer)]), 0, o.reps);
  const stateful = await timeRuns((rep) => generateTokens(m.weights, m.h, m.composerCount, [request(m, o.statefulNotes, 7 + rep, primer)]), 1, o.reps);
  // The stateful run also primes its state through `window` steps and samples one note more:
  // time priming plus one note alone and take it off.
  const priming = await timeRuns(() => generateTokens(m.weights, m.h, m.composerCount, [request(m, 1, 1, primer)]), 0, o.reps);
  const statefulMs = Math.max(1e-3, stateful.medianMs - priming.medianMs);
  return { refeedMsPerNote: refeed.medianMs / o.notes, statefulMsPerNote: statefulMs / (o.statefulNotes - 1), notes: o.notes, window };
}
