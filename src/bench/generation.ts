/**
 * Generation figures: 500 notes stateful at batch 1 and 16 (generateTokens, as compose uses
 * it, at the model's own decoding: composer guidance adds a shadow row per request), and whole-window re-feed against stateful stepping per note, in the same run.
 */
import type { ModelDecoding } from '../model/note/folder.ts';
import type { Hyperparameters } from '../model/note/network.ts';
import type { Weights } from '../model/layers.ts';
import { generateTokensRefeed } from '../model/note/refeed.ts';
import { generateTokens, type PreparedDecoder, type SampleRequest } from '../model/note/sampling.ts';
import type { NoteToken } from '../tokens/tokenize.ts';
import { median, timeRuns, type Timing } from './stats.ts';

export interface GenerationModel {
  weights: Weights;
  h: Hyperparameters;
  composerCount: number;
  /** Composer index used for every request (Chopin where the model knows him). */
  composer: number;
  /** The model's own decoding (model.json), as compose plays it; absent: temperature 1, top-p 0.95. */
  decoding?: ModelDecoding;
  /** The host-side decoder made once for the model, as the engine holds it (prepareDecoder). */
  decoder?: PreparedDecoder;
}

const request = (m: GenerationModel, notes: number, seed: number, primer?: NoteToken[]): SampleRequest => ({
  composer: m.composer,
  notes,
  temperature: m.decoding?.temperature ?? 1,
  topP: m.decoding?.topP ?? 0.95,
  heads: m.decoding?.heads,
  composerGuidance: m.decoding?.composerGuidance,
  randomSeed: seed,
  primer,
});

export interface GenerationFigures {
  batch1: Timing;
  batch16: Timing;
}

/** 500 notes for 1 and for 16 requests at once (default sampling parameters, fresh seeds). */
export async function benchGeneration(m: GenerationModel, o: { notes: number; warmup: number; reps: number; log: (l: string) => void }): Promise<GenerationFigures> {
  const run = (rows: number, rep: number) => generateTokens(m.weights, m.h, m.composerCount, Array.from({ length: rows }, (_, r) => request(m, o.notes, 1000 + rep * 16 + r)), m.decoder);
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
 * the same way; stateful is timed over more notes because it is cheap. The repetitions of the
 * two alternate, so that both see the same load on a busy machine.
 */
export async function benchRefeed(m: GenerationModel, primer: NoteToken[], o: { notes: number; statefulNotes: number; reps: number; log: (l: string) => void }): Promise<RefeedFigures> {
  const window = m.h.window;
  if (primer.length < window) throw new Error(`re-feed bench: the primer has ${primer.length} notes, it needs ${window}`);
  o.log(`re-feed: ${o.notes} notes re-running a ${window}-note window each, vs stateful (${o.reps} runs each, alternating)`);
  const refeed = (notes: number, seed: number) => generateTokensRefeed(m.weights, m.h, m.composerCount, [request(m, notes, seed, primer)]);
  const stateful = (notes: number, seed: number) => generateTokens(m.weights, m.h, m.composerCount, [request(m, notes, seed, primer)], m.decoder);
  refeed(2, 1); // warm-up
  stateful(o.statefulNotes, 1);
  const refeedMs: number[] = [];
  const statefulMs: number[] = [];
  for (let rep = 0; rep < o.reps; rep++) {
    refeedMs.push((await timeRuns(() => refeed(o.notes, 7 + rep), 0, 1)).medianMs);
    // The stateful run also primes its state through `window` steps and samples one note more:
    // time priming plus one note alone and take it off.
    const full = (await timeRuns(() => stateful(o.statefulNotes, 7 + rep), 0, 1)).medianMs;
    const priming = (await timeRuns(() => stateful(1, 7 + rep), 0, 1)).medianMs;
    statefulMs.push(Math.max(1e-3, full - priming));
  }
  return { refeedMsPerNote: median(refeedMs) / o.notes, statefulMsPerNote: median(statefulMs) / (o.statefulNotes - 1), notes: o.notes, window };
}
