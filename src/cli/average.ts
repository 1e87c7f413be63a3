/** `nocturne average --out DIR MODEL MODEL [...]`: one model whose weights are the mean of several (src/model/note/average.ts). */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../model/backend.ts';
import { corpusHash, readTrainingCorpus } from '../model/corpus.ts';
import { readWeightsFile, trainingMachine, versionName } from '../model/folder.ts';
import { averageProblems, averageWeights } from '../model/note/average.ts';
import { carriedDecoding, readModelSpec, saveModelFolder, type ModelSpec } from '../model/note/folder.ts';
import { evaluatePieces, measuredPieces } from '../model/note/train/fit.ts';
import type { Weights } from '../model/layers.ts';
import { UsageError, parseBackend } from './options.ts';

export const AVERAGE_USAGE = `usage: nocturne average --out DIR [--data DIR] [--backend B] MODEL MODEL [MODEL...]
Writes one model whose weights are the mean of the given models' ("model soup"). It pays for
runs fine-tuned from one parent with different random seeds; the models must agree on the
architecture, hyperparameters, composers, training data and weight shapes. The new folder is
measured on its validation pieces (validation NLL with key labels, as training reports it) and
carries the first model's decoding, marked as not yet chosen for these weights: choose it with
\`nocturne evaluate --realism-only\` before shipping.
  --out DIR        the new model folder (must not exist, or be empty)
  --data DIR       the training corpus (default: the models' data.source); its data hash must
                   match the models'
  --backend B      auto (default), wasm, cpu, node, node-gpu`;

export async function runAverage(argv: string[], log: (line: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string' }, data: { type: 'string' }, backend: { type: 'string' } } });
  const problems: string[] = [];
  if (!values.out) problems.push('--out DIR is required');
  if (positionals.length < 2) problems.push(`give two or more model folders to average, got ${positionals.length}`);
  const dirs = positionals.map((d) => resolve(d));
  const outDir = values.out ? resolve(values.out) : '';
  if (outDir && dirs.includes(outDir)) problems.push('--out must not be one of the models averaged');
  if (outDir && existsSync(outDir) && readdirSync(outDir).length > 0) problems.push(`--out ${values.out} exists and is not empty: name a new folder`);
  let backend: ReturnType<typeof parseBackend> = 'auto';
  try {
    backend = parseBackend(values.backend);
  } catch (e) {
    problems.push((e as Error).message);
  }
  for (const d of dirs) if (!existsSync(d)) problems.push(`${d}: no such model folder`);
  if (problems.length) throw new UsageError(problems.join('\n'), AVERAGE_USAGE);

  const specs: (ModelSpec & { dir: string })[] = [];
  for (const d of dirs) specs.push({ ...(await readModelSpec(d)), dir: d });
  const mismatch = averageProblems(specs);
  if (mismatch.length) throw new UsageError(mismatch.join('\n'), AVERAGE_USAGE);
  const first = specs[0];
  const parents = new Set(specs.map((s) => String(s.training.initFrom ?? '')));
  if (parents.size > 1 || parents.has('')) log('note: these models do not all name one parent (training.initFrom); averaging pays for fine-tunes of one parent, so measure the result before using it');

  await initBackend(backend, log);
  const dataDir = values.data ?? first.data.source;
  const { pieces, train, validation } = await readTrainingCorpus(dataDir, undefined, log);
  const hash = corpusHash(pieces);
  if (hash !== first.data.hash) throw new UsageError(`--data ${dataDir}: data hash ${hash}, the models were trained on ${first.data.hash}; point --data at their corpus`, AVERAGE_USAGE);

  const loaded: Weights[] = [];
  let averaged: Weights | undefined;
  try {
    for (const s of specs) loaded.push(await readWeightsFile(s.dir, s.weights, false));
    averaged = averageWeights(loaded);
    const measured = measuredPieces(validation, train);
    log(`averaged ${dirs.length} models; measuring validation NLL on ${measured.length} pieces`);
    const composerIndex = new Map(first.composers.map((c, i) => [c.name, i]));
    const val = evaluatePieces(averaged, first.hyperparameters, measured, composerIndex, first.composers.length, Number(first.training.batchSize ?? 16));
    const version = versionName(basename(outDir));
    await saveModelFolder(
      outDir,
      {
        version,
        arch: first.arch,
        tokens: first.tokens,
        inputWidth: first.inputWidth,
        hyperparameters: first.hyperparameters,
        composers: first.composers,
        data: first.data,
        training: {
          averageOf: specs.map((s) => ({ version: s.version, valNll: s.metrics.valNll, seed: s.training.seed, initFrom: s.training.initFrom })),
          startedAt: new Date().toISOString(),
          machine: trainingMachine(),
        },
        metrics: { valNll: val.loss, valNllDt: val.perHead[0], valNllPitch: val.perHead[1], valNllDur: val.perHead[2], valNllVel: val.perHead[3] },
        decoding: carriedDecoding(first),
      },
      averaged,
    );
    const parts = specs.map((s) => `${s.version} ${Number(s.metrics.valNll).toFixed(4)}`).join(', ');
    log(`model ${version} written to ${outDir}: validation NLL ${val.loss.toFixed(4)} nats/note (the models averaged: ${parts})`);
    return 0;
  } finally {
    tf.dispose(loaded.flatMap((w) => Object.values(w)));
    if (averaged) tf.dispose(Object.values(averaged));
  }
}
