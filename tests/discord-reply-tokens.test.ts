/**
 * Discord interaction tokens leave job records (issue 11, item 8). A token is kept while it can
 * answer the interaction (a restart then edits the original reply) and dropped when the job ends
 * (done, failed, or an apology after a restart) or once it is 14 minutes old, whichever is first.
 * Jobs go through the real discord.js 14 client against the fake Discord; the records are read
 * from the store through a connection of their own, as raw text, so no copy of the token hides
 * anywhere in a record.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiscordAdapter } from '../src/adapters/discord/discord.ts';
import type { Bot } from '../src/chat/bot.ts';
import type { ComposeRequest, ComposeResult, ModelInfo } from '../src/engine/types.ts';
import type { ComposeBackend } from '../src/jobs/engineThread.ts';
import { DEFAULT_QUEUE_LIMITS, JobQueue } from '../src/jobs/queue.ts';
import { REPLY_TOKEN_USABLE_MS } from '../src/jobs/replyToken.ts';
import { JobStore } from '../src/jobs/store.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import { FakeDiscord, type RecordedCall } from '../src/testing/discordServer.ts';
import { chatFixture, midiNoteCount, type ChatFixture } from './support/chatBot.ts';

let fake: FakeDiscord;
let fixture: ChatFixture;
let bot: Bot;
let adapter: DiscordAdapter;
/** A second connection to the bot's store: what an operator (or an attacker with the file) reads. */
let reader: JobStore;

before(async () => {
  fake = await FakeDiscord.start();
  fixture = await chatFixture('reply-tokens');
  // A long batching window, so that a job is reliably seen open (queued) before it runs.
  bot = await fixture.openBot({ userMaxOpen: 4, userPerMinute: 50, batchWindowMs: 800 });
  adapter = new DiscordAdapter(bot, { token: 'MTAw.fake.token', apiBase: fake.apiBase, uploadLimitBytes: 10_000_000, attachmentHosts: ['127.0.0.1'] }, fixture.log);
  await adapter.start();
  reader = await JobStore.open(fixture.dataDir);
});

after(async () => {
  await reader?.close();
  await adapter?.stop();
  await bot?.close(5000);
  await fake?.close();
  fixture?.remove();
});

function field(call: RecordedCall, name: string): string {
  return call.body.embeds[0].fields.find((f: { name: string }) => f.name === name)?.value;
}

/** The stored record as raw text and value, asserting the token appears nowhere in it. */
async function storedWithoutToken(id: string, token: string): Promise<JobRecord> {
  const raw = await reader.getRaw(id);
  assert.ok(raw, `job ${id} is stored`);
  assert.equal(raw.value.address?.token, undefined, `job ${id}: no token field`);
  assert.ok(!raw.text.includes(token), `job ${id}: the token appears nowhere in the stored record`);
  return raw.value;
}

async function openRecordWithToken(token: string): Promise<JobRecord | undefined> {
  return (await reader.openJobs()).find((r) => r.address?.token === token);
}

