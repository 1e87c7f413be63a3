/**
 * `nocturne bench` (`npm run bench [-- --json]`): the engine's performance figures against the
 * targets of the engine issue, measured in one process with warm-up runs and medians.
 *
 *   generation   500 notes stateful, batch 1 and batch 16
 *   re-feed      whole-window re-feed vs stateful stepping, per note, same run
 *   training     many-to-many tokens/s (fit.ts's step) vs the study's many-to-one
 *   matmul       the backend's own tf.matMul GFLOP/s, and training's useful FLOP rate as a share
 *
 * A long-context model (src/model/note/longContext.ts) skips re-feed (it has no whole-window path)
 * and trains with its own streamed-chunk step, without the FLOP share or many-to-one figures
 * (src/bench/flops.ts counts the local-attention network only); the notes say so.
 *   compose      Engine.compose chopin 500 → WAV (the default format) and → OGG, end to end
 *   memory       peak RSS of the process
 *   chat         src/bench/chatLoad.ts's figures, when that module exists
 *
 * Progress goes to stderr; stdout gets the table, or one JSON object with --json.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError, intOption, parseBackend } from './options.ts';
import { initBackend } from '../model/backend.ts';
import { inputWidth } from '../model/note/features.ts';
import { DATA_ATTRIBUTION } from '../model/folder.ts';
import { loadModelFolder, saveModelFolder, type ModelSpec } from '../model/note/folder.ts';
import { DEFAULT_HYPERPARAMETERS, createWeights, type Hyperparameters } from '../model/note/network.ts';
import type { Weights } from '../model/layers.ts';
import { isLongContext } from '../model/note/longContext.ts';
import { disposePreparedDecoder, generateTokens, prepareDecoder, type PreparedDecoder } from '../model/note/sampling.ts';
import { listCorpus, loadCorpus, type CorpusPiece } from '../model/corpus.ts';
import { tokenSchemeSpec, type NoteToken } from '../tokens/tokenize.ts';
import { benchCompose } from '../bench/compose.ts';
import { benchGeneration, benchRefeed, type GenerationModel } from '../bench/generation.ts';
import { benchMatmul } from '../bench/matmul.ts';
import { REQUIRED_FIELDS, checkTargets, formatTable, type Figures } from '../bench/report.ts';
import { round } from '../bench/stats.ts';
import { benchLongContext, benchManyToMany, benchManyToOne } from '../bench/training.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DEFAULT_MODEL = join(ROOT, 'models/default');
const DEFAULT_DATA = resolve(ROOT, '../shared/datasets/piano-midi-de');
const SECTIONS = ['matmul', 'gen', 'refeed', 'train', 'compose', 'chat', 'scale'] as const;
/** Sections that run only when named in --only (they take minutes and need redis-server). */
const OPT_IN: readonly Section[] = ['scale'];
type Section = (typeof SECTIONS)[number];

export const BENCH_USAGE = `usage: nocturne bench [--json] [--quick] [options]
  --json              print one JSON object (progress still goes to stderr)
  --quick             fewer repetitions and notes: a smoke test, not numbers to quote
  --model DIR         model folder (default models/default; random weights of the default
                      shape when it is missing)
  --data DIR          piano MIDI for the training figures (default ../shared/datasets/piano-midi-de)
  --only LIST         run only these sections: ${SECTIONS.join(',')}
  --users N           simulated chat users for the chat-load figure (default 8, 4 with --quick)
  --scale-users N     concurrent /compose for the scale-out figure (default 200; section 'scale',
                      only with --only scale: Redis + 1 and 2 worker processes, takes minutes)
  --backend B         auto | tensorflow | wasm | cpu

Targets (2-core machine, wasm): 500 notes ≤ 300 ms; batch 16 ≤ 3× batch 1; stateful ≥ 30×
faster than re-feed; training ≥ 50% of the matmul rate; compose chopin 500 → WAV (and → OGG) ≤ 3 s.`;

interface Plan {
  quick: boolean;
  genWarmup: number;
  genReps: number;
  refeedNotes: number;
  refeedReps: number;
  trainWarmup: number;
  trainReps: number;
  corpusFiles: number;
  matmulReps: number;
  composeReps: number;
}

const PLANS: Record<'full' | 'quick', Plan> = {
  full: { quick: false, genWarmup: 1, genReps: 5, refeedNotes: 60, refeedReps: 3, trainWarmup: 1, trainReps: 3, corpusFiles: 48, matmulReps: 7, composeReps: 3 },
  quick: { quick: true, genWarmup: 1, genReps: 1, refeedNotes: 8, refeedReps: 1, trainWarmup: 1, trainReps: 1, corpusFiles: 16, matmulReps: 2, composeReps: 1 },
};

