/**
 * `nocturne evaluate`: numbers, not impressions, for a model folder (ours, or the study's
 * baseline) on any folder of piano MIDI.
 *
 * Likelihood. NLL per token of the model on the pieces of --data that the model was not
 * trained on (by content: a piece whose tokens equal a training piece's is "in training";
 * on the training corpus itself that leaves exactly spec.data.validationPieces), overall and
 * per composer, beside unigram and bigram baselines fitted on the model's training pieces
 * with the model's own tokens (see baselines.ts). Our model's token is a note (4 heads); the
 * study model's token is its event (a note or a pitch-class chord), scored on an evenly spread
 * subset of its windows (one target per 100-event window is what it was trained for).
 *
 * Generation. Per composer, K pieces of N notes with fixed seeds in one batched call; their
 * pitch, inter-onset-interval, duration, velocity and chord-size distributions are compared
 * (exact 1-D Wasserstein-1 between the histograms of histograms.ts) with that composer's real pieces in --data and with all other
 * composers' pieces there; their loop rate (share of repeated 16-grams) with that of real
 * excerpts of the same length; and the longest run copied verbatim from the training pieces.
 *
 * Realism (issue 8). Generated pieces of several composers (default 8 each of Mozart, Beethoven,
 * Chopin and Schubert, 500 notes) against the held-out real pieces, per 250-note excerpt: the
 * features of realism.ts with the real 5–95 % band, a classifier two-sample test (ROC-AUC) and
 * composer recognition, each beside a real-vs-real ceiling. Generation goes through one
 * RealismGenerate function, so another architecture plugs in there.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { DEFAULT_TEMPERATURE, DEFAULT_TOP_P } from '../engine/engine.ts';
import { ModelFolderError } from '../model/folder.ts';
import { loadModelFolder, type ModelSpec } from '../model/note/folder.ts';
import { describeDecoding, generateTokens, type HeadDecodings } from '../model/note/sampling.ts';
import { loadStudyModel, isStudyModelSpec, type StudyModelSpec } from '../model/study/folder.ts';
import { evenlySpread, studyWindows } from '../model/study/network.ts';
import { generateStudyEvents, scoreStudyWindows } from '../model/study/predict.ts';
import { encodeEvents, eventsToNotes, studyEvents, UNKNOWN_EVENT } from '../model/study/tokens.ts';
import { seededRandom } from '../model/random.ts';
import { tokenHash, tokenize, type NoteToken } from '../tokens/tokenize.ts';
import type { LoopProfile } from '../tokens/loops.ts';
import { corpusHash, corpusRoot, listCorpus, loadCorpus, type CorpusPiece } from '../model/corpus.ts';
import { evaluatePieces } from '../model/note/train/fit.ts';
import { addTotals, baselineTotals, DEFAULT_SMOOTHING_K, fitBaselines, NOTE_FIELD_CLASSES, noteTokenFields, perToken, type BaselineTotals } from './baselines.ts';
import { histogramsOf, mergeHistograms, QUANTITIES, type Histogram, type Quantity } from './histograms.ts';
import { longestCopiedRuns, loopRate, noteKeys } from './musicStats.ts';
import { wasserstein1 } from './wasserstein.ts';
import { compareRealism, DEFAULT_COMPARE, EXCERPT_NOTES, FEATURE_LABELS, REALISM_FEATURES, REPETITION_FEATURES, type PieceTokens, type RealismComparison } from './realism.ts';
import { keyAdherenceLines, keyRequests, measureKeyAdherence, type KeyAdherence } from './keyAdherence.ts';
import { attentionReachLines, measureAttentionReach, type AttentionReach } from './attentionReach.ts';

export interface EvaluateOptions {
  modelDir: string;
  dataDir: string;
  /** The model's training corpus, when it is not at spec.data.source. */
  trainDataDir?: string;
  /** Evaluate only these composers of --data (default: the model's composers found there). */
  composers?: string[];
  /** Notes per generated piece, and pieces per composer (0 skips generation). */
  notes: number;
  piecesPerComposer: number;
  /** Chunks (our model) or windows (study model) per forward pass. */
  batchSize: number;
  /** Most windows the study model scores (evenly spread over the held-out pieces). */
  maxStudyTargets: number;
  smoothingK: number;
  /** Realism: generated pieces in all (spread evenly over the composers; 0 skips it) and notes per piece. */
  realismPieces: number;
  realismNotes: number;
  /** Realism: which set of random seeds writes the pieces (default 1: the same pieces every run). */
  realismSeed?: number;
  /** Realism composers (default: REALISM_DEFAULT_COMPOSERS that the model knows and --data has). */
  realismComposers?: string[];
  /** Skip the likelihood and the per-composer generation statistics. */
  realismOnly?: boolean;
  /**
   * Decoding of the realism section's pieces: what is given here replaces that part of the
   * model's own decoding (model.json; the engine's defaults for a model without one), head by
   * head for `heads`; the rest stays the model's.
   */
  realismDecoding?: Partial<Pick<RealismDecoding, 'temperature' | 'topP' | 'heads'>>;
  /** Key guidance of the key requests (default: the model's decoding's, as the engine plays it). */
  keyGuidance?: number;
  /** Composer guidance of every generated piece (default: the model's decoding's). */
  composerGuidance?: number;
  log: (line: string) => void;
}

export const DEFAULT_EVALUATE_OPTIONS = { notes: 250, piecesPerComposer: 4, batchSize: 32, maxStudyTargets: 4000, smoothingK: DEFAULT_SMOOTHING_K, realismPieces: 32, realismNotes: 500 } as const;

/** The composers the realism section generates by default: the model's composers with held-out pieces, by the issue. */
export const REALISM_DEFAULT_COMPOSERS = ['Mozart', 'Beethoven', 'Chopin', 'Schubert'] as const;

/** One piece to generate for the realism section: the composer as the model spells it. */
export interface RealismRequest {
  composer: string;
  notes: number;
  randomSeed: number;
  /** Requested key (src/tokens/key.ts), for key-conditioned models; absent means any key. */
  key?: number;
}

/** Generates one token sequence per request, in order: the one place a model architecture plugs in. */
export type RealismGenerate = (requests: readonly RealismRequest[]) => NoteToken[][];

export interface RealismReport extends RealismComparison {
  composers: string[];
  piecesPerComposer: number;
  notesPerPiece: number;
  decoding: string;
  /** The set of random seeds that wrote the pieces (--realism-seed; 1 unless asked). */
  seed: number;
  /** Where the real excerpts come from, and the pieces used for composer recognition. */
  realSource: string;
  composerRecognitionSource: string;
  seconds: { generation: number; analysis: number };
}

/** Distances (Wasserstein-1, in the feature's unit) from generated music to real music. */
export interface FeatureDistance {
  /** To this composer's real pieces. */
  own: number | null;
  /** To the pooled pieces of every other composer in --data. */
  others: number | null;
}

