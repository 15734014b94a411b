import pg from 'pg';
import { assertChannel, type Database, type Sql } from './database.js';

export interface PostgresOptions {
  url: string;
  poolSize: number;
  statementTimeoutMs: number;
  /** Reconnect delay for the LISTEN connection after it drops. */
  listenReconnectMs?: number;
}

/** A PostgreSQL server through a `pg` pool, plus one dedicated connection for LISTEN. */
export async function openPostgres(opts: PostgresOptions): Promise<Database & { pool: pg.Pool }> {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    statement_timeout: opts.statementTimeoutMs,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that errors (server restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  await pool.query('SELECT 1');

  const handlers = new Map<string, Set<(payload: string) => void>>();
  let listener: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;

  const connectListener = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: opts.url });
    client.on('notification', (msg) => {
      for (const h of handlers.get(msg.channel) ?? []) h(msg.payload ?? '');
    });
    client.on('error', () => {
      listener = undefined;
      if (!closed) setTimeout(() => void ensureListener().catch(() => {}), opts.listenReconnectMs ?? 1000);
    });
    await client.connect();
    for (const channel of handlers.keys()) await client.query(`LISTEN ${channel}`);
    listener = client;
    return client;
  };
  const ensureListener = async (): Promise<pg.Client> => {
    if (listener) return listener;
    connecting ??= connectListener().finally(() => (connecting = undefined));
    return connecting;
  };

  return {
    engine: 'postgres',
    pool,
    async query(text, params) {
      const res = await pool.query(text, params as unknown[] | undefined);
      return { rows: res.rows, rowCount: res.rowCount ?? 0 };
    },
    async queryArrays(text, params) {
      const res = await pool.query({ text, values: params as unknown[] | undefined, rowMode: 'array' });
      return { rows: res.rows as unknown[][], rowCount: res.rowCount ?? 0 };
    },
    async exec(script) {
      // Without parameters pg uses the simple query protocol, which runs several statements.
      await pool.query(script);
    },
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const tx: Sql = {
          async query(text, params) {
            const res = await client.query(text, params as unknown[] | undefined);
            return { rows: res.rows, rowCount: res.rowCount ?? 0 };
          },
          async queryArrays(text, params) {
            const res = await client.query({ text, values: params as unknown[] | undefined, rowMode: 'array' });
            return { rows: res.rows as unknown[][], rowCount: res.rowCount ?? 0 };
          },
          async exec(script) {
            await client.query(script);
          },
        };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async listen(channel, onPayload) {
      assertChannel(channel);
      let set = handlers.get(channel);
      const first = !set;
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(onPayload);
      const client = await ensureListener();
      if (first) await client.query(`LISTEN ${channel}`);
      return async () => {
        set.delete(onPayload);
        if (set.size === 0) {
          handlers.delete(channel);
          await listener?.query(`UNLISTEN ${channel}`).catch(() => {});
        }
      };
    },
    async notify(channel, payload) {
      assertChannel(channel);
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      closed = true;
      await listener?.end().catch(() => {});
      await pool.end();
    },
  };
}
