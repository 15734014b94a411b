import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.js';
import { DatabaseUnreachableError } from './reachability.js';

/** Pauses between start-up attempts to reach the database: doubling from min to max, each spread ±20%. */
export const DATABASE_STARTUP_BACKOFF = { minDelayMs: 500, maxDelayMs: 10_000 } as const;
const JITTER_RATIO = 0.2;

/** Node's socket errors for a server that is not there, or not reachable, yet. */
const TRANSIENT_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL's SQLSTATEs for a server that will take connections soon: starting up or shutting
 * down (57P0x), out of connection slots (53300), or any connection exception (class 08).
 */
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * pg's own messages for a connection that dropped or did not open in time (they carry no code),
 * including a query sent on a client whose connection the server has just ended.
 */
const TRANSIENT_PG_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

/**
 * True for errors that waiting can fix: the database is not up or not reachable yet. Everything
 * else fails start-up at once, since retrying cannot change it: a malformed URL, a refused password
 * or a missing database (a restart re-reads the Secret; retrying in process would not), a TLS
 * mismatch, a migration whose SQL fails.
 */
export function isTransientDatabaseError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof DatabaseUnreachableError) return true;
  // Connecting to a name with several addresses fails with one error per address.
  if (err instanceof AggregateError && err.errors.some(isTransientDatabaseError)) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return TRANSIENT_SOCKET_CODES.has(code) || TRANSIENT_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code);
  return TRANSIENT_PG_MESSAGES.test(err.message);
}

/** `host:port/database` of a PostgreSQL URL, without credentials, for log lines. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'an unparsable database.url';
  }
}

/** Why start-up could not get its database: named in the process's last words. */
export class DatabaseStartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DatabaseStartupError';
  }
}

export interface DatabaseStartupOptions {
  /** Attempts stop once this long has passed since the first began (0: one attempt). */
  timeoutMs: number;
  /** What the database is, for log lines: "PostgreSQL at host:port/db" or "the embedded database in …". */
  where: string;
  /** What to check when an error is not worth retrying. */
  fatalHint: string;
  log: Logger;
  backoff?: { minDelayMs: number; maxDelayMs: number };
}

/**
 * Runs `attempt` (open the database, apply migrations) until it succeeds. A transient failure is
 * logged with what to check and retried with backoff until `timeoutMs` has passed; any other
 * failure, or the deadline, throws a DatabaseStartupError saying what to do.
 */
export async function retryDatabaseStartup<T>(attempt: () => Promise<T>, opts: DatabaseStartupOptions): Promise<T> {
  const { minDelayMs, maxDelayMs } = opts.backoff ?? DATABASE_STARTUP_BACKOFF;
  const deadline = Date.now() + opts.timeoutMs;
  let delayMs = minDelayMs;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const reason = (err as Error).message;
      if (!isTransientDatabaseError(err)) {
        throw new DatabaseStartupError(`cannot start on ${opts.where}: ${reason}. Waiting would not fix this, so start-up stops here: ${opts.fatalHint}`, { cause: err });
      }
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        throw new DatabaseStartupError(
          `${opts.where} not reachable within database.startupTimeoutMs (${opts.timeoutMs} ms, ${n} attempt${n === 1 ? '' : 's'}; GANTRY_DATABASE_STARTUP_TIMEOUT_MS): ${reason}. Check the host and port in GANTRY_DATABASE_URL and that PostgreSQL is running and reachable from here`,
          { cause: err },
        );
      }
      // The last attempt falls on the deadline rather than giving up a pause early.
      const pauseMs = Math.min(remainingMs, Math.round(delayMs * (1 - JITTER_RATIO + 2 * JITTER_RATIO * Math.random())));
      opts.log.warn(
        { attempt: n, retry_in_ms: pauseMs, database: opts.where, err: reason, code: (err as { code?: unknown }).code },
        `${opts.where} not reachable yet (${reason}); retrying in ${pauseMs} ms. Check the host and port in GANTRY_DATABASE_URL and that PostgreSQL is running; start-up gives up after database.startupTimeoutMs (${opts.timeoutMs} ms)`,
      );
      await sleep(pauseMs);
      delayMs = Math.min(maxDelayMs, delayMs * 2);
    }
  }
}
