/** Timing helpers for the bench: warm-up runs, then the median of a few repetitions. */

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Timing {
  /** Median wall time of the measured runs, in ms. */
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number[];
}

export function summarize(runs: readonly number[]): Timing {
  return { medianMs: median(runs), minMs: Math.min(...runs), maxMs: Math.max(...runs), runs: [...runs] };
}

/** Runs `fn` `warmup` times unmeasured, then `reps` times measured (wall clock, ms). */
export async function timeRuns(fn: (rep: number) => unknown, warmup: number, reps: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const runs: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn(i);
    runs.push(performance.now() - t0);
  }
  return summarize(runs);
}

/** Rounds to `digits` significant digits (for the JSON; keeps 0 and non-finite values). */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const scale = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}
