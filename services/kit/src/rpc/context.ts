import type { Metadata } from '@grpc/grpc-js';
import type { Principal } from '../auth/jwt.js';
import { GantryError, Status } from '../errors.js';
import type { PeerIdentity } from '../tls/identity.js';

export type MethodKind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';

export interface MethodInfo {
  /** Full path, `/gantry.log.v1.LogService/Append`: the key of scope and rate-limit tables. */
  path: string;
  service: string;
  name: string;
  kind: MethodKind;
}

/** What a handler and each middleware know about the call in progress. */
export interface CallContext {
  readonly method: MethodInfo;
  readonly metadata: Metadata;
  readonly peer: PeerIdentity;
  /** Aborted when the client cancels, the deadline passes, or the server drains past its grace period. */
  readonly signal: AbortSignal;
  /**
   * Aborted when the server starts draining. Long-lived streams (follow, watch) end early on it
   * with UNAVAILABLE and a resume position, so a shutdown does not wait out its grace period.
   */
  readonly draining: AbortSignal;
  /** Trailers sent with the final status (success or error). */
  readonly trailer: Metadata;
  /** Set by the auth middleware. */
  principal: Principal | undefined;
}

/**
 * What a handler sees: the call after the auth middleware, so the principal is a required field
 * (nice-grpc's CallContextExt). Every method needs an authenticated caller (`[]` scopes: any).
 */
export interface HandlerContext extends CallContext {
  readonly principal: Principal;
}

/** The context handed to a handler; a call that reached it unauthenticated is a broken invariant, refused. */
export function handlerContext(ctx: CallContext): HandlerContext {
  if (!ctx.principal) throw new GantryError(Status.UNAUTHENTICATED, 'no authenticated caller');
  return ctx as HandlerContext;
}

/** The rest of the chain after a middleware: call it with the context to go on. */
export type Next = (ctx: CallContext) => Promise<void>;

/**
 * Middleware wraps the whole call (for streams, its whole life). Throw a GantryError (or return a
 * rejected promise) to refuse it. A middleware that decides synchronously should return
 * `next(ctx)` itself rather than be `async`: each async layer costs a promise per call.
 */
export type Middleware = (ctx: CallContext, next: Next) => Promise<void>;

/**
 * Composes `middlewares` around `last` once, when a method is bound: the first in the list is the
 * outermost. A call then runs the chain without a closure per middleware.
 */
export function compose(middlewares: readonly Middleware[], last: Next): Next {
  return middlewares.reduceRight<Next>((next, middleware) => (ctx) => middleware(ctx, next), last);
}

/** What the server decided on a call's metadata, before reading its body (server/admission.ts). */
export type Admission = { principal: Principal } | { refused: unknown };

// Kept on the call's Metadata object under a symbol of this module: grpc-js hands the handler the
// very object the server's interceptor passed on, and nothing a client sends can forge a symbol key
// (headers become string keys of the metadata's map). A property, unlike a WeakMap entry, costs the
// garbage collector nothing extra on every call.
const ADMISSION: unique symbol = Symbol('gantry.admission');
type WithAdmission = Metadata & { [ADMISSION]?: Admission };

/** Records the admission of the call whose metadata is `metadata`; the auth middleware replays it. */
export function recordAdmission(metadata: Metadata, admission: Admission): void {
  (metadata as WithAdmission)[ADMISSION] = admission;
}

/** The admission recorded for the call whose metadata is `metadata`, if the server made one. */
export function admissionOf(metadata: Metadata): Admission | undefined {
  return (metadata as WithAdmission)[ADMISSION];
}