test('a finished job: the record holds the token while the job is open, none once it is done; the piece is delivered', async () => {
  const { token } = fake.command('compose', { composer: 'chopin', notes: 16 });
  await fake.waitFor((c) => c.path.includes(`/${token}/`) && /queued #1/.test(c.body?.content ?? ''), 20_000, 'queued #1');
  const open = await openRecordWithToken(token);
  assert.ok(open, 'while queued, the record keeps the token (a restart now would edit the original reply)');
  assert.equal(open.address?.applicationId, fake.applicationId);

  const outcome = await fake.waitForOutcome(token);
  assert.equal(outcome.kind, 'result', JSON.stringify(outcome.call.body));
  assert.equal(outcome.call.method, 'PATCH');
  assert.match(outcome.call.path, new RegExp(`^/webhooks/${fake.applicationId}/${token}/messages/@original$`), 'delivered by editing the interaction reply');
  assert.equal(midiNoteCount(outcome.call.files.find((f) => f.name.endsWith('.mid'))!.bytes), 16);
  const job = field(outcome.call, 'Job');
  assert.equal(job, open.id);

  const record = await storedWithoutToken(job, token);
  assert.equal(record.state, 'done');
  assert.equal(record.address?.channelId, open.address?.channelId, 'where it was asked is kept');
  assert.equal(record.address?.createdAt, open.address?.createdAt);

  // /show still posts it (from the record, through the new interaction's own token).
  const show = fake.command('show', { job });
  const shown = await fake.waitForOutcome(show.token);
  assert.equal(shown.kind, 'result');
  assert.equal(field(shown.call, 'Job'), job);
});

test('a failed job: no token in its record; the failure still reaches the member', async () => {
  const limits = bot.queue.limits as { maxMusicSeconds?: number };
  const before = limits.maxMusicSeconds;
  limits.maxMusicSeconds = 0.001;
  try {
    const { token } = fake.command('compose', { composer: 'mozart', notes: 16 });
    await fake.waitFor((c) => c.path.includes(`/${token}/`) && /queued #1/.test(c.body?.content ?? ''), 20_000, 'queued #1');
    const open = await openRecordWithToken(token);
    assert.ok(open);
    const outcome = await fake.waitForOutcome(token);
    assert.equal(outcome.kind, 'error');
    assert.match(outcome.call.body.content, /over the limit of .* of music/);
    const record = await storedWithoutToken(open.id, token);
    assert.equal(record.state, 'failed');
  } finally {
    limits.maxMusicSeconds = before;
  }
});

test('after a restart: a young token is used and then dropped; an expired one goes at once, an apology drops its token', async () => {
  const now = Date.now();
  const who = (userId: string) => ({ platform: 'discord' as const, userId, userName: 'u', serverId: '800000000000000001', channelId: '810000000000000777', isManager: false });
  const record = (id: string, token: string, ageMs: number, state: JobRecord['state'] = 'queued'): JobRecord => {
    const at = new Date(now - ageMs).toISOString();
    return {
      id,
      kind: 'compose',
      who: who(`7000000000000004${id.slice(-2)}`),
      address: { applicationId: fake.applicationId, token, channelId: '810000000000000777', createdAt: String(now - ageMs) },
      params: { composer: 'chopin', notes: 16, randomSeed: 7, format: 'wav' },
      outDir: join(fixture.outDir, id),
      modelVersion: 'tiny-3',
      state,
      createdAt: at,
      updatedAt: at,
    };
  };
  const young = record('yy33yy33', 'tokyoungrecovered', 5 * 60_000);
  const expired = record('ee44ee44', 'tokexpiredrecovered', 20 * 60_000);
  const old = record('oo55oo55', 'tokoldrecovered', 2 * 3600_000, 'composing');
  for (const r of [young, expired, old]) await bot.store.create(r);

  // A start without Discord: the jobs wait for one with it; only the expired tokens go.
  const waiting = await bot.recover(['slack'], () => undefined);
  assert.deepEqual(waiting.waiting.sort(), [young.id, expired.id, old.id].sort());
  assert.equal((await reader.get(young.id))?.address?.token, young.address!.token, 'a young token stays while the job waits');
  for (const r of [expired, old]) assert.equal((await storedWithoutToken(r.id, r.address!.token)).state, r.state, 'still open, waiting');

  const outcome = await bot.recover(['discord'], (r) => adapter.replyFor(r));
  assert.deepEqual(outcome.requeued.sort(), [young.id, expired.id].sort());
  assert.deepEqual(outcome.apologized, [old.id]);
  const apologized = await storedWithoutToken(old.id, old.address!.token);
  assert.equal(apologized.state, 'failed');

  // The young token answers in the original reply; the expired one is never used: a channel message.
  const y = await fake.waitForOutcome(young.address!.token);
  assert.equal(y.kind, 'result');
  assert.equal(field(y.call, 'Job'), young.id);
  await fake.waitFor((c) => c.method === 'POST' && c.path === '/channels/810000000000000777/messages' && (c.body?.content ?? '').includes(`<@${expired.who.userId}>`), 30_000, 'the expired job answered in the channel');
  assert.ok(!fake.calls.some((c) => c.path.includes(expired.address!.token)), 'the expired token was never sent');
  for (const r of [young, expired]) {
    await waitUntil(async () => (await reader.get(r.id))?.state === 'done', `${r.id} done`);
    await storedWithoutToken(r.id, r.address!.token);
  }
});

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// A job still open when its token expires (a long queue): the queue drops the token then.

class HeldBackend implements ComposeBackend {
  readonly composerNames = ['Chopin'];
  private release!: () => void;
  private readonly gate = new Promise<void>((r) => (this.release = r));
  info(): ModelInfo {
    return { version: 'stand-in', composers: [{ name: 'Chopin', pieces: 1 }], metrics: {}, trainedAt: '' };
  }
  open(): void {
    this.release();
  }
  async composeMany(requests: ComposeRequest[], onStage?: (i: number, s: 'composing' | 'rendering' | 'done') => void): Promise<PromiseSettledResult<ComposeResult>[]> {
    requests.forEach((_, i) => onStage?.(i, 'composing'));
    await this.gate;
    return requests.map(() => ({ status: 'rejected', reason: Object.assign(new Error('stand-in'), { name: 'ComposeInputError' }) }));
  }
}

test('an open job whose token expires loses it from its record at once, still open', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nocturne-token-expiry-'));
  const store = await JobStore.open(dir);
  const backend = new HeldBackend();
  const queue = new JobQueue(backend, store, join(dir, 'out'), { ...DEFAULT_QUEUE_LIMITS, batchWindowMs: 0 });
  try {
    // Made 14 minutes ago less 300 ms: usable for 300 ms more.
    const address = { applicationId: '1', token: 'tokabouttoexpire', channelId: '2', createdAt: String(Date.now() - REPLY_TOKEN_USABLE_MS + 300) };
    let ended: JobRecord | undefined;
    const submitted = await queue.submit(
      { kind: 'compose', who: { platform: 'discord', userId: '3', userName: 'u', serverId: '4', channelId: '2', isManager: false }, address, params: { composer: 'chopin', notes: 16, format: 'wav' } },
      { finished: (r) => (ended = r) },
    );
    assert.equal((await store.get(submitted.id))?.address?.token, 'tokabouttoexpire', 'kept while usable');
    await waitUntil(async () => (await store.get(submitted.id))?.address?.token === undefined, 'the expiry', 5000);
    const raw = await store.getRaw(submitted.id);
    assert.ok(raw && !raw.text.includes('tokabouttoexpire'));
    assert.equal(raw.value.state, 'composing', 'the job itself goes on');
    assert.equal(raw.value.address?.channelId, '2');
    backend.open();
    await waitUntil(async () => ended !== undefined, 'the end', 5000);
    assert.equal(ended!.state, 'failed');
  } finally {
    backend.open();
    await queue.stop(1000);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
