/**
 * Generated MusicXML validates against the MusicXML 4.0 XSD (../shared/schemas/musicxml-4.0, offline
 * catalog) with xmllint: piano-midi.de excerpts in 3/4 and 4/4 and hand-built cases (triplets,
 * long ties, chords across the hands, 6/8, a flat key and a sharp key). A missing xmllint fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { scoreToMusicXml } from '../src/render/score.ts';
import { ANY_KEY, parseKey } from '../src/tokens/key.ts';
import { chordsAcrossHands, commonTime, corpusExcerpt, dMajorLine, input, longTies, sixEight, triplets, waltz } from './support/scoreInputs.ts';

const SCHEMA_DIR = join(import.meta.dirname, '../../shared/schemas/musicxml-4.0');
const dir = mkdtempSync(join(tmpdir(), 'nocturne-score-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function requireXmllint(): void {
  const probe = spawnSync('xmllint', ['--version'], { encoding: 'utf8' });
  assert.ok(!probe.error, 'xmllint is not installed: install the Debian package libxml2-utils (setup.sh does) to validate MusicXML against the schema');
  assert.ok(existsSync(join(SCHEMA_DIR, 'musicxml.xsd')), `${SCHEMA_DIR}/musicxml.xsd is missing: the schema test needs ../shared/schemas/musicxml-4.0`);
}

/** Validates one document; fails with xmllint's message. */
function validate(name: string, xml: string): void {
  const path = join(dir, `${name}.musicxml`);
  writeFileSync(path, xml);
  const run = spawnSync('xmllint', ['--nonet', '--noout', '--schema', join(SCHEMA_DIR, 'musicxml.xsd'), path], {
    encoding: 'utf8',
    env: { ...process.env, XML_CATALOG_FILES: join(SCHEMA_DIR, 'catalog.xml') },
  });
  assert.equal(run.status, 0, `${name}: not valid MusicXML 4.0:\n${run.stderr.slice(0, 2000)}`);
  assert.match(run.stderr, /validates/);
}

test('xmllint and the schema are present (a missing validator fails, it does not skip)', () => {
  requireXmllint();
});

test('piano-midi.de excerpts validate: a Chopin mazurka in 3/4 and a Mozart sonata in 4/4', async () => {
  requireXmllint();
  const mazurka = await corpusExcerpt('Chopin/chpn_op7_1.mid', 300);
  const mazurkaXml = scoreToMusicXml(input(mazurka.tokens, ANY_KEY, { tempoBpm: mazurka.tempoBpm }));
  assert.match(mazurkaXml, /<beats>3<\/beats><beat-type>4<\/beat-type>/);
  validate('chopin-op7-1', mazurkaXml);
  const sonata = await corpusExcerpt('Mozart/mz_545_1.mid', 300);
  const sonataXml = scoreToMusicXml(input(sonata.tokens, ANY_KEY, { tempoBpm: sonata.tempoBpm }));
  assert.match(sonataXml, /<beats>4<\/beats><beat-type>4<\/beat-type>/);
  validate('mozart-545-1', sonataXml);
  const theme = await corpusExcerpt('Mozart/mz_331_1.mid', 200);
  validate('mozart-331-1', scoreToMusicXml(input(theme.tokens, parseKey('A major')!, { tempoBpm: theme.tempoBpm })));
});

test('hand-built cases validate: triplets, long ties, chords across hands, 6/8, waltz, flat and sharp keys', () => {
  requireXmllint();
  const cases = {
    triplets: input(triplets(), parseKey('C major')!),
    'long-ties': input(longTies(), parseKey('F minor')!, { timeSignature: '4/4' }),
    'chords-across-hands': input(chordsAcrossHands(), parseKey('G major')!),
    'six-eight': input(sixEight(), parseKey('A minor')!),
    waltz: input(waltz(), parseKey('Ab major')!),
    'flat-key': input(dMajorLine(), parseKey('Eb minor')!),
    'sharp-key': input(dMajorLine(), parseKey('F# major')!),
    'common-time-pickup': input(commonTime(), parseKey('D major')!, { barOffset: 36 }),
  };
  for (const [name, c] of Object.entries(cases)) validate(name, scoreToMusicXml(c));
});
