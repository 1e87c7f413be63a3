/**
 * A throw-away Postgres cluster on 127.0.0.1 for the store tests: `initdb` into a temp folder,
 * then `postgres` on a free port with its socket in that folder, trust authentication on
 * loopback, no fsync. Postgres refuses to run as root, so under root (here and in CI) both run as
 * the `postgres` system user, which owns the temp folder. `./setup.sh` installs Debian's postgresql;
 * where it is missing the tests skip, unless NOCTURNE_REQUIRE_POSTGRES=1 (CI) makes that a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from '../../src/testing/redis.ts';

/** The folder holding initdb and postgres: beside `initdb` on PATH, else the newest /usr/lib/postgresql/<ver>/bin. */
function findPostgresBin(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) {
    const dir = dirname(realpathSync(onPath));
    if (existsSync(join(dir, 'postgres'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(root, versions[0], 'bin') : undefined;
}

export const POSTGRES_BIN = findPostgresBin();
export const HAVE_POSTGRES = POSTGRES_BIN !== undefined;
export const REQUIRE_POSTGRES = process.env.NOCTURNE_REQUIRE_POSTGRES === '1';
/** node:test's skip option for tests that need Postgres. */
export const postgresSkip = !HAVE_POSTGRES && !REQUIRE_POSTGRES ? 'Postgres (initdb, postgres) is not installed (./setup.sh installs it)' : false;

/** uid/gid of the `postgres` user when this process is root (Postgres will not run as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) throw new Error('running as root needs a "postgres" system user to run Postgres as (Debian\'s postgresql package creates it)');
  return { uid, gid };
}

export class TestPostgres {
  private child: ChildProcess | undefined;
  readonly output: string[] = [];

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** Creates a cluster and starts it; on failure everything is removed again. */
  static async start(): Promise<TestPostgres> {
    if (!POSTGRES_BIN) throw new Error('Postgres is not installed (initdb not found on PATH or in /usr/lib/postgresql/*/bin)');
    const dir = await mkdtemp(join(tmpdir(), 'nocturne-pg-'));
    const pg = new TestPostgres(dir, await freePort());
    try {
      await pg.launch();
    } catch (e) {
      await pg.stop();
      throw e;
    }
    return pg;
  }

  /** A connection URL (user postgres, database postgres; trust auth takes any password). */
  url(password?: string): string {
    return `postgres://postgres${password ? `:${encodeURIComponent(password)}` : ''}@127.0.0.1:${this.port}/postgres`;
  }

  private async launch(): Promise<void> {
    const user = runAs();
    if (user) await chown(this.dir, user.uid, user.gid);
    const data = join(this.dir, 'data');
    const initdb = spawnSync(join(POSTGRES_BIN!, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
      cwd: this.dir,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', LANG: 'C' },
      ...user,
    });
    if (initdb.status !== 0) throw new Error(`initdb failed (${initdb.status ?? initdb.signal}): ${(initdb.stderr || initdb.stdout || String(initdb.error)).slice(-2000)}`);
    const args = ['-D', data, '-p', String(this.port), '-k', this.dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
    const child = spawn(join(POSTGRES_BIN!, 'postgres'), args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', LANG: 'C' }, ...user });
    this.child = child;
    child.stdout!.on('data', (d) => this.output.push(String(d)));
    child.stderr!.on('data', (d) => this.output.push(String(d)));
    await new Promise<void>((resolve, reject) => {
      const ready = /database system is ready to accept connections/;
      const timer = setTimeout(() => finish(new Error(`postgres did not become ready within 60 s; output:\n${this.output.join('').slice(-3000)}`)), 60_000);
      const check = () => {
        if (this.output.some((l) => ready.test(l))) finish();
      };
      const onExit = (code: number | null) => finish(new Error(`postgres exited (${code}) before it was ready; output:\n${this.output.join('').slice(-3000)}`));
      const finish = (error?: Error) => {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        child.stdout!.off('data', check);
        child.off('exit', onExit);
        if (error) reject(error);
        else resolve();
      };
      child.stderr!.on('data', check);
      child.stdout!.on('data', check);
      child.once('exit', onExit);
      check();
    });
  }

  /** Stops the server (fast shutdown, then SIGKILL if it hangs) and deletes the cluster. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
