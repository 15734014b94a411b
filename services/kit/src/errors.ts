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
 * The single place that turns a thrown value into what the caller sees. A database that is down or
 * restarting is UNAVAILABLE, which clients retry with backoff (every Gantry write is idempotent on
 * its key or nonce, so a retry of an unknown outcome is safe). Anything else that is not a
 * GantryError is INTERNAL. Both carry a reference the operator can find in the logs; internals
 * never leak.
 */
export function toWireStatus(err: unknown, reference: string): WireStatus {
  if (err instanceof GantryError) {
    return { code: err.code, details: err.message, trailers: err.trailers, unexpected: false };
  }
  if (isTransientDatabaseError(err)) {
    return { code: Status.UNAVAILABLE, details: `the database is unavailable right now (reference ${reference}); retry with backoff`, trailers: {}, unexpected: true };
  }
  return {
    code: Status.INTERNAL,
    details: `internal error (reference ${reference}); the server log has the details`,
    trailers: {},
    unexpected: true,
  };
}

/**
 * A free-text field: at most `maxChars` characters and no NUL (PostgreSQL text cannot store it,
 * so it would otherwise fail deep in the database as an internal error).
 */
export function checkText(field: string, text: string, maxChars: number): string {
  if (text.length > maxChars) throw invalidArgument(field, `is ${text.length} characters; the maximum is ${maxChars}`);
  if (text.includes('\0')) throw invalidArgument(field, 'must not contain NUL characters');
  return text;
}
