/**
 * Piano-roll PNG of a list of notes: time in seconds across, pitch up (lowest at the bottom),
 * velocity as colour (darker and more saturated = louder), a faint line and label at every C,
 * time ticks in seconds and a title line. Text is skipped when no font is available.
 */
import { createCanvas } from '@napi-rs/canvas';
import type { PianoNote } from '../midi/types.ts';
import { chartFont, formatTick, niceTicks, setFont, writePng } from './curve.ts';

const NAMES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B'];
const BLACK = new Set([1, 3, 6, 8, 10]);

/** Scientific pitch name: 60 -> "C4". */
export function pitchName(pitch: number): string {
  return `${NAMES[((pitch % 12) + 12) % 12]}${Math.floor(pitch / 12) - 1}`;
}

/** Fill colour for a velocity 1..127: pale grey-blue when soft, deep saturated blue when loud. */
export function velocityColor(velocity: number): string {
  const v = Math.min(1, Math.max(0, (velocity - 1) / 126));
  const sat = Math.round(25 + 65 * v);
  const light = Math.round(72 - 45 * v);
  return `hsl(220, ${sat}%, ${light}%)`;
}

export async function renderPianoRoll(
  notes: PianoNote[],
  outPath: string,
  opts: { width?: number; height?: number; title?: string } = {},
): Promise<{ path: string; width: number; height: number }> {
  if (notes.length === 0) throw new Error('renderPianoRoll: no notes to draw');
  const width = Math.round(opts.width ?? 1200);
  const height = Math.round(opts.height ?? 400);
  if (!(width >= 200 && height >= 100 && width <= 8000 && height <= 8000)) throw new Error(`piano roll size must be 200..8000 x 100..8000, got ${width}x${height}`);
  for (const n of notes) {
    if (!Number.isFinite(n.pitch) || !Number.isFinite(n.startSeconds) || !Number.isFinite(n.durationSeconds)) {
      throw new Error(`renderPianoRoll: note with non-finite pitch/time: ${JSON.stringify(n)}`);
    }
  }

  let lo = Math.min(...notes.map((n) => n.pitch)) - 2;
  let hi = Math.max(...notes.map((n) => n.pitch)) + 2;
  if (hi - lo < 24) {
    // at least two octaves, so there is always a C line and notes are not giant
    const grow = 24 - (hi - lo);
    lo -= Math.floor(grow / 2);
    hi += Math.ceil(grow / 2);
  }
  const t0 = 0;
  const t1 = Math.max(...notes.map((n) => n.startSeconds + Math.max(0, n.durationSeconds)), 0.001);

  const hasText = chartFont() !== null;
  const title = opts.title ?? `${notes.length} note${notes.length === 1 ? '' : 's'}, ${t1.toFixed(1)} s`;
  const left = hasText ? 42 : 6;
  const right = 10;
  const top = hasText ? 28 : 6;
  const bottom = hasText ? 24 : 6;
  const pw = width - left - right;
  const ph = height - top - bottom;
  const rows = hi - lo + 1;
  const rowH = ph / rows;
  const X = (s: number) => left + ((s - t0) / (t1 - t0)) * pw;
  const Yrow = (p: number) => top + (hi - p) * rowH; // top edge of pitch p's row

  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  // black-key rows slightly shaded, like a keyboard
  ctx.fillStyle = '#f1f2f5';
  for (let p = lo; p <= hi; p++) if (BLACK.has(((p % 12) + 12) % 12)) ctx.fillRect(left, Yrow(p), pw, rowH);

  // time grid
  const ticks = niceTicks(t0, t1, Math.max(2, Math.floor(pw / 80)));
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : 1;
  ctx.strokeStyle = '#e4e4e4';
  ctx.lineWidth = 1;
  for (const t of ticks) {
    const x = Math.round(X(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + ph);
    ctx.stroke();
  }
  // a line at the bottom of every C row
  ctx.strokeStyle = '#c8c8c8';
  const cs: number[] = [];
  for (let p = lo; p <= hi; p++) {
    if (((p % 12) + 12) % 12 !== 0) continue;
    cs.push(p);
    const y = Math.round(Yrow(p) + rowH) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + pw, y);
    ctx.stroke();
  }

  // notes: soft ones first so loud ones sit on top
  const sorted = [...notes].sort((a, b) => a.velocity - b.velocity);
  const gap = rowH > 4 ? 1 : 0;
  for (const n of sorted) {
    const x = X(n.startSeconds);
    const w = Math.max(1.5, X(n.startSeconds + Math.max(0, n.durationSeconds)) - x);
    const y = Yrow(n.pitch) + gap / 2;
    const h = Math.max(1, rowH - gap);
    ctx.fillStyle = velocityColor(n.velocity);
    ctx.fillRect(x, y, w, h);
    if (w > 4 && h > 4) {
      ctx.strokeStyle = 'rgba(0, 0, 40, 0.35)';
      ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
    }
  }

  ctx.strokeStyle = '#555555';
  ctx.strokeRect(left + 0.5, top + 0.5, pw - 1, ph - 1);

  if (setFont(ctx, 11)) {
    ctx.fillStyle = '#444444';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const p of cs) ctx.fillText(pitchName(p), left - 5, Yrow(p) + rowH / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of ticks) {
      const label = `${formatTick(t, step)}s`;
      const half = ctx.measureText(label).width / 2;
      ctx.fillText(label, Math.min(width - half - 2, Math.max(half + 2, X(t))), top + ph + 4);
    }
    if (setFont(ctx, 14, true)) {
      ctx.fillStyle = '#111111';
      ctx.textAlign = 'left';
      ctx.textBaseline = 'middle';
      ctx.fillText(title, left, top / 2);
    }
  }

  await writePng(canvas, outPath);
  return { path: outPath, width, height };
}
