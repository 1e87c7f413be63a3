import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { loadStudyModel, readStudySpec, saveStudyModel } from '../src/model/study/folder.ts';
import { buildStudyBatch, createStudyWeights, evenlySpread, studyLogits, studyLoss, studyWindows, type StudyHyperparameters } from '../src/model/study/network.ts';
import { argmax, generateStudyEvents, scoreStudyWindows } from '../src/model/study/predict.ts';
import { buildVocabulary, encodeEvents, eventPitches, eventsToNotes, pitchFromName, pitchName, studyEvents, studyTokenSpec, UNKNOWN_EVENT } from '../src/model/study/tokens.ts';
import { DATA_ATTRIBUTION } from '../src/model/folder.ts';
import { tokenize } from '../src/tokens/tokenize.ts';
import type { PianoNote } from '../src/midi/types.ts';

let dir: string;
before(async () => {
  await initBackend('wasm', () => {});
  dir = await mkdtemp(join(tmpdir(), 'nocturne-study-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const note = (pitch: number, startBeat: number, durationBeats = 1, velocity = 80): PianoNote => ({ pitch, velocity, startBeat, durationBeats, startSeconds: startBeat / 2, durationSeconds: durationBeats / 2 });

describe('study tokens (the study\'s representation)', () => {
  test('a single note keeps its name and octave; a chord becomes its sorted pitch-class set', () => {
    const tokens = tokenize([
      note(60, 0),
      note(79, 1), note(48, 1), note(64, 1), // C3 E4 G5: a C major chord spread over three octaves
      note(66, 2),
      note(36, 3), note(48, 3), // C2 + C3: two notes, one pitch class
      note(61, 4),
    ]);
    assert.deepEqual(studyEvents(tokens), ['C4', '0.4.7', 'F#4', '0', 'C#4']);
  });

  test('the octave of a chord is lost: it plays back in octave 4, half a beat apart, at velocity 64', () => {
    const events = studyEvents(tokenize([note(48, 0), note(64, 0), note(79, 0), note(30, 2, 4, 20)]));
    const notes = eventsToNotes(events);
    assert.deepEqual(notes.map((n) => n.pitch), [60, 64, 67, 30]);
    assert.deepEqual(notes.map((n) => n.startBeat), [0, 0, 0, 0.5]);
    assert.ok(notes.every((n) => n.durationBeats === 0.5 && n.velocity === 64));
    assert.deepEqual(eventsToNotes([UNKNOWN_EVENT, 'A0']).map((n) => [n.pitch, n.startBeat]), [[21, 0.5]], 'unknown is a silent step');
  });

  test('pitch names round-trip over the whole keyboard, and bad events are refused', () => {
    for (let p = 21; p <= 108; p++) assert.equal(pitchFromName(pitchName(p)), p);
    assert.equal(pitchName(60), 'C4');
    assert.equal(pitchName(21), 'A0');
    assert.equal(pitchFromName('H4'), undefined);
    assert.deepEqual(eventPitches('2.11'), [62, 71]);
    assert.throws(() => eventPitches('0.12'), /pitch class 12/);
    assert.throws(() => eventPitches('chord'), /neither a note name nor a pitch-class set/);
  });

  test('the vocabulary keeps events seen min-count times; the rest map to <unk> (index 0)', () => {
    const vocab = buildVocabulary([['C4', 'D4', 'C4', '0.4.7'], ['0.4.7', 'E4']], 2);
    assert.deepEqual(vocab, [UNKNOWN_EVENT, '0.4.7', 'C4']);
    assert.deepEqual([...encodeEvents(['C4', 'E4', '0.4.7'], vocab)], [2, 0, 1]);
  });
});

const H: StudyHyperparameters = { vocabulary: 7, embedding: 4, hidden: 8, layers: 2, dense: 6, window: 5 };

describe('study network (many-to-one)', () => {
  test('a batch holds one window of T events and ONE target per row, time-major', () => {
    const seq = Int32Array.from([1, 2, 3, 4, 5, 6, 0, 1, 2]);
    const windows = [{ sequence: 0, target: 5 }, { sequence: 0, target: 8 }];
    const batch = buildStudyBatch([seq], windows, H.window, H.vocabulary);
    assert.deepEqual(batch.inputs.shape, [H.window * 2, H.vocabulary]);
    assert.deepEqual([...batch.targets], [6, 2]);
    const rows = batch.inputs.arraySync();
    // Row t*B + b is event t of window b: window 1 covers positions 3..7 = 4 5 6 0 1.
    assert.deepEqual([0, 1, 2, 3, 4].map((t) => rows[t * 2 + 1].indexOf(1)), [4, 5, 6, 0, 1]);
    assert.deepEqual([0, 1, 2, 3, 4].map((t) => rows[t * 2].indexOf(1)), [1, 2, 3, 4, 5]);
    const w = createStudyWeights(H, 1);
    const logits = tf.tidy(() => studyLogits(w, H, batch.inputs, 2, H.window));
    assert.deepEqual(logits.shape, [2, H.vocabulary]);
    tf.dispose([logits, batch.inputs, ...Object.values(w)]);
    assert.throws(() => buildStudyBatch([seq], [{ sequence: 0, target: 3 }], H.window, H.vocabulary), /needs 5 events before it/);
  });

  test('windows: every target with a full window, at a stride; evenly spread subsets', () => {
    const seqs = [new Int32Array(12), new Int32Array(4)];
    assert.deepEqual(studyWindows(seqs, 5).map((w) => w.target), [5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(studyWindows(seqs, 5, 3).map((w) => w.target), [5, 8, 11]);
    assert.deepEqual(studyWindows(seqs, 5, 3, () => 1).map((w) => w.target), [6, 9]);
    assert.deepEqual(evenlySpread([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3), [1, 5, 8]);
    assert.throws(() => studyWindows(seqs, 5, 0), /stride must be a whole number/);
  });

  test('one training step lowers the loss on its batch; argmax generation is deterministic and leak-free', () => {
    const seq = Int32Array.from({ length: 60 }, (_, i) => 1 + (i % 6));
    const batch = buildStudyBatch([seq], studyWindows([seq], H.window, 7), H.window, H.vocabulary);
    const w = createStudyWeights(H, 2);
    const names = Object.keys(w);
    const optimizer = tf.train.adam(0.05);
    const lossOf = () => tf.tidy(() => studyLoss(w, H, batch).dataSync()[0]);
    const before = lossOf();
    const before0 = w['lstm0/wh'].dataSync().slice();
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => studyLoss(w, H, batch), names.map((n) => w[n]));
      optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
    });
    assert.notDeepEqual(w['lstm0/wh'].dataSync(), before0, 'weights moved');
    assert.ok(lossOf() < before, 'the step helped');

    const tensors = tf.memory().numTensors;
    const primers = [seq.slice(0, H.window), seq.slice(3, 3 + H.window)];
    const a = generateStudyEvents(w, H, primers, 12);
    const b = generateStudyEvents(w, H, primers, 12);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor leaks');
    assert.deepEqual(a, b);
    assert.equal(a.length, 2);
    assert.equal(a[0].length, 12);
    assert.ok(a.every((row) => row.every((e) => e > 0 && e < H.vocabulary)), 'never <unk>, always in the vocabulary');
    assert.throws(() => generateStudyEvents(w, H, [seq.slice(0, 3)], 2), /needs exactly 5 events/);
    // Scoring agrees with the batch loss.
    const score = scoreStudyWindows(w, H, [seq], studyWindows([seq], H.window, 7), 3);
    assert.ok(Math.abs(score.nll / score.targets - lossOf()) < 1e-4);
    assert.equal(argmax([0.1, 5, 2], 1), 2);
    tf.dispose([batch.inputs, ...Object.values(w)]);
    optimizer.dispose();
  });
});

describe('study model folder', () => {
  const vocabulary = [UNKNOWN_EVENT, '0.4.7', 'A0', 'C4', 'D4', 'E4', 'G4'];
  const spec = () => ({
    version: 'study-test',
    tokens: studyTokenSpec(),
    vocabulary,
    window: H.window,
    hyperparameters: H,
    composers: [{ name: 'Mozart', pieces: 1, tempoBpm: 120 }],
    data: { hash: 'x', source: 'nowhere', pieces: 1, events: 10, validationPieces: [], attribution: DATA_ATTRIBUTION },
    budget: { maxMinutes: 1, stride: 1, windowsPerEpoch: 5, windowsTrained: 5, epochs: 1, steps: 1, trainSeconds: 1, stoppedBy: 'epochs' as const },
    training: {},
    metrics: { trainNll: 1 },
  });

  test('saves and loads the same weights; generation from the loaded model is identical', async () => {
    const w = createStudyWeights(H, 4);
    await saveStudyModel(join(dir, 'm'), spec(), w);
    const loaded = await loadStudyModel(join(dir, 'm'));
    assert.equal(loaded.spec.arch, 'seed-lstm');
    const primer = [Int32Array.from([1, 2, 3, 4, 5])];
    assert.deepEqual(generateStudyEvents(loaded.weights, loaded.spec.hyperparameters, primer, 6), generateStudyEvents(w, H, primer, 6));
    tf.dispose([...Object.values(w), ...Object.values(loaded.weights)]);
  });

  test('a folder that does not match the code is refused in one line', async () => {
    const w = createStudyWeights(H, 5);
    await saveStudyModel(join(dir, 'bad'), spec(), w);
    tf.dispose(Object.values(w));
    const path = join(dir, 'bad', 'model.json');
    const original = JSON.parse(await readFile(path, 'utf8'));
    const refuse = async (edit: (s: any) => void, reason: RegExp) => {
      const s = structuredClone(original);
      edit(s);
      await writeFile(path, JSON.stringify(s));
      await assert.rejects(readStudySpec(join(dir, 'bad')), reason);
    };
    await refuse((s) => s.vocabulary.pop(), /vocabulary has 6 events, the network 7/);
    await refuse((s) => (s.tokens.eventSpacingBeats = 0.25), /token scheme/);
    await refuse((s) => (s.window = 100), /window 100 differs/);
    await refuse((s) => (s.weights[0].shape = [7, 5]), /weight embedding is 7x5, expected 7x4/);
    await refuse((s) => (s.arch = 'lstm-attention'), /architecture "lstm-attention" is not seed-lstm/);
    await writeFile(path, JSON.stringify(original));
    await writeFile(join(dir, 'bad', 'weights.bin'), new Uint8Array(12));
    await assert.rejects(loadStudyModel(join(dir, 'bad')), /weights\.bin holds 12 bytes/);
  });
});
