/** `nocturne train --data DIR [--composers a,b] [--epochs N] --out models/NAME [--resume] ...` */
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, type BackendChoice } from '../model/backend.ts';
import { LONG_CONTEXT_HYPERPARAMETERS } from '../model/note/longContext.ts';
import { DEFAULT_INPUT_NOISE } from '../model/note/train/stream.ts';
import { DEFAULT_UNLIKELIHOOD, LOOP_HAZARD_HEADS, OWN_BEST_SCORES } from '../model/note/train/unlikelihood.ts';
import { DEFAULT_HYPERPARAMETERS, MAX_INTERVAL_MATCH, type Hyperparameters } from '../model/note/network.ts';
import { HEAD_NAMES } from '../model/note/sampling.ts';
import { composerTable, corpusHash, readTrainingCorpus } from '../model/corpus.ts';
import { trainModel } from '../model/note/train/fit.ts';
import { carriedDecoding, readModelSpec } from '../model/note/folder.ts';
import { TRAINING_RUN_OPTIONS, UsageError, choiceOption, intOption, listOption, numberOption, parseBackend, terminalProgress, optionProblems } from './options.ts';

export const TRAIN_USAGE = `usage: nocturne train --data DIR --out models/NAME [options]
  --data DIR            folder of piano MIDI, one subfolder per composer (required)
  --out DIR             model folder to write (required)
  --arch A              lstm-attention (default) | long-context | study (the study's baseline, below;
                        "seed", its old name, still works and prints a deprecation line)
  --composers a,b       only these composer folders
  --epochs N            maximum epochs (default 30; early stopping may end sooner)
  --batch N             chunks per batch (default 32)
  --lr X                Adam learning rate (default 0.003)
  --window N            chunk length in notes (default 128)
  --hidden N            LSTM units (default 256)
  --layers N            LSTM layers (default 1)
  --patience N          epochs without improvement before stopping (default 3)
  --max-minutes M       stop after the epoch that passes M minutes
  --seed N              random seed (default 1)
  --resume              continue from DIR/checkpoint
  --init-from DIR       start from a trained model's weights (those whose names and shapes fit)
                        and its decoding
  --lr-inherited X      with --init-from: learning rate of the weights taken from that model
                        (default --lr); the new ones, such as a grown layer, train at --lr
  --backend B           auto | tensorflow | wasm | cpu (default auto)
With --arch study (one target per 100-event window, argmax decoding): --stride N trains on every
N-th window per epoch (default 1), --max-minutes is checked after every batch, --min-count N
(default 2) sets the rarest event kept in the vocabulary; defaults --window 100, --hidden 128,
--layers 2, --batch 64, --lr 0.002, --epochs 20; --patience and --resume do not apply.
With --arch long-context (whole pieces in order, attention over the last --memory notes plus
the chunk, a key input): --memory N (default 512), --heads N (default 3), --key-dropout X
(default 0.2), --input-noise X (default 0.05: the share of notes read back with a displaced
pitch, against copy loops), --transpose N (default 6), --dropout X (default 0.1), --residual (with
--layers 2 or more: each layer above the first adds its gated output to the one below, the gate
zero at the start, so that a layer grown onto a trained model with --init-from starts where that
model was), --gate-init X (with --residual: where the gates start, default 0; a small value
such as 0.1 gives the new layer a gradient from the first step), --relative-pitch (a second pitch
head scores the interval from the note just read, ±24 semitones, so a figure can come back
transposed; it starts at zero, so with --init-from the model starts where its parent was),
--interval-values (each note's attention value also carries its interval from the note before,
so attending to an earlier passage reads its intervals; zero at the start as well),
--interval-match N (each attention head also scores an earlier note by how many of the N
intervals before it equal the N before now, so a head can find where the same steps were played
at another pitch; 1..8, weights zero at the start as well), --beat-clock (each attention head also
scores an earlier note by how far back it lies in beats, through cosines of periods of 1 to 32
beats, so a head can look one, two or four bars back however many notes they hold; zero at the
start as well), --loop-input (the LSTM also reads how long the loop through the note just read
has run and its period, so it can learn from real music when a repeating figure changes; zero
at the start as well), --unlikelihood X (against copy loops:
after every --unlikelihood-every N likelihood steps (default 8) the model writes 8 pieces of 512
notes as it samples, and a step of weight X lowers the probability of each note that carries a
loop past --loop-limit N notes (default 16); default 0: off; the epoch line reports the loops of
the model's own pieces; --return-bonus X adds a likelihood step of weight X on each note of those
pieces that lies in an 8-note figure brought back from further than 16 notes, so that motifs still return),
--loop-hazard X (on the same own pieces, a step of weight X pulls the model's mean probability of
carrying a loop on, per band of loop length (2, 4, 8, 16, 32+ notes), toward the share real pieces
carry theirs on: the onset gap first, then the pitch; alone or beside --unlikelihood; default 0: off;
--loop-hazard-heads dt|pitch|dt,pitch pulls only those heads, default both; --loop-hazard-by-composer
pulls each composer's own pieces toward that composer's real shares instead of the whole corpus's;
--loop-hazard-returns also pulls, per band of match length (3, 6, 12+ steps), the mean probability
of carrying on a figure that returns from further than 16 notes back, toward the real share;
--loop-hazard-joint, with --loop-hazard-heads pitch, pulls the pitch head toward the share that
makes loops carry on in gap and pitch together as often as in real pieces, the gap head's own
share held as it stands, so the pitch makes up for a gap head that carries loops on too often),
--timing-pull X (on the same own pieces, a step of weight X pulls the mean distribution of the
gap and duration heads, over bins of beat fractions, toward the real pieces'; needs --unlikelihood
or --loop-hazard; default 0: off), --own-best X (each round writes its pieces in groups of
--own-best-of N (default 2), one composer to a group, and the piece of each group with the most
notes in figures that return from afar, less those in figures repeated within 16 notes beyond real
music's tenth, takes a likelihood step of weight X; alone or beside the others; default 0: off;
--own-best-raw writes the groups apart at temperature 1 without guidance, so that the steps do not
sharpen the model; --own-best-heads dt,pitch,dur,vel trains only those heads on them, default all;
--own-best-by realism keeps instead the piece that looks most real to a realism classifier fitted
at each epoch's start on the training pieces against 48 of the model's own; default returns),
--return-weight X
(each note of a training piece that lies in an 8-note figure brought back from further than 16
notes counts 1 + X times in the likelihood loss, so that the model learns to bring motifs back;
default 0); defaults --lr 0.002, --batch 16.`;

