/**
 * A fixed-seed sample of the fuzz run (`npm run fuzz` does 10,000): mutated and truncated MIDI
 * files through `nocturne check` and the contribute path. Every file gets a verdict, none crashes,
 * none passes the per-file time bound, and the same seed gives the same files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultFuzzSources, fixChunkLengths, formatFuzzReport, fuzzCase, runFuzz } from '../src/bench/fuzz.ts';

test('fuzz sample: 300 mutated MIDI files, each with a verdict, no crash, no hang', { timeout: 120_000 }, async () => {
  const sourceFiles = await defaultFuzzSources();
  const report = await runFuzz({ count: 300, seed: 7, boundMs: 2000, sourceFiles, storeEvery: 100 });
  if (process.env.NOCTURNE_TEST_LOG === '1') for (const line of formatFuzzReport(report)) process.stderr.write(`${line}\n`);
  assert.deepEqual(report.crashes, []);
  assert.deepEqual(report.hangs, []);
  assert.equal(report.files, 300);
  const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
  assert.equal(total(report.check), 300, 'a check verdict per file');
  assert.equal(total(report.contribute), 300, 'a contribute outcome per file');
  assert.ok((report.check.unreadable ?? 0) > 0 && (report.check.ok ?? 0) > 0, `both readable and unreadable files were produced: ${JSON.stringify(report.check)}`);
});

test('fuzz cases are deterministic for a seed, and framing repair keeps the track lengths consistent', async () => {
  const { readFile } = await import('node:fs/promises');
  const sources = await Promise.all((await defaultFuzzSources()).slice(0, 3).map(async (f) => new Uint8Array(await readFile(f))));
  for (const i of [0, 1, 99]) assert.deepEqual(fuzzCase(sources, 42, i), fuzzCase(sources, 42, i));
  assert.notDeepEqual(fuzzCase(sources, 42, 5).bytes, fuzzCase(sources, 43, 5).bytes);
  const fixed = fixChunkLengths(sources[0].slice(0, 500));
  const dv = new DataView(fixed.buffer);
  assert.equal(dv.getUint32(18), 500 - 22, 'the first track now runs to the end of the truncated file');
});
