/**
 * `npm run fuzz [-- --count N --seed S --bound-ms MS --json]`: mutated and truncated MIDI files
 * through the two paths that read files from strangers: `nocturne check` (checkMidiBytes) and the
 * contribute path (Contributions.contribute: checks, duplicate claims, drift, the store and the
 * file write). Every file must get a verdict; an exception that is not a verdict is a crash, and
 * a file that takes longer than the per-file bound is a hang. Deterministic for a seed.
 *
 * Parsing is synchronous (see src/midi/check.ts), so the bound is measured per file rather than
 * enforced by interruption; a real infinite loop stops the run, which the CI test's timeout turns
 * into a failure.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ContributionError, Contributions } from '../community/contributions.ts';
import { buildCorpusProfile, type CorpusProfile } from '../community/corpusProfile.ts';
import { CommunityStore } from '../community/store.ts';
import { checkMidiBytes } from '../midi/check.ts';
import { seededRandom } from '../model/random.ts';

export const FUZZ_USAGE = 'usage: npm run fuzz -- [--count N] [--seed S] [--bound-ms MS] [--dataset DIR] [--json]';

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff, 0xfe, 0x90, 0x99, 0xc0, 0xf0, 0xf7, 0x2f, 0x51];

/** Offsets of "MThd"/"MTrk" chunk headers in `b` (where length fields live). Pure. */
function chunkOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 8 <= b.length; i++) if (b[i] === 0x4d && b[i + 1] === 0x54 && ((b[i + 2] === 0x68 && b[i + 3] === 0x64) || (b[i + 2] === 0x72 && b[i + 3] === 0x6b))) out.push(i);
  return out;
}

export const MUTATIONS = ['truncate', 'flip-bits', 'interesting-bytes', 'chunk-length', 'header-fields', 'insert-random', 'delete-range', 'duplicate-range', 'vlq-bomb', 'splice', 'random-bytes'] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** One mutated file from `source` (and `other` for splices). Pure given `random`. */
export function mutate(source: Uint8Array, other: Uint8Array, kind: Mutation, random: () => number): Uint8Array {
  const int = (n: number) => Math.floor(random() * Math.max(1, n));
  const b = new Uint8Array(source);
  switch (kind) {
    case 'truncate':
      return b.slice(0, int(b.length));
    case 'flip-bits': {
      const n = 1 + int(16);
      for (let i = 0; i < n && b.length; i++) b[int(b.length)] ^= 1 << int(8);
      return b;
    }
    case 'interesting-bytes': {
      const n = 1 + int(8);
      for (let i = 0; i < n && b.length; i++) b[int(b.length)] = INTERESTING[int(INTERESTING.length)];
      return b;
    }
    case 'chunk-length': {
      const chunks = chunkOffsets(b);
      if (!chunks.length) return b;
      const at = chunks[int(chunks.length)] + 4;
      const values = [0, 1, 0xffffffff, 0x7fffffff, b.length, b.length * 2, int(2 ** 32)];
      new DataView(b.buffer, b.byteOffset).setUint32(at, values[int(values.length)] >>> 0);
      return b;
    }
    case 'header-fields': {
      // Format, track count and division of MThd.
      if (b.length < 14) return b;
      const dv = new DataView(b.buffer, b.byteOffset);
      const field = [8, 10, 12][int(3)];
      const values = [0, 1, 2, 3, 0xffff, 0x8000, 0xe728, int(65536)];
      dv.setUint16(field, values[int(values.length)]);
      return b;
    }
    case 'insert-random': {
      const at = int(b.length + 1);
      const ins = new Uint8Array(1 + int(64)).map(() => int(256));
      return concat(b.slice(0, at), ins, b.slice(at));
    }
    case 'delete-range': {
      const at = int(b.length);
      return concat(b.slice(0, at), b.slice(at + 1 + int(256)));
    }
    case 'duplicate-range': {
      const at = int(b.length);
      const piece = b.slice(at, at + 1 + int(512));
      const copies = 1 + int(8);
      return concat(b.slice(0, at), ...Array.from({ length: copies }, () => piece), b.slice(at));
    }
    case 'vlq-bomb': {
      // Variable-length quantities that never end, or delta times as large as they go.
      const at = 14 + int(Math.max(1, b.length - 14));
      const bomb = random() < 0.5 ? new Uint8Array(4 + int(32)).fill(0xff) : Uint8Array.from([0x8f, 0xff, 0xff, 0x7f]);
      return concat(b.slice(0, at), bomb, b.slice(at));
    }
    case 'splice': {
      const at = int(b.length);
      const from = int(other.length);
      return concat(b.slice(0, at), other.slice(from, from + int(other.length - from + 1)));
    }
    case 'random-bytes': {
      const head = b.slice(0, 14 + int(32));
      return concat(head, new Uint8Array(int(4096)).map(() => int(256)));
    }
  }
}

/**
 * Rewrites the MTrk length fields (each track runs to the next "MTrk" or the end) and the header's
 * track count, so that a mutation inside the events reaches the event parser instead of being
 * refused at the chunk framing. Pure.
 */
