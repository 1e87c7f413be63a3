/** `nocturne train --arch study ...` (old name: `--arch seed`): the original study's model, trained within a fixed budget. */
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, type BackendChoice } from '../model/backend.ts';
import { DEFAULT_STUDY_HYPERPARAMETERS } from '../model/study/network.ts';
import { trainStudyModel } from '../model/study/train.ts';
import { composerTable, corpusHash, readTrainingCorpus } from '../model/corpus.ts';
import { TRAINING_RUN_OPTIONS, UsageError, intOption, numberOption, parseBackend, terminalProgress, optionProblems } from './options.ts';

const D = DEFAULT_STUDY_HYPERPARAMETERS;

export const STUDY_TRAIN_USAGE = `usage: nocturne train --arch study --data DIR --out models/NAME [options]
The original study's baseline: note / pitch-class-chord tokens, a fixed half beat, no dynamics,
a ${D.window}-event window with one target per window, argmax decoding.
  --data DIR            folder of piano MIDI, one subfolder per composer (required)
  --out DIR             model folder to write (required)
  --composers a,b       only these composer folders
  --max-minutes M       stop the training loop after M minutes (checked after every batch)
  --stride N            train on every N-th window per epoch (default 1 = every window)
  --epochs N            maximum epochs (default 20)
  --batch N             windows per batch (default 64)
  --lr X                Adam learning rate (default 0.002)
  --window N            events per input window (default ${D.window})
  --hidden N            LSTM units (default ${D.hidden})
  --layers N            LSTM layers (default ${D.layers})
  --min-count N         rarer events become <unk> (default 2)
  --seed N              random seed (default 1)
  --backend B           auto | tensorflow | wasm | cpu (default auto)`;

export async function runStudyTrain(argv: string[], log: (line: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...TRAINING_RUN_OPTIONS, stride: { type: 'string' }, 'min-count': { type: 'string' } },
    strict: true,
  });
  const { problems, take: collect } = optionProblems();
  if (!values.data) problems.push('--data DIR is required');
  if (!values.out) problems.push('--out DIR is required');
  const maxMinutes = values['max-minutes'] === undefined ? undefined : collect(() => numberOption('--max-minutes', values['max-minutes'], 0, 0.01, 1e6), undefined);
  const stride = collect(() => intOption('--stride', values.stride, 1, 1, 10_000), 1);
  const epochs = collect(() => intOption('--epochs', values.epochs, 20, 1, 10_000), 20);
  const batchSize = collect(() => intOption('--batch', values.batch, 64, 1, 1024), 64);
  const learningRate = collect(() => numberOption('--lr', values.lr, 0.002, 1e-6, 1), 0.002);
  const window = collect(() => intOption('--window', values.window, D.window, 2, 1000), D.window);
  const hidden = collect(() => intOption('--hidden', values.hidden, D.hidden, 4, 4096), D.hidden);
  const layers = collect(() => intOption('--layers', values.layers, D.layers, 1, 8), D.layers);
  const minCount = collect(() => intOption('--min-count', values['min-count'], 2, 1, 1_000_000), 2);
  const seed = collect(() => intOption('--seed', values.seed, 1, 0, 2 ** 31), 1);
  const backend = collect(() => parseBackend(values.backend), 'auto' as BackendChoice);
  if (problems.length) throw new UsageError(problems.join('\n'), STUDY_TRAIN_USAGE);

  await initBackend(backend, log);
  const { pieces, train, validation } = await readTrainingCorpus(values.data!, values.composers, log);
  const outDir = resolve(values.out!);
  const spec = await trainStudyModel({
    outDir,
    train,
    validation,
    composers: composerTable(pieces),
    dataHash: corpusHash(pieces),
    dataSource: values.data!,
    hyperparameters: { ...D, window, hidden, layers },
    minCount,
    stride,
    epochs,
    batchSize,
    learningRate,
    clipNorm: 1,
    maxMinutes,
    seed,
    name: basename(outDir),
    maxValidationWindows: 2000,
    log,
    progress: terminalProgress(),
  });
  const b = spec.budget;
  const val = spec.metrics.valNll === undefined ? 'no validation pieces' : `validation NLL ${spec.metrics.valNll.toFixed(4)} nats/event, accuracy ${(spec.metrics.valAccuracy * 100).toFixed(1)}%`;
  log(`study model ${spec.version} written to ${outDir}: ${val}; budget: ${b.windowsTrained} windows (${b.epochs} epochs at stride ${b.stride}) in ${b.trainSeconds} s, stopped by ${b.stoppedBy}`);
  return 0;
}