/** The quantities whose histograms (src/eval/histograms.ts) generated and real music are compared on. */
export const COMPARED_FEATURES = QUANTITIES;
export type ComparedFeature = Quantity;

export interface GenerationReport {
  pieces: number;
  notesPerPiece: number;
  wasserstein: Record<ComparedFeature, FeatureDistance>;
  loopRate: { generated: number; real: number | null };
  /** Longest run of generated notes (dt, pitch, duration) found verbatim in a training piece. */
  longestCopiedRun: { notes: number; trainingPiece: string | null };
  /** Study model only: the same on its own event tokens. */
  longestCopiedRunEvents?: { events: number; trainingPiece: string | null };
}

export interface ComposerReport {
  /** Pieces of this composer in --data, and those not in the model's training data. */
  pieces: number;
  heldOutPieces: number;
  /** Tokens scored. */
  tokens: number;
  nll: number | null;
  baselines: { unigram: number | null; bigram: number | null };
  /** Study model: share of targets whose argmax was right. */
  accuracy?: number | null;
  generation?: GenerationReport;
}

export interface EvaluationReport {
  model: { dir: string; arch: string; version: string; composers: string[] };
  data: {
    dir: string;
    pieces: number;
    composersEvaluated: string[];
    /** True when --data is the model's own training corpus (same music). */
    isTrainingCorpus: boolean;
    piecesInTraining: number;
    heldOutPieces: number;
    overlapNote: string;
  };
  trainingData: { dir: string; pieces: number; tokens: number; hashMatchesModel: boolean };
  unit: string;
  nll: number | null;
  nllPerHead?: Record<'dt' | 'pitch' | 'dur' | 'vel', number> | null;
  accuracy?: number | null;
  tokens: number;
  baselines: { unigram: number | null; bigram: number | null; smoothingK: number; fittedOn: { pieces: number; tokens: number } };
  perComposer: Record<string, ComposerReport>;
  generation: null | {
    notesPerPiece: number;
    piecesPerComposer: number;
    decoding: string;
    summary: {
      composers: number;
      /** Mean over composers of the distance to their own and to the other composers' music. */
      meanWasserstein: Record<ComparedFeature, FeatureDistance>;
      /** Share of composers whose music is closer to their own than to the others' (per feature). */
      closerToOwn: Record<ComparedFeature, number>;
      loopRate: { generated: number; real: number | null };
      longestCopiedRun: number;
    };
  };
  /** Realism against the held-out pieces; null when skipped (realismSkipped says why). */
  realism: RealismReport | null;
  realismSkipped?: string;
  /** Key-conditioned models: how often a requested key is the key of the music (with the realism section). */
  keys?: KeyAdherence;
  /** Long-context models: where each attention head looks while reading held-out pieces (src/eval/attentionReach.ts). */
  attentionReach?: AttentionReach;
  /** The sections computed (--realism-only leaves out likelihood and generation). */
  sections: ('likelihood' | 'generation' | 'realism')[];
  budget?: StudyModelSpec['budget'];
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Data

const lower = (s: string) => s.toLowerCase();

function sameFolder(a: string, b: string): boolean {
  try {
    return realpathSync(corpusRoot(a)) === realpathSync(corpusRoot(b));
  } catch {
    return false;
  }
}

async function loadFolder(dir: string, log: (line: string) => void): Promise<CorpusPiece[]> {
  const entries = listCorpus(dir);
  log(`reading ${entries.length} MIDI files from ${dir}`);
  return loadCorpus(entries, log);
}

/** spec.data.source as given (relative to the working folder), else relative to the repository holding the model. */
function locateSource(source: string, modelDir: string): string | undefined {
  const candidates = [resolve(source), resolve(dirname(dirname(resolve(modelDir))), source)];
  return candidates.find((c) => existsSync(c) && statSync(c).isDirectory());
}

interface ModelFacts {
  arch: string;
  version: string;
  composers: string[];
  dataHash: string;
  dataSource: string;
  validationPieces: string[];
}

function facts(spec: ModelSpec | StudyModelSpec): ModelFacts {
  return {
    arch: spec.arch,
    version: spec.version,
    composers: spec.composers.map((c) => c.name),
    dataHash: spec.data.hash,
    dataSource: spec.data.source,
    validationPieces: spec.data.validationPieces,
  };
}

/** Stable small number from a text (for fixed per-composer random seeds). */
function stableSeed(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0) >>> 1;
}

// ---------------------------------------------------------------------------------------------
// Likelihood

interface Likelihood {
  unit: string;
  /** Per composer sums. */
  groups: Map<string, { nll: number; tokens: number; correct?: number; perHead?: number[]; baselines: BaselineTotals }>;
  fittedOn: { pieces: number; tokens: number };
}

function noteLikelihood(weights: Awaited<ReturnType<typeof loadModelFolder>>['weights'], spec: ModelSpec, heldOut: CorpusPiece[], training: CorpusPiece[], o: EvaluateOptions): Likelihood {
  const composerIndex = new Map(spec.composers.map((c, i) => [c.name, i]));
  const baselines = fitBaselines(training.map((p) => noteTokenFields(p.tokens)), NOTE_FIELD_CLASSES, o.smoothingK);
  const groups: Likelihood['groups'] = new Map();
  const byComposer = groupBy(heldOut, (p) => p.composer);
  let done = 0;
  for (const [composer, pieces] of byComposer) {
    // A key-conditioned model is scored with key "any" (as a request without a key): comparable with models without one.
    const r = evaluatePieces(weights, spec.hyperparameters, pieces, composerIndex, spec.composers.length, o.batchSize, true);
    groups.set(composer, {
      nll: r.loss * r.notes,
      tokens: r.notes,
      perHead: r.perHead.map((v) => v * r.notes),
      baselines: addTotals(pieces.map((p) => baselineTotals(baselines, noteTokenFields(p.tokens)))),
    });
    done += pieces.length;
    o.log(`  NLL: ${composer} (${pieces.length} pieces, ${r.notes} notes) ${r.loss.toFixed(4)} — ${done}/${heldOut.length} pieces`);
  }
  return { unit: 'nats per note (sum of the dt, pitch, duration and velocity heads)', groups, fittedOn: baselines.fittedOn };
}

