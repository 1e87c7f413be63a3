/**
 * The crash-loop guard, with real processes: `npm start` (terminal front end) is killed with
 * SIGKILL while a job renders, twice. The first restart resumes the job; the second answers it
 * with an apology instead of running it a third time (docs/chat.md: "a job that was in progress
 * during two crashes is answered with an apology"). A job that only waited in the queue while the
 * bot went down does not count towards the guard.
 *
 * fluidsynth is replaced by a script that never finishes, so "while a job renders" is a state the
 * test can wait for instead of a race; the bot never gets to run the real one here.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { JobStore } from '../src/jobs/store.ts';
import type { JobRecord } from '../src/jobs/types.ts';
import { chatFixture, type ChatFixture } from './support/chatBot.ts';

const ROOT = resolve(import.meta.dirname, '..');
let fixture: ChatFixture;
let hangingSynth: string;
const children = new Set<ChildProcess>();

before(async () => {
  fixture = await chatFixture('crash-loop');
  hangingSynth = join(fixture.dir, 'hanging-fluidsynth.sh');
  writeFileSync(hangingSynth, '#!/bin/sh\nexec sleep 600\n');
  chmodSync(hangingSynth, 0o755);
});

after(() => {
  for (const child of children) killGroup(child);
  fixture?.remove();
});

/** SIGKILL to the bot and everything it started (its process group: the hanging "fluidsynth"). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** `npm start` in the fixture's folder, one node process (no tsx launcher in between), in its own process group. */
function startBot() {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DISCORD_|SLACK_|NOCTURNE_)/.test(k)));
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts'), 'start'], {
    cwd: fixture.dir,
    env: { ...clean, NOCTURNE_MODEL_DIR: fixture.modelDir, NOCTURNE_FLUIDSYNTH: hangingSynth, NOCTURNE_BATCH_WINDOW_MS: '0' },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((r) => child.on('close', () => r()));
  const waitFor = async (re: RegExp, limitMs = 60_000): Promise<RegExpExecArray> => {
    const end = Date.now() + limitMs;
    for (;;) {
      const m = re.exec(output);
      if (m) return m;
      if (Date.now() > end) throw new Error(`no ${re} in the bot's output within ${limitMs} ms:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const crash = async () => {
    killGroup(child);
    await exited;
    children.delete(child);
  };
  return { child, waitFor, crash, output: () => output };
}

async function storedJob(id: string): Promise<JobRecord | undefined> {
  const store = await JobStore.open(fixture.dataDir);
  try {
    return await store.get(id);
  } finally {
    await store.close();
  }
}

test('a job in flight during two crashes: resumed after the first, an apology after the second (not a third run)', async () => {
  // Run 1: the job starts rendering, then the bot is killed.
  const first = startBot();
  first.child.stdin!.write('/compose chopin 16\n');
  await first.waitFor(/rendering the audio/);
  await first.crash();
  const store = await JobStore.open(fixture.dataDir);
  const open = await store.openJobs().finally(() => store.close());
  assert.equal(open.length, 1);
  const id = open[0].id;
  assert.match(open[0].state, /composing|rendering/, 'the crash leaves the job open and in flight');

  // Run 2: resumed once, and killed again while it renders.
  const second = startBot();
  await second.waitFor(new RegExp(`resuming job ${id}`));
  await second.waitFor(/resumed 1 job\(s\)/);
  await second.waitFor(/rendering the audio/);
  const afterOne = await storedJob(id);
  assert.equal(afterOne!.interruptions, 1, 'one crash while in flight is counted');
  await second.crash();

  // Run 3: in flight during two crashes: an apology, and the job is not run again.
  const third = startBot();
  await third.waitFor(new RegExp(`sorry: job ${id} \\(compose chopin 16\\) was interrupted by a restart`, 'i'));
  await third.waitFor(/apologized for 1 job\(s\)/);
  assert.match(third.output(), new RegExp(`job ${id} \\(compose chopin 16\\) was interrupted by a restart \\(in progress during 2 crashes\\)`, 'i'));
  assert.doesNotMatch(third.output(), /resuming job/);
  const final = await storedJob(id);
  assert.equal(final!.state, 'failed');
  assert.equal(final!.errorKind, 'interrupted');
  third.child.stdin!.end();
  await third.crash();
});

test('a job that only waited in the queue while the bot went down does not count as in flight', async () => {
  const id = 'qq22qq22';
  const now = new Date().toISOString();
  const store = await JobStore.open(fixture.dataDir);
  try {
    // As a crash leaves a job that was queued behind another: resumed once before, never started.
    await store.create({
      id,
      kind: 'compose',
      who: { platform: 'terminal', userId: 'local', userName: 'you', channelId: 'terminal', isManager: true },
      params: { composer: 'chopin', notes: 16, format: 'wav', randomSeed: 7 },
      outDir: join(fixture.outDir, id),
      modelVersion: 'tiny-3',
      state: 'queued',
      createdAt: now,
      updatedAt: now,
      requeues: 1,
      interruptions: 1,
    });
  } finally {
    await store.close();
  }
  const bot = startBot();
  await bot.waitFor(new RegExp(`resuming job ${id}`));
  await bot.waitFor(/resumed 1 job\(s\)/);
  assert.equal((await storedJob(id))!.interruptions, 1, 'waiting in the queue is not an interruption');
  await bot.crash();
});
