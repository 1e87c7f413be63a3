/**
 * A real `nocturne start` bot process (node, not npm) on the fake Discord, stopped with SIGTERM
 * while the fake gateway and REST go away at the same moment (the platform dropping as systemd
 * stops the service). The process must exit within NOCTURNE_SHUTDOWN_DEADLINE_S, with the jobs it
 * had left open in the store for the next start.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { FakeDiscord } from '../src/testing/discordServer.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';
import { NocturneProcess } from '../src/testing/redis.ts';
import { JobStore } from '../src/jobs/store.ts';
import { OPEN_STATES } from '../src/jobs/types.ts';

let fake: FakeDiscord;
let fixture: ChatFixture;
let bot: NocturneProcess | undefined;

before(async () => {
  fake = await FakeDiscord.start();
  fixture = await chatFixture('shutdown');
});

after(async () => {
  if (bot?.alive) bot.kill9();
  await fake?.close().catch(() => undefined);
  fixture?.remove();
});

test('SIGTERM while the Discord gateway goes away: the node process exits within the deadline and its jobs stay resumable', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(fixture.dir, 'bot-'));
  const dataDir = join(dir, 'data');
  bot = new NocturneProcess('start', {
    NOCTURNE_MODEL_DIR: fixture.modelDir,
    NOCTURNE_DATA_DIR: dataDir,
    NOCTURNE_OUT_DIR: join(dir, 'out'),
    NOCTURNE_COMMUNITY: 'off',
    NOCTURNE_TERMINAL: 'off',
    NOCTURNE_BACKEND: 'cpu',
    NOCTURNE_BATCH_MAX: '1',
    NOCTURNE_USER_PER_MINUTE: '100',
    NOCTURNE_USER_MAX_OPEN: '10',
    NOCTURNE_SHUTDOWN_GRACE_S: '1',
    NOCTURNE_SHUTDOWN_DEADLINE_S: '8',
    DISCORD_TOKEN: 'MTAw.fake.token',
    DISCORD_API_BASE: fake.apiBase,
  });
  await bot.waitFor(/discord: logged in/, 120_000, 'the bot');
  // One long piece composing, two waiting behind it.
  const tokens = [0, 1, 2].map((i) => fake.command('compose', { composer: 'chopin', notes: 2000 }, { user: { id: `70000000000000098${i}`, username: `s${i}` } }).token);
  await fake.waitFor((c) => c.path.includes(`/${tokens[0]}/`) && /composing/.test(c.body?.content ?? ''), 120_000, 'the first job composing');
  const started = Date.now();
  const exited = new Promise<void>((r) => bot!.child.once('exit', () => r()));
  // As systemd stops the service while the platform drops: the signal and the close at once.
  bot.child.kill('SIGTERM');
  await fake.close();
  const limit = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000).unref());
  const outcome = await Promise.race([exited.then(() => 'exited' as const), limit]);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(outcome, 'exited', `the bot process was still running ${seconds} s after SIGTERM (deadline 8 s):\n${bot.output.join('')}`);
  const store = await JobStore.open(dataDir);
  try {
    const open = await store.openJobs();
    assert.equal(open.length, 3, `all three jobs stay open for the next start: ${open.map((j) => `${j.id} ${j.state}`).join(', ')}`);
    for (const j of open) assert.ok(OPEN_STATES.includes(j.state));
  } finally {
    await store.close();
  }
});

test('NOCTURNE_SHUTDOWN_DEADLINE_S: default grace + 30 s, and it must be longer than the grace', async () => {
  const { loadConfig, ConfigError } = await import('../src/app/config.ts');
  const env = { NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_COMMUNITY: 'off', NOCTURNE_SHUTDOWN_GRACE_S: '20' };
  assert.equal(loadConfig(env).shutdownDeadlineMs, 50_000);
  assert.throws(() => loadConfig({ ...env, NOCTURNE_SHUTDOWN_DEADLINE_S: '20' }), (e: unknown) => e instanceof ConfigError && /NOCTURNE_SHUTDOWN_DEADLINE_S \(20\) must be longer than NOCTURNE_SHUTDOWN_GRACE_S \(20\)/.test(e.message));
});