interface BenchModel {
  spec: Pick<ModelSpec, 'version' | 'composers' | 'hyperparameters' | 'decoding'>;
  dir: string;
  randomWeights: boolean;
}

/** Composer folder names of the dataset, or a fixed list when it is absent. */
function datasetComposers(dataDir: string): string[] {
  try {
    return [...new Set(listCorpus(dataDir).map((e) => e.composer))];
  } catch {
    return ['Bach', 'Beethoven', 'Chopin', 'Mozart', 'Schubert'];
  }
}

/** models/default when it loads, else a folder of random weights of the default shape. */
async function resolveModel(modelDir: string, dataDir: string, tempDir: string, notes: string[], log: (l: string) => void): Promise<BenchModel> {
  if (existsSync(join(modelDir, 'model.json'))) {
    try {
      const { spec, weights } = await loadModelFolder(modelDir);
      tf.dispose(Object.values(weights));
      return { spec, dir: modelDir, randomWeights: false };
    } catch (e) {
      notes.push(`${modelDir} did not load (${(e as Error).message}); benched random weights instead`);
    }
  } else {
    notes.push(`${modelDir} is missing: benched random weights of the default shape (sampling and training speed do not depend on the values; compose-to-audio does: random notes make much longer music to render)`);
  }
  const names = datasetComposers(dataDir);
  const h: Hyperparameters = { ...DEFAULT_HYPERPARAMETERS };
  const width = inputWidth(names.length);
  const weights = createWeights(h, width, 1);
  const dir = join(tempDir, 'random-model');
  log(`model: random weights, ${names.length} composers → ${dir}`);
  try {
    const spec = await saveModelFolder(
      dir,
      {
        version: 'random-weights',
        arch: 'lstm-attention',
        tokens: tokenSchemeSpec(),
        inputWidth: width,
        hyperparameters: h,
        composers: names.map((name) => ({ name, pieces: 1, tempoBpm: 100 })),
        data: { hash: 'none', source: 'bench', pieces: 0, notes: 0, validationPieces: [], attribution: DATA_ATTRIBUTION },
        training: {},
        metrics: {},
      },
      weights,
    );
    return { spec, dir, randomWeights: true };
  } finally {
    tf.dispose(Object.values(weights));
  }
}

/** Every k-th file of the corpus, so that the sample spans composers. */
async function sampleCorpus(dataDir: string, files: number, log: (l: string) => void): Promise<CorpusPiece[]> {
  const entries = listCorpus(dataDir);
  const step = Math.max(1, Math.floor(entries.length / files));
  const picked = entries.filter((_, i) => i % step === 0).slice(0, files);
  log(`data: reading ${picked.length} of ${entries.length} files from ${dataDir}`);
  return loadCorpus(picked);
}

/** chatLoad.ts's result as chat_* fields in the bench's snake_case (its own keys are camelCase). */
export function chatFields(result: Record<string, unknown>): Figures {
  const out: Figures = {};
  const snake = (k: string) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
  for (const [k, v] of Object.entries(result)) out[`chat_${snake(k)}`] = v as Figures[string];
  const batching = result.batchedVsUnbatched as { speedup?: unknown } | undefined;
  if (typeof batching?.speedup === 'number') out.chat_batching_speedup = round(batching.speedup);
  return out;
}

