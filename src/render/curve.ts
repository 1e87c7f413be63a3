/**
 * Line charts as PNG with @napi-rs/canvas: a generic multi-series plot (plotSeries) and the
 * training-curve chart built on it. Also the small canvas helpers the piano roll shares.
 */
import { GlobalFonts, createCanvas, type Canvas, type SKRSContext2D } from '@napi-rs/canvas';
import { existsSync } from 'node:fs';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { homedir } from 'node:os';

// ---------------------------------------------------------------------------------------------
// shared helpers

let fontFamily: string | null | undefined;

/**
 * A font family that can draw text, or null when none is available (text is then skipped).
 * @napi-rs/canvas scans the system font folders itself; when it found nothing (a bare container)
 * we try the usual folders once more explicitly. No font is ever required.
 */
export function chartFont(): string | null {
  if (fontFamily !== undefined) return fontFamily;
  if (GlobalFonts.families.length === 0) {
    for (const dir of ['/usr/share/fonts', '/usr/local/share/fonts', join(homedir(), '.fonts'), join(homedir(), '.local/share/fonts')]) {
      if (existsSync(dir)) {
        try {
          GlobalFonts.loadFontsFromDir(dir);
        } catch {
          // unreadable folder: ignore
        }
      }
    }
  }
  const families = GlobalFonts.families.map((f) => f.family);
  const preferred = ['DejaVu Sans', 'Liberation Sans', 'Noto Sans', 'Arial', 'Helvetica', 'FreeSans', 'Ubuntu'];
  fontFamily = preferred.find((f) => families.includes(f)) ?? families.find((f) => !/emoji|symbol|math/i.test(f)) ?? families[0] ?? null;
  return fontFamily;
}

/** Sets ctx.font if a font exists; returns false when text should be skipped. */
export function setFont(ctx: SKRSContext2D, px: number, bold = false): boolean {
  const fam = chartFont();
  if (fam === null) return false;
  ctx.font = `${bold ? 'bold ' : ''}${px}px "${fam}"`;
  return true;
}

/** Round tick values covering [lo, hi], about `target` of them, on a 1/2/5 x 10^k step. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const out: number[] = [];
  const first = Math.ceil(lo / step - 1e-9) * step;
  for (let v = first; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** A tick label with as few decimals as the step needs. */
export function formatTick(v: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return v.toFixed(decimals);
}

