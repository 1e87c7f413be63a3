/**
 * Scale-out load benchmark: N simulated users send `/compose` at once through the real discord.js
 * client and the fake Discord gateway (src/testing; loopback only) to a bot that composes through
 * Redis (BullMQ) with 1, then 2 `nocturne worker` processes on this machine. Reports per worker
 * count: served, lost, throughput, p50/p99/max time to the final reply with its attachments, and
 * the scaling ratio (throughput with 2 workers / with 1).
 *
 * Needs redis-server on PATH (started on a free 127.0.0.1 port for the run, then stopped).
 * Exported for src/cli/bench.ts:
 *
 *   const r = await runScaleLoad({ users: 200, modelDir: 'models/default', workerCounts: [1, 2] });
 *   for (const line of formatScaleLoad(r)) console.log(line);
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeDiscord } from '../testing/discordServer.ts';
import { NocturneProcess, TestRedis } from '../testing/redis.ts';
import { DiscordAdapter } from '../adapters/discord/discord.ts';
import { Bot } from '../chat/bot.ts';

export interface ScaleLoadOptions {
  users: number;
  modelDir: string;
  /** Notes per request (default 250, the command's default). */
  notes?: number;
  /** Worker process counts to measure, in order (default [1, 2]). */
  workerCounts?: number[];
  /** Most requests one worker samples in one pass (default 8). */
  maxBatch?: number;
  /** A request not answered within this is lost (default 600 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface ScaleRun {
  workers: number;
  served: number;
  lost: number;
  throughputPerMin: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  wallSeconds: number;
}

export interface ScaleLoadResult {
  users: number;
  notes: number;
  runs: ScaleRun[];
  /** Throughput with the last worker count over the first (e.g. 2 workers / 1). */
  scalingRatio?: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function oneRun(o: ScaleLoadOptions, workerCount: number, log: (line: string) => void): Promise<ScaleRun> {
  const notes = o.notes ?? 250;
  const maxBatch = o.maxBatch ?? 8;
  const dir = mkdtempSync(join(tmpdir(), 'nocturne-scaleload-'));
  const redis = await TestRedis.start();
  const fake = await FakeDiscord.start();
  const workers: NocturneProcess[] = [];
  let bot: Bot | undefined;
  let adapter: DiscordAdapter | undefined;
  try {
    for (let i = 0; i < workerCount; i++) {
      workers.push(new NocturneProcess('worker', { REDIS_URL: redis.url, NOCTURNE_MODEL_DIR: o.modelDir, NOCTURNE_BATCH_MAX: String(maxBatch), NOCTURNE_BATCH_WINDOW_MS: '40' }));
    }
    await Promise.all(workers.map((w) => w.waitFor(/worker: taking compose jobs/, 120_000, 'a worker')));
    bot = await Bot.open({
      modelDir: o.modelDir,
      dataDir: join(dir, 'data'),
      outDir: join(dir, 'out'),
      // Distinct users in one server: only the queue bound or the server limit could refuse them.
      // The bot sends batches of maxBatch and keeps up to two per worker in flight.
      limits: { maxBatch: maxBatch * workerCount, maxWaiting: Math.max(100, o.users * 2), serverPerMinute: Math.max(60, o.users * 2) },
      log,
      redisUrl: redis.url,
    });
    adapter = new DiscordAdapter(bot, { token: 'bench.fake.token', apiBase: fake.apiBase, uploadLimitBytes: 10_000_000 }, log);
    await adapter.start();
    const started = performance.now();
    const sent = Array.from({ length: o.users }, (_, i) => ({ at: Date.now(), ...fake.command('compose', { composer: 'chopin', notes }, { user: { id: String(710000000000000000n + BigInt(i)), username: `load${i}` } }) }));
    const times: number[] = [];
    let lost = 0;
    await Promise.all(
      sent.map(async (s) => {
        try {
          const outcome = await fake.waitForOutcome(s.token, o.timeoutMs ?? 600_000);
          if (outcome.kind === 'result') times.push(outcome.call.at - s.at);
          else lost++;
        } catch {
          lost++;
        }
      }),
    );
    const wallSeconds = (performance.now() - started) / 1000;
    times.sort((a, b) => a - b);
    const run: ScaleRun = { workers: workerCount, served: times.length, lost, throughputPerMin: (times.length / wallSeconds) * 60, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times.at(-1) ?? Number.NaN, wallSeconds };
    log(`scale load: ${workerCount} worker(s): ${run.served}/${o.users} served in ${wallSeconds.toFixed(1)} s`);
    return run;
  } finally {
    await adapter?.stop();
    await bot?.close(10_000);
    await Promise.allSettled(workers.map((w) => w.stop()));
    await fake.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runScaleLoad(o: ScaleLoadOptions): Promise<ScaleLoadResult> {
  const log = o.log ?? (() => {});
  const runs: ScaleRun[] = [];
  for (const n of o.workerCounts ?? [1, 2]) runs.push(await oneRun(o, n, log));
  const first = runs[0];
  const last = runs.at(-1)!;
  return { users: o.users, notes: o.notes ?? 250, runs, scalingRatio: runs.length > 1 && first.throughputPerMin > 0 ? last.throughputPerMin / first.throughputPerMin : undefined };
}

export function formatScaleLoad(r: ScaleLoadResult): string[] {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return [
    `scale-out load: ${r.users} concurrent /compose (${r.notes} notes) through the fake Discord gateway, jobs over Redis`,
    ...r.runs.map((x) => `  ${x.workers} worker${x.workers === 1 ? ' ' : 's'}: ${x.served} served, ${x.lost} lost, ${x.throughputPerMin.toFixed(1)} pieces/min, p50 ${s(x.p50Ms)}, p99 ${s(x.p99Ms)}, max ${s(x.maxMs)}, wall ${x.wallSeconds.toFixed(1)} s`),
    ...(r.scalingRatio !== undefined ? [`  scaling ratio (${r.runs.at(-1)!.workers} workers / ${r.runs[0].workers}): ${r.scalingRatio.toFixed(2)}x`] : []),
  ];
}

const isEntry = process.argv[1] && /bench[\\/]scaleLoad\.ts$/.test(process.argv[1]);
if (isEntry) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : fallback;
  };
  runScaleLoad({ users: arg('users', 200), notes: arg('notes', 250), workerCounts: process.argv.includes('--one') ? [1] : [1, 2], modelDir: process.env.NOCTURNE_MODEL_DIR ?? join(import.meta.dirname, '..', '..', 'models', 'default'), log: (l) => process.stderr.write(`${l}\n`) }).then(
    (r) => {
      for (const line of formatScaleLoad(r)) process.stdout.write(`${line}\n`);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
    (e) => {
      process.stderr.write(`scale load: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
