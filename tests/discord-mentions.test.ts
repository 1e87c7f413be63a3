/** A file name like `<@&123>` must not show as a role mention in the Discord "checking …" line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defuseMentions, progressBody } from '../src/adapters/discord/discord.ts';

test('mention syntax in user text is shown as plain text', () => {
  const body = progressBody('checking <@&123456789012345678>.mid…');
  assert.doesNotMatch(body.content, /<@&\d+>/);
  assert.match(body.content, /@&123456789012345678/);
  for (const m of ['<@123>', '<#456>', '<@!789>', '</compose:1>', '<:e:1>', '<a:e:1>', '<t:1:R>']) assert.notEqual(defuseMentions(m), m, m);
  assert.equal(defuseMentions('a < b'), 'a < b');
});
