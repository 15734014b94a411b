import { createHash } from 'node:crypto';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { TYPE_OIDS, parseInt8 } from './column-types.js';
import { copyTuples, inlineParams, type CopyParam } from './copy-out.js';
import { assertChannel, type Database, type QueryOptions, type Sql } from './database.js';
import { destroyConnection, Reachability } from './reachability.js';

export interface PostgresOptions {
  url: string;
  /**
   * PostgreSQL's application_name for every connection (pg_stat_activity, logs), e.g. gantry-log;
   * an application_name in the URL wins.
   */
  applicationName?: string;
  poolSize: number;
  statementTimeoutMs: number;
  /** Reconnect delay for the LISTEN connection after it drops. */
  listenReconnectMs?: number;
  /** How often the database's reachability is probed (reachability.ts); default 1 s. */
  pingIntervalMs?: number;
  /** A probe unanswered this long marks the database unreachable; default 3 s. */
  pingTimeoutMs?: number;
}

/** pg's application_name option, when one is given (PostgreSQL keeps the first 63 bytes). */
const named = (opts: { applicationName?: string | undefined }): { application_name?: string } => (opts.applicationName ? { application_name: opts.applicationName } : {});

const DEFAULT_PING_INTERVAL_MS = 1_000;
const DEFAULT_PING_TIMEOUT_MS = 3_000;

/**
 * Distinct statements kept prepared per connection. Services run a fixed set of statements (a few
 * dozen); past this bound a statement simply runs unprepared, so nothing grows without limit.
 */
const MAX_PREPARED_STATEMENTS = 500;
const statementNames = new Map<string, string>();

/**
 * pg's own parsers but for int8, which comes out as a bigint (column-types.ts) instead of a string.
 * Set on each of our statements, not on the pool: the pool is shared with the PostgreSQL rate
 * limiter (rate-limiter-flexible), which does arithmetic on pg's default int8 strings.
 */
const columnTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === TYPE_OIDS.int8 && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A query config that runs `text` as a named prepared statement, so PostgreSQL parses and plans it
 * once per connection instead of on every call (a large share of a short transaction's server CPU).
 * The name is a hash of the text, so one name never means two statements.
 */
function prepared(text: string, params: readonly unknown[] | undefined, rowMode?: 'array', options?: QueryOptions): pg.QueryConfig {
  // Unnamed, PostgreSQL parses and plans the statement on each call (QueryOptions.planEachCall).
  let name = options?.planEachCall ? undefined : statementNames.get(text);
  if (name === undefined && params !== undefined && !options?.planEachCall && statementNames.size < MAX_PREPARED_STATEMENTS) {
    name = 'g_' + createHash('sha256').update(text).digest('hex').slice(0, 24);
    statementNames.set(text, name);
  }
  return { text, values: params as unknown[] | undefined, types: columnTypes, ...(name ? { name } : {}), ...(rowMode ? { rowMode } : {}) } as pg.QueryConfig;
}

/**
 * Statements on the pool (each on any connection) or on one connection (a transaction's). `gate`
 * runs before each statement and throws to refuse it (the database is unreachable).
 */
function sqlOn(runner: Pick<pg.Pool, 'query'>, gate: () => void = () => {}): Sql {
  return {
    async query(text, params, options) {
      gate();
      const res = await runner.query(prepared(text, params, undefined, options));
      return { rows: res.rows, rowCount: res.rowCount ?? 0 };
    },
    async queryArrays(text, params) {
      gate();
      const res = await runner.query(prepared(text, params, 'array'));
      return { rows: res.rows as unknown[][], rowCount: res.rowCount ?? 0 };
    },
    async exec(script) {
      gate();
      // Without parameters pg uses the simple query protocol, which runs several statements.
      await runner.query(script);
    },
  };
}

/**
 * The pool, once the server has answered; `clients` holds its connections while they live (opening
 * ones included). `gate` throws while the database is marked unreachable: the pool then opens no
 * connection, so a caller queued for one fails at once instead of waiting on a socket a partition
 * holds (cutting the pool's connections hands the queued callers new ones, which would hang).
 */
async function openPool(opts: PostgresOptions, clients: Set<pg.Client>, gate: () => void): Promise<pg.Pool> {
  // Every connection the pool makes, from the moment it starts connecting (the pool's 'connect'
  // event comes only once a connection is up, too late for one held by a partition).
  class TrackedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      clients.add(this);
      this.once('end', () => clients.delete(this));
    }

    // pg-pool calls connect(callback) and, on an error, drops the client and hands the error to
    // the caller it was opened for.
    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error | null) => void): void;
    override connect(callback?: (err: Error | null) => void): Promise<pg.Client> | void {
      try {
        gate();
      } catch (err) {
        clients.delete(this);
        if (!callback) return Promise.reject(err as Error);
        process.nextTick(callback, err as Error);
        return;
      }
      return callback ? super.connect(callback) : super.connect();
    }
  }
  const pool = new pg.Pool({
    Client: TrackedClient,
    connectionString: opts.url,
    ...named(opts),
    max: opts.poolSize,
    statement_timeout: opts.statementTimeoutMs,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that errors (server restart) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  // pg emits 'error' on a client whenever the server ends its connection (57P01 on a restart or
  // fast shutdown, a reset), and pg-pool listens only while the client is idle or running one of
  // its own queries: a second error, or one at a moment between listeners, would be an unheard
  // 'error' event, which ends the process. Every client keeps this listener for life; the failure
  // itself still reaches the statement in flight, and the pool drops the client on release because
  // it is no longer queryable. (Seen in the cluster test: a webhooks pod restarted while PostgreSQL
  // stopped.)
  pool.on('connect', (client) => client.on('error', () => {}));
  pool.on('remove', (client) => clients.delete(client));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    // Start-up retries this; a pool left behind per attempt would hold its sockets and timers.
    await pool.end().catch(() => {});
    throw err;
  }
  return pool;
}