function machineLine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model?.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}`;
}

/** What the sections share in one bench run. Each section writes its figures into `f` and may add notes. */
interface BenchRun {
  plan: Plan;
  model: BenchModel;
  dataDir: string;
  users: number;
  scaleUsers: number;
  f: Figures;
  notes: string[];
  log: (line: string) => void;
  composerNames: string[];
  /** Index of Chopin among the model's composers (0 when it has none). */
  chopin: number;
  /** The model's weights for sampling, loaded on first use and disposed after the sampling sections. */
  generationModel: () => Promise<GenerationModel>;
  /** A sample of the corpus, read on first use. */
  pieces: () => Promise<CorpusPiece[]>;
}

/** `out` receives what goes to stdout (the table or the JSON); tests pass their own. */
export async function runBench(argv: string[], log: (line: string) => void, out: (text: string) => void = (t) => void process.stdout.write(t)): Promise<number> {
  const options = parseBenchArgs(argv);
  const { plan } = options;
  const started = performance.now();
  const load = loadavg()[0];
  const notes: string[] = [];
  const errors: string[] = [];
  if (load > 0.9) notes.push(`the machine was busy when the bench started (load average ${load.toFixed(2)} on ${cpus().length} cores): absolute timings are pessimistic, ratios less affected`);
  const backend = await initBackend(options.backend, log);
  const tempDir = await mkdtemp(join(tmpdir(), 'nocturne-bench-'));
  const f: Figures = {};
  try {
    const model = await resolveModel(options.modelDir, options.dataDir, tempDir, notes, log);
    const composerNames = model.spec.composers.map((c) => c.name);
    Object.assign(f, {
      backend: `${backend}${backend === 'wasm' ? `, SIMD ${(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'on' : 'off'}, 1 thread` : ''}`,
      tfjs: tf.version_core,
      machine: machineLine(),
      model_version: model.spec.version,
      model_dir: model.randomWeights ? 'random weights (default shape)' : model.dir,
      random_weights: model.randomWeights,
      hyperparameters: { ...model.spec.hyperparameters },
      date: new Date().toISOString(),
      quick: plan.quick,
      load_avg_1m_at_start: round(load, 2),
    });
    let weights: Weights | undefined;
    let decoder: PreparedDecoder | undefined;
    let corpus: CorpusPiece[] | undefined;
    const chopin = Math.max(0, composerNames.findIndex((n) => n.toLowerCase() === 'chopin'));
    const run: BenchRun = {
      plan,
      model,
      dataDir: options.dataDir,
      users: options.users,
      scaleUsers: options.scaleUsers,
      f,
      notes,
      log,
      composerNames,
      chopin,
      generationModel: async () => {
        weights ??= (await loadModelFolder(model.dir)).weights;
        // As the engine does: the host-side decoder is made once for the model, not per pass.
        decoder ??= prepareDecoder(weights, model.spec.hyperparameters);
        return { weights, h: model.spec.hyperparameters, composerCount: composerNames.length, composer: chopin, decoding: model.spec.decoding, decoder };
      },
      pieces: async () => (corpus ??= await sampleCorpus(options.dataDir, plan.corpusFiles, log)),
    };

    const sectionSeconds: Record<string, number> = {};
    f.section_seconds = sectionSeconds;
    for (const [name, body] of SECTION_BODIES) {
      if (options.runs(name)) {
        const t0 = performance.now();
        try {
          await body(run);
          sectionSeconds[name] = round((performance.now() - t0) / 1000);
        } catch (e) {
          if (process.env.NOCTURNE_DEBUG === '1') console.error(e);
          errors.push(`${name}: ${(e as Error).message}`);
          log(`bench ${name} failed: ${(e as Error).message}`);
        }
      }
      if (name === 'refeed') {
        // The last section that samples: derive the per-note figure and free the weights.
        if (typeof f.stateful_ms_per_note !== 'number' && typeof f.gen500_ms_batch1 === 'number') f.stateful_ms_per_note = round(f.gen500_ms_batch1 / 500);
        disposePreparedDecoder(decoder);
        if (weights) tf.dispose(Object.values(weights));
      }
    }
  } finally {
    await rm(tempDir, { recursive: true, force: true });
  }
  f.peak_rss_mb = round(process.resourceUsage().maxRSS / 1024);
  f.load_avg_1m_at_end = round(loadavg()[0], 2);
  f.bench_seconds = round((performance.now() - started) / 1000);
  f.notes = notes;
  if (errors.length) f.errors = errors;
  for (const k of REQUIRED_FIELDS) f[k] ??= null;
  f.checks = checkTargets(f) as unknown as Figures[string];
  if (options.json) out(`${JSON.stringify(f, null, 2)}\n`);
  else out(`${formatTable(f)}\n${errors.map((e) => `error: ${e}\n`).join('')}`);
  return errors.length ? 1 : 0;
}

/** The command line, checked: usage errors name the flag and list what it takes. */
function parseBenchArgs(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      quick: { type: 'boolean' },
      model: { type: 'string' },
      data: { type: 'string' },
      only: { type: 'string' },
      users: { type: 'string' },
      'scale-users': { type: 'string' },
      backend: { type: 'string' },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`, BENCH_USAGE);
  const backend = parseBackend(values.backend);
  const users = intOption('--users', values.users, values.quick ? 4 : 8, 1, 1000);
  const scaleUsers = intOption('--scale-users', values['scale-users'], values.quick ? 20 : 200, 1, 5000);
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((s) => !(SECTIONS as readonly string[]).includes(s));
  if (unknown?.length) throw new UsageError(`--only: unknown section ${unknown.join(', ')} (sections: ${SECTIONS.join(', ')})`, BENCH_USAGE);
  return {
    json: values.json === true,
    plan: values.quick ? PLANS.quick : PLANS.full,
    backend,
    users,
    scaleUsers,
    runs: (s: Section) => (only ? only.includes(s) : !OPT_IN.includes(s)),
    modelDir: resolve(values.model ?? DEFAULT_MODEL),
    dataDir: resolve(values.data ?? DEFAULT_DATA),
  };
}