function studyLikelihood(weights: Awaited<ReturnType<typeof loadStudyModel>>['weights'], spec: StudyModelSpec, heldOut: CorpusPiece[], training: CorpusPiece[], o: EvaluateOptions): Likelihood {
  const V = spec.vocabulary.length;
  const trainSeqs = training.map((p) => encodeEvents(studyEvents(p.tokens), spec.vocabulary));
  const baselines = fitBaselines(trainSeqs.map((s) => [s]), [V], o.smoothingK);
  const seqs = heldOut.map((p) => encodeEvents(studyEvents(p.tokens), spec.vocabulary));
  const windows = evenlySpread(studyWindows(seqs, spec.window), o.maxStudyTargets);
  o.log(`  scoring ${windows.length} windows of ${spec.window} events (evenly spread over ${heldOut.length} held-out pieces)`);
  const groups: Likelihood['groups'] = new Map();
  const byComposer = groupBy(windows, (w) => heldOut[w.sequence].composer);
  for (const [composer, list] of byComposer) {
    const score = scoreStudyWindows(weights, spec.hyperparameters, seqs, list, o.batchSize);
    const positions = groupBy(list, (w) => String(w.sequence));
    const totals = [...positions].map(([sequence, ws]) => baselineTotals(baselines, [seqs[Number(sequence)]], ws.map((w) => w.target)));
    groups.set(composer, { nll: score.nll, tokens: score.targets, correct: score.correct, baselines: addTotals(totals) });
    o.log(`  NLL: ${composer} (${score.targets} events) ${(score.nll / Math.max(1, score.targets)).toFixed(4)}`);
  }
  return { unit: "nats per event (the study model's own tokens: a note, or a chord's pitch-class set)", groups, fittedOn: baselines.fittedOn };
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return new Map([...out.entries()].sort((a, b) => a[0].localeCompare(b[0])));
}

// ---------------------------------------------------------------------------------------------
// Generation

interface Generated {
  /** Per composer: K pieces as note tokens (exactly `notes` notes each, or fewer if the model stopped). */
  notes: Map<string, NoteToken[][]>;
  decoding: string;
  /** Study model: the events it generated and its training sequences, for copies on its own tokens. */
  events?: { generated: Map<string, Int32Array[]>; training: Int32Array[] };
}

/** The per-composer pieces, at the model's own decoding (model.json `decoding`, else the engine's defaults), as compose plays it. */
function generateNoteModel(weights: Awaited<ReturnType<typeof loadModelFolder>>['weights'], spec: ModelSpec, composers: string[], o: EvaluateOptions): Generated {
  const gen = noteModelGenerator(weights, spec, spec.decoding ?? DEFAULT_REALISM_DECODING, 'random seed per composer and piece');
  const requests = composers.flatMap((composer) => Array.from({ length: o.piecesPerComposer }, (_, k) => ({ composer, notes: o.notes, randomSeed: stableSeed(`${composer}/${k}`) })));
  const out = gen.generate(requests);
  const notes = new Map<string, NoteToken[][]>();
  out.forEach((tokens, r) => notes.set(requests[r].composer, [...(notes.get(requests[r].composer) ?? []), tokens]));
  return { notes, decoding: gen.decoding };
}

export interface RealismDecoding {
  temperature: number;
  topP: number;
  heads?: HeadDecodings;
  /** Key guidance of key requests (models with a key table); default the model's, else 1. */
  keyGuidance?: number;
  /** Composer guidance (long-context models); default the model's, else 1. */
  composerGuidance?: number;
}

export const DEFAULT_REALISM_DECODING: RealismDecoding = { temperature: DEFAULT_TEMPERATURE, topP: DEFAULT_TOP_P };

/** Our note model through the batched sampler, at the given decoding (the engine's by default); `seeding` ends its description. */
function noteModelGenerator(weights: Awaited<ReturnType<typeof loadModelFolder>>['weights'], spec: ModelSpec, decoding: RealismDecoding, seeding = 'one random seed per piece, all pieces in one batch'): { generate: RealismGenerate; decoding: string } {
  const index = new Map(spec.composers.map((c, i) => [c.name, i]));
  return {
    generate: (requests) =>
      generateTokens(
        weights,
        spec.hyperparameters,
        spec.composers.length,
        requests.map((r) => ({ composer: index.get(r.composer)!, notes: r.notes, temperature: decoding.temperature, topP: decoding.topP, heads: decoding.heads, randomSeed: r.randomSeed, key: r.key, keyGuidance: decoding.keyGuidance, composerGuidance: decoding.composerGuidance })),
      ),
    decoding: `${describeDecoding(decoding.temperature, decoding.topP, decoding.heads, decoding)}, ${seeding}`,
  };
}

/** The study model as the study played it (argmax from a fixed primer per composer); random seeds do not apply. */
function studyModelGenerator(weights: Awaited<ReturnType<typeof loadStudyModel>>['weights'], spec: StudyModelSpec, training: CorpusPiece[], real: CorpusPiece[], o: EvaluateOptions): { generate: RealismGenerate; decoding: string } {
  return {
    generate: (requests) => {
      const composers = [...new Set(requests.map((r) => r.composer))];
      const most = Math.max(0, ...composers.map((c) => requests.filter((r) => r.composer === c).length));
      const notes = Math.max(0, ...requests.map((r) => r.notes));
      const gen = generateStudyModel(weights, spec, composers, training, real, { ...o, notes, piecesPerComposer: most });
      const taken = new Map<string, number>();
      return requests.map((r) => {
        const k = taken.get(r.composer) ?? 0;
        taken.set(r.composer, k + 1);
        return (gen.notes.get(r.composer)?.[k] ?? []).slice(0, r.notes);
      });
    },
    decoding: "argmax, primed with a fixed random window of the composer's training pieces",
  };
}

function generateStudyModel(weights: Awaited<ReturnType<typeof loadStudyModel>>['weights'], spec: StudyModelSpec, composers: string[], training: CorpusPiece[], real: CorpusPiece[], o: EvaluateOptions): Generated {
  const trainSeqs = training.map((p) => encodeEvents(studyEvents(p.tokens), spec.vocabulary));
  const primers: Int32Array[] = [];
  const owners: string[] = [];
  for (const c of composers) {
    // The study primed with a random window of its training data; per composer, we take that
    // composer's training pieces (or its real pieces in --data when the model never saw it).
    let pool = training.map((p, i) => ({ p, seq: trainSeqs[i] })).filter((x) => x.p.composer === c && x.seq.length > spec.window);
    if (pool.length === 0) pool = real.filter((p) => p.composer === c).map((p) => ({ p, seq: encodeEvents(studyEvents(p.tokens), spec.vocabulary) })).filter((x) => x.seq.length > spec.window);
    if (pool.length === 0) continue;
    const rng = seededRandom(stableSeed(c));
    for (let k = 0; k < o.piecesPerComposer; k++) {
      const { seq } = pool[Math.floor(rng.next() * pool.length)];
      const start = Math.floor(rng.next() * (seq.length - spec.window));
      primers.push(seq.slice(start, start + spec.window));
      owners.push(c);
    }
  }
  // Chords give several notes per event: generate as many events as notes, then cut to N notes.
  const unknown = spec.vocabulary.indexOf(UNKNOWN_EVENT);
  const out = primers.length ? generateStudyEvents(weights, spec.hyperparameters, primers, o.notes, unknown) : [];
  const notes = new Map<string, NoteToken[][]>();
  const events = new Map<string, Int32Array[]>();
  out.forEach((seq, r) => {
    const tokens = tokenize(eventsToNotes(Array.from(seq, (i) => spec.vocabulary[i]))).slice(0, o.notes);
    notes.set(owners[r], [...(notes.get(owners[r]) ?? []), tokens]);
    events.set(owners[r], [...(events.get(owners[r]) ?? []), seq]);
  });
  return { notes, decoding: 'argmax, primed with a fixed random window of the composer\'s training pieces', events: { generated: events, training: trainSeqs } };
}

