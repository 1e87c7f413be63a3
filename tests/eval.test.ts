import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { addTotals, baselineTotals, fitBaselines, NOTE_FIELD_CLASSES, noteTokenFields, perToken } from '../src/eval/baselines.ts';
import { longestCopiedRun, longestCopiedRuns, loopRate, musicDistributions, noteKeys } from '../src/eval/musicStats.ts';
import { histogram, similarityFromDistance, wasserstein1 } from '../src/eval/wasserstein.ts';
import { writeMidi } from '../src/midi/write.ts';
import { initBackend } from '../src/model/backend.ts';
import { trainStudyModel } from '../src/model/study/train.ts';
import { seededRandom } from '../src/model/random.ts';
import { composerTable, corpusHash, listCorpus, loadCorpus } from '../src/model/corpus.ts';
import { detokenize, type NoteToken } from '../src/tokens/tokenize.ts';
import { createTinyModel } from './support/tinyModel.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const REPO = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);

const randomSample = (n: number, seed: number, scale = 10) => {
  const rng = seededRandom(seed);
  return Array.from({ length: n }, () => rng.next() * scale);
};
const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} is not ${b}`);

describe('wasserstein1', () => {
  test('is 0 between a sample and itself, in any order', () => {
    const x = randomSample(200, 1);
    close(wasserstein1(x, x), 0);
    close(wasserstein1(x, [...x].reverse()), 0);
  });

  test('a shift by c gives exactly |c|', () => {
    const x = randomSample(150, 2);
    for (const c of [2.5, -0.75, 40]) close(wasserstein1(x, x.map((v) => v + c)), Math.abs(c), 1e-9);
  });

  test('is symmetric, also for unequal sizes', () => {
    const x = randomSample(37, 3);
    const y = randomSample(101, 4, 13);
    const d = wasserstein1(x, y);
    assert.ok(d > 0);
    close(d, wasserstein1(y, x), 1e-12);
  });

  test('matches the sorted-difference formula for equal sizes and known unequal cases', () => {
    const x = randomSample(64, 5);
    const y = randomSample(64, 6, 20);
    const sx = [...x].sort((a, b) => a - b);
    const sy = [...y].sort((a, b) => a - b);
    close(wasserstein1(x, y), sx.reduce((s, v, i) => s + Math.abs(v - sy[i]), 0) / x.length, 1e-9);
    close(wasserstein1([0], [0, 1]), 0.5);
    close(wasserstein1([0, 1], [0, 0, 1, 1]), 0);
    close(wasserstein1([0, 0, 0, 3], [1]), 1.25); // |0−1|·¾ + |3−1|·¼
  });

  test('weights act as repeat counts, so a histogram gives the raw samples\' distance', () => {
    const rng = seededRandom(7);
    const x = Array.from({ length: 500 }, () => Math.floor(rng.next() * 12));
    const y = Array.from({ length: 300 }, () => Math.floor(rng.next() * 9) + 2);
    close(wasserstein1(histogram(x), histogram(y)), wasserstein1(x, y), 1e-9);
    close(wasserstein1({ values: [0, 1], weights: [3, 1] }, [0, 0, 0, 1]), 0);
  });

  test('refuses bad input with one clear message', () => {
    assert.throws(() => wasserstein1([], [1]), /first sample is empty/);
    assert.throws(() => wasserstein1([1], [Number.NaN]), /second value 0 is not finite/);
    assert.throws(() => wasserstein1({ values: [1, 2], weights: [1] }, [1]), /2 values but 1 weights/);
    assert.throws(() => wasserstein1({ values: [1], weights: [-1] }, [1]), /weight 0 must be finite and ≥ 0/);
    assert.throws(() => wasserstein1({ values: [1], weights: [0] }, [1]), /weights sum to zero/);
  });

  test('similarityFromDistance maps 0 to 1 and decays with the scale', () => {
    assert.equal(similarityFromDistance(0, 2), 1);
    close(similarityFromDistance(2, 2), Math.exp(-1));
    assert.ok(similarityFromDistance(1, 2) > similarityFromDistance(3, 2));
    assert.ok(similarityFromDistance(1e9, 1) >= 0);
    assert.throws(() => similarityFromDistance(1, 0), /scale must be finite and > 0/);
    assert.throws(() => similarityFromDistance(-1, 1), /distance must be finite and ≥ 0/);
  });
});

/** A motif of `length` notes whose (dt, pitch, dur) never repeats within it. */
const motif = (length: number, pitchBase = 40): NoteToken[] => Array.from({ length }, (_, i) => ({ dt: 3 + (i % 4), pitch: pitchBase + i, dur: 1 + (i % 7), vel: i % 8 }));

describe('music statistics', () => {
  test('distributions: pitch, IOI and duration in beats, velocity, chord sizes', () => {
    const tokens: NoteToken[] = [
      { dt: 0, pitch: 60, dur: 12, vel: 4 },
      { dt: 0, pitch: 64, dur: 12, vel: 4 },
      { dt: 0, pitch: 67, dur: 6, vel: 0 },
      { dt: 6, pitch: 72, dur: 3, vel: 7 },
      { dt: 24, pitch: 48, dur: 24, vel: 2 },
      { dt: 0, pitch: 55, dur: 24, vel: 2 },
    ];
    const d = musicDistributions(tokens);
    assert.deepEqual(d.pitch, [60, 64, 67, 72, 48, 55]);
    assert.deepEqual(d.ioi, [0.5, 2]);
    assert.deepEqual(d.duration, [1, 1, 0.5, 0.25, 2, 2]);
    assert.deepEqual(d.velocity, [65, 65, 22, 112, 45, 45]);
    assert.deepEqual(d.chordSize, [3, 1, 2]);
  });

  test('loop rate: a motif played 5 times repeats every 16-gram after the first period', () => {
    const once = motif(20);
    const looped = Array.from({ length: 5 }, () => once).flat();
    // 100 notes → 85 16-grams. Those starting in the first 20 notes are new, and so is the one
    // at note 20: the piece's first note has no dt (it counts as 0), its repeat has dt 3.
    // The other 64 repeat.
    close(loopRate(looped), 64 / 85);
    assert.equal(loopRate(motif(60)), 0);
    assert.equal(loopRate(motif(10)), 0, 'shorter than n: no 16-grams');
    // Velocity is not part of the comparison, and the first note's dt is not music.
    const varied = looped.map((t, i) => ({ ...t, vel: i % 3, dt: i === 0 ? 50 : t.dt }));
    close(loopRate(varied), 64 / 85);
    close(loopRate(looped, 4), (97 - 21) / 97);
    // With a first note at dt 0 the loop is seamless.
    const seamless = Array.from({ length: 5 }, () => motif(20).map((t, i) => (i === 0 ? { ...t, dt: 0 } : t))).flat();
    close(loopRate(seamless), 65 / 85);
  });

  test('longest copied run finds an exact planted copy', () => {
    const rng = seededRandom(11);
    const training = Array.from({ length: 5 }, (_, p) => Array.from({ length: 400 }, (_, i) => ({ dt: Math.floor(rng.next() * 6), pitch: 30 + Math.floor(rng.next() * 50), dur: 1 + Math.floor(rng.next() * 12), vel: 3 + p + i * 0 })));
    // Pitches above 90 never occur in training, so the copy cannot extend past its ends.
    const noise = (n: number) => Array.from({ length: n }, (_, i) => ({ dt: 1, pitch: 91 + (i % 10), dur: 1, vel: 0 }));
    const generated = [...noise(13), ...training[3].slice(120, 157), ...noise(9)];
    const run = longestCopiedRun(generated, training);
    assert.equal(run.length, 37);
    assert.equal(run.piece, 3);
    assert.equal(run.trainingStart, 120);
    assert.equal(run.generatedStart, 13);
    assert.equal(longestCopiedRun(noise(30), training).length, 0);
  });

  test('longest copied runs agree with brute force on small alphabets (many partial matches)', () => {
    const rng = seededRandom(12);
    const seq = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.next() * 3));
    const training = [seq(300), seq(150), seq(40)];
    const generated = [seq(60), seq(25), seq(1), Int32Array.from([7, 7, 7])];
    const brute = (g: Int32Array) => {
      let best = 0;
      for (const t of training)
        for (let i = 0; i < g.length; i++)
          for (let j = 0; j < t.length; j++) {
            let k = 0;
            while (i + k < g.length && j + k < t.length && g[i + k] === t[j + k]) k++;
            best = Math.max(best, k);
          }
      return best;
    };
    assert.deepEqual(longestCopiedRuns(generated, training).map((r) => r.length), generated.map(brute));
  });

  test('longest copied run is fast on 650k training notes', () => {
    const rng = seededRandom(13);
    const training = Array.from({ length: 260 }, () => Int32Array.from({ length: 2500 }, () => Math.floor(rng.next() * 5000)));
    const generated = Array.from({ length: 16 }, (_, g) => {
      const out = Int32Array.from({ length: 250 }, () => 10_000 + Math.floor(rng.next() * 5000));
      out.set(training[g * 7].subarray(100, 100 + 20 + g), 50);
      return out;
    });
    const t0 = performance.now();
    const runs = longestCopiedRuns(generated, training);
    const ms = performance.now() - t0;
    assert.deepEqual(runs.map((r) => r.length), generated.map((_, g) => 20 + g));
    assert.ok(ms < 10_000, `took ${ms} ms`);
    console.log(`longestCopiedRuns: 16 × 250 generated vs ${training.length * 2500} training items in ${ms.toFixed(0)} ms`);
  });

  test('note keys ignore velocity and the first dt', () => {
    const a = noteKeys([{ dt: 9, pitch: 60, dur: 3, vel: 1 }, { dt: 3, pitch: 62, dur: 3, vel: 1 }]);
    const b = noteKeys([{ dt: 0, pitch: 60, dur: 3, vel: 7 }, { dt: 3, pitch: 62, dur: 3, vel: 2 }]);
    assert.deepEqual(a, b);
    assert.notDeepEqual(noteKeys([{ dt: 0, pitch: 60, dur: 3, vel: 1 }, { dt: 4, pitch: 62, dur: 3, vel: 1 }]), b);
  });
});

describe('baselines', () => {
  test('add-k unigram and bigram probabilities are exact', () => {
    // One field with 3 classes; training: [0, 1, 0, 1], k = 1.
    const model = fitBaselines([[Int32Array.from([0, 1, 0, 1])]], [3], 1);
    close(Math.exp(model.unigramLogP[0][0]), 3 / 7);
    close(Math.exp(model.unigramLogP[0][2]), 1 / 7);
    // After 0 the training saw 1 twice: P(1|0) = (2+1)/(2+3).
    const C = 3;
    close(Math.exp(model.bigramLogP[0][(0 + 1) * C + 1]), 3 / 5);
    // The start symbol saw 0 once: P(0|start) = (1+1)/(1+3).
    close(Math.exp(model.bigramLogP[0][0 * C + 0]), 2 / 4);
    const t = baselineTotals(model, [Int32Array.from([0, 1])]);
    close(t.unigram, -Math.log(3 / 7) - Math.log(3 / 7));
    close(t.bigram, -Math.log(2 / 4) - Math.log(3 / 5));
    assert.equal(t.tokens, 2);
    const only1 = baselineTotals(model, [Int32Array.from([0, 1])], [1]);
    close(only1.bigram, -Math.log(3 / 5));
  });

  test('on a repetitive corpus the bigram beats the unigram; on shuffled notes it does not', () => {
    const scale = (n: number, offset: number): NoteToken[] => Array.from({ length: n }, (_, i) => ({ dt: i % 2 ? 6 : 3, pitch: 60 + ((i + offset) % 8), dur: 1 + (i % 4), vel: (i >> 2) % 8 }));
    const training = [scale(400, 0), scale(300, 3), scale(500, 5)].map(noteTokenFields);
    const model = fitBaselines(training, NOTE_FIELD_CLASSES);
    const heldOut = scale(200, 1);
    const r = perToken(addTotals([baselineTotals(model, noteTokenFields(heldOut))]));
    assert.ok(r.bigram! < r.unigram! - 1, `bigram ${r.bigram} vs unigram ${r.unigram}`);
    assert.ok(r.unigram! > 0);
    const rng = seededRandom(3);
    const shuffled = heldOut.map((t) => ({ ...t })).sort(() => rng.next() - 0.5);
    const s = perToken(baselineTotals(model, noteTokenFields(shuffled)));
    assert.ok(s.bigram! > r.bigram!, 'shuffling destroys what the bigram knows');
  });

  test('bad fields are refused in one line', () => {
    assert.throws(() => fitBaselines([[Int32Array.from([0, 5])]], [3]), /field 0 token 1 is 5, outside 0..2/);
    assert.throws(() => fitBaselines([[Int32Array.from([0])]], [3], 0), /smoothing k must be > 0/);
    const model = fitBaselines([[Int32Array.from([0])]], [3]);
    assert.throws(() => baselineTotals(model, [Int32Array.from([0])], [4]), /position 4 is outside/);
  });
});

// ---------------------------------------------------------------------------------------------
// The evaluate command, end to end, on small folders

/** A synthetic, readable solo-piano piece: a repeating broken-chord figure with varied rhythm. */
function synthetic(seed: number, notes = 240): NoteToken[] {
  const rng = seededRandom(seed);
  const roots = [48, 53, 55, 48 + (seed % 5)];
  return Array.from({ length: notes }, (_, i) => {
    const root = roots[Math.floor(i / 16) % roots.length];
    return { dt: i % 4 === 0 ? 6 : 3 * (1 + Math.floor(rng.next() * 2)), pitch: root + [0, 4, 7, 12][i % 4] + (i % 8 === 0 ? 12 : 0), dur: 3 + Math.floor(rng.next() * 6), vel: 3 + Math.floor(rng.next() * 3) };
  });
}

let dir: string;
let dataDir: string;
let trainDir: string;

before(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(join(tmpdir(), 'nocturne-eval-'));
  dataDir = join(dir, 'data');
  trainDir = join(dir, 'train');
  for (const d of [join(dataDir, 'Chopin'), join(dataDir, 'Schumann'), join(dataDir, 'Mozart'), join(trainDir, 'Chopin'), join(trainDir, 'Mozart')]) await mkdir(d, { recursive: true });
  // The data: a Chopin prelude that is also in the training data, a Schumann piece, a new Mozart-labelled piece.
  await copyFile(join(FIXTURES, 'chpn-p20.mid'), join(dataDir, 'Chopin', 'chpn-p20.mid'));
  await copyFile(join(FIXTURES, 'scn15_4.mid'), join(dataDir, 'Schumann', 'scn15_4.mid'));
  await writeMidi(join(dataDir, 'Mozart', 'synthetic-1.mid'), detokenize(synthetic(1)), 100, { title: 'synthetic 1' });
  await copyFile(join(FIXTURES, 'chpn-p20.mid'), join(trainDir, 'Chopin', 'chpn-p20.mid'));
  await writeMidi(join(trainDir, 'Chopin', 'synthetic-2.mid'), detokenize(synthetic(2, 300)), 100, { title: 'synthetic 2' });
  await writeMidi(join(trainDir, 'Mozart', 'synthetic-3.mid'), detokenize(synthetic(3, 300)), 100, { title: 'synthetic 3' });
  await createTinyModel(join(dir, 'tiny'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const cli = (...args: string[]) =>
  run('node', ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: REPO, maxBuffer: 1 << 24 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

describe('nocturne evaluate', () => {
  test('--json on a tiny model reports nll, baselines, perComposer and generation; training pieces are left out', async () => {
    const r = await cli('evaluate', '--model', join(dir, 'tiny'), '--data', dataDir, '--train-data', trainDir, '--json', '--notes', '32', '--pieces-per-composer', '2');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.ok(Number.isFinite(json.nll) && json.nll > 0, `nll ${json.nll}`);
    assert.ok(Number.isFinite(json.baselines.unigram) && Number.isFinite(json.baselines.bigram));
    assert.equal(json.baselines.fittedOn.pieces, 3);
    assert.deepEqual(Object.keys(json.perComposer), ['Chopin', 'Mozart'], 'the model\'s composers found in --data');
    assert.equal(json.data.piecesInTraining, 1);
    assert.match(json.data.overlapNote, /1 of 2 evaluated pieces are in the model's training data/);
    assert.equal(json.perComposer.Chopin.heldOutPieces, 0);
    assert.equal(json.perComposer.Chopin.nll, null, 'the Chopin prelude is a training piece');
    assert.ok(json.perComposer.Mozart.nll > 0);
    close(json.nll, json.perComposer.Mozart.nll, 1e-9);
    // evaluatePieces scores whole windows: a piece's last window may overlap the one before.
    assert.ok(json.perComposer.Mozart.tokens >= 240);
    // An untrained model knows nothing: it must be worse than the unigram fitted on real notes.
    assert.ok(json.nll > json.baselines.unigram, `untrained ${json.nll} vs unigram ${json.baselines.unigram}`);
    for (const c of ['Chopin', 'Mozart']) {
      const g = json.perComposer[c].generation;
      assert.equal(g.pieces, 2);
      for (const f of ['pitch', 'ioi', 'duration', 'velocity']) {
        assert.ok(g.wasserstein[f].own >= 0 && g.wasserstein[f].others >= 0, `${c} ${f}`);
      }
      assert.ok(g.loopRate.generated >= 0 && g.loopRate.generated <= 1);
      assert.ok(Number.isInteger(g.longestCopiedRun.notes));
    }
    assert.equal(json.generation.summary.composers, 2);
    assert.match(r.stderr, /generating 2 × 32 notes/);
    assert.match(json.generation.decoding, /^temperature 1, top-p 0.95/, 'a model without its own decoding plays the engine defaults');
  });

  test('the generated-music statistics play the model at its own decoding, as compose does', async () => {
    const model = join(dir, 'tiny-decoding');
    await cp(join(dir, 'tiny'), model, { recursive: true });
    const spec = JSON.parse(await readFile(join(model, 'model.json'), 'utf8'));
    await writeFile(join(model, 'model.json'), JSON.stringify({ ...spec, decoding: { temperature: 0.7, topP: 0.9, chosenBy: 'test' } }));
    const r = await cli('evaluate', '--model', model, '--data', dataDir, '--train-data', trainDir, '--json', '--notes', '16', '--pieces-per-composer', '1', '--realism-pieces', '0');
    assert.equal(r.code, 0, r.stderr);
    assert.match(JSON.parse(r.stdout).generation.decoding, /^temperature 0.7, top-p 0.9, random seed per composer and piece/);
  });

  test('the human-readable report is a table; --composers adds a composer the model does not know', async () => {
    const r = await cli('evaluate', '--model', join(dir, 'tiny'), '--data', dataDir, '--train-data', trainDir, '--composers', 'mozart,Schumann', '--notes', '16', '--pieces-per-composer', '1');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /NLL, nats per note/);
    assert.match(r.stdout, /^Schumann\s+1\s+1\s+\d+/m);
    assert.match(r.stdout, /^ALL\s/m);
    assert.match(r.stdout, /^Mozart\s+\S+\/\S+/m, 'generation row for Mozart');
    assert.doesNotMatch(r.stdout, /^Schumann\s+\S+\/\S+/m, 'no generation for a composer the model does not know');
  });

  test('bad input exits 2 (usage) or 1 (unusable folder) with one clear line', async () => {
    const missing = await cli('evaluate', '--model', join(dir, 'tiny'));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--data DIR is required/);
    const badNotes = await cli('evaluate', '--model', join(dir, 'tiny'), '--data', dataDir, '--notes', 'many');
    assert.equal(badNotes.code, 2);
    assert.match(badNotes.stderr, /--notes must be a number/);
    const noSource = await cli('evaluate', '--model', join(dir, 'tiny'), '--data', dataDir);
    assert.equal(noSource.code, 1);
    assert.match(noSource.stderr, /cannot find the model's training data.*pass --train-data DIR/);
    const noModel = await cli('evaluate', '--model', join(dir, 'nope'), '--data', dataDir);
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /no model\.json/);
    const unknown = await cli('evaluate', '--model', join(dir, 'tiny'), '--data', dataDir, '--train-data', trainDir, '--composers', 'Liszt');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /--composers: Liszt has no pieces/);
    for (const r of [missing, badNotes, noSource, noModel, unknown]) assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  test('a study model is recognised: NLL per event, its own baselines, its budget and copies on its events', async () => {
    const pieces = await loadCorpus(listCorpus(trainDir));
    await trainStudyModel({
      outDir: join(dir, 'study'),
      train: pieces,
      validation: [],
      composers: composerTable(pieces),
      dataHash: corpusHash(pieces),
      dataSource: trainDir,
      hyperparameters: { embedding: 4, hidden: 8, layers: 1, dense: 8, window: 12 },
      minCount: 1,
      stride: 16,
      epochs: 1,
      batchSize: 16,
      learningRate: 0.01,
      clipNorm: 1,
      seed: 1,
      name: 'study-test',
      maxValidationWindows: 10,
      log: () => {},
      progress: () => {},
    });
    const r = await cli('evaluate', '--model', join(dir, 'study'), '--data', dataDir, '--json', '--notes', '24', '--pieces-per-composer', '2');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.model.arch, 'seed-lstm');
    assert.match(json.unit, /per event/);
    assert.equal(json.trainingData.dir, trainDir, 'found through data.source');
    assert.ok(json.trainingData.hashMatchesModel);
    assert.ok(json.nll > 0 && json.baselines.unigram > 0 && json.baselines.bigram > 0);
    assert.ok(json.accuracy >= 0 && json.accuracy <= 1);
    assert.equal(json.budget.stride, 16);
    assert.equal(json.budget.stoppedBy, 'epochs');
    assert.deepEqual(Object.keys(json.perComposer), ['Chopin', 'Mozart']);
    const g = json.perComposer.Mozart.generation;
    assert.equal(g.pieces, 2);
    assert.ok(Number.isInteger(g.longestCopiedRunEvents.events));
    // Its output has the study's fixed rhythm: every IOI is half a beat, every duration too.
    assert.ok(g.wasserstein.ioi.own >= 0);
  });
});