async function matmulSection({ plan, f, log }: BenchRun): Promise<void> {
  log('matmul: tf.matMul 1024×1024 · 1024×1024');
  const m = await benchMatmul(1024, 1024, 1024, plan.matmulReps);
  f.matmul_gflops = round(m.gflops);
  f.matmul_shape = m.shape;
  f.matmul_ms = round(m.medianMs);
}

async function generationSection({ plan, f, log, generationModel }: BenchRun): Promise<void> {
  const g = await benchGeneration(await generationModel(), { notes: 500, warmup: plan.genWarmup, reps: plan.genReps, log });
  f.gen500_ms_batch1 = round(g.batch1.medianMs);
  f.gen500_ms_batch16 = round(g.batch16.medianMs);
  f.gen_batch16_over_batch1 = round(g.batch16.medianMs / g.batch1.medianMs);
  f.gen500_ms_per_row_batch16 = round(g.batch16.medianMs / 16);
  f.gen500_runs_ms_batch1 = g.batch1.runs.map((r) => round(r));
  f.gen500_runs_ms_batch16 = g.batch16.runs.map((r) => round(r));
}

async function refeedSection({ plan, model, f, notes, log, generationModel, pieces }: BenchRun): Promise<void> {
  const h = model.spec.hyperparameters;
  if (isLongContext(h)) {
    notes.push('re-feed: skipped for the long-context model: it has no whole-window re-feed path (its sampler steps a ring of attention slots and never re-runs anything; tests/long-context.test.ts checks that it computes what chunked training computes)');
    return;
  }
  const m = await generationModel();
  // A real piece's opening as the primer, so that every re-feed step runs a full window.
  let primer: NoteToken[] | undefined;
  try {
    primer = (await pieces()).find((p) => p.composer.toLowerCase() === 'chopin' && p.tokens.length >= h.window)?.tokens.slice(0, h.window);
  } catch {
    primer = undefined;
  }
  primer ??= generateTokens(m.weights, h, m.composerCount, [{ composer: m.composer, notes: h.window, temperature: 1, topP: 0.95, randomSeed: 3 }])[0];
  const r = await benchRefeed(m, primer, { notes: plan.refeedNotes, statefulNotes: plan.quick ? 50 : 500, reps: plan.refeedReps, log });
  f.refeed_ms_per_note = round(r.refeedMsPerNote);
  f.stateful_ms_per_note = round(r.statefulMsPerNote);
  f.refeed_over_stateful = round(r.refeedMsPerNote / r.statefulMsPerNote);
  f.refeed_notes = r.notes;
  f.refeed_window = r.window;
}

