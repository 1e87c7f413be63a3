/**
 * The model registry vets every folder with the loader's checks (issue 11, item 4): a corrupt
 * NOCTURNE_MODEL_DIR is refused on a fresh data folder instead of being copied in as the first
 * version, and a registry stuck on a corrupt copy (as the unchecked code left it) recovers at the
 * next start with a good shipped model, without anyone deleting the copy by hand.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { ModelRegistry, checkModelFolder } from '../src/community/registry.ts';
import { loadModelFolder } from '../src/model/note/folder.ts';
import { createTinyModel } from './support/tinyModel.ts';

let root: string;
let good: string;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'nocturne-registry-verify-'));
  good = join(root, 'good');
  await createTinyModel(good);
});

after(() => rmSync(root, { recursive: true, force: true }));

/** A copy of the good model with its weights.bin cut short (model.json still parses and matches). */
function corruptCopy(dir: string): string {
  cpSync(good, dir, { recursive: true });
  truncateSync(join(dir, 'weights.bin'), 1000);
  return dir;
}

/** Whether the engine's loader opens the folder (the ground truth for "loads"). */
async function loads(dir: string): Promise<boolean> {
  try {
    const { weights } = await loadModelFolder(dir);
    tf.dispose(Object.values(weights));
    return true;
  } catch {
    return false;
  }
}

/** The registry as the unchecked code left it: the corrupt copy is the first and serving version. */
function stuckRegistry(dataDir: string, version: string): void {
  const dir = join(dataDir, 'models', version);
  mkdirSync(join(dataDir, 'models'), { recursive: true });
  corruptCopy(dir);
  writeFileSync(join(dir, 'version.json'), JSON.stringify({ version, verdict: 'initial', reason: 'the shipped model', createdAt: '2026-12-01T00:00:00Z' }));
  const since = '2026-12-01T00:00:00Z';
  writeFileSync(join(dataDir, 'models', 'serving.json'), JSON.stringify({ version, since, reason: 'initial version', stack: [], history: [{ version, since, reason: 'initial version' }] }));
}

test('a corrupt NOCTURNE_MODEL_DIR on a fresh data folder is refused, and nothing is copied in', async () => {
  const dataDir = join(root, 'fresh');
  const corrupt = corruptCopy(join(root, 'corrupt'));
  await assert.rejects(ModelRegistry.open(dataDir, corrupt), /shipped model \(NOCTURNE_MODEL_DIR\) cannot serve: .*weights\.bin holds 1000 bytes/);
  assert.deepEqual(readdirSync(join(dataDir, 'models')).filter((n) => !n.startsWith('.staging')), [], 'no version, no pointer');
  // Pointing it back at a good model then just works.
  const logs: string[] = [];
  const registry = await ModelRegistry.open(dataDir, good, (l) => logs.push(l));
  assert.equal(registry.serving, 'tiny-3');
  assert.ok(await loads((await registry.current()).dir));
  registry.close();
});

test('a registry stuck on a corrupt copy of the same version recovers at a start with the good shipped model', async () => {
  const dataDir = join(root, 'stuck-same');
  stuckRegistry(dataDir, 'tiny-3');
  const logs: string[] = [];
  const registry = await ModelRegistry.open(dataDir, good, (l) => logs.push(l));
  const current = await registry.current();
  assert.equal(current.version, 'tiny-3');
  assert.ok(await loads(current.dir), 'the serving folder now loads');
  assert.ok(readdirSync(join(dataDir, 'models')).some((n) => n.startsWith('.broken-tiny-3-')), 'the broken copy is set aside, not deleted');
  assert.ok(logs.some((l) => /the serving model tiny-3 does not load \(.*weights\.bin holds 1000 bytes/.test(l)), logs.join('\n'));
  registry.close();
});

test('a corrupt serving version of another name gives way to the shipped model, and cannot be rolled back to', async () => {
  const dataDir = join(root, 'stuck-other');
  stuckRegistry(dataDir, 'tiny-9');
  const registry = await ModelRegistry.open(dataDir, good, () => {});
  const current = await registry.current();
  assert.equal(current.version, 'tiny-3');
  assert.ok(await loads(current.dir));
  await assert.rejects(registry.rollback('tiny-9'), /weights\.bin holds 1000 bytes/);
  registry.close();
});

test('checkModelFolder refuses what the loader refuses (short, non-finite, missing weights) and passes a good folder', async () => {
  const cases: [string, (dir: string) => void][] = [
    ['short', (d) => truncateSync(join(d, 'weights.bin'), 1000)],
    ['nan', (d) => {
      const path = join(d, 'weights.bin');
      const bytes = new Uint8Array(readFileSync(path));
      new DataView(bytes.buffer).setFloat32(8, NaN, true);
      writeFileSync(path, bytes);
    }],
    ['missing', (d) => rmSync(join(d, 'weights.bin'))],
  ];
  for (const [name, damage] of cases) {
    const dir = join(root, `case-${name}`);
    cpSync(good, dir, { recursive: true });
    damage(dir);
    assert.equal(await loads(dir), false, `${name}: the loader refuses it`);
    await assert.rejects(checkModelFolder(dir), `${name}: so does checkModelFolder`);
  }
  assert.equal((await checkModelFolder(good)).version, 'tiny-3');
  assert.ok(existsSync(join(good, 'weights.bin')));
});

