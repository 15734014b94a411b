import type { CopyParam } from './copy-out.js';

/** Rows returned by a query. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface QueryOptions {
  /**
   * Plan the statement on each call, for its parameters and its tables as they are then, instead
   * of reusing a plan per connection. For a statement over a table that grows from empty (a
   * queue): PostgreSQL may settle on a generic plan while the table is empty and has no statistics
   * (a scan of a whole partial index looks free then), and keep it until the next ANALYZE. Costs a
   * parse and a plan per call (about 0.1-0.5 ms), so for statements that each do much work.
   */
  planEachCall?: boolean;
}

/** Anything that runs parameterised SQL: the database, or one transaction. */
export interface Sql {
  /** One parameterised statement. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
  /**
   * The same, with each row as an array of column values in SELECT order. For hot paths that read
   * many rows: building one object per row costs about a third of the time of a large read.
   */
  queryArrays(text: string, params?: readonly unknown[]): Promise<QueryResult<unknown[]>>;
  /** A script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

export type Unlisten = () => Promise<void>;

/** One SQL dialect (PostgreSQL), two engines: PGlite embedded, or a PostgreSQL server. */
export interface Database extends Sql {
  readonly engine: 'pglite' | 'postgres';
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * Statements that PostgreSQL runs in the order they are called, each its own transaction, each
   * sent without waiting for the answer to the one before: one connection of its own in pipeline
   * mode (PGlite runs every statement in call order anyway). For a writer that plans each
   * statement on the outcome of those still in flight, which the pool cannot offer: two of its
   * connections may reach the server in either order.
   */
  readonly ordered: Sql;
  /**
   * The rows `select` returns, as bytes: the tuples of PostgreSQL's binary COPY format (per row a
   * 16-bit field count, then per field a 32-bit length, -1 for NULL, and the value's binary send
   * form, integers big-endian), without its header and trailer; empty when there are no rows. For
   * readers of many rows with a fixed layout, which pg would receive as text and turn into an
   * object per row. COPY takes no bind parameters, so each `$n` is written into the statement as
   * a literal (copy-out.ts): `$n` must only ever be a parameter reference in `select`, and
   * PostgreSQL plans the statement on each call.
   */
  copyRows(select: string, params: readonly CopyParam[]): Promise<Buffer>;
  /** Calls `onPayload` for each NOTIFY on `channel`, from this process or any other replica. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<Unlisten>;
  notify(channel: string, payload: string): Promise<void>;
  /** Throws when the database cannot answer (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Channel names become SQL identifiers in LISTEN; allow only plain ones. */
export function assertChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new Error(`invalid notification channel name: ${channel}`);
}