export function fixChunkLengths(source: Uint8Array): Uint8Array {
  const b = new Uint8Array(source);
  const tracks = chunkOffsets(b).filter((o) => b[o + 2] === 0x72);
  const dv = new DataView(b.buffer, b.byteOffset);
  for (const [i, at] of tracks.entries()) {
    const end = tracks[i + 1] ?? b.length;
    dv.setUint32(at + 4, Math.max(0, end - at - 8));
  }
  if (b.length >= 14 && b[0] === 0x4d && b[1] === 0x54 && b[2] === 0x68 && b[3] === 0x64) dv.setUint16(10, Math.min(0xffff, tracks.length));
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The `i`th fuzz case of a run: deterministic for (seed, i). Sometimes two mutations stacked. */
export function fuzzCase(sources: readonly Uint8Array[], seed: number, i: number): { bytes: Uint8Array; mutation: string } {
  const generator = seededRandom((seed * 1_000_003 + i) >>> 0);
  const random = () => generator.next();
  const source = sources[Math.floor(random() * sources.length)];
  const other = sources[Math.floor(random() * sources.length)];
  const first = MUTATIONS[Math.floor(random() * MUTATIONS.length)];
  let bytes = mutate(source, other, first, random);
  let mutation: string = first;
  if (random() < 0.3) {
    const second = MUTATIONS[Math.floor(random() * MUTATIONS.length)];
    bytes = mutate(bytes, other, second, random);
    mutation = `${first}+${second}`;
  }
  if (random() < 0.6 && !mutation.includes('chunk-length')) {
    bytes = fixChunkLengths(bytes);
    mutation += '+framed';
  }
  return { bytes, mutation };
}

export interface FuzzOptions {
  count: number;
  seed: number;
  /** A file slower than this (check + contribute) counts as a hang. */
  boundMs: number;
  /** Sources: these MIDI files (fixtures, dataset pieces). */
  sourceFiles: string[];
  /** The contribute path is given a fresh store this often, so its per-user lists stay small. */
  storeEvery?: number;
  /** Where crashing or hanging inputs are saved for replay (none when unset). */
  keepDir?: string;
  progress?: (line: string) => void;
}

export interface FuzzReport {
  files: number;
  seed: number;
  sources: number;
  check: Record<string, number>;
  contribute: Record<string, number>;
  crashes: { index: number; mutation: string; path: 'check' | 'contribute'; message: string }[];
  hangs: { index: number; mutation: string; ms: number }[];
  maxMs: number;
  p99Ms: number;
  meanMs: number;
  boundMs: number;
  seconds: number;
}

/** The dataset's pieces to mutate: the smallest `n` files, in name order (deterministic). */
export async function datasetSources(datasetDir: string, n: number): Promise<string[]> {
  if (!existsSync(datasetDir)) return [];
  const files: string[] = [];
  for (const composer of (await readdir(datasetDir)).sort()) {
    const dir = join(datasetDir, composer);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names.sort()) if (/\.midi?$/i.test(name)) files.push(join(dir, name));
  }
  return files.filter((_, i) => i % Math.max(1, Math.floor(files.length / n)) === 0).slice(0, n);
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Runs the fuzz cases through check and contribute. Never throws for a bad case: it counts it. */
export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const sources = await Promise.all(o.sourceFiles.map(async (f) => new Uint8Array(await readFile(f))));
  if (sources.length === 0) throw new Error('fuzz: no source MIDI files');
  const root = await mkdtemp(join(tmpdir(), 'nocturne-fuzz-'));
  const report: FuzzReport = { files: 0, seed: o.seed, sources: sources.length, check: {}, contribute: {}, crashes: [], hangs: [], maxMs: 0, p99Ms: 0, meanMs: 0, boundMs: o.boundMs, seconds: 0 };
  const times: number[] = [];
  try {
    // A corpus profile from the sources themselves: unmutated copies are duplicates, others drift.
    const corpusDir = join(root, 'corpus', 'Sources');
    await mkdir(corpusDir, { recursive: true });
    for (const [i, f] of o.sourceFiles.entries()) await copyFile(f, join(corpusDir, `${i}-${basename(f)}`));
    const profile = await buildCorpusProfile(join(root, 'corpus'));
    const storeEvery = o.storeEvery ?? 500;
    let store: CommunityStore | undefined;
    let contributions: Contributions | undefined;
    const keep = async (i: number, bytes: Uint8Array) => {
      if (!o.keepDir) return;
      await mkdir(o.keepDir, { recursive: true });
      await writeFile(join(o.keepDir, `case-${o.seed}-${i}.mid`), bytes);
    };
    for (let i = 0; i < o.count; i++) {
      if (i % storeEvery === 0) {
        await store?.close();
        ({ store, contributions } = await openContributions(join(root, `data-${i}`), profile));
      }
      const { bytes, mutation } = fuzzCase(sources, o.seed, i);
      const t0 = performance.now();
      let verdictStatus: string;
      try {
        const v = checkMidiBytes(bytes, `fuzz-${i}.mid`);
        verdictStatus = v.status;
        if (v.reason?.startsWith('internal error')) throw new Error(v.reason);
      } catch (e) {
        verdictStatus = 'crash';
        report.crashes.push({ index: i, mutation, path: 'check', message: oneLine(e) });
        await keep(i, bytes);
      }
      bump(report.check, verdictStatus);
      try {
        const outcome = await contributions!.contribute(bytes, { uploader: `fuzzer${i}`, platform: 'fuzz', filename: `../fuzz ${i}.mid` });
        bump(report.contribute, outcome.status === 'refused' ? `refused:${outcome.reason}` : outcome.status);
      } catch (e) {
        if (e instanceof ContributionError) {
          bump(report.contribute, 'refused:busy');
        } else {
          bump(report.contribute, 'crash');
          report.crashes.push({ index: i, mutation, path: 'contribute', message: oneLine(e) });
          await keep(i, bytes);
        }
      }
      const ms = performance.now() - t0;
      times.push(ms);
      if (ms > o.boundMs) {
        report.hangs.push({ index: i, mutation, ms: Math.round(ms) });
        await keep(i, bytes);
      }
      report.files++;
      if (o.progress && (i + 1) % 1000 === 0) o.progress(`fuzz: ${i + 1}/${o.count} files, ${report.crashes.length} crashes, ${report.hangs.length} hangs`);
    }
    await store?.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  report.maxMs = round(times.at(-1) ?? 0);
  report.p99Ms = round(times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] ?? 0);
  report.meanMs = round(times.reduce((s, t) => s + t, 0) / Math.max(1, times.length));
  report.seconds = round((Date.now() - started) / 1000);
  return report;
}

