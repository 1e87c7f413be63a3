/**
 * The three store backends for tests that run the same cases on each: the SQLite file (in the
 * data folder the test passes), and throw-away Redis and Postgres servers started per suite.
 * Redis and Postgres are skipped where missing, unless CI requires them (see redis.ts, postgres.ts).
 */
import { storeLocation, type StoreLocation } from '../../src/storage/backend.ts';
import { TestPostgres, postgresSkip } from './postgres.ts';
import { TestRedis, redisSkip } from '../../src/testing/redis.ts';

export interface StoreServer {
  location(dataDir: string): StoreLocation;
  stop(): Promise<void>;
}

export interface StoreBackend {
  name: 'sqlite' | 'redis' | 'postgres';
  skip: string | false;
  start(): Promise<StoreServer>;
}

/**
 * `password` goes into the Postgres URL (trust authentication accepts any), so a test can prove
 * that it never shows up in logs or errors.
 */
export function storeBackends(password?: string): StoreBackend[] {
  return [
    { name: 'sqlite', skip: false, start: async () => ({ location: (dataDir) => storeLocation(dataDir), stop: async () => {} }) },
    {
      name: 'redis',
      skip: redisSkip,
      start: async () => {
        const redis = await TestRedis.start();
        return { location: () => storeLocation('/unused', redis.url), stop: () => redis.stop() };
      },
    },
    {
      name: 'postgres',
      skip: postgresSkip,
      start: async () => {
        const pg = await TestPostgres.start();
        return { location: () => storeLocation('/unused', pg.url(password)), stop: () => pg.stop() };
      },
    },
  ];
}
