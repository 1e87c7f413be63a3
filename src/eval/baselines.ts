/**
 * Count-based reference models: what a model's NLL per token must beat to have learned more
 * than note frequencies and one-step transitions.
 *
 * A token is a tuple of categorical fields (the note tuple's dt, pitch, duration and velocity
 * bucket; or a single field, such as the study model's vocabulary index). Both baselines treat
 * the fields as independent given their context, so the NLL of a token is the sum over fields:
 *
 *   unigram:  −Σ_f log P_f(x_f)                       (product of the field marginals)
 *   bigram:   −Σ_f log P_f(x_f | x'_f)                each field conditioned on the previous
 *                                                     token's same field; the first token of a
 *                                                     piece is conditioned on a start symbol
 *
 * with add-k smoothing: P_f(c) = (n(c) + k) / (N + k·C_f) and
 * P_f(c | p) = (n(p, c) + k) / (n(p) + k·C_f), C_f the number of classes of field f. Counts
 * come from the training pieces only, so an unseen class costs a finite, honest penalty.
 * NLL is in nats per token, the unit the networks report.
 */
import { DT_CLASSES, DUR_CLASSES, PITCH_CLASSES, PITCH_MIN, VEL_CLASSES, type NoteToken } from '../tokens/tokenize.ts';

/** A piece as parallel fields: fields[f][i] is field f of token i, in 0..classes[f]−1. */
export type FieldSequence = readonly Int32Array[];

export const DEFAULT_SMOOTHING_K = 0.1;

export interface NgramBaselines {
  classes: readonly number[];
  k: number;
  /** Per field: log P_f(c), length C_f. */
  unigramLogP: Float64Array[];
  /** Per field: log P_f(c | p) at [(p + 1) · C_f + c]; row 0 is the start symbol. */
  bigramLogP: Float64Array[];
  /** Size of the data the counts came from. */
  fittedOn: { pieces: number; tokens: number };
}

/** Totals over some tokens, so that pieces and composers can be pooled exactly. */
export interface BaselineTotals {
  /** Summed NLL in nats. */
  unigram: number;
  bigram: number;
  tokens: number;
}

/** Class numbers of the note tuple's four fields, as the model's heads number them. */
export const NOTE_FIELD_CLASSES = [DT_CLASSES, PITCH_CLASSES, DUR_CLASSES, VEL_CLASSES] as const;

/** Note tokens → the four fields (dt, pitch − PITCH_MIN, dur − 1, vel). */
export function noteTokenFields(tokens: readonly NoteToken[]): Int32Array[] {
  const fields = NOTE_FIELD_CLASSES.map(() => new Int32Array(tokens.length));
  tokens.forEach((t, i) => {
    fields[0][i] = t.dt;
    fields[1][i] = t.pitch - PITCH_MIN;
    fields[2][i] = t.dur - 1;
    fields[3][i] = t.vel;
  });
  return fields;
}

function checkPiece(piece: FieldSequence, classes: readonly number[], label: string): number {
  if (piece.length !== classes.length) throw new Error(`baselines: ${label} has ${piece.length} fields, expected ${classes.length}`);
  const n = piece[0]?.length ?? 0;
  piece.forEach((field, f) => {
    if (field.length !== n) throw new Error(`baselines: ${label} field ${f} has ${field.length} tokens, field 0 has ${n}`);
    for (let i = 0; i < n; i++)
      if (!(field[i] >= 0 && field[i] < classes[f])) throw new Error(`baselines: ${label} field ${f} token ${i} is ${field[i]}, outside 0..${classes[f] - 1}`);
  });
  return n;
}

/** Fits both baselines on `pieces` (add-k smoothing, k > 0). */
export function fitBaselines(pieces: readonly FieldSequence[], classes: readonly number[], k = DEFAULT_SMOOTHING_K): NgramBaselines {
  if (!(k > 0) || !Number.isFinite(k)) throw new Error(`baselines: smoothing k must be > 0, got ${k}`);
  if (classes.length === 0 || classes.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`baselines: classes must be whole numbers ≥ 1, got ${JSON.stringify(classes)}`);
  const unigram = classes.map((c) => new Float64Array(c));
  const bigram = classes.map((c) => new Float64Array((c + 1) * c));
  let tokens = 0;
  pieces.forEach((piece, p) => {
    const n = checkPiece(piece, classes, `training piece ${p}`);
    tokens += n;
    classes.forEach((C, f) => {
      const field = piece[f];
      for (let i = 0; i < n; i++) {
        unigram[f][field[i]]++;
        const context = i === 0 ? 0 : field[i - 1] + 1;
        bigram[f][context * C + field[i]]++;
      }
    });
  });
  if (tokens === 0) throw new Error('baselines: the training pieces hold no tokens');
  const unigramLogP = classes.map((C, f) => {
    const out = new Float64Array(C);
    const denominator = Math.log(tokens + k * C);
    for (let c = 0; c < C; c++) out[c] = Math.log(unigram[f][c] + k) - denominator;
    return out;
  });
  const bigramLogP = classes.map((C, f) => {
    const out = new Float64Array((C + 1) * C);
    for (let p = 0; p <= C; p++) {
      let rowTotal = 0;
      for (let c = 0; c < C; c++) rowTotal += bigram[f][p * C + c];
      const denominator = Math.log(rowTotal + k * C);
      for (let c = 0; c < C; c++) out[p * C + c] = Math.log(bigram[f][p * C + c] + k) - denominator;
    }
    return out;
  });
  return { classes, k, unigramLogP, bigramLogP, fittedOn: { pieces: pieces.length, tokens } };
}

/**
 * Summed NLL of both baselines over the tokens of `piece` at `positions` (all tokens when
 * omitted). Divide by `tokens` for nats per token; add totals to pool pieces.
 */
export function baselineTotals(model: NgramBaselines, piece: FieldSequence, positions?: ArrayLike<number>): BaselineTotals {
  const n = checkPiece(piece, model.classes, 'piece');
  const at = positions ?? Array.from({ length: n }, (_, i) => i);
  let unigram = 0;
  let bigram = 0;
  for (let q = 0; q < at.length; q++) {
    const i = at[q];
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`baselines: position ${i} is outside the piece's 0..${n - 1}`);
    model.classes.forEach((C, f) => {
      const x = piece[f][i];
      const context = i === 0 ? 0 : piece[f][i - 1] + 1;
      unigram -= model.unigramLogP[f][x];
      bigram -= model.bigramLogP[f][context * C + x];
    });
  }
  return { unigram, bigram, tokens: at.length };
}

/** Sum of totals (for pooling pieces into a composer, composers into the whole). */
export function addTotals(totals: readonly BaselineTotals[]): BaselineTotals {
  return totals.reduce((s, t) => ({ unigram: s.unigram + t.unigram, bigram: s.bigram + t.bigram, tokens: s.tokens + t.tokens }), { unigram: 0, bigram: 0, tokens: 0 });
}

/** Nats per token, or null when there are no tokens. */
export function perToken(totals: BaselineTotals): { unigram: number | null; bigram: number | null } {
  return totals.tokens === 0 ? { unigram: null, bigram: null } : { unigram: totals.unigram / totals.tokens, bigram: totals.bigram / totals.tokens };
}
