/**
 * Attention reach of a long-context model: where each head looks while the model reads real
 * music. The held-out pieces are fed through the sampler's ring one note at a time, the real
 * notes written back (teacher forcing), and each step's attention weights are summed per band of
 * distance (notes back) and for the null slot ("nothing"). A model that repeats and varies its
 * own motifs must look far back; one that leans on the last bar writes music that does not
 * return to anything. The bands are REACH_BANDS of ringDecoder.ts.
 */
import type { ModelSpec } from '../model/note/folder.ts';
import { isLongContext } from '../model/note/longContext.ts';
import { collectReach, decoderWeights, disposeDecoderWeights, initialRing, REACH_BANDS, REACH_WIDTH } from '../model/note/ringDecoder.ts';
import { readNotes } from '../model/note/sampling.ts';
import type { Weights } from '../model/layers.ts';
import { ANY_KEY, segmentKeys } from '../tokens/key.ts';
import type { NoteToken } from '../tokens/tokenize.ts';

export interface AttentionReach {
  pieces: number;
  /** Steps read (notes), all pieces together. */
  notes: number;
  /** The farthest distance of each band (null: no limit), then the null slot. */
  bands: (number | null)[];
  /** Per head: the share of its attention in each band and, last, on the null slot (each row sums to 1). */
  heads: number[][];
  /** The share of all heads' attention more than 32 notes back. */
  beyond32: number;
}

export interface ReachPiece {
  composer: string;
  tokens: readonly NoteToken[];
}

/** Reads up to `maxNotes` notes of `maxPieces` pieces spread over `pieces`; null for a model without long-context attention. */
export function measureAttentionReach(weights: Weights, spec: Pick<ModelSpec, 'hyperparameters' | 'composers'>, pieces: readonly ReachPiece[], maxPieces = 12, maxNotes = 1000): AttentionReach | null {
  const h = spec.hyperparameters;
  if (!isLongContext(h)) return null;
  const names = spec.composers.map((c) => c.name.toLowerCase());
  const known = pieces.filter((p) => names.includes(p.composer.toLowerCase()) && p.tokens.length > 1);
  // Spread over the list (pieces come grouped by composer).
  const read = known.length <= maxPieces ? known : Array.from({ length: maxPieces }, (_, i) => known[Math.floor((i * known.length) / maxPieces)]);
  const d = decoderWeights(weights, h);
  const totals = new Float64Array(d.heads * REACH_WIDTH);
  let notes = 0;
  try {
    for (const piece of read) {
      const tokens = piece.tokens.slice(0, maxNotes);
      // Each piece in the key it opens in, as training labels its segments.
      const state = initialRing(d, [h.keys ? segmentKeys(tokens)[0] : ANY_KEY]);
      collectReach(state, d);
      readNotes(d, state, names.indexOf(piece.composer.toLowerCase()), names.length, tokens, true);
      state.reach!.forEach((v, i) => (totals[i] += v));
      notes += tokens.length;
    }
  } finally {
    disposeDecoderWeights(d);
  }
  const heads = Array.from({ length: d.heads }, (_, k) => Array.from(totals.subarray(k * REACH_WIDTH, (k + 1) * REACH_WIDTH), (v) => (notes ? v / notes : 0)));
  const far = REACH_BANDS.findIndex((b) => b > 32);
  const beyond32 = heads.reduce((s, shares) => s + shares.slice(far, REACH_BANDS.length).reduce((a, b) => a + b, 0), 0) / d.heads;
  return { pieces: read.length, notes, bands: REACH_BANDS.map((b) => (Number.isFinite(b) ? b : null)), heads, beyond32 };
}

/** The reach as text lines for the evaluate report. */
export function attentionReachLines(r: AttentionReach): string[] {
  const edges = r.bands.map((b, i) => (b === null ? `>${r.bands[i - 1]}` : `${i === 0 ? 1 : (r.bands[i - 1] as number) + 1}–${b}`));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    '',
    `attention reach on ${r.pieces} held-out pieces (${r.notes} notes read, real notes written back): share of each head's attention by notes back`,
    `  head  ${[...edges, 'null'].map((e) => e.padStart(7)).join('')}`,
    ...r.heads.map((shares, k) => `  ${String(k).padEnd(4)}  ${shares.map((s) => pct(s).padStart(7)).join('')}`),
    `  more than 32 notes back, all heads: ${pct(r.beyond32)}`,
  ];
}