async function openContributions(dataDir: string, profile: CorpusProfile): Promise<{ store: CommunityStore; contributions: Contributions }> {
  const store = await CommunityStore.open(dataDir);
  const contributions = new Contributions(store, profile, { dataDir, contributionsPerDay: 1_000_000, holdoutFraction: 0.1, driftThreshold: 0.5 }, () => ['Chopin', 'Schumann']);
  return { store, contributions };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? `${e.name}: ${e.message}` : String(e)).split('\n')[0].slice(0, 300);
}

export function formatFuzzReport(r: FuzzReport): string[] {
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  return [
    `fuzz: ${r.files} mutated/truncated MIDI files from ${r.sources} sources, seed ${r.seed}, ${r.seconds} s`,
    `  check:      ${counts(r.check)}`,
    `  contribute: ${counts(r.contribute)}`,
    `  time per file (check + contribute): mean ${r.meanMs} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms (bound ${r.boundMs} ms)`,
    `  crashes: ${r.crashes.length}${r.crashes.length ? ` (${r.crashes.slice(0, 5).map((c) => `#${c.index} ${c.path} ${c.mutation}: ${c.message}`).join('; ')})` : ''}`,
    `  hangs:   ${r.hangs.length}${r.hangs.length ? ` (${r.hangs.slice(0, 5).map((h) => `#${h.index} ${h.mutation} ${h.ms} ms`).join('; ')})` : ''}`,
  ];
}

const ROOT = join(import.meta.dirname, '..', '..');
export const DEFAULT_FUZZ_DATASET = join(ROOT, '..', 'shared', 'datasets', 'piano-midi-de', 'midis');

/** The fixtures and (when present) 40 dataset pieces. */
export async function defaultFuzzSources(datasetDir = DEFAULT_FUZZ_DATASET): Promise<string[]> {
  const fixtures = join(ROOT, 'tests', 'fixtures');
  const own = (await readdir(fixtures)).filter((n) => /\.midi?$/i.test(n)).sort().map((n) => join(fixtures, n));
  return [...own, ...(await datasetSources(datasetDir, 40))];
}

/** The CLI: exit code 0 when there were no crashes and no hangs, else 1. */
export async function runFuzzCommand(argv: string[], log: (line: string) => void): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { count: { type: 'string' }, seed: { type: 'string' }, 'bound-ms': { type: 'string' }, dataset: { type: 'string' }, json: { type: 'boolean' } } });
  const num = (raw: string | undefined, fallback: number, name: string) => {
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(raw)}`);
    return v;
  };
  const report = await runFuzz({
    count: num(values.count, 10_000, 'count'),
    seed: num(values.seed, 20261125, 'seed'),
    boundMs: num(values['bound-ms'], 2000, 'bound-ms'),
    sourceFiles: await defaultFuzzSources(values.dataset ?? DEFAULT_FUZZ_DATASET),
    keepDir: join(ROOT, 'out', 'fuzz'),
    progress: log,
  });
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else for (const line of formatFuzzReport(report)) process.stdout.write(`${line}\n`);
  return report.crashes.length === 0 && report.hangs.length === 0 ? 0 : 1;
}

const isEntry = process.argv[1] && /bench[\\/]fuzz\.ts$/.test(process.argv[1]);
if (isEntry) {
  runFuzzCommand(process.argv.slice(2), (line) => process.stderr.write(`${line}\n`)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`fuzz: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
