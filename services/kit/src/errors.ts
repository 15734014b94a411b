import { status as Status } from '@grpc/grpc-js';
import { isTransientDatabaseError } from './storage/startup.js';

export { Status };

/** The one error type services throw: a gRPC status code and a message safe to show the caller. */
export class GantryError extends Error {
  readonly code: Status;
  /** The request field at fault, for INVALID_ARGUMENT. */
  readonly field: string | undefined;
  /** Extra trailers to send with the status (e.g. a retry hint). */
  readonly trailers: Record<string, string>;

  constructor(code: Status, message: string, opts: { field?: string; cause?: unknown; trailers?: Record<string, string> } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'GantryError';
    this.code = code;
    this.field = opts.field;
    this.trailers = opts.trailers ?? {};
  }
}

/** INVALID_ARGUMENT naming the field, e.g. `partition: must be 1 to 128 characters`. */
export function invalidArgument(field: string, problem: string): GantryError {
  return new GantryError(Status.INVALID_ARGUMENT, `${field}: ${problem}`, { field });
}

export const notFound = (what: string) => new GantryError(Status.NOT_FOUND, what);
export const alreadyExists = (what: string) => new GantryError(Status.ALREADY_EXISTS, what);
export const failedPrecondition = (why: string) => new GantryError(Status.FAILED_PRECONDITION, why);
export const permissionDenied = (why: string) => new GantryError(Status.PERMISSION_DENIED, why);
export const unauthenticated = (why: string) => new GantryError(Status.UNAUTHENTICATED, why);
export const outOfRange = (why: string) => new GantryError(Status.OUT_OF_RANGE, why);
export const unavailable = (why: string) => new GantryError(Status.UNAVAILABLE, why);

export interface WireStatus {
  code: Status;
  details: string;
  trailers: Record<string, string>;
  /** True when the error was not a GantryError: its details were withheld from the caller. */
  unexpected: boolean;
}

/**
 * The single place that turns a thrown value into what the caller sees. A database whose disk is
 * full is RESOURCE_EXHAUSTED (gRPC's code for "the entire file system is out of space"), saying so,
 * whatever wraps it: waiting does not help until someone frees space. A database that is down or
 * restarting is UNAVAILABLE, which clients retry with backoff (every Gantry write is idempotent on
 * its key or nonce, so a retry of an unknown outcome is safe). Anything else that is not a
 * GantryError is INTERNAL. Both carry a reference the operator can find in the logs; internals
 * never leak.
 */
export function toWireStatus(err: unknown, reference: string): WireStatus {
  if (isDiskFullError(err)) {
    // Before a service's own error: one that wraps a database failure ("not acknowledged") would
    // hide the one cause the operator must act on, and retrying cannot fix it.
    return { code: Status.RESOURCE_EXHAUSTED, details: `the database's disk is full: writes are refused until space is freed on its volume; reads still work (reference ${reference})`, trailers: {}, unexpected: true };
  }
  if (err instanceof GantryError) {
    return { code: err.code, details: err.message, trailers: err.trailers, unexpected: false };
  }
  if (isTransientDatabaseError(err)) {
    return { code: Status.UNAVAILABLE, details: `the database is unavailable right now (reference ${reference}); retry with backoff`, trailers: {}, unexpected: true };
  }
  if (isDataException(err)) {
    // A request value the database cannot take (text with NUL, a number past int8): the caller's
    // error, never INTERNAL. Still logged as unexpected: the handler should have refused it first.
    return { code: Status.INVALID_ARGUMENT, details: `a value in the request cannot be used: ${err.message} (reference ${reference})`, trailers: {}, unexpected: true };
  }
  return {
    code: Status.INTERNAL,
    details: `internal error (reference ${reference}); the server log has the details`,
    trailers: {},
    unexpected: true,
  };
}

/** PostgreSQL's SQLSTATE disk_full: a table, index or WAL file could not grow (PGlite reports it too). */
const DISK_FULL_SQLSTATE = '53100';
/** How many `cause`s deep a disk-full error is looked for (services wrap database errors once or twice). */
const MAX_CAUSE_DEPTH = 4;

/** True when `err`, or an error it was caused by, is the database reporting its disk full (SQLSTATE 53100). */
export function isDiskFullError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth <= MAX_CAUSE_DEPTH; depth++, e = e.cause) {
    if ((e as { code?: unknown }).code === DISK_FULL_SQLSTATE) return true;
  }
  return false;
}

/**
 * A PostgreSQL "data exception" (SQLSTATE class 22: invalid text encoding, numeric value out of
 * range, invalid text representation, string too long) from the driver or PGlite. Every statement
 * takes request values as parameters, so such an error means a request value the database refuses.
 */
function isDataException(err: unknown): err is Error & { code: string } {
  const e = err as { code?: unknown; severity?: unknown } | null;
  return err instanceof Error && typeof e?.code === 'string' && /^22[0-9A-Z]{3}$/.test(e.code) && typeof e.severity === 'string';
}

/**
 * A request Timestamp that is a real time: protobuf allows the years 1 to 9999, and a larger
 * `seconds` decodes as an Invalid Date, which would fail deep in a handler or the database.
 */
export function checkTimestamp<T extends Date | undefined>(field: string, at: T): T {
  if (at !== undefined && !(at.getTime() >= MIN_TIMESTAMP_MS && at.getTime() <= MAX_TIMESTAMP_MS)) {
    throw invalidArgument(field, 'is not a valid time; give one between the years 1 and 9999 (RFC 3339)');
  }
  return at;
}
/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, protobuf Timestamp's range. */
const MIN_TIMESTAMP_MS = -62_135_596_800_000;
const MAX_TIMESTAMP_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * A free-text field: at most `maxChars` characters and no NUL (PostgreSQL text cannot store it,
 * so it would otherwise fail deep in the database as an internal error).
 */
export function checkText(field: string, text: string, maxChars: number): string {
  if (text.length > maxChars) throw invalidArgument(field, `is ${text.length} characters; the maximum is ${maxChars}`);
  if (text.includes('\0')) throw invalidArgument(field, 'must not contain NUL characters');
  return text;
}