/**
 * Runs `fn` on a connection lent by the pool, returned after it. pg-pool takes its own 'error'
 * listener off a client it lends out, and pg emits 'error' when the server ends the connection (a
 * restart, a fast shutdown: 57P01): unheard, that event would crash the process. The statement in
 * flight fails with the same error; a broken connection (that, or one `fn` marks broken) is
 * destroyed on release instead of going back to the pool.
 */
async function onLentClient<T>(pool: pg.Pool, gate: () => void, fn: (client: pg.PoolClient, markBroken: () => void) => Promise<T>): Promise<T> {
  gate();
  const client = await pool.connect();
  let broken = false;
  const markBroken = () => {
    broken = true;
  };
  client.on('error', markBroken);
  try {
    return await fn(client, markBroken);
  } finally {
    client.removeListener('error', markBroken);
    client.release(broken);
  }
}

/** Runs `fn` in one transaction on a connection of its own: committed when it resolves, rolled back when it throws. */
function transactionOn<T>(pool: pg.Pool, gate: () => void, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return onLentClient(pool, gate, async (client) => {
    try {
      await client.query('BEGIN');
      const result = await fn(sqlOn(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  });
}

/** Database.copyRows: the statement's rows through COPY (FORMAT binary), on a pool connection. */
async function copyRowsOn(pool: pg.Pool, gate: () => void, select: string, params: readonly CopyParam[]): Promise<Buffer> {
  // Checked before a connection is borrowed: a statement refused here costs none.
  const statement = inlineParams(select, params, pg.escapeLiteral);
  return onLentClient(pool, gate, async (client, markBroken) => {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of client.query(copyStreams.to(`COPY (${statement}) TO STDOUT (FORMAT binary)`))) chunks.push(chunk as Buffer);
      return copyTuples(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    } catch (err) {
      // A COPY cut short may leave the connection mid-protocol: it serves no other statement.
      markBroken();
      throw err;
    }
  });
}

/** One dedicated connection for LISTEN, reconnected (and its channels listened again) after it drops. */
function notificationListener(url: string, applicationName: string | undefined, reconnectMs: number): Pick<Database, 'listen' | 'close'> {
  const handlers = new Map<string, Set<(payload: string) => void>>();
  let listener: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;

  const connectListener = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: url, ...named({ applicationName }) });
    client.on('notification', (msg) => {
      for (const h of handlers.get(msg.channel) ?? []) h(msg.payload ?? '');
    });
    client.on('error', () => {
      if (listener === client) listener = undefined;
      // Reconnect later, unless the database is closed by then (a reconnect after close() would hold the process open).
      if (!closed) setTimeout(() => void (closed ? undefined : ensureListener().catch(() => {})), reconnectMs).unref();
    });
    await client.connect();
    if (closed) {
      await client.end().catch(() => {});
      throw new Error('the database was closed while its LISTEN connection was being made');
    }
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
    async close() {
      closed = true;
      await listener?.end().catch(() => {});
    },
  };
}

