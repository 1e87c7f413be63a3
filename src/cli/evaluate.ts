/** `nocturne evaluate --model DIR --data DIR [--json] ...`: see src/eval/evaluate.ts. */
import { parseArgs } from 'node:util';
import { initBackend, type BackendChoice } from '../model/backend.ts';
import { DEFAULT_EVALUATE_OPTIONS, DEFAULT_REALISM_DECODING, evaluateModel, formatReport, REALISM_DEFAULT_COMPOSERS } from '../eval/evaluate.ts';
import { parseHeadDecodings } from '../model/note/sampling.ts';
import { EXCERPT_NOTES } from '../eval/realism.ts';
import { UsageError, intOption, numberOption, parseBackend, optionProblems } from './options.ts';

const D = DEFAULT_EVALUATE_OPTIONS;

export const EVALUATE_USAGE = `usage: nocturne evaluate --model DIR --data DIR [options]
Reports the model's NLL per token on the pieces of --data it was not trained on, beside unigram
and bigram baselines fitted on its training pieces, and statistics of music it generates per
composer (Wasserstein distances to real music, loop rate, longest copy from the training data),
and realism: generated pieces against the held-out real pieces per ${EXCERPT_NOTES}-note excerpt
(repetition, rhythm, texture, harmony and velocity features with the real 5–95 % band, a
classifier's ROC-AUC, composer recognition), each beside a real-vs-real ceiling. For long-context
models also the attention reach: where each head looks (notes back, or nothing) while reading
12 held-out pieces (up to 1,000 notes each) with the real notes written back.
Works for our models and for the study's baseline (nocturne train --arch study).
  --model DIR                 model folder (required)
  --data DIR                  folder of piano MIDI, composer subfolders optional (required)
  --json                      print one JSON object (fields nll, baselines.unigram,
                              baselines.bigram, perComposer, generation, ...)
  --composers a,b             only these composers of --data (default: the model's composers
                              found there, else all)
  --notes N                   notes per generated piece (default ${D.notes}; 16..2000)
  --pieces-per-composer K     generated pieces per composer (default ${D.piecesPerComposer}; 0 skips generation)
  --train-data DIR            the model's training corpus, if not at model.json's data.source
  --batch N                   chunks / windows per forward pass (default ${D.batchSize})
  --max-study-targets N       study model: most windows scored (default ${D.maxStudyTargets};
                              --max-seed-targets, its old name, still works)
  --realism-pieces N          realism: generated pieces in all, spread over the composers
                              (default ${D.realismPieces}; 0 skips realism)
  --realism-notes N           realism: notes per generated piece (default ${D.realismNotes}; ${EXCERPT_NOTES}..2000)
  --realism-composers a,b     realism: composers to generate (default ${REALISM_DEFAULT_COMPOSERS.join(', ')},
                              those the model knows and --data has)
  --realism-seed N            realism: which set of random seeds writes the pieces (default 1,
                              the same pieces every run); another N measures the figures' noise
  --realism-only              only the realism section (no NLL, no per-composer statistics)
  --temperature T             realism: sampling temperature
  --top-p P                   realism: nucleus mass
  --head-decoding SPEC        realism: per-head temperature/top-p, e.g. dt=1/1,vel=1.1/1
                              (heads dt, pitch, dur, vel). Each of these three replaces only
                              its part of the model's own decoding (model.json; without one,
                              temperature ${DEFAULT_REALISM_DECODING.temperature}, top-p ${DEFAULT_REALISM_DECODING.topP}); the rest stays the model's
  --key-guidance G            key adherence: key guidance of models with a key table, 1..20
                              (default the model's decoding's, else 1)
  --composer-guidance G       realism: composer guidance of long-context models, 1..5
                              (default the model's decoding's, else 1)
  --backend B                 auto | tensorflow | wasm | cpu (default auto)`;

