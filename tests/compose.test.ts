import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, copyFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { Engine, ComposeInputError } from '../src/engine/engine.ts';
import { parseMidi } from '../src/midi/read.ts';
import { readWavHeader } from '../src/render/audio.ts';
import { loadModelFolder } from '../src/model/note/folder.ts';
import { composerTable, corpusHash, listCorpus, loadCorpus, splitByPiece } from '../src/model/corpus.ts';
import { trainModel } from '../src/model/note/train/fit.ts';
import { createTinyModel, TINY_HYPERPARAMETERS, TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

const run = promisify(execFile);
let dir: string;
let engine: Engine;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nocturne-compose-'));
  await createTinyModel(join(dir, 'model'), ['Chopin', 'Mozart']);
  engine = await Engine.open(join(dir, 'model'), 'wasm');
});
after(async () => {
  engine.dispose();
  await rm(dir, { recursive: true, force: true });
});

const isPng = (b: Buffer) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe('compose', () => {
  test('writes a MIDI with exactly N notes, a WAV and a piano roll, and leaks no tensors', async () => {
    await engine.compose({ composer: 'chopin', notes: 16, randomSeed: 1, outDir: join(dir, 'warm') });
    const tensors = tf.memory().numTensors;
    const result = await engine.compose({ composer: 'CHOPIN', notes: 40, randomSeed: 3, temperature: 0.8, topP: 0.9, outDir: join(dir, 'a') });
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(result.composer, 'Chopin');
    assert.equal(result.noteCount, 40);
    const piece = parseMidi(await readFile(result.midiPath), 'piece.mid');
    assert.equal(piece.notes.length, 40);
    const wav = await readWavHeader(result.audioPath);
    assert.equal(wav.channels, 2);
    assert.ok(wav.seconds > 0.5);
    assert.ok(isPng(await readFile(result.pngPath)));
    const { estimatedKey, ...params } = result.params;
    assert.deepEqual(params, { temperature: 0.8, topP: 0.9, decoding: 'temperature 0.8, top-p 0.9', randomSeed: 3, notes: 40, seeded: false, format: 'wav', key: 'any', tempoBpm: 90 });
    assert.match(estimatedKey, /^[A-G][#b]? (major|minor)$/, 'the key the notes read as');
  });

  test('the same random seed writes the same MIDI', async () => {
    const a = await engine.compose({ composer: 'mozart', notes: 24, randomSeed: 9, outDir: join(dir, 's1') });
    const b = await engine.compose({ composer: 'mozart', notes: 24, randomSeed: 9, outDir: join(dir, 's2') });
    assert.deepEqual(await readFile(a.midiPath), await readFile(b.midiPath));
  });

  test('continues a seed MIDI and writes OGG on request', async () => {
    const seed = await readFile('tests/fixtures/chpn-p20.mid');
    const r = await engine.compose({ composer: 'any', notes: 20, randomSeed: 4, seedMidi: seed, outDir: join(dir, 'c'), audio: { format: 'ogg' } });
    assert.equal(r.params.seeded, true);
    assert.equal((await readFile(r.audioPath)).subarray(0, 4).toString(), 'OggS');
    assert.equal(parseMidi(await readFile(r.midiPath), 'c.mid').notes.length, 20);
  });

  test('bad requests get one clear message each, and nothing is written', async () => {
    await assert.rejects(engine.compose({ composer: 'chopn', notes: 250, outDir: join(dir, 'x') }), (e: Error) => e instanceof ComposeInputError && /Did you mean Chopin/.test(e.message));
    await assert.rejects(engine.compose({ composer: 'chopin', notes: 99999, outDir: join(dir, 'x') }), /notes must be a whole number from 16 to 2000/);
    await assert.rejects(engine.compose({ composer: 'chopin', notes: 50, temperature: -1, topP: 2, outDir: join(dir, 'x') }), /temperature.*; top-p/);
    await assert.rejects(engine.compose({ composer: 'chopin', notes: 50, seedMidi: new TextEncoder().encode('hello'), outDir: join(dir, 'x') }), /seed MIDI: not a MIDI file/);
    await assert.rejects(engine.compose({ composer: 'chopin', notes: 50, outDir: join(dir, 'x'), audio: { format: 'aiff' as 'wav' } }), (e: Error) => e instanceof ComposeInputError && /audio format must be wav, ogg, mp3, opus, got "aiff"/.test(e.message));
    assert.equal(existsSync(join(dir, 'x')), false);
  });

  test('a batch of requests is answered per request: one bad one does not sink the others', async () => {
    const results = await engine.composeMany([
      { composer: 'chopin', notes: 16, randomSeed: 1, outDir: join(dir, 'm1') },
      { composer: 'liszt', notes: 16, outDir: join(dir, 'm2') },
      { composer: 'mozart', notes: 32, randomSeed: 2, outDir: join(dir, 'm3') },
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal(results[2].status === 'fulfilled' && results[2].value.noteCount, 32);
  });
});

const cli = (...args: string[]) => run('node', ['--import', 'tsx', 'src/cli/main.ts', ...args]).then(
  (r) => ({ code: 0, ...r }),
  (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
);

describe('nocturne CLI', () => {

  test('compose --json prints one object with files, model, composer, notes, seconds and parameters', async () => {
    const out = join(dir, 'cli');
    const r = await cli('compose', 'mozart', '16', '--model', join(dir, 'model'), '--out', out, '--random-seed', '5', '--json');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.notes, 16);
    assert.equal(json.composer, 'Mozart');
    assert.equal(json.modelVersion, 'tiny-3');
    assert.equal(json.params.randomSeed, 5);
    for (const f of [json.midi, json.audio, json.pianoRoll]) assert.ok(existsSync(f), f);
    assert.ok(typeof json.seconds === 'number');
  });

  test('bad arguments exit 2 with every problem listed and no stack trace', async () => {
    const r = await cli('compose', 'mozart', '99999', '--temperature', 'hot', '--format', 'aiff', '--backend', 'gpu', '--model', join(dir, 'model'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /<notes> must be between 16 and 2000/);
    assert.match(r.stderr, /--temperature must be a number/);
    assert.match(r.stderr, /--format must be wav, ogg, mp3, opus, got "aiff"/);
    assert.match(r.stderr, /--backend must be one of auto, tensorflow, wasm, cpu, got "gpu"/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test('an unknown composer suggests the close ones', async () => {
    const r = await cli('compose', 'motzart', '20', '--model', join(dir, 'model'), '--out', join(dir, 'u'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown composer "motzart"\. Did you mean Mozart\?/);
  });

  test('a model folder that does not match is refused in one line', async () => {
    const r = await cli('compose', 'mozart', '20', '--model', join(dir, 'missing'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no model\.json/);
  });
});

describe('train', () => {
  test('trains by piece, checkpoints every epoch, writes the curve, and resumes', async () => {
    const data = join(dir, 'corpus');
    for (const [composer, file] of [['Chopin', 'chpn-p20.mid'], ['Schumann', 'scn15_4.mid']]) {
      await mkdir(join(data, composer), { recursive: true });
      await copyFile(join('tests/fixtures', file), join(data, composer, file));
      await copyFile(join('tests/fixtures', file), join(data, composer, `copy-${file}`));
    }
    const pieces = await loadCorpus(listCorpus(data));
    const { train, validation } = splitByPiece(pieces, 0.5);
    const out = join(dir, 'trained');
    const options = {
      outDir: out,
      train,
      validation,
      composers: composerTable(pieces),
      dataHash: corpusHash(pieces),
      dataSource: data,
      hyperparameters: TINY_HYPERPARAMETERS,
      epochs: 1,
      batchSize: 8,
      learningRate: 0.01,
      clipNorm: 1,
      patience: 5,
      transpose: 2,
      composerDropout: 0.1,
      seed: 1,
      resume: false,
      name: 'trained',
      log: () => {},
      progress: () => {},
    };
    const first = await trainModel(options);
    assert.equal(first.metrics.epochs, 1);
    for (const f of ['model.json', 'weights.bin', 'training-curve.png', 'history.json', 'checkpoint/optimizer.bin', 'checkpoint/state.json']) assert.ok(existsSync(join(out, f)), f);
    assert.deepEqual(first.composers.map((c) => c.name), ['Chopin', 'Schumann']);
    const second = await trainModel({ ...options, epochs: 3, resume: true });
    const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8'));
    assert.deepEqual(history.map((h: { epoch: number }) => h.epoch), [1, 2, 3]);
    assert.ok(history[2].trainLoss < history[0].trainLoss, `loss should fall: ${history.map((h: { trainLoss: number }) => h.trainLoss.toFixed(3))}`);
    assert.equal(second.data.hash, first.data.hash);
    // The result is a loadable model.
    const loaded = await loadModelFolder(out);
    tf.dispose(Object.values(loaded.weights));
    await assert.rejects(trainModel({ ...options, epochs: 4, resume: true, dataHash: 'other' }), /trained on data/);
  });

  test('a resumed epoch that does not beat the best keeps the best weights in the model folder', async () => {
    const out = join(dir, 'trained');
    const before = await readFile(join(out, 'weights.bin'));
    const bestBefore = JSON.parse(await readFile(join(out, 'model.json'), 'utf8'));
    const data = join(dir, 'corpus');
    const pieces = await loadCorpus(listCorpus(data));
    const { train, validation } = splitByPiece(pieces, 0.5);
    // The checkpoint's learning rate made absurd: the next epoch wrecks the weights, so it cannot improve.
    const statePath = join(out, 'checkpoint', 'state.json');
    await writeFile(statePath, JSON.stringify({ ...JSON.parse(await readFile(statePath, 'utf8')), learningRate: 50 }));
    const logs: string[] = [];
    const spec = await trainModel({
      outDir: out, train, validation, composers: composerTable(pieces), dataHash: corpusHash(pieces), dataSource: data, hyperparameters: TINY_HYPERPARAMETERS,
      epochs: 4, batchSize: 8, learningRate: 0.01, clipNorm: 1, patience: 5, transpose: 2, composerDropout: 0.1, seed: 1, resume: true, name: 'trained', log: (l) => logs.push(l), progress: () => {},
    });
    assert.ok(logs.some((l) => /did not improve/.test(l)), logs.join('\n'));
    assert.ok((await readFile(join(out, 'weights.bin'))).equals(before), 'the best epoch\'s weights stay');
    assert.equal(spec.metrics.valNll, bestBefore.metrics.valNll);
    assert.equal(spec.metrics.bestEpoch, bestBefore.metrics.bestEpoch);
    assert.equal(spec.metrics.epochs, 4);
    const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8'));
    assert.deepEqual(history.map((h: { epoch: number }) => h.epoch), [1, 2, 3, 4]);
  });

  test('grown from a trained model, the inherited weights can train at their own learning rate, and resume keeps both optimizers', async () => {
    const parentDir = join(dir, 'grow-parent');
    await createTinyModel(parentDir, ['Chopin', 'Schumann'], 7, TINY_LONG_CONTEXT_HYPERPARAMETERS);
    const data = join(dir, 'corpus');
    const pieces = await loadCorpus(listCorpus(data));
    const { train, validation } = splitByPiece(pieces, 0.5);
    const out = join(dir, 'grown');
    const grown = { ...TINY_LONG_CONTEXT_HYPERPARAMETERS, layers: 2, residual: true };
    const options = {
      outDir: out, train, validation, composers: composerTable(pieces), dataHash: corpusHash(pieces), dataSource: data, hyperparameters: grown,
      epochs: 1, batchSize: 4, learningRate: 0.01, inheritedLearningRate: 1e-7, clipNorm: 1, patience: 5, transpose: 0, composerDropout: 0, seed: 1, resume: false,
      initialWeights: parentDir, name: 'grown', log: () => {}, progress: () => {},
    };
    const spec = await trainModel(options);
    assert.equal(spec.training.inheritedLearningRate, 1e-7);
    assert.equal(spec.training.initFrom, 'tiny-7', 'the starting model\'s version is recorded');
    assert.ok(existsSync(join(out, 'checkpoint', 'optimizer-1.bin')), 'the inherited group\'s optimizer is checkpointed');
    const parent = await loadModelFolder(parentDir);
    const child = await loadModelFolder(join(out, 'checkpoint'));
    const largest = (t: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]);
    const moved = (name: string) => largest(tf.sub(parent.weights[name], child.weights[name]));
    for (const name of ['lstm0/wh', 'attn/wq', 'head/wz', 'head/bpitch']) assert.ok(moved(name) < 1e-4, `${name} (inherited) moved ${moved(name)}`);
    assert.ok(largest(child.weights['lstm1/gate']) > 1e-3, 'the grown layer\'s gate (zero at the start) opened at the full rate');
    const resumed = await trainModel({ ...options, epochs: 2, resume: true });
    assert.equal(resumed.metrics.epochs, 2);
    tf.dispose([...Object.values(parent.weights), ...Object.values(child.weights)]);
    // A start that takes every weight (nothing new) trains them all at the inherited rate, with one optimizer.
    const whole = join(dir, 'all-inherited');
    await trainModel({ ...options, outDir: whole, hyperparameters: TINY_LONG_CONTEXT_HYPERPARAMETERS, name: 'all-inherited' });
    assert.ok(!existsSync(join(whole, 'checkpoint', 'optimizer-1.bin')));
    const same = await loadModelFolder(join(whole, 'checkpoint'));
    const again = await loadModelFolder(parentDir);
    assert.ok(largest(tf.sub(same.weights['lstm0/wh'], again.weights['lstm0/wh'])) < 1e-4, 'every weight at the inherited rate');
    tf.dispose([...Object.values(same.weights), ...Object.values(again.weights)]);
  });

  test('train --init-from grows a residual layer, starts with the parent\'s decoding and says it was carried, not chosen; bad growth options are refused together', async () => {
    const parent = join(dir, 'parent-with-decoding');
    await createTinyModel(parent, ['Chopin', 'Schumann'], 5, TINY_LONG_CONTEXT_HYPERPARAMETERS);
    const specPath = join(parent, 'model.json');
    const decoding = { temperature: 0.9, topP: 1, composerGuidance: 2, chosenBy: 'a realism sweep' };
    await writeFile(specPath, JSON.stringify({ ...JSON.parse(await readFile(specPath, 'utf8')), decoding }));
    const out = join(dir, 'child');
    const r = await cli('train', '--arch', 'long-context', '--data', join(dir, 'corpus'), '--out', out, '--init-from', parent, '--hidden', '16', '--window', '32', '--memory', '24', '--heads', '2', '--epochs', '1', '--layers', '2', '--residual', '--gate-init', '0.05', '--relative-pitch', '--interval-values', '--interval-match', '2', '--dropout', '0.2', '--backend', 'wasm');
    assert.equal(r.code, 0, r.stderr);
    const child = JSON.parse(await readFile(join(out, 'model.json'), 'utf8'));
    assert.equal(child.hyperparameters.residual, true);
    assert.equal(child.hyperparameters.dropout, 0.2);
    assert.ok(child.weights.some((w: { name: string }) => w.name === 'lstm1/gate'), 'the grown layer has its gate');
    assert.equal(child.training.gateInit, 0.05, 'the gate\'s starting value is recorded');
    assert.equal(child.training.initFrom, 'tiny-5', 'and the model it grew from');
    assert.equal(child.hyperparameters.relativePitch, true);
    assert.equal(child.hyperparameters.intervalValues, true);
    assert.ok(child.weights.some((w: { name: string }) => w.name === 'head/wrel'), 'and its relative pitch head');
    assert.equal(child.hyperparameters.intervalMatch, 2);
    assert.ok(child.weights.some((w: { name: string }) => w.name === 'attn/match'), 'and its interval match weights (trained and validated: the epoch ran)');
    assert.equal(child.training.history.length, 1);
    const composed = await cli('compose', 'chopin', '24', '--model', out, '--out', join(dir, 'grown-piece'), '--random-seed', '3', '--json');
    assert.equal(composed.code, 0, composed.stderr);
    assert.equal(JSON.parse(composed.stdout).notes, 24, 'the grown model composes');
    assert.equal(child.decoding.temperature, 0.9);
    assert.equal(child.decoding.composerGuidance, 2);
    assert.match(child.decoding.chosenBy, /^carried from tiny-5 .*not yet chosen for these weights \(there: a realism sweep\)$/);
    const scratch = join(dir, 'scratch');
    assert.equal((await cli('train', '--arch', 'long-context', '--data', join(dir, 'corpus'), '--out', scratch, '--hidden', '16', '--window', '32', '--memory', '24', '--heads', '2', '--epochs', '1', '--backend', 'wasm', '--unlikelihood', '0.5', '--unlikelihood-every', '2', '--loop-limit', '8', '--return-bonus', '0.25', '--return-weight', '0.5')).code, 0);
    const fresh = JSON.parse(await readFile(join(scratch, 'model.json'), 'utf8'));
    assert.deepEqual(fresh.training.unlikelihood, { every: 2, pieces: 8, notes: 512, limit: 8, weight: 0.5, returnBonus: 0.25 }, 'the spec records the unlikelihood rounds');
    assert.equal(fresh.training.returnWeight, 0.5, 'and the return weighting');
    const own = fresh.training.history[0].selfSamples;
    assert.ok(own.rounds >= 1 && own.pieces === 8 * own.rounds, `the epoch record says what the model wrote: ${JSON.stringify(own)}`);
    assert.ok(own.returnShare >= 0 && own.returnShare <= 1 && Number.isFinite(own.returnNll), `and how often it brought a figure back: ${JSON.stringify(own)}`);
    assert.equal(fresh.decoding, undefined, 'a model trained from scratch plays the engine defaults');
    assert.equal(fresh.training.initFrom, undefined, 'and names no starting model');
    const wrong = await cli('train', '--arch', 'long-context', '--data', join(dir, 'corpus'), '--out', join(dir, 'never'), '--residual', '--dropout', '2', '--lr-inherited', '0.001', '--gate-init', '1.5', '--interval-match', '9', '--loop-limit', '1', '--return-bonus=-1', '--loop-hazard=-2', '--loop-hazard-heads', 'pitch,tempo', '--loop-hazard-by-composer', '--loop-hazard-returns', '--loop-hazard-joint', '--timing-pull', '1', '--own-best-of', '3', '--own-best-heads', 'pitch,tempo', '--own-best-by', 'applause', '--return-weight', 'lots');
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--lr-inherited needs --init-from/);
    assert.match(wrong.stderr, /--dropout/);
    assert.match(wrong.stderr, /--residual needs --layers 2 or more/);
    assert.match(wrong.stderr, /--gate-init must be between 0 and 1, got 1.5/);
    assert.match(wrong.stderr, /--interval-match must be between 1 and 8, got 9/);
    assert.match(wrong.stderr, /--loop-limit must be between 2 and 10000, got 1/);
    assert.match(wrong.stderr, /--return-bonus must be between 0 and 100, got -1/);
    assert.match(wrong.stderr, /--loop-hazard must be between 0 and 100, got -2/);
    assert.match(wrong.stderr, /--return-weight/);
    assert.match(wrong.stderr, /--unlikelihood-every and --return-bonus need --unlikelihood X, --loop-hazard X or --own-best X/);
    assert.match(wrong.stderr, /--loop-limit needs --unlikelihood X or --own-best X/);
    assert.match(wrong.stderr, /--loop-hazard-heads needs --loop-hazard X/);
    assert.match(wrong.stderr, /--loop-hazard-heads takes dt, pitch or both, comma-separated; got pitch,tempo/);
    assert.match(wrong.stderr, /--loop-hazard-by-composer needs --loop-hazard X/);
    assert.match(wrong.stderr, /--loop-hazard-returns needs --loop-hazard X/);
    assert.match(wrong.stderr, /--loop-hazard-joint needs --loop-hazard X/);
    assert.match(wrong.stderr, /--timing-pull needs --unlikelihood X or --loop-hazard X/);
    assert.match(wrong.stderr, /--own-best-of, --own-best-raw, --own-best-heads and --own-best-by need --own-best X/);
    assert.match(wrong.stderr, /--own-best-by must be one of returns, realism, got "applause"/);
    assert.match(wrong.stderr, /--own-best-heads takes one or more of dt, pitch, dur, vel, comma-separated; got pitch,tempo/);
    assert.ok(!existsSync(join(dir, 'never')), 'nothing written');
    const local = await cli('train', '--data', join(dir, 'corpus'), '--out', join(dir, 'never'), '--residual', '--relative-pitch', '--interval-match', '3', '--unlikelihood', '1', '--loop-hazard', '1', '--loop-hazard-by-composer', '--loop-hazard-returns', '--loop-hazard-joint', '--timing-pull', '1', '--own-best', '1', '--return-weight', '1');
    assert.match(local.stderr, /--residual applies to --arch long-context only/);
    assert.match(local.stderr, /--relative-pitch applies to --arch long-context only/);
    assert.match(local.stderr, /--interval-match applies to --arch long-context only/);
    assert.match(local.stderr, /--unlikelihood applies to --arch long-context only/);
    assert.match(local.stderr, /--loop-hazard applies to --arch long-context only/);
    assert.match(local.stderr, /--return-weight applies to --arch long-context only/);
    assert.match(local.stderr, /--loop-hazard-by-composer applies to --arch long-context only/);
    assert.match(local.stderr, /--loop-hazard-returns applies to --arch long-context only/);
    assert.match(local.stderr, /--loop-hazard-joint applies to --arch long-context only/);
    assert.match(local.stderr, /--timing-pull applies to --arch long-context only/);
    assert.match(local.stderr, /--own-best applies to --arch long-context only/);
    const shut = await cli('train', '--arch', 'long-context', '--data', join(dir, 'corpus'), '--out', join(dir, 'never'), '--gate-init', '0.1', '--loop-hazard', '1', '--loop-hazard-joint');
    assert.match(shut.stderr, /--gate-init needs --residual/);
    assert.match(shut.stderr, /--loop-hazard-joint pulls through the pitch head alone: give --loop-hazard-heads pitch/, 'the joint pull with both heads pulled is refused');
    assert.ok(!existsSync(join(dir, 'never')), 'nothing written');
  });
});