/** W1 between two histograms of one quantity; null when either has no samples. */
function distance(a: Histogram, b: Histogram): number | null {
  if (a.values.length === 0 || b.values.length === 0) return null;
  return wasserstein1(a, b);
}

/** Loop rate of real music measured like generated music: over non-overlapping excerpts of `notes` notes. */
function realLoopRate(pieces: readonly CorpusPiece[], notes: number): number | null {
  const rates: number[] = [];
  for (const p of pieces) for (let s = 0; s + notes <= p.tokens.length; s += notes) rates.push(loopRate(p.tokens.slice(s, s + notes)));
  return rates.length ? mean(rates) : null;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function generationReports(gen: Generated, real: CorpusPiece[], training: CorpusPiece[], o: EvaluateOptions): Map<string, GenerationReport> {
  const realByComposer = groupBy(real, (p) => p.composer);
  const realHist = new Map([...realByComposer].map(([c, ps]) => [c, histogramsOf(ps.map((p) => p.tokens))]));
  const composers = [...gen.notes.keys()];
  const allGenerated = composers.flatMap((c) => gen.notes.get(c)!);
  o.log(`  looking for copies of ${allGenerated.length} generated pieces in ${training.length} training pieces (${training.reduce((s, p) => s + p.tokens.length, 0)} notes)`);
  const copies = longestCopiedRuns(allGenerated.map((t) => noteKeys(t)), training.map((p) => noteKeys(p.tokens)));
  let eventCopies: ReturnType<typeof longestCopiedRuns> | undefined;
  if (gen.events) eventCopies = longestCopiedRuns(composers.flatMap((c) => gen.events!.generated.get(c)!), gen.events.training);
  const reports = new Map<string, GenerationReport>();
  let offset = 0;
  for (const c of composers) {
    const pieces = gen.notes.get(c)!;
    const mine = copies.slice(offset, offset + pieces.length);
    const mineEvents = eventCopies?.slice(offset, offset + pieces.length);
    offset += pieces.length;
    const generatedHist = histogramsOf(pieces);
    const own = realHist.get(c);
    const others = mergeHistograms([...realHist].filter(([name]) => name !== c).map(([, h]) => h));
    const wasserstein = {} as GenerationReport['wasserstein'];
    for (const f of COMPARED_FEATURES) wasserstein[f] = { own: own ? distance(generatedHist[f], own[f]) : null, others: distance(generatedHist[f], others[f]) };
    const bestCopy = mine.reduce((a, b) => (b.length > a.length ? b : a));
    const report: GenerationReport = {
      pieces: pieces.length,
      notesPerPiece: o.notes,
      wasserstein,
      loopRate: { generated: mean(pieces.map((t) => loopRate(t))), real: realLoopRate(realByComposer.get(c) ?? [], o.notes) },
      longestCopiedRun: { notes: bestCopy.length, trainingPiece: bestCopy.piece >= 0 ? training[bestCopy.piece].name : null },
    };
    if (mineEvents) {
      const best = mineEvents.reduce((a, b) => (b.length > a.length ? b : a));
      report.longestCopiedRunEvents = { events: best.length, trainingPiece: best.piece >= 0 ? training[best.piece].name : null };
    }
    reports.set(c, report);
  }
  return reports;
}

function summarise(reports: Map<string, GenerationReport>): NonNullable<EvaluationReport['generation']>['summary'] {
  const list = [...reports.values()];
  const meanOf = (xs: (number | null)[]) => {
    const ok = xs.filter((x): x is number => x !== null);
    return ok.length ? mean(ok) : null;
  };
  const meanWasserstein = {} as Record<ComparedFeature, FeatureDistance>;
  const closerToOwn = {} as Record<ComparedFeature, number>;
  for (const f of COMPARED_FEATURES) {
    meanWasserstein[f] = { own: meanOf(list.map((r) => r.wasserstein[f].own)), others: meanOf(list.map((r) => r.wasserstein[f].others)) };
    const comparable = list.filter((r) => r.wasserstein[f].own !== null && r.wasserstein[f].others !== null);
    closerToOwn[f] = comparable.length ? comparable.filter((r) => r.wasserstein[f].own! < r.wasserstein[f].others!).length / comparable.length : 0;
  }
  return {
    composers: list.length,
    meanWasserstein,
    closerToOwn,
    loopRate: { generated: meanOf(list.map((r) => r.loopRate.generated)) ?? 0, real: meanOf(list.map((r) => r.loopRate.real)) },
    longestCopiedRun: Math.max(0, ...list.map((r) => r.longestCopiedRun.notes)),
  };
}

// ---------------------------------------------------------------------------------------------
// Realism

/**
 * The realism composers, as --data spells them (generation uses the model's spelling): the ones
 * asked for, else the defaults that the model knows and --data has, else up to four of the
 * model's composers with the most held-out pieces.
 */
function chooseRealismComposers(asked: readonly string[] | undefined, modelComposers: readonly string[], dataPieces: readonly CorpusPiece[], heldOut: readonly CorpusPiece[]): string[] {
  const dataComposers = [...new Set(dataPieces.map((p) => p.composer))];
  const inData = (c: string) => dataComposers.find((d) => lower(d) === lower(c));
  const inModel = (c: string) => modelComposers.find((m) => lower(m) === lower(c));
  if (asked?.length)
    return asked.map((c) => {
      const known = inModel(c);
      if (!known) throw new Error(`--realism-composers: ${c} is not one of the model's composers (${modelComposers.join(', ')})`);
      return inData(c) ?? known;
    });
  const defaults = REALISM_DEFAULT_COMPOSERS.filter((c) => inModel(c) && inData(c)).map((c) => inData(c)!);
  if (defaults.length) return defaults;
  const held = groupBy(heldOut.filter((p) => inModel(p.composer)), (p) => p.composer);
  return [...held].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0])).slice(0, 4).map(([c]) => c);
}

export interface RealismInput {
  /** Real excerpts come from these pieces (the model's held-out pieces). */
  real: readonly PieceTokens[];
  /** Real pieces for composer recognition (all of --data's pieces of the realism composers). */
  composerReal: readonly PieceTokens[];
  /** Composer labels, and the model's spelling of each for generation. */
  composers: readonly { label: string; model: string }[];
  piecesPerComposer: number;
  notes: number;
  /** Which set of random seeds writes the pieces (absent or 1: the seeds every earlier evaluation used). */
  seed?: number;
  generate: RealismGenerate;
  decoding: string;
  realSource: string;
  composerRecognitionSource: string;
  log: (line: string) => void;
}