async function trainingSection({ plan, model, f, notes, log, composerNames, pieces }: BenchRun): Promise<void> {
  const h = model.spec.hyperparameters;
  const p = await pieces();
  const trainable = (await loadModelFolder(model.dir, true)).weights;
  const composerIndex = new Map(composerNames.map((n, i) => [n, i]));
  try {
    if (isLongContext(h)) {
      // `nocturne train --arch long-context` defaults to batch 16 (32 for the local-attention model).
      const lc = benchLongContext({ weights: trainable, h, pieces: p, composerIndex, composers: composerNames.length, batchSize: 16, warmup: plan.trainWarmup, reps: plan.trainReps, log });
      f.train_tokens_per_s = round(lc.targetsPerSecond);
      f.train_step_ms = round(lc.stepMs);
      f.train_batch = lc.batch;
      f.train_window = lc.window;
      f.train_memory = lc.memory;
      notes.push(
        `training: long-context step (one streamed chunk of ${lc.batch} × ${lc.window} notes with ${lc.memory} notes of carried memory, as streamEpoch runs it); no FLOP share or many-to-one figures: src/bench/flops.ts models the local-attention network only, and many-to-one is the study's regime for that network`,
      );
      return;
    }
    const input = { weights: trainable, h, pieces: p, composerIndex, composers: composerNames.length, batchSize: 32, m2oWindow: 100, warmup: plan.trainWarmup, reps: plan.trainReps, log };
    const m2m = benchManyToMany(input);
    f.train_tokens_per_s = round(m2m.targetsPerSecond);
    f.train_step_ms = round(m2m.stepMs);
    f.train_batch = input.batchSize;
    f.train_window = m2m.window;
    f.train_gflop_per_step = round(m2m.flopsPerStep / 1e9);
    const trainGflops = m2m.flopsPerStep / (m2m.stepMs * 1e6);
    f.train_gflops = round(trainGflops);
    if (typeof f.matmul_gflops === 'number') f.train_share_of_matmul = round(trainGflops / f.matmul_gflops);
    const m2o = benchManyToOne(input);
    f.m2o_targets_per_s = round(m2o.targetsPerSecond);
    f.m2o_step_ms = round(m2o.stepMs);
    f.m2o_window = m2o.window;
    f.m2o_attention_window = m2o.attentionWindow;
    f.m2m_over_m2o = round(m2m.targetsPerSecond / m2o.targetsPerSecond);
  } finally {
    tf.dispose(Object.values(trainable));
  }
}

async function composeSection({ plan, model, f, log, composerNames, chopin }: BenchRun): Promise<void> {
  const c = await benchCompose(model.dir, { composer: composerNames[chopin], notes: 500, reps: plan.composeReps, log });
  f.compose_wav_s = round(c.wav.seconds);
  f.compose_ogg_s = round(c.ogg.seconds);
  f.compose_first_s = round(c.firstSeconds);
  f.compose_sampling_s = round(c.samplingSeconds);
  f.engine_open_s = round(c.openSeconds);
  f.compose_wav_bytes = c.wav.bytes;
  f.compose_ogg_bytes = c.ogg.bytes;
  f.compose_music_s = round(c.musicSeconds);
  f.compose_music_range_s = c.musicRange.map((s) => round(s));
}

async function chatSection({ plan, model, users, f, notes, log }: BenchRun): Promise<void> {
  const path = fileURLToPath(new URL('../bench/chatLoad.ts', import.meta.url));
  if (!existsSync(path)) {
    notes.push('chat load: src/bench/chatLoad.ts is not there yet, skipped');
    return;
  }
  type ChatLoad = (o: { users: number; modelDir: string; idleRuns?: number; log?: (l: string) => void }) => Promise<Record<string, unknown>>;
  const m = (await import(path)) as { benchChatLoad?: ChatLoad };
  if (typeof m.benchChatLoad !== 'function') {
    notes.push('chat load: src/bench/chatLoad.ts does not export benchChatLoad, skipped');
    return;
  }
  log(`chat load: ${users} simulated users (src/bench/chatLoad.ts)`);
  const result = await m.benchChatLoad({ users, modelDir: model.dir, idleRuns: plan.quick ? 1 : 3, log });
  Object.assign(f, chatFields(result ?? {}));
}

async function scaleSection({ model, scaleUsers, f, notes, log }: BenchRun): Promise<void> {
  const { runScaleLoad, formatScaleLoad } = await import('../bench/scaleLoad.ts');
  log(`scale-out load: ${scaleUsers} concurrent /compose with 1 and 2 worker processes over Redis`);
  const r = await runScaleLoad({ users: scaleUsers, modelDir: model.dir, log });
  f.scale_users = r.users;
  for (const run of r.runs) {
    f[`scale_${run.workers}w_per_min`] = round(run.throughputPerMin);
    f[`scale_${run.workers}w_p50_ms`] = round(run.p50Ms);
    f[`scale_${run.workers}w_p99_ms`] = round(run.p99Ms);
  }
  f.scale_lost = r.runs.reduce((n, x) => n + x.lost, 0);
  if (r.scalingRatio !== undefined) f.scale_ratio = round(r.scalingRatio, 2);
  notes.push(...formatScaleLoad(r));
}

/** The sections in the order they run (SECTIONS' order). */
const SECTION_BODIES: readonly [Section, (run: BenchRun) => Promise<void>][] = [
  ['matmul', matmulSection],
  ['gen', generationSection],
  ['refeed', refeedSection],
  ['train', trainingSection],
  ['compose', composeSection],
  ['chat', chatSection],
  ['scale', scaleSection],
];
