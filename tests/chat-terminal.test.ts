/**
 * `npm start` with no chat tokens, as a real process: piped commands run and the process exits
 * when they are done; SIGTERM finishes the piece in flight before exiting; a bad configuration is
 * one message that lists every problem.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chatFixture, isPng, isWav, midiNoteCount, type ChatFixture } from './support/chatBot.ts';

const ROOT = resolve(import.meta.dirname, '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
let fixture: ChatFixture;

before(async () => {
  fixture = await chatFixture('terminal');
});

after(() => fixture?.remove());

/** The environment of `npm start` on a machine with no chat tokens. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DISCORD_|SLACK_|NOCTURNE_)/.test(k)));
  return { ...clean, NOCTURNE_MODEL_DIR: fixture.modelDir, ...extra };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(extraEnv: Record<string, string> = {}) {
  const child = spawn(TSX, [join(ROOT, 'src/cli/main.ts'), 'start'], { cwd: fixture.dir, env: env(extraEnv), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolveRun) => child.on('close', (code) => resolveRun({ code, stdout, stderr })));
  const waitForOutput = (re: RegExp, timeoutMs = 30_000) =>
    new Promise<void>((resolveWait, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} in output within ${timeoutMs} ms:\n${stdout}\n${stderr}`)), timeoutMs);
      const check = () => {
        if (re.test(stdout)) {
          clearTimeout(timer);
          child.stdout.off('data', check);
          resolveWait();
        }
      };
      child.stdout.on('data', check);
      check();
    });
  return { child, done, waitForOutput };
}

test('echo "/compose chopin 16" | npm start: composes into ./out/<job-id>/ and exits 0 at end of input', async () => {
  const run = start();
  run.child.stdin.end('/compose chopin 16\n/compose bach 16\n/styles\n');
  const { code, stdout, stderr } = await run.done;
  assert.equal(code, 0, stderr);
  assert.match(stdout, /Piece in the style of Chopin, 16 notes/);
  assert.match(stdout, /unknown composer "bach"\. Known: Chopin, Mozart\./);
  assert.match(stdout, /Chopin: trained on 10 pieces/);
  const job = /Job ([a-z2-9]{8})/.exec(stdout)![1];
  const dir = join(fixture.dir, 'out', job);
  assert.match(stdout, new RegExp(`out/${job}/piece\\.mid`));
  assert.ok(isWav(readFileSync(join(dir, 'piece.wav'))));
  assert.equal(midiNoteCount(readFileSync(join(dir, 'piece.mid'))), 16);
  assert.ok(isPng(readFileSync(join(dir, 'piece.png'))));
  assert.ok(existsSync(join(fixture.dir, 'data', 'nocturne.sqlite')), 'job records are kept');
});

test('SIGTERM while composing: the piece is finished and written, then the process exits 0', async () => {
  const run = start();
  run.child.stdin.write('/compose mozart 40\n'); // stdin stays open: only the signal ends it
  await run.waitForOutput(/composing/);
  run.child.kill('SIGTERM');
  const { code, stdout, stderr } = await run.done;
  assert.equal(code, 0, stderr);
  assert.match(stderr, /SIGTERM: finishing the jobs in flight/);
  assert.match(stdout, /Piece in the style of Mozart, 40 notes/);
  const job = /Job ([a-z2-9]{8})/.exec(stdout)![1];
  assert.equal(midiNoteCount(readFileSync(join(fixture.dir, 'out', job, 'piece.mid'))), 40);
});

test('a bad configuration is refused at start with one message listing every problem', async () => {
  const run = start({ NOCTURNE_MODEL_DIR: join(fixture.dir, 'no-such-model'), DISCORD_GUILD_ID: 'my-server', SLACK_APP_TOKEN: 'oops', NOCTURNE_QUEUE_MAX: '0' });
  run.child.stdin.end();
  const { code, stderr } = await run.done;
  assert.equal(code, 2);
  assert.match(stderr, /configuration: 6 problems \(see \.env\.example\)/);
  for (const re of [/NOCTURNE_MODEL_DIR: no model\.json/, /NOCTURNE_QUEUE_MAX must be a whole number from 1/, /DISCORD_GUILD_ID must be a server id/, /DISCORD_GUILD_ID is set but DISCORD_TOKEN is not/, /SLACK_BOT_TOKEN is missing/, /SLACK_APP_TOKEN must be an app-level token/]) {
    assert.match(stderr, re);
  }
  assert.deepEqual(readdirSync(fixture.dir).filter((f) => f === 'no-such-model'), []);
});