/** Generates the pieces (one call of `generate`) and compares them with the real ones. */
export function realismSection(input: RealismInput): RealismReport {
  const requests: RealismRequest[] = [];
  const labels: string[] = [];
  // Seed set 1 keeps the seed names every earlier evaluation used.
  const otherSet = input.seed !== undefined && input.seed !== 1;
  for (const c of input.composers)
    for (let k = 0; k < input.piecesPerComposer; k++) {
      requests.push({ composer: c.model, notes: input.notes, randomSeed: stableSeed(`realism/${otherSet ? `${input.seed}/` : ''}${c.model}/${k}`) });
      labels.push(c.label);
    }
  input.log(`realism: generating ${requests.length} pieces × ${input.notes} notes (${input.composers.map((c) => c.label).join(', ')}, ${input.piecesPerComposer} each) in one batch${otherSet ? `, seed set ${input.seed}` : ''}`);
  let t0 = performance.now();
  const tokens = input.generate(requests);
  const generation = (performance.now() - t0) / 1000;
  input.log(`  generated in ${generation.toFixed(1)} s`);
  const generated: PieceTokens[] = tokens.map((t, r) => ({ name: `generated/${labels[r]}/${r}`, composer: labels[r], tokens: t }));
  t0 = performance.now();
  const comparison = compareRealism(input.real, generated, { ...DEFAULT_COMPARE, log: input.log }, input.composerReal);
  const analysis = (performance.now() - t0) / 1000;
  input.log(`  realism analysed in ${analysis.toFixed(1)} s`);
  return {
    composers: input.composers.map((c) => c.label),
    piecesPerComposer: input.piecesPerComposer,
    notesPerPiece: input.notes,
    decoding: input.decoding,
    seed: input.seed ?? 1,
    realSource: input.realSource,
    composerRecognitionSource: input.composerRecognitionSource,
    ...comparison,
    seconds: { generation: Math.round(generation * 10) / 10, analysis: Math.round(analysis * 10) / 10 },
  };
}

// ---------------------------------------------------------------------------------------------
// The whole evaluation

/** A model folder opened for evaluation: the note model or the study's baseline. */
type LoadedModel = ({ kind: 'study' } & Awaited<ReturnType<typeof loadStudyModel>>) | ({ kind: 'note' } & Awaited<ReturnType<typeof loadModelFolder>>);

/** Everything evaluateModel's steps share once the model and the data are read. */
interface EvaluationContext {
  o: EvaluateOptions;
  loaded: LoadedModel;
  model: ModelFacts;
  modelComposers: Set<string>;
  dataPieces: CorpusPiece[];
  training: CorpusPiece[];
  pieces: EvaluatedPieces;
}

export async function evaluateModel(o: EvaluateOptions): Promise<EvaluationReport> {
  const started = performance.now();
  const loaded = await openModel(o.modelDir);
  try {
    const model = facts(loaded.spec);
    o.log(`model ${model.version} (${model.arch}), ${model.composers.length} composers`);
    const dataPieces = await loadFolder(o.dataDir, o.log);
    const modelComposers = new Set(model.composers.map(lower));
    const corpus = await trainingCorpus(o, model, modelComposers, dataPieces);
    const validation = new Set(model.validationPieces);
    const training = corpus.pieces.filter((p) => !validation.has(p.name));
    const pieces = evaluatedPieces(o, model, modelComposers, dataPieces, training);
    const ctx: EvaluationContext = { o, loaded, model, modelComposers, dataPieces, training, pieces };

    const sections: EvaluationReport['sections'] = [];
    const likelihood = likelihoodSection(ctx);
    if (!o.realismOnly) sections.push('likelihood');
    const generation = generationSection(ctx);
    if (generation.ran) sections.push('generation');
    const realism = realismSections(ctx);
    if (realism.realism) sections.push('realism');

    const report = assembleReport(ctx, corpus, likelihood, generation, realism, sections);
    const reach = reachSection(ctx);
    if (reach) report.attentionReach = reach;
    report.seconds = Math.round((performance.now() - started) / 100) / 10;
    return report;
  } finally {
    tf.dispose(Object.values(loaded.weights));
  }
}

/** Reads model.json to tell the study's baseline from the note model, then loads the folder. */
async function openModel(modelDir: string): Promise<LoadedModel> {
  const modelJson = join(modelDir, 'model.json');
  if (!existsSync(modelJson)) throw new ModelFolderError(modelDir, 'no model.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(modelJson, 'utf8'));
  } catch (e) {
    throw new ModelFolderError(modelDir, `model.json is not valid JSON (${(e as Error).message})`);
  }
  return isStudyModelSpec(raw) ? { kind: 'study' as const, ...(await loadStudyModel(modelDir)) } : { kind: 'note' as const, ...(await loadModelFolder(modelDir)) };
}

/** The model's training corpus (for baselines, overlap and copies): --train-data, data.source, or --data when its hash is the model's. */
async function trainingCorpus(o: EvaluateOptions, model: ModelFacts, modelComposers: Set<string>, dataPieces: CorpusPiece[]): Promise<{ pieces: CorpusPiece[]; dir: string; hashMatchesModel: boolean }> {
  const inModel = (p: CorpusPiece) => modelComposers.has(lower(p.composer));
  const trainDir = o.trainDataDir ?? locateSource(model.dataSource, o.modelDir);
  let pieces: CorpusPiece[];
  let dir: string;
  if (o.trainDataDir && !existsSync(o.trainDataDir)) throw new Error(`--train-data ${o.trainDataDir}: not a folder`);
  if (trainDir) {
    dir = trainDir;
    pieces = (sameFolder(trainDir, o.dataDir) ? dataPieces : await loadFolder(trainDir, o.log)).filter(inModel);
    if (pieces.length === 0)
      throw new Error(
        o.trainDataDir
          ? `--train-data ${o.trainDataDir}: no pieces of the model's composers (${model.composers.join(', ')})`
          : `cannot find the model's training data: data.source ${JSON.stringify(model.dataSource)} (${trainDir}) has no pieces of its composers; pass --train-data DIR`,
      );
  } else if (corpusHash(dataPieces.filter(inModel)) === model.dataHash) {
    dir = o.dataDir;
    pieces = dataPieces.filter(inModel);
  } else {
    throw new Error(`cannot find the model's training data (model.json data.source is ${JSON.stringify(model.dataSource)}); pass --train-data DIR`);
  }
  const hashMatchesModel = corpusHash(pieces) === model.dataHash;
  if (!hashMatchesModel) o.log(`warning: the training data at ${dir} is not the music this model was trained on (data hash differs); baselines and copies use it anyway`);
  return { pieces, dir, hashMatchesModel };
}