export async function runEvaluate(argv: string[], log: (line: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
      composers: { type: 'string' },
      notes: { type: 'string' },
      'pieces-per-composer': { type: 'string' },
      'train-data': { type: 'string' },
      batch: { type: 'string' },
      'max-study-targets': { type: 'string' },
      'max-seed-targets': { type: 'string' },
      'smoothing-k': { type: 'string' },
      backend: { type: 'string' },
      'realism-pieces': { type: 'string' },
      'realism-seed': { type: 'string' },
      'realism-notes': { type: 'string' },
      'realism-composers': { type: 'string' },
      'realism-only': { type: 'boolean' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'head-decoding': { type: 'string' },
      'key-guidance': { type: 'string' },
      'composer-guidance': { type: 'string' },
    },
    strict: true,
  });
  const { problems, take: collect } = optionProblems();
  if (!values.model) problems.push('--model DIR is required');
  if (!values.data) problems.push('--data DIR is required');
  const notes = collect(() => intOption('--notes', values.notes, D.notes, 16, 2000), D.notes);
  const piecesPerComposer = collect(() => intOption('--pieces-per-composer', values['pieces-per-composer'], D.piecesPerComposer, 0, 64), D.piecesPerComposer);
  const batchSize = collect(() => intOption('--batch', values.batch, D.batchSize, 1, 1024), D.batchSize);
  if (values['max-seed-targets'] !== undefined) log('--max-seed-targets is deprecated, use --max-study-targets');
  const maxStudyTargets = collect(() => intOption('--max-study-targets', values['max-study-targets'] ?? values['max-seed-targets'], D.maxStudyTargets, 1, 10_000_000), D.maxStudyTargets);
  const smoothingK = collect(() => numberOption('--smoothing-k', values['smoothing-k'], D.smoothingK, 1e-9, 1000), D.smoothingK);
  const backend = collect(() => parseBackend(values.backend), 'auto' as BackendChoice);
  const realismPieces = collect(() => intOption('--realism-pieces', values['realism-pieces'], D.realismPieces, 0, 512), D.realismPieces);
  const realismNotes = collect(() => intOption('--realism-notes', values['realism-notes'], D.realismNotes, EXCERPT_NOTES, 2000), D.realismNotes);
  const realismSeed = collect(() => intOption('--realism-seed', values['realism-seed'], 1, 1, 2 ** 31), 1);
  const realismComposers = values['realism-composers']?.split(',').map((c) => c.trim()).filter(Boolean);
  if (values['realism-composers'] !== undefined && !realismComposers?.length) problems.push('--realism-composers needs at least one name');
  if (values['realism-only'] && realismPieces === 0) problems.push('--realism-only needs --realism-pieces above 0');
  const temperature = collect(() => numberOption('--temperature', values.temperature, DEFAULT_REALISM_DECODING.temperature, 0, 5), DEFAULT_REALISM_DECODING.temperature);
  const topP = collect(() => numberOption('--top-p', values['top-p'], DEFAULT_REALISM_DECODING.topP, 1e-6, 1), DEFAULT_REALISM_DECODING.topP);
  const heads = values['head-decoding'] !== undefined ? collect(() => parseHeadDecodings(values['head-decoding']!), undefined) : undefined;
  const keyGuidance = values['key-guidance'] !== undefined ? collect(() => numberOption('--key-guidance', values['key-guidance'], 1, 1, 20), undefined) : undefined;
  const composerGuidance = values['composer-guidance'] !== undefined ? collect(() => numberOption('--composer-guidance', values['composer-guidance'], 1, 1, 5), undefined) : undefined;
  const composers = values.composers?.split(',').map((c) => c.trim()).filter(Boolean);
  if (values.composers !== undefined && !composers?.length) problems.push('--composers needs at least one name');
  if (problems.length) throw new UsageError(problems.join('\n'), EVALUATE_USAGE);

  await initBackend(backend, log);
  const report = await evaluateModel({
    modelDir: values.model!,
    dataDir: values.data!,
    trainDataDir: values['train-data'],
    composers,
    notes,
    piecesPerComposer,
    batchSize,
    maxStudyTargets,
    smoothingK,
    realismPieces,
    realismNotes,
    realismComposers,
    realismSeed,
    realismOnly: values['realism-only'] ?? false,
    // Each given option replaces only its part of the model's own decoding (realismDecodingOf).
    realismDecoding: { ...(values.temperature !== undefined ? { temperature } : {}), ...(values['top-p'] !== undefined ? { topP } : {}), ...(heads ? { heads } : {}) },
    keyGuidance,
    composerGuidance,
    log,
  });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  return 0;
}
