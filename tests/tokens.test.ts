import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { readMidiFile } from '../src/midi/read.ts';
import { encodeMidi } from '../src/midi/write.ts';
import { parseMidi } from '../src/midi/read.ts';
import { listCorpus } from '../src/model/corpus.ts';
import { seededRandom } from '../src/model/random.ts';
import { MAX_DUR, MAX_DT, STEPS_PER_BEAT, VELOCITY_CENTRES, beatPositions, detokenize, tokenHash, tokenize, velocityBucket } from '../src/tokens/tokenize.ts';

const DATASET = '../shared/datasets/piano-midi-de';
const half = 0.5 / STEPS_PER_BEAT + 1e-9;

describe('tokenize → detokenize on real pieces', { skip: !existsSync(DATASET) && 'dataset not beside the repo' }, () => {
  test('every pitch is kept exactly, onsets and durations stay within the quantisation step', async () => {
    const entries = listCorpus(DATASET);
    let pieces = 0;
    let notes = 0;
    let clampedGaps = 0;
    for (const e of entries) {
      const piece = await readMidiFile(e.path);
      const tokens = tokenize(piece.notes);
      assert.equal(tokens.length, piece.notes.length, `${e.path}: one token per note`);
      const back = detokenize(tokens);
      const original = [...piece.notes].sort((a, b) => Math.round(a.startBeat * STEPS_PER_BEAT) - Math.round(b.startBeat * STEPS_PER_BEAT) || a.pitch - b.pitch);
      const origin = Math.round(original[0].startBeat * STEPS_PER_BEAT) / STEPS_PER_BEAT;
      // A rest longer than 8 beats is clamped; onsets after it shift (pitches are still checked).
      const grid = original.map((n) => Math.round(n.startBeat * STEPS_PER_BEAT));
      const firstClamp = grid.findIndex((g, i) => i > 0 && g - grid[i - 1] > MAX_DT);
      if (firstClamp >= 0) clampedGaps++;
      for (let i = 0; i < back.length; i++) {
        assert.equal(back[i].pitch, original[i].pitch, `${e.path} note ${i}: pitch`);
        if (firstClamp < 0 || i < firstClamp) {
          assert.ok(Math.abs(back[i].startBeat - (original[i].startBeat - origin)) <= half, `${e.path} note ${i}: onset ${back[i].startBeat} vs ${original[i].startBeat - origin}`);
        }
        if (original[i].durationBeats <= MAX_DUR / STEPS_PER_BEAT) {
          assert.ok(Math.abs(back[i].durationBeats - Math.max(original[i].durationBeats, 1 / STEPS_PER_BEAT)) <= half + 1 / STEPS_PER_BEAT / 2, `${e.path} note ${i}: duration`);
        }
        assert.equal(velocityBucket(back[i].velocity), velocityBucket(original[i].velocity), `${e.path} note ${i}: velocity bucket`);
      }
      pieces++;
      notes += back.length;
    }
    assert.equal(pieces, entries.length);
    assert.ok(notes > 700_000, `expected the whole dataset, got ${notes} notes`);
    assert.ok(clampedGaps <= 1, `rests over 8 beats should be rare, got ${clampedGaps} pieces`);
  });
});