/** Which composers and pieces of --data are evaluated, and which of them the model never trained on. */
interface EvaluatedPieces {
  selected: string[];
  evalPieces: CorpusPiece[];
  heldOut: CorpusPiece[];
  inTraining: number;
  isTrainingCorpus: boolean;
  overlapNote: string;
}

function evaluatedPieces(o: EvaluateOptions, model: ModelFacts, modelComposers: Set<string>, dataPieces: CorpusPiece[], training: CorpusPiece[]): EvaluatedPieces {
  const trainingHashes = new Set(training.map((p) => tokenHash(p.tokens)));
  const dataComposers = [...new Set(dataPieces.map((p) => p.composer))].sort();
  let selected: string[];
  if (o.composers?.length) {
    selected = o.composers.map((c) => {
      const hit = dataComposers.find((d) => lower(d) === lower(c));
      if (!hit) throw new Error(`--composers: ${c} has no pieces in ${o.dataDir} (it has ${dataComposers.join(', ')})`);
      return hit;
    });
  } else {
    const known = dataComposers.filter((c) => modelComposers.has(lower(c)));
    selected = known.length ? known : dataComposers;
  }
  const evalPieces = dataPieces.filter((p) => selected.includes(p.composer));
  const heldOut = evalPieces.filter((p) => !trainingHashes.has(tokenHash(p.tokens)));
  const inTraining = evalPieces.length - heldOut.length;
  const isTrainingCorpus = corpusHash(dataPieces.filter((p) => modelComposers.has(lower(p.composer)))) === model.dataHash;
  const overlapNote =
    inTraining === 0
      ? 'no piece of --data is in the model\'s training data: NLL is over all evaluated pieces'
      : `${inTraining} of ${evalPieces.length} evaluated pieces are in the model's training data and are left out of the NLL${isTrainingCorpus ? ' (--data is the training corpus: NLL is over its held-out validation pieces)' : ''}`;
  o.log(overlapNote);
  return { selected, evalPieces, heldOut, inTraining, isTrainingCorpus, overlapNote };
}

/** NLL of the held-out pieces with the unigram and bigram baselines (empty with --realism-only). */
function likelihoodSection({ o, loaded, training, pieces }: EvaluationContext): Likelihood {
  if (o.realismOnly) return { unit: '', groups: new Map(), fittedOn: { pieces: training.length, tokens: training.reduce((s, p) => s + p.tokens.length, 0) } };
  o.log(`likelihood on ${pieces.heldOut.length} held-out pieces`);
  return loaded.kind === 'study' ? studyLikelihood(loaded.weights, loaded.spec, pieces.heldOut, training, o) : noteLikelihood(loaded.weights, loaded.spec, pieces.heldOut, training, o);
}

/** Per-composer generated pieces compared with the real ones (skipped with 0 pieces or --realism-only). */
function generationSection({ o, loaded, model, modelComposers, dataPieces, training, pieces }: EvaluationContext): { ran: boolean; generated?: Map<string, GenerationReport>; decoding: string } {
  if (o.piecesPerComposer <= 0 || o.realismOnly) return { ran: false, decoding: '' };
  const genComposers = loaded.kind === 'study' ? pieces.selected : pieces.selected.filter((c) => modelComposers.has(lower(c)));
  if (!genComposers.length) {
    o.log('no evaluated composer is known to the model: generation skipped');
    return { ran: true, decoding: '' };
  }
  const canonical = (c: string) => model.composers.find((m) => lower(m) === lower(c)) ?? c;
  const t0 = performance.now();
  o.log(`generating ${o.piecesPerComposer} × ${o.notes} notes for each of ${genComposers.length} composers in one batch`);
  const gen = loaded.kind === 'study' ? generateStudyModel(loaded.weights, loaded.spec, genComposers, training, dataPieces, o) : generateNoteModel(loaded.weights, loaded.spec, genComposers.map(canonical), o);
  o.log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Reports are keyed by the data's spelling of the composer.
  const renamed: Generated = { ...gen, notes: new Map([...gen.notes].map(([c, v]) => [genComposers.find((g) => lower(g) === lower(c)) ?? c, v])) };
  return { ran: true, generated: generationReports(renamed, dataPieces, training, o), decoding: gen.decoding };
}

/** The realism section and, for a key-conditioned note model, key adherence (or why realism was skipped). */
function realismSections({ o, loaded, model, dataPieces, training, pieces }: EvaluationContext): { realism: RealismReport | null; realismSkipped?: string; keys?: KeyAdherence } {
  if (o.realismPieces <= 0) return { realism: null };
  const composers = chooseRealismComposers(o.realismComposers, model.composers, dataPieces, pieces.heldOut);
  const withExcerpts = pieces.heldOut.filter((p) => p.tokens.length >= DEFAULT_COMPARE.excerptNotes);
  const skipped = composers.length === 0 ? 'no composer of the model has pieces in --data' : withExcerpts.length < 4 ? `needs at least 4 held-out pieces of ${DEFAULT_COMPARE.excerptNotes}+ notes, --data has ${withExcerpts.length}` : undefined;
  if (skipped) {
    o.log(`realism skipped: ${skipped}`);
    return { realism: null, realismSkipped: skipped };
  }
  const modelName = (label: string) => model.composers.find((m) => lower(m) === lower(label))!;
  const gen = loaded.kind === 'study' ? studyModelGenerator(loaded.weights, loaded.spec, training, dataPieces, o) : noteModelGenerator(loaded.weights, loaded.spec, realismDecodingOf(loaded.spec.decoding, o));
  const labels = new Set(composers.map(lower));
  const realism = realismSection({
    real: withExcerpts,
    composerReal: dataPieces.filter((p) => labels.has(lower(p.composer))),
    composers: composers.map((label) => ({ label, model: modelName(label) })),
    piecesPerComposer: Math.ceil(o.realismPieces / composers.length),
    notes: o.realismNotes,
    seed: o.realismSeed,
    generate: gen.generate,
    decoding: gen.decoding,
    realSource: `${withExcerpts.length} held-out pieces of --data (not in the model's training data), ${pieces.selected.length} composers`,
    composerRecognitionSource: `every piece of --data by ${composers.join(', ')} (training pieces included: the classifier is not the model)`,
    log: o.log,
  });
  if (loaded.kind !== 'note' || !loaded.spec.hyperparameters.keys) return { realism };
  const requests = keyRequests(composers.map(modelName), EXCERPT_NOTES);
  o.log(`key adherence: ${requests.length} pieces × ${EXCERPT_NOTES} notes, one per key`);
  return { realism, keys: measureKeyAdherence(requests, gen.generate(requests)) };
}