export const ARCHES = ['lstm-attention', 'long-context', 'study'] as const;
/** Old names of an architecture, still accepted with one deprecation line on stderr. */
const ARCH_ALIASES: ReadonlyMap<string, (typeof ARCHES)[number]> = new Map([['seed', 'study']]);

/** The value of --arch (either `--arch X` or `--arch=X`), checked; undefined when absent. An old name logs one deprecation line. */
function archArgument(argv: string[], log: (line: string) => void): (typeof ARCHES)[number] | undefined {
  let raw: string | undefined;
  argv.forEach((a, i) => {
    if (a === '--arch') raw = argv[i + 1] ?? '';
    else if (a.startsWith('--arch=')) raw = a.slice('--arch='.length);
  });
  if (raw === undefined) return undefined;
  const renamed = ARCH_ALIASES.get(raw);
  if (renamed) {
    log(`--arch ${raw} is deprecated, use --arch ${renamed}`);
    return renamed;
  }
  if (!(ARCHES as readonly string[]).includes(raw)) throw new UsageError(`--arch must be one of ${ARCHES.join(', ')}, got ${JSON.stringify(raw)}`, TRAIN_USAGE);
  return raw as (typeof ARCHES)[number];
}

export async function runTrain(argv: string[], log: (line: string) => void): Promise<number> {
  const arch = archArgument(argv, log);
  if (arch === 'study') return (await import('./trainStudy.ts')).runStudyTrain(argv, log);
  const { values } = parseArgs({
    args: argv,
    options: {
      ...TRAINING_RUN_OPTIONS,
      patience: { type: 'string' },
      resume: { type: 'boolean' },
      'init-from': { type: 'string' },
      'lr-inherited': { type: 'string' },
      memory: { type: 'string' },
      heads: { type: 'string' },
      'key-dropout': { type: 'string' },
      'input-noise': { type: 'string' },
      transpose: { type: 'string' },
      residual: { type: 'boolean' },
      'gate-init': { type: 'string' },
      'relative-pitch': { type: 'boolean' },
      'interval-values': { type: 'boolean' },
      'beat-clock': { type: 'boolean' },
      'loop-input': { type: 'boolean' },
      'interval-match': { type: 'string' },
      dropout: { type: 'string' },
      unlikelihood: { type: 'string' },
      'unlikelihood-every': { type: 'string' },
      'loop-limit': { type: 'string' },
      'return-bonus': { type: 'string' },
      'return-weight': { type: 'string' },
      'loop-hazard': { type: 'string' },
      'loop-hazard-heads': { type: 'string' },
      'loop-hazard-by-composer': { type: 'boolean' },
      'loop-hazard-returns': { type: 'boolean' },
      'loop-hazard-joint': { type: 'boolean' },
      'timing-pull': { type: 'string' },
      'own-best': { type: 'string' },
      'own-best-of': { type: 'string' },
      'own-best-raw': { type: 'boolean' },
      'own-best-heads': { type: 'string' },
      'own-best-by': { type: 'string' },
    },
    strict: true,
  });
  const { problems, take: collect } = optionProblems();
  if (!values.data) problems.push('--data DIR is required');
  if (!values.out) problems.push('--out DIR is required');
  const longContext = arch === 'long-context';
  const base = longContext ? LONG_CONTEXT_HYPERPARAMETERS : DEFAULT_HYPERPARAMETERS;
  if (!longContext) for (const name of ['memory', 'heads', 'key-dropout', 'input-noise', 'residual', 'gate-init', 'relative-pitch', 'interval-values', 'interval-match', 'beat-clock', 'loop-input', 'dropout', 'unlikelihood', 'unlikelihood-every', 'loop-limit', 'return-bonus', 'loop-hazard', 'loop-hazard-heads', 'loop-hazard-by-composer', 'loop-hazard-returns', 'loop-hazard-joint', 'timing-pull', 'own-best', 'own-best-of', 'own-best-raw', 'own-best-heads', 'own-best-by', 'return-weight'] as const) if (values[name] !== undefined) problems.push(`--${name} applies to --arch long-context only`);
  const epochs = collect(() => intOption('--epochs', values.epochs, 30, 1, 10_000), 30);
  const batchDefault = longContext ? 16 : 32;
  const batchSize = collect(() => intOption('--batch', values.batch, batchDefault, 1, 1024), batchDefault);
  const lrDefault = longContext ? 0.002 : 0.003;
  const learningRate = collect(() => numberOption('--lr', values.lr, lrDefault, 1e-6, 1), lrDefault);
  const inheritedLearningRate = values['lr-inherited'] === undefined ? undefined : collect(() => numberOption('--lr-inherited', values['lr-inherited'], learningRate, 1e-7, 1), undefined);
  if (values['lr-inherited'] !== undefined && !values['init-from']) problems.push('--lr-inherited needs --init-from (it is the rate of the weights taken from that model)');
  const transposeDefault = longContext ? 6 : 3;
  const transpose = collect(() => intOption('--transpose', values.transpose, transposeDefault, 0, 12), transposeDefault);
  const keyDropout = collect(() => numberOption('--key-dropout', values['key-dropout'], 0.2, 0, 1), 0.2);
  const inputNoise = collect(() => numberOption('--input-noise', values['input-noise'], DEFAULT_INPUT_NOISE, 0, 0.5), DEFAULT_INPUT_NOISE);
  const unlikelihoodWeight = collect(() => numberOption('--unlikelihood', values.unlikelihood, 0, 0, 100), 0);
  const unlikelihoodEvery = collect(() => intOption('--unlikelihood-every', values['unlikelihood-every'], DEFAULT_UNLIKELIHOOD.every, 1, 100_000), DEFAULT_UNLIKELIHOOD.every);
  const loopLimit = collect(() => intOption('--loop-limit', values['loop-limit'], DEFAULT_UNLIKELIHOOD.limit, 2, 10_000), DEFAULT_UNLIKELIHOOD.limit);
  const returnBonus = collect(() => numberOption('--return-bonus', values['return-bonus'], 0, 0, 100), 0);
  const loopHazard = collect(() => numberOption('--loop-hazard', values['loop-hazard'], 0, 0, 100), 0);
  const returnWeight = collect(() => numberOption('--return-weight', values['return-weight'], 0, 0, 100), 0);
  const timingPull = collect(() => numberOption('--timing-pull', values['timing-pull'], 0, 0, 100), 0);
  const ownBest = collect(() => numberOption('--own-best', values['own-best'], 0, 0, 100), 0);
  const ownBestOf = collect(() => intOption('--own-best-of', values['own-best-of'], 2, 2, DEFAULT_UNLIKELIHOOD.pieces), 2);
  if (!ownBest && (values['own-best-of'] !== undefined || values['own-best-raw'] || values['own-best-heads'] !== undefined || values['own-best-by'] !== undefined)) problems.push('--own-best-of, --own-best-raw, --own-best-heads and --own-best-by need --own-best X (X > 0)');
  const ownBestBy = collect(() => choiceOption('--own-best-by', values['own-best-by'], OWN_BEST_SCORES), undefined);
  const ownBestHeads = collect(() => listOption('--own-best-heads', values['own-best-heads'], HEAD_NAMES, `one or more of ${HEAD_NAMES.join(', ')}`), undefined);
  if (!unlikelihoodWeight && !loopHazard && !ownBest && (values['unlikelihood-every'] !== undefined || values['return-bonus'] !== undefined)) problems.push('--unlikelihood-every and --return-bonus need --unlikelihood X, --loop-hazard X or --own-best X (X > 0)');
  if (!unlikelihoodWeight && !ownBest && values['loop-limit'] !== undefined) problems.push('--loop-limit needs --unlikelihood X or --own-best X (X > 0)');
  if (values['loop-hazard-heads'] !== undefined && !loopHazard) problems.push('--loop-hazard-heads needs --loop-hazard X (X > 0)');
  if (values['loop-hazard-by-composer'] && !loopHazard) problems.push('--loop-hazard-by-composer needs --loop-hazard X (X > 0)');
  if (values['loop-hazard-returns'] && !loopHazard) problems.push('--loop-hazard-returns needs --loop-hazard X (X > 0)');
  if (values['loop-hazard-joint'] && !loopHazard) problems.push('--loop-hazard-joint needs --loop-hazard X (X > 0)');
  if (!unlikelihoodWeight && !loopHazard && values['timing-pull'] !== undefined) problems.push('--timing-pull needs --unlikelihood X or --loop-hazard X (X > 0)');
  const hazardHeads = collect(() => listOption('--loop-hazard-heads', values['loop-hazard-heads'], LOOP_HAZARD_HEADS, `${LOOP_HAZARD_HEADS.join(', ')} or both`), undefined);
  if (values['loop-hazard-joint'] && loopHazard && (hazardHeads?.length !== 1 || hazardHeads[0] !== 'pitch')) problems.push('--loop-hazard-joint pulls through the pitch head alone: give --loop-hazard-heads pitch');
  const patience = collect(() => intOption('--patience', values.patience, 3, 1, 1000), 3);
  const seed = collect(() => intOption('--seed', values.seed, 1, 0, 2 ** 31), 1);
  const maxMinutes = values['max-minutes'] ? collect(() => numberOption('--max-minutes', values['max-minutes'], 0, 0.01, 1e6), undefined) : undefined;
  const hyper: Hyperparameters = {
    ...base,
    window: collect(() => intOption('--window', values.window, base.window, 32, 4096), base.window),
    hidden: collect(() => intOption('--hidden', values.hidden, base.hidden, 8, 4096), base.hidden),
    layers: collect(() => intOption('--layers', values.layers, base.layers, 1, 8), base.layers),
  };
  if (longContext) {
    hyper.memory = collect(() => intOption('--memory', values.memory, LONG_CONTEXT_HYPERPARAMETERS.memory, 1, 8192), LONG_CONTEXT_HYPERPARAMETERS.memory);
    hyper.heads = collect(() => intOption('--heads', values.heads, LONG_CONTEXT_HYPERPARAMETERS.heads, 1, 64), LONG_CONTEXT_HYPERPARAMETERS.heads);
    if (hyper.attentionDim % hyper.heads !== 0) problems.push(`--heads must divide the attention size ${hyper.attentionDim}`);
    hyper.dropout = collect(() => numberOption('--dropout', values.dropout, LONG_CONTEXT_HYPERPARAMETERS.dropout, 0, 0.9), LONG_CONTEXT_HYPERPARAMETERS.dropout);
    hyper.residual = values.residual ?? false;
    hyper.relativePitch = values['relative-pitch'] ?? false;
    hyper.intervalValues = values['interval-values'] ?? false;
    hyper.beatClock = values['beat-clock'] ?? false;
    hyper.loopInput = values['loop-input'] ?? false;
    hyper.intervalMatch = collect(() => intOption('--interval-match', values['interval-match'], 0, 1, MAX_INTERVAL_MATCH), 0);
    if (hyper.residual && hyper.layers < 2) problems.push('--residual needs --layers 2 or more (the layers above the first are residual)');
    if (values['gate-init'] !== undefined && !hyper.residual) problems.push('--gate-init needs --residual (it is where the residual layers\' gates start)');
  } else if (hyper.window % hyper.attentionWindow !== 0) problems.push(`--window must be a multiple of ${hyper.attentionWindow}`);
  const gateInit = collect(() => numberOption('--gate-init', values['gate-init'], 0, 0, 1), 0);
  const backend = collect(() => parseBackend(values.backend), 'auto' as BackendChoice);
  if (problems.length) throw new UsageError(problems.join('\n'), TRAIN_USAGE);

  const parentDir = values['init-from'] ? resolve(values['init-from']) : undefined;
  const parent = parentDir ? await readModelSpec(parentDir) : undefined;
  await initBackend(backend, log);
  const { pieces, train, validation } = await readTrainingCorpus(values.data!, values.composers, log);
  const table = composerTable(pieces);
  const notes = pieces.reduce((s, p) => s + p.tokens.length, 0);
  log(`${pieces.length} pieces, ${notes} notes, ${table.length} composers; validation: ${validation.length} whole pieces (${validation.reduce((s, p) => s + p.tokens.length, 0)} notes)`);
  const outDir = resolve(values.out!);
  const spec = await trainModel({
    outDir,
    train,
    validation,
    composers: table,
    dataHash: corpusHash(pieces),
    dataSource: values.data!,
    hyperparameters: hyper,
    epochs,
    batchSize,
    learningRate,
    clipNorm: 1,
    patience,
    transpose,
    composerDropout: 0.1,
    keyDropout,
    inputNoise,
    ...(returnWeight > 0 ? { returnWeight } : {}),
    unlikelihood: unlikelihoodWeight > 0 || loopHazard > 0 || ownBest > 0 ? { ...DEFAULT_UNLIKELIHOOD, weight: unlikelihoodWeight, every: unlikelihoodEvery, limit: loopLimit, ...(returnBonus > 0 ? { returnBonus } : {}), ...(timingPull > 0 ? { timingPull } : {}), ...(ownBest > 0 ? { ownBest, ownBestOf, ...(values['own-best-raw'] ? { ownBestRaw: true } : {}), ...(ownBestHeads ? { ownBestHeads } : {}), ...(ownBestBy ? { ownBestBy } : {}) } : {}), ...(loopHazard > 0 ? { hazard: loopHazard, ...(hazardHeads ? { hazardHeads } : {}), ...(values['loop-hazard-by-composer'] ? { hazardByComposer: true } : {}), ...(values['loop-hazard-returns'] ? { hazardReturns: true } : {}), ...(values['loop-hazard-joint'] ? { hazardJoint: true } : {}) } : {}) } : undefined,
    initialWeights: parentDir,
    decoding: parent ? carriedDecoding(parent) : undefined,
    inheritedLearningRate,
    gateInit,
    seed,
    resume: values.resume ?? false,
    maxMinutes,
    name: basename(outDir),
    log,
    progress: terminalProgress(),
  });
  log(`model ${spec.version} written to ${outDir}: validation NLL ${spec.metrics.valNll.toFixed(4)} nats/note after ${spec.metrics.epochs} epochs (best ${spec.metrics.bestEpoch})`);
  return 0;
}
