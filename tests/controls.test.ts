/**
 * Issue 10's engine and CLI controls with the shipped model (models/default, key-conditioned):
 * key (an independent key estimate of the written MIDI agrees for at least 5 of 6 requests over
 * four composers, seeds 1..6 fixed in advance), tempo (the MIDI's tempo and the audio's length
 * follow it), one clear line per bad value, the score (MusicXML 4.0 valid against the XSD with
 * xmllint, and a PNG), reproducibility; and the transposition fallback of a model without a key input.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_MODEL_DIR, runCompose } from '../src/cli/compose.ts';
import { UsageError } from '../src/cli/options.ts';
import { ComposeInputError, Engine } from '../src/engine/engine.ts';
import type { ComposeRequest } from '../src/engine/types.ts';
import { parseMidi } from '../src/midi/read.ts';
import { readWavHeader } from '../src/render/audio.ts';
import { estimateKey, keyName, parseKey } from '../src/tokens/key.ts';
import { tokenize } from '../src/tokens/tokenize.ts';
import { createTinyModel } from './support/tinyModel.ts';

const SCHEMA_DIR = join(import.meta.dirname, '../../shared/schemas/musicxml-4.0');
const isPng = (b: Buffer) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

let dir: string;
let engine: Engine;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nocturne-controls-'));
  engine = await Engine.open(DEFAULT_MODEL_DIR, 'wasm');
});
after(async () => {
  engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** The key of a written MIDI file, estimated afresh from its notes. */
async function midiKey(path: string): Promise<string> {
  return estimateKey(tokenize(parseMidi(await readFile(path), 'piece.mid').notes)).name;
}

