/**
 * A throw-away redis-server on 127.0.0.1 for the scale-out tests (a free port; no persistence
 * unless asked for),
 * and helpers to run real `nocturne` processes against it. `./setup.sh` installs redis-server; where
 * it is missing the tests skip, unless NOCTURNE_REQUIRE_REDIS=1 (CI) makes that a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const HAVE_REDIS = spawnSync('redis-server', ['--version']).status === 0;
export const REQUIRE_REDIS = process.env.NOCTURNE_REQUIRE_REDIS === '1';
/** node:test's skip option for tests that need redis-server. */
export const redisSkip = !HAVE_REDIS && !REQUIRE_REDIS ? 'redis-server is not installed (./setup.sh installs it)' : false;

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, what: string, output: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (output.some((l) => pattern.test(l))) {
        clearTimeout(timer);
        resolve();
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${pattern} within ${timeoutMs} ms; output:\n${output.join('').slice(-3000)}`)), timeoutMs);
    if (check()) return;
    const onData = () => {
      if (check()) {
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!check()) reject(new Error(`${what} exited (${code}) before ${pattern}; output:\n${output.join('').slice(-3000)}`));
    });
  });
}

export interface TestRedisOptions {
  /**
   * Keep the data in an append-only file in this folder (fsync on every write), so what was
   * accepted before a stop (even kill -9) is there after a restart on the same port.
   */
  appendOnlyDir?: string;
}

export class TestRedis {
  private child: ChildProcess | undefined;
  readonly output: string[] = [];

  private constructor(
    readonly port: number,
    private readonly options: TestRedisOptions,
  ) {}

  static async start(options: TestRedisOptions = {}): Promise<TestRedis> {
    const redis = new TestRedis(await freePort(), options);
    await redis.launch();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const dir = this.options.appendOnlyDir;
    const persistence = dir ? ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d) => this.output.push(String(d)));
    child.stderr!.on('data', (d) => this.output.push(String(d)));
    await waitForLine(child, /Ready to accept connections/, 10_000, 'redis-server', this.output);
  }

  /** Stops it (SIGTERM) and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  /** Kills it at once (SIGKILL), as a crash would, and waits for the exit. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts it again on the same port (and folder), e.g. after kill9(). */
  async relaunch(): Promise<void> {
    this.output.length = 0;
    await this.launch();
  }

  async restart(): Promise<void> {
    await this.stop();
    this.output.length = 0;
    await this.launch();
  }
}

const ROOT = join(import.meta.dirname, '..', '..');

/** A real `nocturne <command>` process; its output is collected. */
/**
 * The environment of a `nocturne start` bot process for these tests: Discord only (the fake at
 * `apiBase`, a fake token), jobs through Redis, no community loop, no terminal, its data and out
 * folders under `dir`. `extra` adds or overrides settings.
 */
export function botProcessEnv(o: { redisUrl: string; modelDir: string; dir: string; apiBase: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: o.redisUrl,
    NOCTURNE_MODEL_DIR: o.modelDir,
    NOCTURNE_DATA_DIR: join(o.dir, 'data'),
    NOCTURNE_OUT_DIR: join(o.dir, 'out'),
    NOCTURNE_COMMUNITY: 'off',
    NOCTURNE_TERMINAL: 'off',
    DISCORD_TOKEN: 'MTAw.fake.token',
    DISCORD_API_BASE: o.apiBase,
    ...extra,
  };
}

export class NocturneProcess {
  readonly output: string[] = [];
  readonly child: ChildProcess;

  constructor(command: string, env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), command], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d) => this.output.push(String(d)));
    this.child.stderr!.on('data', (d) => this.output.push(String(d)));
    if (process.env.NOCTURNE_TEST_LOG === '1') this.child.stderr!.on('data', (d) => process.stderr.write(`[${command} ${this.child.pid}] ${d}`));
  }

  waitFor(pattern: RegExp, timeoutMs = 60_000, what = 'nocturne'): Promise<void> {
    return waitForLine(this.child, pattern, timeoutMs, what, this.output);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill9(): void {
    this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}
