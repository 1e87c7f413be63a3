/**
 * Composer labels of contributions, and the model's composer slots.
 *
 * The model's input has one slot per composer plus one "any" slot (features.ts), so a new label
 * changes the input width. Policy:
 *   - a label that matches a composer the model knows (case-insensitively) trains that composer;
 *   - a new label trains under "any" until NOCTURNE_NEW_LABEL_MIN_PIECES accepted training contributions
 *     carry it (a composer slot learnt from one or two pieces would be noise); from then on the
 *     next retraining gives it its own slot, appended after the existing composers;
 *   - no label trains under "any".
 * A new slot's input row starts as a copy of the "any" row, so before any fine-tuning the model
 * treats the new composer exactly like "any" (a neutral start); existing rows are copied
 * unchanged, so every known composer keeps its behaviour. Composers never disappear.
 */
import * as tf from '@tensorflow/tfjs';
import { OFFSET_COMPOSER, inputWidth } from '../model/note/features.ts';
import type { ComposerEntry } from '../model/folder.ts';
import { loadModelFolder, saveModelFolder } from '../model/note/folder.ts';

/** Composer name given to pieces that train the "any" slot (it is in no composer table). */
export const ANY_SLOT = '(any)';

export interface LabelledPiece {
  label?: string;
  tempoBpm: number;
}

export interface ComposerPlan {
  /** The serving model's composers in their order, then the new ones. */
  composers: ComposerEntry[];
  newComposers: string[];
  /** New labels still below the minimum (trained as "any"), with their piece counts. */
  waiting: { label: string; pieces: number }[];
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : 100;
}

/**
 * The composer table for the next model. `corpus` counts training pieces per dataset composer
 * (a dataset folder the serving model lacks becomes a composer at once: the dataset is curated);
 * `contributions` are the accepted training contributions.
 */
export function planComposers(serving: readonly ComposerEntry[], corpus: ReadonlyMap<string, { pieces: number; tempoBpm: number }>, contributions: readonly LabelledPiece[], minPieces: number): ComposerPlan {
  const composers: ComposerEntry[] = serving.map((c) => ({ ...c, pieces: corpus.get(c.name)?.pieces ?? 0 }));
  const find = (name: string) => composers.find((c) => c.name.toLowerCase() === name.toLowerCase());
  const newComposers: string[] = [];
  for (const [name, info] of corpus) {
    if (!find(name)) {
      composers.push({ name, pieces: info.pieces, tempoBpm: info.tempoBpm });
      newComposers.push(name);
    }
  }
  const byLabel = new Map<string, { label: string; tempos: number[] }>();
  for (const c of contributions) {
    if (!c.label) continue;
    const known = find(c.label);
    if (known) {
      known.pieces++;
      continue;
    }
    const key = c.label.toLowerCase();
    const group = byLabel.get(key) ?? { label: c.label, tempos: [] };
    group.tempos.push(c.tempoBpm);
    byLabel.set(key, group);
  }
  const waiting: ComposerPlan['waiting'] = [];
  for (const { label, tempos } of byLabel.values()) {
    if (tempos.length >= minPieces) {
      composers.push({ name: label, pieces: tempos.length, tempoBpm: Math.round(median(tempos)) });
      newComposers.push(label);
    } else waiting.push({ label, pieces: tempos.length });
  }
  return { composers, newComposers, waiting };
}

/** The composer a piece trains under in `plan` (ANY_SLOT for none or a waiting label). */
export function composerFor(plan: ComposerPlan, label: string | undefined): string {
  if (!label) return ANY_SLOT;
  return plan.composers.find((c) => c.name.toLowerCase() === label.toLowerCase())?.name ?? ANY_SLOT;
}

/**
 * The first LSTM layer's input matrix for more composers: rows [0, OFFSET_COMPOSER + old) are
 * kept, each new composer's row is a copy of the old "any" row, and "any" moves to the end.
 * `wx` is row-major [inputWidth(old), cols].
 */
export function expandComposerRows(wx: Float32Array, oldComposers: number, newComposers: number, cols: number): Float32Array {
  if (newComposers < oldComposers) throw new Error(`composer slots cannot shrink (${oldComposers} → ${newComposers})`);
  if (wx.length !== inputWidth(oldComposers) * cols) throw new Error(`input matrix has ${wx.length} values, expected ${inputWidth(oldComposers)} × ${cols}`);
  const out = new Float32Array(inputWidth(newComposers) * cols);
  const kept = OFFSET_COMPOSER + oldComposers;
  out.set(wx.subarray(0, kept * cols), 0);
  const anyRow = wx.subarray(kept * cols, (kept + 1) * cols);
  for (let r = kept; r <= OFFSET_COMPOSER + newComposers; r++) out.set(anyRow, r * cols);
  return out;
}

/** Writes a copy of the model in `from` with slots for `plan.composers` into `to`. */
export async function writeExpandedModel(from: string, to: string, plan: ComposerPlan): Promise<void> {
  const { spec, weights } = await loadModelFolder(from);
  const added: tf.Tensor[] = [];
  try {
    const oldCount = spec.composers.length;
    const newCount = plan.composers.length;
    for (let i = 0; i < oldCount; i++) if (plan.composers[i].name !== spec.composers[i].name) throw new Error(`composer plan reorders ${spec.composers[i].name}`);
    const wx = weights['lstm0/wx'];
    const cols = wx.shape[1] ?? 0;
    const expanded = expandComposerRows((await wx.data()) as Float32Array, oldCount, newCount, cols);
    const values = tf.tensor2d(expanded, [inputWidth(newCount), cols]);
    added.push(values);
    const out = { ...weights, 'lstm0/wx': tf.variable(values, false) };
    added.push(out['lstm0/wx']);
    const { weights: _manifest, format: _format, formatVersion: _formatVersion, ...rest } = spec;
    await saveModelFolder(to, { ...rest, inputWidth: inputWidth(newCount), composers: plan.composers }, out);
  } finally {
    tf.dispose([...Object.values(weights), ...added]);
  }
}
