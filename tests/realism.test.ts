import assert from 'node:assert/strict';
import { longestLoop } from '../src/tokens/loops.ts';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import {
  classifierTwoSampleTest,
  compareRealism,
  composerRecognition,
  DEFAULT_COMPARE,
  DEFAULT_TWO_SAMPLE,
  estimateKey,
  excerpts,
  featureVector,
  fitRealismCritic,
  groupedFolds,
  intervalRepetition,
  keyClarity,
  KEYS,
  LEADING_FEATURES,
  leadingFeatures,
  logIoiStd,
  pitchClassSetEntropy,
  pitchRepetition,
  polyphony,
  quarterGapShare,
  realismFeatures,
  realismLogOdds,
  REALISM_FEATURES,
  distantRepetition,
  rocAuc,
  scaleConsistency,
  splitPieces,
  tripletGapShare,
  type PieceTokens,
} from '../src/eval/realism.ts';
import { DEFAULT_REALISM_DECODING, realismDecodingOf } from '../src/eval/evaluate.ts';
import { writeMidi } from '../src/midi/write.ts';
import { seededRandom } from '../src/model/random.ts';
import { detokenize, type NoteToken } from '../src/tokens/tokenize.ts';
import { loopProfile } from '../src/tokens/loops.ts';
import { createTinyModel, TINY_LONG_CONTEXT_HYPERPARAMETERS } from './support/tinyModel.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} is not ${b}`);

/** Single notes of equal length one after another. */
const melody = (pitches: readonly number[], dt = 12, dur = dt): NoteToken[] => pitches.map((pitch) => ({ dt, pitch, dur, vel: 4 }));
const C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72];

