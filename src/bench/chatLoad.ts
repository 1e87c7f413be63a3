/**
 * Chat load benchmark: N simulated users send `/compose` at the same moment through the real
 * discord.js client, connected to the local fake Discord gateway and REST API of the tests
 * (src/testing/discordServer.ts; loopback only). Measures the time from each interaction to the
 * final reply with its attachments, jobs lost, throughput, and the same load with batching off
 * (one request per sampling pass) to show what batching changes. Also the idle latency of a
 * single `compose chopin 500`.
 *
 * Targets on a 2-core machine: all served (lost = 0), p99 ≤ 30 s, idle `compose chopin 500`
 * p50 ≤ 3 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeDiscord } from '../testing/discordServer.ts';
import { DiscordAdapter } from '../adapters/discord/discord.ts';
import { Bot } from '../chat/bot.ts';

export interface ChatLoadOptions {
  users: number;
  modelDir: string;
  /** Notes per request (default 250, the command's default). */
  notes?: number;
  /** Also run the same load with maxBatch = 1 (default true). */
  compareUnbatched?: boolean;
  /** Sequential `compose chopin 500` runs on an idle bot for the idle latency (default 3; 0 to skip). */
  idleRuns?: number;
  /** Most requests in one sampling pass when batching (default 8, the bot's default). */
  maxBatch?: number;
  /** Give up on a reply after this long (default 300 s); a request not answered by then is lost. */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface LoadRun {
  served: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  throughputPerMin: number;
  wallSeconds: number;
  meanBatchSize: number;
}

export interface ChatLoadResult extends LoadRun {
  users: number;
  notes: number;
  /** The same load with one request per sampling pass. */
  batchedVsUnbatched?: { batchedPerMin: number; unbatchedPerMin: number; speedup: number; unbatched: LoadRun };
  /** p50 of `compose chopin 500` (time to the final reply) with nothing else running. */
  idleCompose500P50Ms?: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

async function withBot<T>(modelDir: string, maxBatch: number, users: number, log: (line: string) => void, work: (fake: FakeDiscord, bot: Bot) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'nocturne-chatload-'));
  const fake = await FakeDiscord.start();
  let bot: Bot | undefined;
  let adapter: DiscordAdapter | undefined;
  try {
    bot = await Bot.open({
      modelDir,
      dataDir: join(dir, 'data'),
      outDir: join(dir, 'out'),
      // Every simulated user is distinct, in one server: only the server limit could refuse them.
      limits: { maxBatch, maxWaiting: Math.max(100, users * 2), serverPerMinute: Math.max(60, users * 2) },
      log,
    });
    adapter = new DiscordAdapter(bot, { token: 'bench.fake.token', apiBase: fake.apiBase, uploadLimitBytes: 10_000_000 }, log);
    await adapter.start();
    return await work(fake, bot);
  } finally {
    await adapter?.stop();
    await bot?.close(10_000);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadRun(fake: FakeDiscord, bot: Bot, users: number, notes: number, timeoutMs: number): Promise<LoadRun> {
  const composers = bot.composerNames;
  const before = bot.queueStats();
  const started = Date.now();
  const sent = Array.from({ length: users }, (_, i) => {
    const user = { id: String(700000000000100000n + BigInt(i)), username: `listener${i}` };
    const at = Date.now();
    const { token } = fake.command('compose', { composer: composers[i % composers.length].toLowerCase(), notes }, { user });
    return { token, at };
  });
  const outcomes = await Promise.all(
    sent.map(async ({ token, at }) => {
      try {
        const o = await fake.waitForOutcome(token, timeoutMs);
        return o.kind === 'result' ? o.call.at - at : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  const times = outcomes.filter((t): t is number => t !== undefined).sort((a, b) => a - b);
  const last = Math.max(...sent.map((s) => s.at), ...fake.calls.filter((c) => c.files.length > 0).map((c) => c.at));
  const wallSeconds = (last - started) / 1000;
  return {
    served: times.length,
    lost: users - times.length,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    maxMs: times.at(-1) ?? Number.NaN,
    throughputPerMin: wallSeconds > 0 ? (times.length / wallSeconds) * 60 : 0,
    wallSeconds,
    meanBatchSize: (() => {
      const after = bot.queueStats();
      const batches = after.batches - before.batches;
      return batches ? (after.batchedJobs - before.batchedJobs) / batches : 0;
    })(),
  };
}

async function idleRuns(fake: FakeDiscord, runs: number, timeoutMs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const at = Date.now();
    const { token } = fake.command('compose', { composer: 'chopin', notes: 500 }, { user: { id: String(700000000000900000n + BigInt(i)), username: 'idle' } });
    const o = await fake.waitForOutcome(token, timeoutMs);
    if (o.kind !== 'result') throw new Error(`idle compose chopin 500 failed: ${JSON.stringify(o.call.body).slice(0, 300)}`);
    times.push(o.call.at - at);
  }
  return percentile(times.sort((a, b) => a - b), 50);
}

export async function benchChatLoad(options: ChatLoadOptions): Promise<ChatLoadResult> {
  const users = options.users;
  const notes = options.notes ?? 250;
  const timeoutMs = options.timeoutMs ?? 300_000;
  const log = options.log ?? (() => {});
  const maxBatch = options.maxBatch ?? 8;

  const { run, idle } = await withBot(options.modelDir, maxBatch, users, log, async (fake, bot) => {
    // Warm up (first batch pays for kernel setup), then the idle latency, then the load.
    await idleRuns(fake, 1, timeoutMs);
    const idle = options.idleRuns === 0 ? undefined : await idleRuns(fake, options.idleRuns ?? 3, timeoutMs);
    fake.calls.length = 0;
    const run = await loadRun(fake, bot, users, notes, timeoutMs);
    return { run, idle };
  });
  const result: ChatLoadResult = { users, notes, ...run, idleCompose500P50Ms: idle };
  if (options.compareUnbatched ?? true) {
    const unbatched = await withBot(options.modelDir, 1, users, log, async (fake, bot) => {
      await idleRuns(fake, 1, timeoutMs);
      fake.calls.length = 0;
      return loadRun(fake, bot, users, notes, timeoutMs);
    });
    result.batchedVsUnbatched = {
      batchedPerMin: run.throughputPerMin,
      unbatchedPerMin: unbatched.throughputPerMin,
      speedup: unbatched.throughputPerMin > 0 ? run.throughputPerMin / unbatched.throughputPerMin : Number.NaN,
      unbatched,
    };
  }
  return result;
}