/**
 * The realism pieces' decoding: the model's own (the engine's defaults without one), with what
 * `o` asks for in its place: temperature, top-p, each head asked for, and the guidances.
 */
export function realismDecodingOf(own: RealismDecoding | undefined, o: Pick<EvaluateOptions, 'realismDecoding' | 'keyGuidance' | 'composerGuidance'>): RealismDecoding {
  const base = own ?? DEFAULT_REALISM_DECODING;
  const asked = o.realismDecoding ?? {};
  const heads = asked.heads ? { ...base.heads, ...asked.heads } : base.heads;
  return {
    temperature: asked.temperature ?? base.temperature,
    topP: asked.topP ?? base.topP,
    ...(heads ? { heads } : {}),
    keyGuidance: o.keyGuidance ?? own?.keyGuidance,
    composerGuidance: o.composerGuidance ?? own?.composerGuidance,
  };
}

/** Long-context note models: the attention reach on the held-out pieces (null otherwise). */
function reachSection({ o, loaded, pieces }: EvaluationContext): AttentionReach | null {
  if (loaded.kind !== 'note' || pieces.heldOut.length === 0) return null;
  const started = performance.now();
  const reach = measureAttentionReach(loaded.weights, loaded.spec, pieces.heldOut);
  if (reach) o.log(`attention reach: ${reach.pieces} held-out pieces, ${reach.notes} notes read in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return reach;
}

/** The report: per-composer rows, overall NLL and baselines, and the sections that ran. */
function assembleReport(
  { o, loaded, model, dataPieces, training, pieces }: EvaluationContext,
  corpus: { dir: string; hashMatchesModel: boolean },
  likelihood: Likelihood,
  generation: { generated?: Map<string, GenerationReport>; decoding: string },
  realism: { realism: RealismReport | null; realismSkipped?: string; keys?: KeyAdherence },
  sections: EvaluationReport['sections'],
): EvaluationReport {
  const { selected, evalPieces, heldOut } = pieces;
  const perComposer: Record<string, ComposerReport> = {};
  for (const c of selected) {
    const g = likelihood.groups.get(c);
    perComposer[c] = {
      pieces: evalPieces.filter((p) => p.composer === c).length,
      heldOutPieces: heldOut.filter((p) => p.composer === c).length,
      tokens: g?.tokens ?? 0,
      nll: g?.tokens ? g.nll / g.tokens : null,
      baselines: g ? perToken(g.baselines) : { unigram: null, bigram: null },
    };
    if (loaded.kind === 'study') perComposer[c].accuracy = g?.tokens ? g.correct! / g.tokens : null;
    const gen = generation.generated?.get(c);
    if (gen) perComposer[c].generation = gen;
  }
  const groups = [...likelihood.groups.values()];
  const tokens = groups.reduce((s, g) => s + g.tokens, 0);
  const nllSum = groups.reduce((s, g) => s + g.nll, 0);
  const overallBaselines = perToken(addTotals(groups.map((g) => g.baselines)));
  const report: EvaluationReport = {
    model: { dir: o.modelDir, arch: model.arch, version: model.version, composers: model.composers },
    data: { dir: o.dataDir, pieces: dataPieces.length, composersEvaluated: selected, isTrainingCorpus: pieces.isTrainingCorpus, piecesInTraining: pieces.inTraining, heldOutPieces: heldOut.length, overlapNote: pieces.overlapNote },
    trainingData: { dir: corpus.dir, pieces: training.length, tokens: likelihood.fittedOn.tokens, hashMatchesModel: corpus.hashMatchesModel },
    unit: likelihood.unit,
    nll: tokens ? nllSum / tokens : null,
    tokens,
    baselines: { ...overallBaselines, smoothingK: o.smoothingK, fittedOn: likelihood.fittedOn },
    perComposer,
    generation: generation.generated ? { notesPerPiece: o.notes, piecesPerComposer: o.piecesPerComposer, decoding: generation.decoding, summary: summarise(generation.generated) } : null,
    realism: realism.realism,
    ...(realism.realismSkipped ? { realismSkipped: realism.realismSkipped } : {}),
    ...(realism.keys ? { keys: realism.keys } : {}),
    sections,
    seconds: 0,
  };
  if (o.realismOnly) return report; // no likelihood was computed
  if (loaded.kind === 'note') {
    const heads = [0, 1, 2, 3].map((k) => groups.reduce((s, g) => s + (g.perHead?.[k] ?? 0), 0) / Math.max(1, tokens));
    report.nllPerHead = tokens ? { dt: heads[0], pitch: heads[1], dur: heads[2], vel: heads[3] } : null;
  } else {
    report.accuracy = tokens ? groups.reduce((s, g) => s + (g.correct ?? 0), 0) / tokens : null;
    report.budget = loaded.spec.budget;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Human-readable report

const fmt = (x: number | null | undefined, digits = 3) => (x === null || x === undefined ? '—' : x.toFixed(digits));

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n');
}

/** The report as text tables: likelihood, generated-music statistics, then realism. */
export function formatReport(r: EvaluationReport): string {
  const lines: string[] = [];
  lines.push(`model ${r.model.dir}: ${r.model.version} (${r.model.arch}), ${r.model.composers.length} composers`);
  if (r.budget) lines.push(`training budget: ${r.budget.windowsTrained} windows (${r.budget.epochs} epochs at stride ${r.budget.stride}), ${r.budget.steps} steps, ${r.budget.trainSeconds} s, stopped by ${r.budget.stoppedBy}${r.budget.maxMinutes ? ` (limit ${r.budget.maxMinutes} min)` : ''}`);
  lines.push(`data ${r.data.dir}: ${r.data.pieces} pieces; ${r.data.overlapNote}`);
  if (r.sections.includes('likelihood')) lines.push(...likelihoodLines(r));
  if (r.generation) lines.push(...generationLines(r));
  if (r.realism) lines.push(...realismLines(r.realism));
  if (r.keys) lines.push(...keyAdherenceLines(r.keys));
  else if (r.realismSkipped) lines.push('', `realism skipped: ${r.realismSkipped}`);
  if (r.attentionReach) lines.push(...attentionReachLines(r.attentionReach));
  lines.push('');
  lines.push(`(${r.seconds} s)`);
  return lines.join('\n');
}

function likelihoodLines(r: EvaluationReport): string[] {
  const lines: string[] = [];
  lines.push(`baselines fitted on ${r.trainingData.pieces} training pieces (${r.trainingData.tokens} tokens) from ${r.trainingData.dir}${r.trainingData.hashMatchesModel ? '' : ' — NOT the model\'s exact training data'}, add-${r.baselines.smoothingK} smoothing`);
  lines.push('');
  lines.push(`NLL, ${r.unit}:`);
  const head = ['composer', 'pieces', 'held out', 'tokens', 'model', 'unigram', 'bigram', ...(r.accuracy !== undefined ? ['accuracy'] : [])];
  const rows = [head];
  for (const [c, p] of Object.entries(r.perComposer))
    rows.push([c, String(p.pieces), String(p.heldOutPieces), String(p.tokens), fmt(p.nll), fmt(p.baselines.unigram), fmt(p.baselines.bigram), ...(r.accuracy !== undefined ? [p.accuracy == null ? '—' : `${(p.accuracy * 100).toFixed(1)}%`] : [])]);
  rows.push(['ALL', String(Object.values(r.perComposer).reduce((s, p) => s + p.pieces, 0)), String(r.data.heldOutPieces), String(r.tokens), fmt(r.nll), fmt(r.baselines.unigram), fmt(r.baselines.bigram), ...(r.accuracy !== undefined ? [r.accuracy == null ? '—' : `${(r.accuracy * 100).toFixed(1)}%`] : [])]);
  lines.push(table(rows));
  if (r.nllPerHead) lines.push(`per head: dt ${fmt(r.nllPerHead.dt)}, pitch ${fmt(r.nllPerHead.pitch)}, duration ${fmt(r.nllPerHead.dur)}, velocity ${fmt(r.nllPerHead.vel)}`);
  return lines;
}

function generationLines(r: EvaluationReport): string[] {
  const lines: string[] = [];
  if (r.generation) {
    lines.push('');
    lines.push(`generated music: ${r.generation.piecesPerComposer} × ${r.generation.notesPerPiece} notes per composer (${r.generation.decoding})`);
    lines.push('Wasserstein-1 to the composer\'s own real pieces / to all other composers\' (pitch in semitones, IOI and duration in beats, velocity in MIDI units, chord in notes); loop = share of repeated 16-grams; copy = longest run found verbatim in training');
    const gRows = [['composer', 'pitch', 'ioi', 'duration', 'velocity', 'chord', 'loop gen/real', 'copy']];
    const pair = (d: FeatureDistance, digits: number) => `${fmt(d.own, digits)}/${fmt(d.others, digits)}`;
    for (const [c, p] of Object.entries(r.perComposer)) {
      const g = p.generation;
      if (!g) continue;
      const w = g.wasserstein;
      gRows.push([c, pair(w.pitch, 2), pair(w.ioi, 3), pair(w.duration, 3), pair(w.velocity, 1), pair(w.chordSize, 2), `${fmt(g.loopRate.generated, 2)}/${fmt(g.loopRate.real, 2)}`, `${g.longestCopiedRun.notes}${g.longestCopiedRunEvents ? ` (${g.longestCopiedRunEvents.events} ev)` : ''}`]);
    }
    const s = r.generation.summary;
    const m = s.meanWasserstein;
    gRows.push(['MEAN', pair(m.pitch, 2), pair(m.ioi, 3), pair(m.duration, 3), pair(m.velocity, 1), pair(m.chordSize, 2), `${fmt(s.loopRate.generated, 2)}/${fmt(s.loopRate.real, 2)}`, `max ${s.longestCopiedRun}`]);
    gRows.push(['closer to own', ...COMPARED_FEATURES.map((f) => `${Math.round(s.closerToOwn[f] * 100)}%`), '', '']);
    lines.push(table(gRows));
  }
  return lines;
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/** Realism: one row per feature, then the classifier and composer recognition. */
function realismLines(m: RealismReport): string[] {
  const lines = ['', `realism: ${m.generated.pieces} generated pieces × ${m.notesPerPiece} notes (${m.composers.join(', ')}; ${m.decoding}${m.seed && m.seed !== 1 ? `; seed set ${m.seed}` : ''}) in ${m.generated.excerpts} excerpts of ${m.excerptNotes} notes, against ${m.real.excerpts} excerpts of ${m.real.pieces} real pieces (${m.realSource})`];
  lines.push('real-vs-real: one half of the real pieces (split by piece) against the other half; pass: the mean inside the real 5–95 % band (repetition also within 0.5–1.5× real); alone AUC: how well the feature by itself tells generated from real (0.5 none)');
  const rows = [['feature', 'real mean', 'real 5–95 %', 'real vs real', 'generated', 'gen/real', 'pass', 'alone AUC']];
  for (const f of REALISM_FEATURES) {
    const x = m.features[f];
    const digits = f === 'velocityMean' || f === 'pitchRange' ? 1 : f === 'velocityValues' || f === 'pitchClassSetEntropy' ? 2 : 3;
    const ratio = REPETITION_FEATURES.includes(f) ? (x.ratio == null ? '—' : `${x.ratio.toFixed(2)}×`) : '';
    rows.push([FEATURE_LABELS[f], fmt(x.real.mean, digits), `${fmt(x.real.p5, digits)}–${fmt(x.real.p95, digits)}`, `${fmt(x.realVsReal.otherHalfMean, digits)}${x.realVsReal.pass ? '' : ' ✗'}`, fmt(x.generated.mean, digits), ratio, x.pass ? 'yes' : 'NO', fmt(x.separation, 2)]);
  }
  lines.push(table(rows));
  lines.push(`features passing: ${m.passed} of ${REALISM_FEATURES.length}`);
  const c = m.classifier;
  lines.push(`classifier (logistic regression, ${c.generatedVsReal.folds}-fold CV grouped by piece, ${c.generatedVsReal.aucs.length} repeats): ROC-AUC generated vs real ${fmt(c.generatedVsReal.auc)}, real vs real ${fmt(c.realVsReal.auc)} (target ≤ 0.70)`);
  if (c.leading.length) lines.push(`what gives it away (the classifier on the first feature, then adding the one that raises its AUC most): ${c.leading.map((l, i) => `${i ? '+ ' : ''}${FEATURE_LABELS[l.feature]} ${fmt(l.auc)}`).join(' → ')}`);
  const k = m.composerRecognition;
  if (k)
    lines.push(`composer recognition (${k.composers.join(', ')}; chance ${pct(k.chance)}): real ${pct(k.real.accuracy)} (balanced ${pct(k.real.balancedAccuracy)}, ${k.real.pieces} pieces), generated ${pct(k.generated.accuracy)} (balanced ${pct(k.generated.balancedAccuracy)}; ${Object.entries(k.generated.perComposer).map(([name, a]) => `${name} ${pct(a)}`).join(', ')})`);
  else lines.push('composer recognition: fewer than two composers with real and generated excerpts');
  const loops = (p: LoopProfile) => `${p.startsPer100.toFixed(1)} started per 100 notes, carried on after ${p.goesOn.map((g) => `${g.from}+ ${fmt(g.share, 2)}`).join(' / ')}`;
  if (m.loops) lines.push(`loops (whole pieces; carried on: the share of notes that continue a loop already that long): real ${loops(m.loops.real)}; generated ${loops(m.loops.generated)}`);
  lines.push(`(realism: generation ${m.seconds.generation} s, analysis ${m.seconds.analysis} s)`);
  return lines;
}