/** Encodes a canvas as PNG and writes it atomically (temp name in the same folder, then rename). */
export async function writePng(canvas: Canvas, outPath: string): Promise<void> {
  const png = await canvas.encode('png');
  const tmp = join(dirname(outPath), `.${basename(outPath)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    await writeFile(tmp, png);
    await rename(tmp, outPath);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// plotSeries

export interface Series {
  name: string;
  points: { x: number; y: number }[];
  /** CSS colour; default from a fixed palette by position. */
  color?: string;
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Fix the y range (otherwise fitted to the data with a little padding). */
  yMin?: number;
  yMax?: number;
  width?: number;
  height?: number;
  /** Highlighted points, drawn as a ring with a label (e.g. the best epoch). */
  markers?: { x: number; y: number; label?: string; color?: string }[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/**
 * A multi-line chart: one polyline per series (non-finite points leave a gap), axes with round
 * ticks, a legend, optional markers. Returns outPath.
 */
export async function plotSeries(series: Series[], outPath: string, opts: PlotOptions = {}): Promise<string> {
  const width = Math.round(opts.width ?? 900);
  const height = Math.round(opts.height ?? 500);
  if (!(width >= 200 && height >= 150 && width <= 8000 && height <= 8000)) throw new Error(`chart size must be 200..8000 x 150..8000, got ${width}x${height}`);
  const finite = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)));
  if (finite.length === 0) throw new Error('plotSeries: no finite points to plot');

  let xMin = Math.min(...finite.map((p) => p.x));
  let xMax = Math.max(...finite.map((p) => p.x));
  if (xMax === xMin) {
    xMin -= 1;
    xMax += 1;
  }
  let yLo = Math.min(...finite.map((p) => p.y));
  let yHi = Math.max(...finite.map((p) => p.y));
  const pad = (yHi - yLo) * 0.06 || Math.abs(yHi) * 0.1 || 1;
  yLo = opts.yMin ?? yLo - pad;
  yHi = opts.yMax ?? yHi + pad;
  if (!(yHi > yLo)) throw new Error(`plotSeries: empty y range ${yLo}..${yHi}`);

  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext('2d');
  const hasText = chartFont() !== null;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);

  const left = hasText ? 70 : 20;
  const right = 20;
  const top = hasText && opts.title ? 40 : 16;
  const bottom = hasText ? (opts.xLabel ? 56 : 36) : 16;
  const pw = width - left - right;
  const ph = height - top - bottom;
  const X = (x: number) => left + ((x - xMin) / (xMax - xMin)) * pw;
  const Y = (y: number) => top + ph - ((y - yLo) / (yHi - yLo)) * ph;

  // grid and ticks
  const xt = niceTicks(xMin, xMax, Math.max(2, Math.floor(pw / 90)));
  const yt = niceTicks(yLo, yHi, Math.max(2, Math.floor(ph / 60)));
  const xStep = xt.length > 1 ? xt[1]! - xt[0]! : 1;
  const yStep = yt.length > 1 ? yt[1]! - yt[0]! : 1;
  ctx.lineWidth = 1;
  ctx.strokeStyle = '#e6e6e6';
  for (const v of yt) line(ctx, left, Y(v), left + pw, Y(v));
  for (const v of xt) line(ctx, X(v), top, X(v), top + ph);
  ctx.strokeStyle = '#333333';
  ctx.strokeRect(left + 0.5, top + 0.5, pw - 1, ph - 1);
  if (setFont(ctx, 12)) {
    ctx.fillStyle = '#333333';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const v of xt) ctx.fillText(formatTick(v, xStep), X(v), top + ph + 5);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of yt) ctx.fillText(formatTick(v, yStep), left - 6, Y(v));
    if (opts.xLabel) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'bottom';
      ctx.fillText(opts.xLabel, left + pw / 2, height - 6);
    }
    if (opts.yLabel) {
      ctx.save();
      ctx.translate(14, top + ph / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(opts.yLabel, 0, 0);
      ctx.restore();
    }
    if (opts.title && setFont(ctx, 16, true)) {
      ctx.textAlign = 'left';
      ctx.textBaseline = 'middle';
      ctx.fillStyle = '#111111';
      ctx.fillText(opts.title, left, top / 2);
    }
  }

  // lines (clipped to the plot area)
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, pw, ph);
  ctx.clip();
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let pen = false;
    let count = 0;
    for (const p of s.points) {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(X(p.x), Y(p.y));
      else ctx.moveTo(X(p.x), Y(p.y));
      pen = true;
      count++;
    }
    ctx.stroke();
    if (count <= 40) {
      for (const p of s.points) {
        if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
        ctx.beginPath();
        ctx.arc(X(p.x), Y(p.y), 2.5, 0, Math.PI * 2);
        ctx.fill();
      }
    }
  });
  for (const m of opts.markers ?? []) {
    if (!Number.isFinite(m.x) || !Number.isFinite(m.y)) continue;
    ctx.strokeStyle = m.color ?? '#000000';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(X(m.x), Y(m.y), 7, 0, Math.PI * 2);
    ctx.stroke();
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 1;
    line(ctx, X(m.x), Y(m.y) + 7, X(m.x), top + ph);
    ctx.setLineDash([]);
  }
  ctx.restore();
  for (const m of opts.markers ?? []) {
    if (!m.label || !Number.isFinite(m.x) || !Number.isFinite(m.y) || !setFont(ctx, 12)) continue;
    const mx = X(m.x);
    const w = ctx.measureText(m.label).width;
    ctx.fillStyle = m.color ?? '#000000';
    ctx.textBaseline = 'bottom';
    ctx.textAlign = mx + 10 + w > left + pw ? 'right' : 'left';
    ctx.fillText(m.label, ctx.textAlign === 'right' ? mx - 10 : mx + 10, Math.max(top + 14, Y(m.y) - 8));
  }

  // legend, top right inside the plot
  if (series.length > 0 && setFont(ctx, 12)) {
    const rowH = 18;
    const w = Math.max(...series.map((s) => ctx.measureText(s.name).width)) + 40;
    const lx = left + pw - w - 8;
    const ly = top + 8;
    ctx.fillStyle = 'rgba(255,255,255,0.85)';
    ctx.fillRect(lx, ly, w, rowH * series.length + 6);
    ctx.strokeStyle = '#bbbbbb';
    ctx.lineWidth = 1;
    ctx.strokeRect(lx + 0.5, ly + 0.5, w - 1, rowH * series.length + 5);
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    series.forEach((s, i) => {
      const cy = ly + 3 + rowH * i + rowH / 2;
      ctx.strokeStyle = s.color ?? PALETTE[i % PALETTE.length]!;
      ctx.lineWidth = 3;
      line(ctx, lx + 8, cy, lx + 28, cy);
      ctx.fillStyle = '#222222';
      ctx.fillText(s.name, lx + 34, cy);
    });
  }

  await writePng(canvas, outPath);
  return outPath;
}

function line(ctx: SKRSContext2D, x0: number, y0: number, x1: number, y1: number): void {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

// ---------------------------------------------------------------------------------------------
// training curve

export interface EpochLoss {
  epoch: number;
  trainLoss: number;
  valLoss: number;
}

/** Train and validation loss per epoch, with the best validation epoch marked. Returns outPath. */
export async function plotTrainingCurve(history: EpochLoss[], outPath: string, opts: { title?: string; width?: number; height?: number } = {}): Promise<string> {
  if (history.length === 0) throw new Error('plotTrainingCurve: empty history');
  let best: EpochLoss | undefined;
  for (const h of history) if (Number.isFinite(h.valLoss) && (best === undefined || h.valLoss < best.valLoss)) best = h;
  const plotOpts: PlotOptions = {
    title: opts.title ?? 'Training loss',
    xLabel: 'epoch',
    yLabel: 'loss',
    markers: best ? [{ x: best.epoch, y: best.valLoss, label: `best val ${best.valLoss.toFixed(3)} @ epoch ${best.epoch}`, color: '#d62728' }] : [],
  };
  if (opts.width !== undefined) plotOpts.width = opts.width;
  if (opts.height !== undefined) plotOpts.height = opts.height;
  return plotSeries(
    [
      { name: 'train', points: history.map((h) => ({ x: h.epoch, y: h.trainLoss })), color: PALETTE[0]! },
      { name: 'validation', points: history.map((h) => ({ x: h.epoch, y: h.valLoss })), color: PALETTE[1]! },
    ],
    outPath,
    plotOpts,
  );
}
