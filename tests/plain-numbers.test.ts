/** Numbers where people type them: 0x10, 1e3, 0b11 and Infinity are refused, plain decimals kept. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkOptions, parsePlainNumber } from '../src/chat/options.ts';
import type { CommandSpec } from '../commands/shared/command.ts';

const spec = { name: 'compose', description: 'd', options: [{ name: 'notes', kind: 'integer', description: 'n', min: 16, max: 2000 }, { name: 'temperature', kind: 'number', description: 't', min: 0.1, max: 2 }], execute: async () => {} } as unknown as CommandSpec;

test('hex, exponent, binary and Infinity are not numbers a person typed', () => {
  for (const typed of ['0x10', '1e3', '0b11', '0o20', 'Infinity', '1_000']) {
    const checked = checkOptions(spec, { notes: typed });
    assert.equal(checked.options.notes, undefined, typed);
    assert.match(checked.problems.join(';'), /notes must be a whole number/, typed);
  }
  assert.match(checkOptions(spec, { temperature: '1e-1' }).problems.join(';'), /temperature must be a number/);
});

test('plain decimals still work', () => {
  assert.deepEqual(checkOptions(spec, { notes: ' 500 ', temperature: '0.9' }).options, { notes: 500, temperature: 0.9 });
  assert.equal(parsePlainNumber('+.5'), 0.5);
  assert.ok(Number.isNaN(parsePlainNumber('')));
});
