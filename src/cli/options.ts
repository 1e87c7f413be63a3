/** Shared option parsing for the CLI: one clear message per bad value. */
import { BACKEND_CHOICES, type BackendChoice } from '../model/backend.ts';

/** Bad command-line input: printed with the usage, exit code 2, never a stack trace. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export function numberOption(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || raw.trim() === '') throw new UsageError(`${name} must be a number, got ${JSON.stringify(raw)}`);
  if (v < min || v > max) throw new UsageError(`${name} must be between ${min} and ${max}, got ${raw}`);
  return v;
}

export function intOption(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  const v = numberOption(name, raw, fallback, min, max);
  if (!Number.isInteger(v)) throw new UsageError(`${name} must be a whole number, got ${raw}`);
  return v;
}

/** A comma-separated list of names from `allowed` (absent: undefined); `takes` says what may be given, for the message. */
export function listOption<T extends string>(name: string, raw: string | undefined, allowed: readonly T[], takes: string): T[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(',').map((s) => s.trim());
  if (names.some((s) => !(allowed as readonly string[]).includes(s))) throw new UsageError(`${name} takes ${takes}, comma-separated; got ${raw}`);
  return names as T[];
}

/** One name from `allowed` (absent: undefined). */
export function choiceOption<T extends string>(name: string, raw: string | undefined, allowed: readonly T[]): T | undefined {
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

export function parseBackend(raw: string | undefined): BackendChoice {
  return choiceOption('--backend', raw, BACKEND_CHOICES) ?? 'auto';
}

/** A progress line that redraws in place on a terminal and prints every ~10 s otherwise. */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): (line: string, done: boolean) => void {
  let last = 0;
  return (line, done) => {
    if (stream.isTTY) {
      stream.write(`\r${line}\x1b[K${done ? '\n' : ''}`);
      return;
    }
    const now = Date.now();
    if (done || now - last > 10_000) {
      stream.write(`${line}\n`);
      last = now;
    }
  };
}

/**
 * Gathers every bad option of a command so that the user hears about all of them at once:
 * `take(parse, fallback)` records a parse error and goes on; `check(usage)` throws them together.
 */
export function optionProblems() {
  const problems: string[] = [];
  return {
    problems,
    take<T>(parse: () => T, fallback: T): T {
      try {
        return parse();
      } catch (e) {
        problems.push((e as Error).message);
        return fallback;
      }
    },
    check(usage: string): void {
      if (problems.length) throw new UsageError(problems.join('\n'), usage);
    },
  };
}

/** The parseArgs options that `train` and `train --arch study` share (each adds its own). */
export const TRAINING_RUN_OPTIONS = {
  arch: { type: 'string' },
  data: { type: 'string' },
  out: { type: 'string' },
  composers: { type: 'string' },
  epochs: { type: 'string' },
  batch: { type: 'string' },
  lr: { type: 'string' },
  window: { type: 'string' },
  hidden: { type: 'string' },
  layers: { type: 'string' },
  'max-minutes': { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
} as const;