describe('controls with models/default', () => {
  test('the key: an independent estimate of the MIDI agrees for at least 5 of 6 requests (four composers, six keys, seeds 1..6)', async () => {
    const asked: [string, string][] = [
      ['Chopin', 'D minor'],
      ['Mozart', 'Bb major'],
      ['Beethoven', 'C minor'],
      ['Schubert', 'E major'],
      ['Chopin', 'Ab major'],
      ['Mozart', 'G minor'],
    ];
    const requests: ComposeRequest[] = asked.map(([composer, key], i) => ({ composer, notes: 250, randomSeed: i + 1, key: parseKey(key), outDir: join(dir, `key-${i}`) }));
    const results = await engine.composeMany(requests);
    const lines: string[] = [];
    let agree = 0;
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '');
      if (r.status !== 'fulfilled') continue;
      assert.equal(r.value.params.key, keyName(parseKey(asked[i][1])!));
      const got = await midiKey(r.value.midiPath);
      if (got === r.value.params.key) agree++;
      lines.push(`${asked[i][0]} ${asked[i][1]} seed ${i + 1}: estimated ${got}`);
    }
    console.log(`key agreement ${agree} of 6\n${lines.join('\n')}`);
    assert.ok(agree >= 5, `the key estimate agrees for ${agree} of 6:\n${lines.join('\n')}`);
  });

  test('--tempo: the MIDI tempo and the audio length follow it; the default is the composer tempo', async () => {
    const base = { composer: 'Mozart', notes: 60, randomSeed: 7 };
    const plain = await engine.compose({ ...base, outDir: join(dir, 't-plain') });
    const slow = await engine.compose({ ...base, tempoBpm: 60, outDir: join(dir, 't-60') });
    const fast = await engine.compose({ ...base, tempoBpm: 120, outDir: join(dir, 't-120') });
    assert.equal(plain.params.tempoBpm, engine.spec.composers.find((c) => c.name === 'Mozart')!.tempoBpm);
    assert.equal(slow.params.tempoBpm, 60);
    assert.equal(fast.params.tempoBpm, 120);
    assert.ok(Math.abs(parseMidi(await readFile(slow.midiPath), 'slow').tempoBpm - 60) < 0.01);
    assert.ok(Math.abs(parseMidi(await readFile(fast.midiPath), 'fast').tempoBpm - 120) < 0.01);
    // The same notes at half the tempo: twice the music, and the audio follows (release tail aside).
    assert.ok(Math.abs(slow.musicSeconds / fast.musicSeconds - 2) < 1e-6, `${slow.musicSeconds} vs ${fast.musicSeconds}`);
    const slowAudio = (await readWavHeader(slow.audioPath)).seconds;
    const fastAudio = (await readWavHeader(fast.audioPath)).seconds;
    assert.ok(slowAudio - fastAudio > 0.9 * (slow.musicSeconds - fast.musicSeconds), `audio ${slowAudio} s vs ${fastAudio} s`);
  });

  test('bad key and tempo get one clear line each (engine and CLI)', async () => {
    await assert.rejects(engine.compose({ composer: 'Chopin', notes: 20, key: 30, outDir: join(dir, 'bad') }), (e: Error) => e instanceof ComposeInputError && /^key must be one of the 24 major and minor keys/.test(e.message) && !e.message.includes('\n'));
    await assert.rejects(engine.compose({ composer: 'Chopin', notes: 20, tempoBpm: 300, outDir: join(dir, 'bad') }), (e: Error) => e instanceof ComposeInputError && e.message === 'tempo must be 30 to 240 BPM, got 300');
    await assert.rejects(runCompose(['chopin', '100', '--key', 'H minor'], () => {}), (e: Error) => e instanceof UsageError && /^--key must be a major or minor key such as "D minor"/.test(e.message) && !e.message.includes('\n'));
    await assert.rejects(runCompose(['chopin', '100', '--tempo', '20'], () => {}), (e: Error) => e instanceof UsageError && e.message === '--tempo must be between 30 and 240, got 20');
    await assert.rejects(runCompose(['chopin', '100', '--tempo', 'fast'], () => {}), (e: Error) => e instanceof UsageError && e.message === '--tempo must be a number, got "fast"');
  });

  test('score: writes piece.musicxml valid against the MusicXML 4.0 schema and piece-score.png', async () => {
    const probe = spawnSync('xmllint', ['--version'], { encoding: 'utf8' });
    assert.ok(!probe.error, 'xmllint is not installed: install the Debian package libxml2-utils (setup.sh does)');
    assert.ok(existsSync(join(SCHEMA_DIR, 'musicxml.xsd')), `${SCHEMA_DIR}/musicxml.xsd is missing`);
    const r = await engine.compose({ composer: 'Chopin', notes: 120, randomSeed: 11, key: parseKey('Db major'), tempoBpm: 80, score: true, outDir: join(dir, 'score') });
    assert.equal(r.scorePath, join(dir, 'score', 'piece.musicxml'));
    assert.equal(r.scorePicturePath, join(dir, 'score', 'piece-score.png'));
    const xml = await readFile(r.scorePath!, 'utf8');
    assert.match(xml, /<fifths>-5<\/fifths>/, 'the key signature of Db major');
    assert.match(xml, /random seed 11/);
    const run = spawnSync('xmllint', ['--nonet', '--noout', '--schema', join(SCHEMA_DIR, 'musicxml.xsd'), r.scorePath!], { encoding: 'utf8', env: { ...process.env, XML_CATALOG_FILES: join(SCHEMA_DIR, 'catalog.xml') } });
    assert.equal(run.status, 0, `not valid MusicXML 4.0:\n${run.stderr.slice(0, 2000)}`);
    assert.ok(isPng(await readFile(r.scorePicturePath!)));
    const none = await engine.compose({ composer: 'Chopin', notes: 20, randomSeed: 11, outDir: join(dir, 'no-score') });
    assert.equal(none.scorePath, undefined);
    assert.equal(existsSync(join(dir, 'no-score', 'piece.musicxml')), false);
  });

  test('the same seed and controls give the same MIDI bytes', async () => {
    const req = { composer: 'Schubert', notes: 80, randomSeed: 5, key: parseKey('F# minor'), tempoBpm: 72 };
    const a = await engine.compose({ ...req, outDir: join(dir, 'same-a') });
    const b = await engine.compose({ ...req, outDir: join(dir, 'same-b') });
    assert.deepEqual(await readFile(a.midiPath), await readFile(b.midiPath));
    const other = await engine.compose({ ...req, key: parseKey('C major'), outDir: join(dir, 'same-c') });
    assert.notDeepEqual(await readFile(a.midiPath), await readFile(other.midiPath));
  });
});

test('a model without a key input transposes to the requested tonic and says so', async () => {
  await createTinyModel(join(dir, 'tiny'), ['Chopin', 'Mozart']);
  const tiny = await Engine.open(join(dir, 'tiny'), 'wasm');
  try {
    assert.ok(!tiny.spec.hyperparameters.keys);
    const r = await tiny.compose({ composer: 'Chopin', notes: 60, randomSeed: 2, key: parseKey('E minor'), outDir: join(dir, 'tiny-out') });
    assert.match(r.params.keyNote ?? '', /^this model has no key input: the piece was transposed from .+ to E (major|minor); transposition cannot change the mode$/);
    assert.match(r.params.key, /^E (major|minor)$/);
    assert.equal(estimateKey(tokenize(parseMidi(await readFile(r.midiPath), 'tiny').notes)).tonic, 4);
  } finally {
    tiny.dispose();
  }
});