/**
 * One connection in pipeline mode, opened at its first statement: each statement is written at
 * once, behind those still running, and PostgreSQL runs them in that order. Every statement has
 * its own Sync, so each is its own transaction and a failing one leaves the others to run. When
 * the connection fails, the statements in flight fail with it and the next statement opens a
 * new connection.
 */
function orderedConnection(opts: PostgresOptions, gate: () => void): { sql: Sql; drop(): void; close(): Promise<void> } {
  let current: Promise<pg.Client> | undefined;
  let closed = false;
  const open = (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: opts.url, ...named(opts), statement_timeout: opts.statementTimeoutMs, pipeline: true });
    const opened = client.connect().then(() => client);
    const forget = () => {
      if (current === opened) current = undefined;
    };
    // As for the pool's clients: an 'error' nobody hears ends the process; the statements in flight fail by themselves.
    client.on('error', forget);
    client.on('end', forget);
    opened.catch(forget);
    return opened;
  };
  // Statements wait on the same promise, and its callbacks run in the order they were added, so
  // statements called while the connection opens are still written in call order.
  const runner: Pick<pg.Pool, 'query'> = {
    query: ((config: pg.QueryConfig) => {
      if (closed) return Promise.reject(new Error('the database is closed'));
      return (current ??= open()).then((client) => client.query(config));
    }) as pg.Pool['query'],
  };
  return {
    sql: sqlOn(runner, gate),
    /** Cuts the connection at once (the database went silent): its statements fail, the next one reconnects. */
    drop() {
      void current?.then(destroyConnection).catch(() => {});
      current = undefined;
    },
    async close() {
      closed = true;
      const client = await current?.catch(() => undefined);
      await client?.end().catch(() => {});
    },
  };
}

/**
 * A PostgreSQL server through a `pg` pool, plus one dedicated connection for LISTEN, one for
 * ordered statements and one that probes reachability. While the probe goes unanswered every
 * statement is refused at once with DatabaseUnreachableError (UNAVAILABLE), and the connections
 * that statements were waiting on are cut; `assertReachable` lets others that use the pool (the
 * rate limiter) refuse the same way. LISTEN's connection is left alone: it carries no caller's
 * wait, and it resumes, or fails and reconnects, by itself.
 */
export async function openPostgres(opts: PostgresOptions): Promise<Database & { pool: pg.Pool; assertReachable(): void }> {
  const clients = new Set<pg.Client>();
  // Nothing runs until start(): `ordered` is defined by the time the probe can give up.
  const reachability = new Reachability({
    url: opts.url,
    ...(opts.applicationName ? { applicationName: opts.applicationName } : {}),
    intervalMs: opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    timeoutMs: opts.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
    onUnreachable() {
      for (const client of clients) destroyConnection(client);
      ordered.drop();
    },
  });
  const gate = () => reachability.assertReachable();
  const pool = await openPool(opts, clients, gate);
  const notifications = notificationListener(opts.url, opts.applicationName, opts.listenReconnectMs ?? 1000);
  const ordered = orderedConnection(opts, gate);
  reachability.start();
  return {
    engine: 'postgres',
    pool,
    assertReachable: gate,
    ...sqlOn(pool, gate),
    ordered: ordered.sql,
    transaction: (fn) => transactionOn(pool, gate, fn),
    copyRows: (select, params) => copyRowsOn(pool, gate, select, params),
    listen: (channel, onPayload) => notifications.listen(channel, onPayload),
    async notify(channel, payload) {
      assertChannel(channel);
      gate();
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    ping: () => reachability.probe(),
    async close() {
      await reachability.close();
      await notifications.close();
      await ordered.close();
      await pool.end();
    },
  };
}