describe('realism features on hand-built excerpts', () => {
  test('excerpts are whole, consecutive and non-overlapping; the remainder is dropped', () => {
    const tokens = melody(Array.from({ length: 620 }, (_, i) => 40 + (i % 30)));
    const parts = excerpts(tokens, 250);
    assert.equal(parts.length, 2);
    assert.deepEqual(parts[1][0], tokens[250]);
    assert.equal(excerpts(tokens.slice(0, 249), 250).length, 0);
  });

  test('a motif repeated gives the expected repetition share, at pitch and interval level', () => {
    // 8 distinct pitches played 4 times: 29 4-grams, of which only the 8 cyclic ones are new.
    const looped = melody([...C_MAJOR.slice(0, 7), 74, ...C_MAJOR.slice(0, 7), 74, ...C_MAJOR.slice(0, 7), 74, ...C_MAJOR.slice(0, 7), 74]);
    close(pitchRepetition(looped, 4), 21 / 29);
    close(pitchRepetition(looped, 8), 17 / 25);
    close(pitchRepetition(looped, 16), 9 / 17);
    // Music that never repeats a pitch has no repeats at any length.
    const rising = melody(Array.from({ length: 40 }, (_, i) => 30 + i * 2).map((p) => p % 88 + 21));
    assert.equal(pitchRepetition(rising, 4), 0);
    assert.equal(pitchRepetition(melody([60, 62]), 4), 0, 'no 4-grams in two notes');
  });

  test('a transposed repeat counts for intervals but not for pitches', () => {
    // Steps 2, 3, 1, 4, −3, 5, −11: no step pattern recurs inside the motif itself.
    const motif = [60, 62, 65, 66, 70, 67, 72, 61];
    const tokens = melody([...motif, ...motif.map((p) => p + 5)]);
    assert.equal(pitchRepetition(tokens, 4), 0);
    // 15 steps, 13 windows of 3 steps; the 5 inside the transposed copy repeat the first 5.
    close(intervalRepetition(tokens, 4), 5 / 13);
    // An 8-note window is 7 steps: the copy's only one repeats the motif's.
    close(intervalRepetition(tokens, 8), 1 / 9);
    assert.equal(intervalRepetition(tokens, 1), 0);
  });

  test('returns from afar: a motif brought back transposed after other music counts, the same motif looped on the spot does not', () => {
    const motif = [60, 62, 65, 66, 70, 67, 72, 61];
    const between = Array.from({ length: 24 }, (_, i) => 40 + ((i * 5) % 29));
    // The transposed motif's 7 steps (notes 33..39) lie in a return from 32 notes back: 7 of 40 notes.
    close(distantRepetition(melody([...motif, ...between, ...motif.map((p) => p + 5)])), 7 / 40);
    assert.equal(distantRepetition(melody([...motif, ...motif, ...motif, ...motif])), 0, 'round and round');
    assert.ok(intervalRepetition(melody([...motif, ...motif, ...motif, ...motif]), 8) > 0.5, 'which the n-gram repeats count alike');
    assert.equal(distantRepetition([]), 0);
  });

  test('longest loop: a hammered note, a repeated figure, and a figure broken by one note', () => {
    assert.equal(longestLoop(melody(Array(40).fill(97))), 40, 'one note 40 times');
    const figure = [48, 55, 52, 55];
    assert.equal(longestLoop(melody([60, ...figure, ...figure, ...figure, 72])), 12, 'an Alberti figure three times');
    assert.equal(longestLoop(melody([...figure, ...figure, 50, ...figure])), 8, 'a changed note ends the loop');
    assert.equal(longestLoop([...melody([60, 62]), ...melody([60, 62], 6)]), 1, 'the same pitches in another rhythm do not loop');
    const rising = melody(Array.from({ length: 30 }, (_, i) => 30 + i));
    assert.equal(longestLoop(rising), 1);
    assert.equal(longestLoop([]), 0);
  });

  test('rhythm: std of ln IOI, quarter-note and triplet gaps ignore chord notes and the first dt', () => {
    // After the first onset, 10 gaps of half a beat and 10 of a beat: ln 0.5 and ln 1, std ln2 / 2.
    // Chord notes add nothing.
    const swing: NoteToken[] = [];
    for (let i = 0; i < 21; i++) swing.push({ dt: i % 2 ? 6 : 12, pitch: 60, dur: 6, vel: 4 }, { dt: 0, pitch: 64, dur: 6, vel: 4 });
    swing[0] = { ...swing[0], dt: 96 };
    close(logIoiStd(swing), Math.log(2) / 2);
    assert.equal(logIoiStd(melody([60, 62, 64], 3)), 0, 'even sixteenths');
    const gaps: NoteToken[] = [12, 12, 4, 4, 4, 3, 0, 8].map((dt, i) => ({ dt, pitch: 60 + i, dur: 3, vel: 4 }));
    // Non-zero gaps after the first: 12, 4, 4, 4, 3, 8.
    close(quarterGapShare(gaps), 1 / 6);
    close(tripletGapShare(gaps), 4 / 6);
    assert.equal(quarterGapShare(melody([60])), 0);
  });

  test('polyphony: the share of the span with two or more notes sounding', () => {
    // A: 0..12, B: 6..18 → 6 of 18 steps with two notes.
    close(polyphony([{ dt: 0, pitch: 60, dur: 12, vel: 4 }, { dt: 6, pitch: 64, dur: 12, vel: 4 }]), 6 / 18);
    // A held chord of three notes for 12 steps, then 12 steps of silence, then a single note.
    const chordThenRest: NoteToken[] = [{ dt: 0, pitch: 60, dur: 12, vel: 4 }, { dt: 0, pitch: 64, dur: 12, vel: 4 }, { dt: 0, pitch: 67, dur: 12, vel: 4 }, { dt: 24, pitch: 72, dur: 12, vel: 4 }];
    close(polyphony(chordThenRest), 12 / 36);
    assert.equal(polyphony(melody(C_MAJOR)), 0);
  });

  test('a C major scale: key C major, scale consistency 1, one clear key window', () => {
    const scale = melody(C_MAJOR);
    const key = estimateKey(scale);
    assert.deepEqual({ tonic: key.tonic, mode: key.mode, name: key.name }, { tonic: 0, mode: 'major', name: 'C major' });
    assert.ok(key.correlation > 0.85, `correlation ${key.correlation}`);
    assert.equal(scaleConsistency(scale), 1);
    // 8 notes of one beat fill exactly one 8-beat window: clarity is that window's best correlation.
    close(keyClarity(scale), key.correlation);
    // One chromatic note among nine of equal length: 8/9 fit the best scale.
    close(scaleConsistency(melody([...C_MAJOR, 66])), 8 / 9);
  });

  test('estimateKey: transposition moves the tonic; harmonic minor is minor; bad input is rejected', () => {
    for (let shift = 0; shift < 12; shift++) {
      const key = estimateKey(melody(C_MAJOR.map((p) => p + shift)));
      assert.equal(key.tonic, shift);
      assert.equal(key.mode, 'major');
    }
    assert.equal(estimateKey(melody([57, 59, 60, 62, 64, 65, 68, 69])).name, 'A minor');
    assert.equal(estimateKey(melody([62, 64, 65, 67, 69, 70, 73, 74].map((p) => p - 12))).name, 'D minor');
    // Durations count: a long D and A over a short C major scale make it D-centred.
    const weighted = [...melody(C_MAJOR, 3), { dt: 3, pitch: 62, dur: 48, vel: 4 }, { dt: 0, pitch: 69, dur: 48, vel: 4 }, { dt: 48, pitch: 65, dur: 24, vel: 4 }];
    assert.equal(estimateKey(weighted).tonic, 2);
    assert.equal(KEYS.length, 24);
    assert.equal(new Set(KEYS.map((k) => k.name)).size, 24);
    assert.throws(() => estimateKey([]), /estimateKey: no notes/);
  });

  test('key clarity is per 8-beat window: two clear keys in turn stay clear, though the whole is not', () => {
    const cMajor = melody(C_MAJOR); // 8 beats
    const fSharpMajor = melody(C_MAJOR.map((p) => p + 6)); // the key farthest from C
    const both = [...cMajor, ...fSharpMajor];
    const perWindow = (estimateKey(cMajor).correlation + estimateKey(fSharpMajor).correlation) / 2;
    close(keyClarity(both), perWindow);
    assert.ok(estimateKey(both).correlation < perWindow - 0.3, 'one key for the whole fits badly');
  });

  test('pitch-class-set succession entropy: two alternating chords give 1 bit, one chord 0', () => {
    const chord = (pitches: number[], dt: number): NoteToken[] => pitches.map((pitch, i) => ({ dt: i === 0 ? dt : 0, pitch, dur: 6, vel: 4 }));
    // 11 chords: 10 successions, 5 of each kind.
    const alternating = Array.from({ length: 11 }, (_, i) => chord(i % 2 ? [55, 59, 62] : [48, 52, 55, 60], 12)).flat();
    close(pitchClassSetEntropy(alternating), 1);
    // Octaves do not change a pitch-class set.
    const same = Array.from({ length: 10 }, (_, i) => chord(i % 2 ? [48, 52, 55] : [60, 64, 67, 72], 12)).flat();
    close(pitchClassSetEntropy(same), 0);
    // Four different successions, each once: 2 bits.
    close(pitchClassSetEntropy(melody([60, 62, 64, 65, 67])), 2);
  });

  test('the feature vector: velocities decoded to bucket centres, distinct velocities, pitch range', () => {
    const tokens: NoteToken[] = [
      { dt: 0, pitch: 40, dur: 6, vel: 0 },
      { dt: 6, pitch: 70, dur: 6, vel: 7 },
      { dt: 6, pitch: 50, dur: 6, vel: 7 },
    ];
    const f = realismFeatures(tokens);
    close(f.velocityMean, (22 + 112 + 112) / 3);
    assert.equal(f.velocityValues, 2);
    assert.equal(f.pitchRange, 30);
    assert.deepEqual(Object.keys(f), [...REALISM_FEATURES]);
    for (const name of REALISM_FEATURES) assert.ok(Number.isFinite(f[name]), name);
    for (const name of REALISM_FEATURES) assert.ok(Number.isFinite(realismFeatures([])[name]), `${name} of nothing`);
  });
});