describe('token scheme', () => {
  const note = (startBeat: number, pitch: number, durationBeats = 1, velocity = 64) => ({ pitch, velocity, startBeat, durationBeats, startSeconds: startBeat / 2, durationSeconds: durationBeats / 2 });

  test('a chord keeps its octaves and is ordered low to high with dt = 0', () => {
    const tokens = tokenize([note(0, 76), note(0, 48), note(0, 60), note(1, 62)]);
    assert.deepEqual(tokens.map((t) => [t.dt, t.pitch]), [[0, 48], [0, 60], [0, 76], [STEPS_PER_BEAT, 62]]);
  });

  test('triplets and sixteenths land on the grid exactly', () => {
    const starts = [0, 1 / 3, 2 / 3, 1, 1.25, 1.5, 1.75];
    const back = detokenize(tokenize(starts.map((s, i) => note(s, 60 + i, 0.25))));
    back.forEach((n, i) => assert.ok(Math.abs(n.startBeat - starts[i]) < 1e-9, `onset ${i}`));
  });

  test('dynamics survive as buckets and come back as the bucket centre', () => {
    const tokens = tokenize([note(0, 60, 1, 20), note(1, 60, 1, 64), note(2, 60, 1, 120)]);
    assert.deepEqual(tokens.map((t) => t.vel), [0, 4, 7]);
    assert.deepEqual(detokenize(tokens).map((n) => n.velocity), [VELOCITY_CENTRES[0], VELOCITY_CENTRES[4], VELOCITY_CENTRES[7]]);
  });

  test('spread velocities stay in their bucket, vary, centre on the bucket and repeat with the seed', () => {
    const tokens = Array.from({ length: 800 }, (_, i) => ({ dt: 3, pitch: 60, dur: 3, vel: i % 8 }));
    const draw = (seed: number) => {
      const rng = seededRandom(seed);
      return detokenize(tokens, 100, 0, () => rng.next()).map((n) => n.velocity);
    };
    const v = draw(4);
    v.forEach((x, i) => {
      assert.equal(velocityBucket(x), tokens[i].vel, `velocity ${x} left bucket ${tokens[i].vel}`);
      assert.ok(x >= 15 && x <= 120);
    });
    assert.ok(new Set(v).size > 40, `${new Set(v).size} distinct velocities`);
    for (let b = 0; b < 8; b++) {
      const inBucket = v.filter((_, i) => tokens[i].vel === b);
      const mean = inBucket.reduce((s, x) => s + x, 0) / inBucket.length;
      assert.ok(Math.abs(mean - VELOCITY_CENTRES[b]) < 4, `bucket ${b}: mean ${mean.toFixed(1)} against centre ${VELOCITY_CENTRES[b]}`);
    }
    assert.deepEqual(draw(4), v, 'the same seed, the same velocities');
    assert.notDeepEqual(draw(5), v);
  });

  test('out-of-range pitches fold by octaves into the piano, long values clamp', () => {
    const [low, high] = tokenize([note(0, 12), note(20, 120, 30)]);
    assert.equal(low.pitch, 24);
    assert.equal(high.pitch, 108);
    assert.equal(high.dt, MAX_DT);
    assert.equal(high.dur, MAX_DUR);
  });

  test('beat positions follow the running onset', () => {
    const tokens = tokenize([note(0, 60), note(0.5, 62), note(1.25, 64)]);
    assert.deepEqual([...beatPositions(tokens)], [0, 6, 3]);
  });

  test('the music hash ignores bytes but not notes', () => {
    const a = tokenize([note(0, 60), note(1, 64)]);
    const b = tokenize([note(0, 60), note(1, 64)]);
    const c = tokenize([note(0, 60), note(1, 65)]);
    assert.equal(tokenHash(a), tokenHash(b));
    assert.notEqual(tokenHash(a), tokenHash(c));
  });

  test('written MIDI reads back with exactly the same notes', () => {
    const notes = detokenize(tokenize([note(0, 48), note(0, 60), note(0.5, 67, 0.5, 90), note(3, 72, 2, 30)]), 90);
    const piece = parseMidi(encodeMidi(notes, 90, { title: 't', copyright: 'c' }), 't.mid');
    assert.equal(piece.notes.length, 4);
    assert.deepEqual(piece.notes.map((n) => [n.pitch, n.startBeat, n.durationBeats, n.velocity]), notes.map((n) => [n.pitch, n.startBeat, n.durationBeats, n.velocity]));
    assert.ok(Math.abs(piece.tempoBpm - 90) < 0.01);
  });
});
