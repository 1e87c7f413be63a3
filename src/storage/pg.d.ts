// The part of node-postgres (`pg`, installed with @keyv/postgres) that src/storage/backend.ts uses.
// pg ships no types and @types/pg is not installed.
declare module 'pg' {
  export interface PoolConfig {
    connectionString?: string;
    max?: number;
    idleTimeoutMillis?: number;
    connectionTimeoutMillis?: number;
    allowExitOnIdle?: boolean;
    ssl?: unknown;
  }
  export interface QueryResult<R> {
    rows: R[];
    rowCount: number | null;
  }
  export class Pool {
    constructor(config?: PoolConfig);
    query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
    end(): Promise<void>;
    on(event: 'error', listener: (error: Error) => void): this;
  }
  const pg: { Pool: typeof Pool };
  export default pg;
}