describe('classifiers', () => {
  test('rocAuc on known rankings, with ties counted one half', () => {
    assert.equal(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]), 1);
    assert.equal(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]), 0);
    assert.equal(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 0.75);
    assert.equal(rocAuc([5, 5, 5, 5], [0, 1, 0, 1]), 0.5);
    // One positive tied with one of two negatives, above the other: (1 + 0.5) / 2.
    assert.equal(rocAuc([1, 2, 2], [0, 0, 1]), 0.75);
    assert.throws(() => rocAuc([1, 2], [1, 1]), /at least one example of each class/);
  });

  const rows = (groups: number, perGroup: number, seed: number, shift: number, prefix: string) => {
    const rng = seededRandom(seed);
    const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
    return Array.from({ length: groups * perGroup }, (_, i) => ({ group: `${prefix}${Math.floor(i / perGroup)}`, features: Array.from({ length: 6 }, (_, j) => gauss() + (j < 2 ? shift : 0)) }));
  };

  test('grouped folds never split a piece, spread every class over the folds and are deterministic', () => {
    const groups = Array.from({ length: 70 }, (_, i) => `piece${i % 13}`);
    const labels = groups.map((g) => (Number(g.slice(5)) < 5 ? 1 : 0));
    const { folds, k } = groupedFolds(groups, labels, 5, 7);
    assert.equal(k, 5);
    const foldOf = new Map<string, number>();
    groups.forEach((g, i) => {
      if (foldOf.has(g)) assert.equal(foldOf.get(g), folds[i], `${g} split across folds`);
      foldOf.set(g, folds[i]);
    });
    for (let f = 0; f < k; f++) for (const label of [0, 1]) assert.ok(labels.some((y, i) => y === label && folds[i] === f), `fold ${f} lacks class ${label}`);
    assert.deepEqual(groupedFolds(groups, labels, 5, 7).folds, folds);
    // k drops to the smallest class's number of groups; fewer than 2 is an error.
    assert.equal(groupedFolds(['a', 'b', 'c', 'd', 'e'], [0, 0, 0, 1, 1], 5, 1).k, 2);
    assert.throws(() => groupedFolds(['a', 'b', 'c'], [0, 0, 1], 5, 1), /at least 2 groups/);
  });

  test('the two-sample test separates clearly different sets and not two draws of one distribution', () => {
    const real = rows(20, 5, 1, 0, 'r');
    const far = classifierTwoSampleTest(real, rows(12, 5, 2, 3, 'g'));
    assert.ok(far.auc > 0.97, `different sets: AUC ${far.auc}`);
    assert.deepEqual(far.excerpts, [100, 60]);
    assert.deepEqual(far.pieces, [20, 12]);
    assert.equal(far.aucs.length, 5);
    const same = classifierTwoSampleTest(real, rows(20, 5, 3, 0, 'g'));
    assert.ok(Math.abs(same.auc - 0.5) < 0.12, `same distribution: AUC ${same.auc}`);
    assert.deepEqual(classifierTwoSampleTest(real, rows(20, 5, 3, 0, 'g')), same, 'deterministic');
  });

  test('splitPieces: two disjoint halves covering every piece, fixed by the seed', () => {
    const names = Array.from({ length: 9 }, (_, i) => `p${i}`);
    const [a, b] = splitPieces(names, 4);
    assert.equal(a.size, 5);
    assert.equal(b.size, 4);
    assert.deepEqual(new Set([...a, ...b]), new Set(names));
    assert.deepEqual(splitPieces(names, 4), [a, b]);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole comparisons on synthetic pieces

/** Structured "real" music: a motif in a key, repeated with variations, chords under it. */
function structuredPiece(seed: number, notes: number, tonic: number): NoteToken[] {
  const rng = seededRandom(seed);
  const motif = Array.from({ length: 8 }, () => [0, 2, 4, 5, 7, 9, 11][Math.floor(rng.next() * 7)]);
  const out: NoteToken[] = [];
  for (let i = 0; out.length < notes; i++) {
    const bar = Math.floor(i / 8);
    if (i % 8 === 0) out.push({ dt: 6, pitch: 48 + tonic + (bar % 2 ? 7 : 0), dur: 24, vel: 3 });
    out.push({ dt: i % 8 === 0 ? 0 : i % 2 ? 3 : 6, pitch: 60 + tonic + motif[i % 8] + (bar % 4 === 3 ? 12 : 0), dur: 4, vel: 3 + (i % 3 === 0 ? 1 : 0) });
  }
  return out.slice(0, notes);
}

/** Aimless music: random chromatic pitches, random gaps and velocities. */
function aimlessPiece(seed: number, notes: number): NoteToken[] {
  const rng = seededRandom(seed);
  return Array.from({ length: notes }, () => ({ dt: 1 + Math.floor(rng.next() * 11), pitch: 36 + Math.floor(rng.next() * 48), dur: 1 + Math.floor(rng.next() * 12), vel: Math.floor(rng.next() * 8) }));
}

describe('realism critic', () => {
  test('fitted on structured against aimless pieces, it scores unseen structured pieces real and unseen aimless ones not, a mixed piece between', () => {
    const real = Array.from({ length: 6 }, (_, i) => structuredPiece(i + 1, 500, i % 2 ? 7 : 0));
    const generated = Array.from({ length: 4 }, (_, i) => aimlessPiece(100 + i, 500));
    const critic = fitRealismCritic(real, generated);
    assert.deepEqual(critic.excerpts, [12, 8]);
    const structured = realismLogOdds(critic, structuredPiece(50, 500, 2));
    const aimless = realismLogOdds(critic, aimlessPiece(150, 500));
    assert.ok(structured > 0 && aimless < 0, `structured ${structured}, aimless ${aimless}`);
    // A piece is the mean of its excerpts: half structured, half aimless lies between the two.
    const mixed = realismLogOdds(critic, [...structuredPiece(50, 250, 2), ...aimlessPiece(150, 250)]);
    close(mixed, (realismLogOdds(critic, structuredPiece(50, 250, 2)) + realismLogOdds(critic, aimlessPiece(150, 250))) / 2, 1e-9);
    // Shorter than an excerpt: scored whole.
    assert.ok(Number.isFinite(realismLogOdds(critic, structuredPiece(51, 100, 0))));
  });

  test('refuses sides without a whole excerpt', () => {
    assert.throws(() => fitRealismCritic([structuredPiece(1, 500, 0)], [aimlessPiece(2, 100)]), /needs excerpts of 250 notes on both sides, got 2 real and 0 generated/);
  });
});

describe('compareRealism', () => {
  const composers = ['A', 'B'];
  const real: PieceTokens[] = Array.from({ length: 8 }, (_, i) => ({ name: `real${i}`, composer: composers[i % 2], tokens: structuredPiece(i + 1, 500, i % 2 ? 7 : 0) }));

  test('aimless pieces are told from structured ones and fail the repetition rule', () => {
    const generated: PieceTokens[] = Array.from({ length: 6 }, (_, i) => ({ name: `gen${i}`, composer: composers[i % 2], tokens: aimlessPiece(100 + i, 500) }));
    const r = compareRealism(real, generated);
    assert.deepEqual(r.real, { pieces: 8, excerpts: 16 });
    assert.deepEqual(r.generated, { pieces: 6, excerpts: 12 });
    assert.ok(r.classifier.generatedVsReal.auc > 0.95, `AUC ${r.classifier.generatedVsReal.auc}`);
    assert.ok(r.classifier.realVsReal.auc < r.classifier.generatedVsReal.auc);
    const rep = r.features.pitchRepetition8;
    assert.ok(rep.real.mean > 0.5 && rep.generated.mean < 0.05, `${rep.real.mean} / ${rep.generated.mean}`);
    assert.equal(rep.pass, false);
    assert.ok(rep.ratio! < 0.5);
    assert.equal(rep.separation, 1, 'every aimless excerpt repeats less than every structured one');
    for (const f of REALISM_FEATURES) assert.ok(r.features[f].separation >= 0.5 && r.features[f].separation <= 1, f);
    assert.equal(r.features.scaleConsistency.real.mean, 1);
    assert.equal(r.features.scaleConsistency.pass, false);
    assert.ok(r.passed < REALISM_FEATURES.length);
    assert.equal(r.passed, REALISM_FEATURES.filter((f) => r.features[f].pass).length);
    // The loop profile is taken over the whole pieces of each side, not the excerpts.
    assert.equal(r.loops.real.notes, 8 * 499);
    assert.deepEqual(r.loops.generated, loopProfile(generated.map((p) => p.tokens)));
  });

  test('pieces like the real ones pass; a band shrunk to one value still holds a mean equal to it', () => {
    const generated: PieceTokens[] = Array.from({ length: 6 }, (_, i) => ({ name: `gen${i}`, composer: composers[i % 2], tokens: structuredPiece(50 + i, 500, i % 2 ? 7 : 0) }));
    const r = compareRealism(real, generated);
    for (const f of REALISM_FEATURES) {
      const x = r.features[f];
      assert.ok(x.real.p5 <= x.real.p95, f);
      assert.equal(x.ratio !== undefined, f.includes('Repetition'), `${f}: a ratio only for repetition`);
    }
    for (const f of ['scaleConsistency', 'keyClarity', 'polyphony', 'logIoiStd', 'velocityMean', 'pitchRepetition4', 'intervalRepetition4'] as const) assert.ok(r.features[f].pass, f);
    assert.ok(r.classifier.generatedVsReal.auc < 0.9, `AUC ${r.classifier.generatedVsReal.auc}`);
  });

  test('what gives it away: the forward selection starts with the one feature that differs', () => {
    // Like the real pieces, but every note three velocity steps louder: as many distinct velocities, a higher mean.
    const loud: PieceTokens[] = Array.from({ length: 6 }, (_, i) => ({ name: `gen${i}`, composer: composers[i % 2], tokens: structuredPiece(50 + i, 500, i % 2 ? 7 : 0).map((t) => ({ ...t, vel: t.vel + 3 })) }));
    const r = compareRealism(real, loud);
    const leading = r.classifier.leading;
    assert.equal(leading.length, LEADING_FEATURES);
    assert.equal(leading[0].feature, 'velocityMean');
    assert.ok(leading[0].auc > 0.95, `velocity alone tells them apart (${leading[0].auc})`);
    assert.equal(new Set(leading.map((l) => l.feature)).size, LEADING_FEATURES, 'each feature once');
    assert.ok(r.features.velocityValues.separation < 0.75, 'the count of velocities does not differ');
    // The same selection, called directly on fewer steps, agrees on the first.
    const rows = (pieces: PieceTokens[]) => pieces.flatMap((p) => excerpts(p.tokens).map((e) => ({ group: p.name, features: featureVector(realismFeatures(e)) })));
    assert.deepEqual(leadingFeatures(rows(real), rows(loud), 1, { ...DEFAULT_TWO_SAMPLE, repeats: 2 }).map((l) => l.feature), ['velocityMean']);
  });

  test('composer recognition: real pieces in different keys are told apart, and so are generated ones like them', () => {
    const generated: PieceTokens[] = Array.from({ length: 4 }, (_, i) => ({ name: `gen${i}`, composer: composers[i % 2], tokens: structuredPiece(60 + i, 500, i % 2 ? 7 : 0) }));
    const r = composerRecognition(real, generated, DEFAULT_COMPARE)!;
    assert.deepEqual(r.composers, ['A', 'B']);
    assert.equal(r.chance, 0.5);
    assert.equal(r.real.pieces, 8);
    assert.ok(r.real.accuracy >= 0 && r.real.accuracy <= 1);
    assert.equal(r.generated.excerpts, 8);
    // A generated composer the real pieces do not have takes no part.
    assert.equal(composerRecognition(real, generated.map((g) => ({ ...g, composer: 'C' }))), null);
  });

  test('too few pieces is one clear error', () => {
    assert.throws(() => compareRealism(real.slice(0, 3), real), /at least 4 real pieces of 250\+ notes, got 3/);
    assert.throws(() => compareRealism(real, [{ name: 'g', composer: 'A', tokens: aimlessPiece(1, 100) }]), /at least 2 generated pieces/);
  });
});

// ---------------------------------------------------------------------------------------------
// nocturne evaluate --realism-only, end to end on a tiny model

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nocturne-realism-'));
  for (const c of ['Chopin', 'Mozart']) {
    await mkdir(join(dir, 'data', c), { recursive: true });
    await mkdir(join(dir, 'train', c), { recursive: true });
    for (let i = 0; i < 3; i++) await writeMidi(join(dir, 'data', c, `held-${i}.mid`), detokenize(structuredPiece(c.length * 10 + i, 300, i * 2)), 100, { title: `${c} ${i}` });
    await writeMidi(join(dir, 'train', c, 'train.mid'), detokenize(structuredPiece(c.length * 100, 300, 5)), 100, { title: `${c} train` });
  }
  await createTinyModel(join(dir, 'tiny'));
  await createTinyModel(join(dir, 'tiny-keys'), ['Chopin', 'Mozart'], 3, TINY_LONG_CONTEXT_HYPERPARAMETERS);
});
after(async () => rm(dir, { recursive: true, force: true }));

