/**
 * Refused contributions are rate-limited too (issue 11, item 8): every file a member offers to
 * `contribute` counts against NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR, whatever its verdict, and
 * beyond it the answer is "slow down" with nothing downloaded. End to end through `startBot`
 * (the tiny community world) with the real discord.js 14 client against the fake Discord, whose
 * CDN counts every file request; plus the rolling window itself, with a given clock.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startBot } from '../src/app/start.ts';
import { Contributions } from '../src/community/contributions.ts';
import { loadConfig } from '../src/app/config.ts';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { FAST_TEMPO_BPM } from './support/chatBot.ts';
import { createCommunityWorld, datasetBytes, NEW_PIECES, type CommunityWorld } from './support/communityFixture.ts';

const LIMIT = 3;
let world: CommunityWorld;
let discord: FakeDiscord;
let running: { stop: () => Promise<void> };

before(async () => {
  discord = await FakeDiscord.start();
  world = await createCommunityWorld();
  const specPath = join(world.modelDir, 'model.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  for (const c of spec.composers) c.tempoBpm = FAST_TEMPO_BPM;
  writeFileSync(specPath, `${JSON.stringify(spec, null, 2)}\n`);
  const config = loadConfig(
    {
      ...world.env,
      NOCTURNE_OUT_DIR: join(world.root, 'out'),
      NOCTURNE_CONTRIBUTION_ATTEMPTS_PER_HOUR: String(LIMIT),
      DISCORD_TOKEN: 'MTAw.fake.token',
      DISCORD_API_BASE: discord.apiBase,
      DISCORD_ATTACHMENT_HOSTS: '127.0.0.1',
      NOCTURNE_RETRAIN_SCHEDULE: 'off',
    },
    world.root,
  );
  assert.ok(config.community, 'the community loop is on');
  assert.equal(config.community.contributionAttemptsPerHour, LIMIT);
  running = await startBot(config, () => {});
});

after(async () => {
  await running?.stop();
  await discord?.close();
  if (world) await rm(world.root, { recursive: true, force: true });
});

type Member = { user: { id: string; username: string } };
const member = (n: number): Member => ({ user: { id: `70000000000000060${n}`, username: `m${n}` } });

function text(call: RecordedCall): string {
  const embed = call.body?.data?.embeds?.[0] ?? call.body?.embeds?.[0];
  return embed ? `${embed.title}\n${embed.description}` : (call.body?.data?.content ?? call.body?.content ?? '');
}

async function contribute(who: Member, files: Record<string, { attachment: { filename: string; size: number; url: string } }>) {
  const { token } = discord.command('contribute', files, who);
  const outcome = await discord.waitForOutcome(token, 30_000);
  return { kind: outcome.kind, text: text(outcome.call) };
}

function hosted(name: string, bytes: Uint8Array) {
  const url = discord.hostFile(name, bytes, 'audio/midi');
  return { attachment: { filename: name, size: bytes.length, url }, path: new URL(url).pathname };
}

const junk = () => Buffer.from('these are my notes, not a MIDI file\n');

test(`${LIMIT} refused files in a row: the next contribute is "slow down" and nothing is downloaded`, async () => {
  const who = member(1);
  const before = discord.fileRequests.length;
  // Refused after a download: not a MIDI file.
  const notMidi = hosted('junk.mid', junk());
  const a = await contribute(who, { midi: notMidi });
  assert.equal(a.kind, 'error');
  assert.match(a.text, /junk\.mid: refused, unreadable/);
  // Refused before any request: a host that is not the platform's.
  const b = await contribute(who, { midi: { attachment: { filename: 'elsewhere.mid', size: 900, url: 'http://localhost:9/elsewhere.mid' } } });
  assert.match(b.text, /elsewhere\.mid: could not be downloaded \(the attachment is not on the platform's file host/);
  // Refused before any request: declared over the size limit.
  const c = await contribute(who, { midi: { attachment: { filename: 'huge.mid', size: 3 * 1024 * 1024, url: hosted('huge.mid', junk()).attachment.url } } });
  assert.match(c.text, /huge\.mid: refused, it is 3 MiB/);
  assert.equal(discord.fileRequests.length, before + 1, 'one download so far');

  // A good piece now: refused as too many attempts, and never fetched.
  const good = hosted('mine.mid', await datasetBytes(NEW_PIECES[0]));
  const d = await contribute(who, { midi: good });
  assert.equal(d.kind, 'error');
  assert.match(d.text, new RegExp(`^⚠️ slow down: you offered ${LIMIT} files to contribute in the last hour \\(the limit, refused files included\\); try again in ~\\d+ (min|s)$`));
  assert.equal(discord.fileRequests.length, before + 1, 'no download for the refused attempt');
  assert.ok(!discord.fileRequests.includes(good.path));

  // Another member is not affected: the same piece is fetched and accepted.
  const e = await contribute(member(2), { midi: good });
  assert.equal(e.kind, 'info', e.text);
  assert.match(e.text, /mine\.mid: accepted as c/);
  assert.equal(discord.fileRequests.filter((p) => p === good.path).length, 1);
});

test(`five files at once with room for ${LIMIT}: the first ${LIMIT} are checked, the rest answered "not checked" unfetched`, async () => {
  const files = [1, 2, 3, 4, 5].map((i) => hosted(`junk${i}.mid`, junk()));
  const before = discord.fileRequests.length;
  const r = await contribute(member(3), { midi: files[0], midi2: files[1], midi3: files[2], midi4: files[3], midi5: files[4] });
  assert.equal(r.kind, 'error');
  for (const i of [1, 2, 3]) assert.match(r.text, new RegExp(`junk${i}\\.mid: refused, unreadable`));
  for (const i of [4, 5]) assert.match(r.text, new RegExp(`junk${i}\\.mid: not checked, slow down: you offered ${LIMIT} files`));
  assert.deepEqual(discord.fileRequests.slice(before), files.slice(0, LIMIT).map((f) => f.path));
});

test('the allowance is a rolling hour per user and platform', () => {
  const c = new Contributions(undefined as never, undefined as never, { dataDir: '', contributionsPerDay: 10, holdoutFraction: 0, driftThreshold: 0, contributionAttemptsPerHour: 2 });
  const t0 = Date.parse('2026-03-01T12:00:00Z');
  const ana = { uploader: 'ana', platform: 'discord' };
  assert.deepEqual(c.takeAttempts(ana, 1, t0), { granted: 1, limit: 2, retryAfterSeconds: 0 });
  assert.deepEqual(c.takeAttempts(ana, 3, t0 + 10 * 60_000), { granted: 1, limit: 2, retryAfterSeconds: 50 * 60 });
  assert.equal(c.takeAttempts(ana, 1, t0 + 59 * 60_000).granted, 0);
  assert.equal(c.takeAttempts({ uploader: 'ana', platform: 'slack' }, 1, t0).granted, 1, 'per platform');
  assert.equal(c.takeAttempts(ana, 1, t0 + 60 * 60_000).granted, 1, 'the first attempt has left the window');
  assert.equal(c.takeAttempts(ana, 1, t0 + 60 * 60_000).granted, 0);
});