const cli = (...args: string[]) =>
  run('node', ['--import', 'tsx', 'src/cli/main.ts', 'evaluate', '--model', join(dir, 'tiny'), '--data', join(dir, 'data'), '--train-data', join(dir, 'train'), '--backend', 'cpu', ...args], { cwd: REPO, maxBuffer: 1 << 24 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

describe('nocturne evaluate: the realism section', () => {
  test('a decoding option replaces only its part of the model\'s own decoding', () => {
    const own = { temperature: 1, topP: 1, heads: { vel: { temperature: 1.1, topP: 1 } }, composerGuidance: 2, keyGuidance: 8 };
    assert.deepEqual(realismDecodingOf(own, {}), own, 'nothing asked: the model\'s own');
    assert.deepEqual(realismDecodingOf(own, { realismDecoding: { heads: { dt: { temperature: 0.85, topP: 1 } } } }), { ...own, heads: { vel: { temperature: 1.1, topP: 1 }, dt: { temperature: 0.85, topP: 1 } } }, 'one head asked: the model\'s top-p and its other heads stay');
    assert.deepEqual(realismDecodingOf(own, { realismDecoding: { topP: 0.9, heads: { vel: { temperature: 1, topP: 0.8 } } }, composerGuidance: 2.5 }), { ...own, topP: 0.9, heads: { vel: { temperature: 1, topP: 0.8 } }, composerGuidance: 2.5 });
    assert.deepEqual(realismDecodingOf(undefined, { realismDecoding: { temperature: 0.9 } }), { ...DEFAULT_REALISM_DECODING, temperature: 0.9, keyGuidance: undefined, composerGuidance: undefined }, 'a model without a decoding starts from the engine\'s');
  });

  test('--realism-only --json: generated pieces of the default composers against the held-out pieces, nothing else', async () => {
    const r = await cli('--realism-only', '--realism-pieces', '4', '--realism-notes', '250', '--json');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.deepEqual(json.sections, ['realism']);
    assert.equal(json.nll, null);
    assert.equal(json.generation, null);
    const m = json.realism;
    assert.deepEqual(m.composers, ['Mozart', 'Chopin'], 'the defaults the model knows and --data has, in their order');
    assert.equal(m.piecesPerComposer, 2);
    assert.deepEqual(m.generated, { pieces: 4, excerpts: 4 });
    assert.deepEqual(m.real, { pieces: 6, excerpts: 6 });
    assert.deepEqual(Object.keys(m.features), [...REALISM_FEATURES]);
    assert.ok(m.classifier.generatedVsReal.auc >= 0 && m.classifier.generatedVsReal.auc <= 1);
    assert.equal(typeof m.features.pitchRepetition8.pass, 'boolean');
    assert.match(r.stderr, /realism: generating 4 pieces × 250 notes/);
    assert.equal(m.seed, 1, 'the same pieces every run unless asked');
    // Another seed set writes other pieces, so the figures' noise can be measured.
    const other = await cli('--realism-only', '--realism-pieces', '4', '--realism-notes', '250', '--realism-seed', '2', '--json');
    assert.equal(other.code, 0, other.stderr);
    const o = JSON.parse(other.stdout).realism;
    assert.equal(o.seed, 2);
    assert.match(other.stderr, /in one batch, seed set 2/);
    assert.deepEqual(o.real, m.real, 'against the same real pieces');
    assert.notDeepEqual(REALISM_FEATURES.map((f) => o.features[f].generated), REALISM_FEATURES.map((f) => m.features[f].generated), 'other generated pieces');
  });

  test('a key-conditioned model is also asked for each of the 24 keys, and the report says how often it kept them', async () => {
    const r = await run('node', ['--import', 'tsx', 'src/cli/main.ts', 'evaluate', '--model', join(dir, 'tiny-keys'), '--data', join(dir, 'data'), '--train-data', join(dir, 'train'), '--backend', 'cpu', '--realism-only', '--realism-pieces', '4', '--realism-notes', '250', '--json'], { cwd: REPO, maxBuffer: 1 << 24 });
    const json = JSON.parse(r.stdout);
    assert.equal(json.keys.pieces, 24);
    assert.equal(json.keys.results.length, 24);
    assert.deepEqual(json.keys.results.slice(0, 3).map((k: { requested: string }) => k.requested), ['C major', 'C# major', 'D major']);
    assert.ok(json.keys.agreed >= 0 && json.keys.agreed <= json.keys.topThree && json.keys.topThree <= 24);
    // A long-context model also reports where its attention heads look on the held-out pieces.
    const reach = json.attentionReach;
    assert.equal(reach.pieces, 6);
    assert.equal(reach.heads.length, 2);
    for (const shares of reach.heads) assert.ok(Math.abs(shares.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-6, 'each head\'s shares sum to 1');
    const plain = await cli('--realism-only', '--realism-pieces', '4', '--realism-notes', '250', '--json');
    assert.equal(JSON.parse(plain.stdout).keys, undefined, 'a model without a key input is not asked');
    assert.equal(JSON.parse(plain.stdout).attentionReach, undefined, 'nor is a model without long-context attention');
  });

  test('the text report has the realism table; bad realism options get one clear line', async () => {
    const text = await cli('--realism-only', '--realism-pieces', '4', '--realism-notes', '250', '--realism-composers', 'chopin,mozart');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^pitch 8-gram repeats\s+\S+\s+\S+–\S+/m);
    assert.match(text.stdout, /ROC-AUC generated vs real \d\.\d{3}, real vs real \d\.\d{3}/);
    assert.doesNotMatch(text.stdout, /NLL, nats/);
    const short = await cli('--realism-notes', '100', '--realism-seed', '0');
    assert.equal(short.code, 2);
    assert.match(short.stderr, /--realism-notes/);
    assert.match(short.stderr, /--realism-seed/);
    const unknown = await cli('--realism-only', '--realism-composers', 'Liszt');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /--realism-composers: Liszt is not one of the model's composers/);
  });
});
