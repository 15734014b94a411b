import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Metadata, type UntypedServiceImplementation, type sendUnaryData } from '@grpc/grpc-js';
import type { ServerDuplexStream, ServerReadableStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { GantryError, Status, toWireStatus } from '../errors.js';
import type { Logger } from '../logger.js';
import { peerIdentity, type PeerIdentity } from '../tls/identity.js';
import { decodedRequest, decodedRequests } from './decode.js';
import type { Principal } from '../auth/jwt.js';
import { compose, handlerContext, type CallContext, type HandlerContext, type MethodInfo, type MethodKind, type Middleware } from './context.js';

type AnyMethod = { path: string; requestStream: boolean; responseStream: boolean; requestSerialize: (v: never) => Buffer; responseSerialize: (v: never) => Buffer };
type Req<M> = M extends { requestSerialize: (v: infer R) => Buffer } ? R : never;
type Res<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** A handler in plain async style: unary → Promise, server stream → async generator, and so on. */
export type Handler<M> = M extends { requestStream: false; responseStream: false }
  ? (request: Req<M>, ctx: HandlerContext) => Promise<Res<M>>
  : M extends { requestStream: false; responseStream: true }
    ? (request: Req<M>, ctx: HandlerContext) => AsyncIterable<Res<M>>
    : M extends { requestStream: true; responseStream: false }
      ? (requests: AsyncIterable<Req<M>>, ctx: HandlerContext) => Promise<Res<M>>
      : (requests: AsyncIterable<Req<M>>, ctx: HandlerContext) => AsyncIterable<Res<M>>;

export type Handlers<D> = { [K in keyof D]: Handler<D[K]> };

/** Scopes each method needs, in one table per service; `[]` means any authenticated caller. */
export type ScopeTable<D> = { [K in keyof D]: readonly string[] };

/**
 * Request limits in bytes per method, for the methods that take more than `limits.maxRequestBytes`
 * (64 KiB by default): batch RPCs and calls carrying a payload. Capped at
 * `limits.maxReceiveMessageBytes`; {@link BATCH_REQUEST_BYTES} asks for the cap.
 */
export type RequestLimits<D> = { [K in keyof D]?: number };

/** A batch method's limit: as much as the server takes at all (`limits.maxReceiveMessageBytes`). */
export const BATCH_REQUEST_BYTES = Number.MAX_SAFE_INTEGER;

/** One gRPC service as the kit serves it. */
export interface ServiceModule<D extends Record<string, AnyMethod> = Record<string, AnyMethod>> {
  /** Fully qualified name, e.g. `gantry.log.v1.LogService`: also its health-check service name. */
  name: string;
  definition: D;
  scopes: ScopeTable<D>;
  /** Unimplemented methods answer UNIMPLEMENTED with this reason. */
  handlers: Partial<Handlers<D>>;
  unimplementedReason?: string;
  /** Methods taking larger requests than the default limit; see {@link RequestLimits}. */
  maxRequestBytes?: RequestLimits<D>;
}

/** The request limit of `module`'s method `key`: its declared one, else `defaultBytes`, never above `capBytes`. */
export function requestLimitOf(module: ServiceModule, key: string, limits: { defaultBytes: number; capBytes: number }): number {
  const declared = (module.maxRequestBytes as Record<string, number | undefined> | undefined)?.[key];
  return Math.min(declared ?? limits.defaultBytes, limits.capBytes);
}

/** Declares a service with typed handlers and its scope table. */
export function defineService<D extends Record<string, AnyMethod>>(module: ServiceModule<D>): ServiceModule {
  return module as unknown as ServiceModule;
}

function methodKind(m: AnyMethod): MethodKind {
  if (m.requestStream) return m.responseStream ? 'bidi' : 'clientStream';
  return m.responseStream ? 'serverStream' : 'unary';
}

export function methodInfo(m: AnyMethod): MethodInfo {
  const [, service = '', name = ''] = m.path.split('/');
  return { path: m.path, service, name, kind: methodKind(m) };
}

/** A call in progress as the server's drain sees it: it can be aborted. */
export interface TrackedCall {
  abort(reason: unknown): void;
}

export interface CallTracker {
  /** Registers a call until {@link end}: a drain past its grace period aborts it. */
  begin(call: TrackedCall): void;
  end(call: TrackedCall): void;
  /** Aborted when the server starts draining. */
  readonly draining: AbortSignal;
}

export interface BindOptions {
  middlewares: readonly Middleware[];
  log: Logger;
  tracker: CallTracker;
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

function errorStatus(err: unknown, ctx: CallContext | undefined, log: Logger) {
  const reference = randomUUID().slice(0, 8);
  const wire = toWireStatus(err, reference);
  if (wire.code === Status.UNAVAILABLE && wire.unexpected) log.warn({ err: (err as Error).message, reference, method: ctx?.method.path }, 'the database is unavailable; the call failed with UNAVAILABLE');
  else if (wire.code === Status.RESOURCE_EXHAUSTED && wire.unexpected) log.error({ err, reference, method: ctx?.method.path }, "the database's disk is full: writes fail with RESOURCE_EXHAUSTED until space is freed on its volume");
  else if (wire.unexpected) log.error({ err, reference, method: ctx?.method.path }, 'unexpected error in RPC');
  const metadata = ctx?.trailer ?? new Metadata();
  for (const [k, v] of Object.entries(wire.trailers)) metadata.set(k, v);
  return { code: wire.code, details: wire.details, metadata };
}

/** Writes to a server stream, waiting for the transport to drain so a slow reader bounds our buffer. */
async function writeWithBackpressure(call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>, message: unknown, signal: AbortSignal): Promise<void> {
  if (call.write(message)) return;
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      call.off('drain', onDrain);
      reject(new GantryError(Status.CANCELLED, 'call cancelled'));
    };
    const onDrain = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The client's messages as an async iterable that does not destroy the call when the handler's
 * loop ends (or breaks): the call must stay open to send the response and the final status.
 */
function requestStream(call: ServerReadableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>): AsyncIterable<unknown> {
  return call.iterator({ destroyOnReturn: false });
}

type AnyHandler = (...args: never[]) => unknown;

const cancelledByClient = () => new GantryError(Status.CANCELLED, 'cancelled by the client');

/**
 * One call's context, as the middlewares and the handler see it. What most calls never use is made
 * on first use: the peer's identity (it parses the certificate), the trailers, and the abort signal
 * with its listener on the call's cancellation. A signal made late starts aborted when the call was
 * cancelled (grpc-js sets `cancelled` on the call, for a client's cancel and a passed deadline) or
 * aborted by the drain meanwhile, so a handler sees the same as with a signal made up front.
 */
class ServerCall implements CallContext, TrackedCall {
  readonly metadata: Metadata;
  principal: Principal | undefined = undefined;
  /** The handler's response (unary and client-streaming methods). */
  response: unknown = undefined;
  private controller: AbortController | undefined = undefined;
  /** Why the call was aborted before anyone asked for its signal. */
  private abortedWith: { reason: unknown } | undefined = undefined;
  private onCancel: (() => void) | undefined = undefined;
  private finished = false;
  private peerIdentity: PeerIdentity | undefined = undefined;
  private trailers: Metadata | undefined = undefined;

  constructor(
    readonly call: AnyCall,
    readonly method: MethodInfo,
    readonly draining: AbortSignal,
  ) {
    this.metadata = call.metadata;
  }

  get peer(): PeerIdentity {
    return (this.peerIdentity ??= peerIdentity(this.call.getPeer(), this.call.getAuthContext().sslPeerCertificate));
  }

  get trailer(): Metadata {
    return (this.trailers ??= new Metadata());
  }

  /** The trailers if anything asked for them: grpc-js sends none for undefined. */
  get trailerIfAny(): Metadata | undefined {
    return this.trailers;
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const controller = (this.controller = new AbortController());
    if (this.abortedWith) controller.abort(this.abortedWith.reason);
    else if (this.call.cancelled) controller.abort(cancelledByClient());
    else if (!this.finished) {
      this.onCancel = () => controller.abort(cancelledByClient());
      (this.call as unknown as EventEmitter).on('cancelled', this.onCancel);
    }
    return controller.signal;
  }

  abort(reason: unknown): void {
    if (this.controller) this.controller.abort(reason);
    else this.abortedWith ??= { reason };
  }

  /** The call's work is over: its signal no longer follows the call's cancellation. */
  finish(): void {
    this.finished = true;
    if (this.onCancel) (this.call as unknown as EventEmitter).off('cancelled', this.onCancel);
    this.onCancel = undefined;
  }
}

/** A method's chain, from its first middleware to the handler, as one function of the call. */
type Chain = (call: ServerCall) => Promise<void>;

/** The method's middleware chain around `run` (the handler), composed once when the method is bound. */
function methodChain(module: ServiceModule, info: MethodInfo, handler: AnyHandler | undefined, middlewares: readonly Middleware[], run: (call: ServerCall, ctx: HandlerContext) => Promise<void>): Chain {
  const last = async (ctx: CallContext): Promise<void> => {
    if (!handler) {
      throw new GantryError(Status.UNIMPLEMENTED, `${info.path} is not implemented${module.unimplementedReason ? `: ${module.unimplementedReason}` : ''}`);
    }
    // The chain hands on the context it was given: the ServerCall the runner made.
    await run(ctx as ServerCall, handlerContext(ctx));
  };
  return compose(middlewares, last) as Chain;
}

/** Runs one call through its chain, tracked for draining; resolves with the error it ended with, if any. */
async function runCall(chain: Chain, call: ServerCall, tracker: CallTracker): Promise<{ error: unknown } | undefined> {
  tracker.begin(call);
  try {
    await chain(call);
    return undefined;
  } catch (error) {
    return { error };
  } finally {
    call.finish();
    tracker.end(call);
  }
}

/** grpc-js's handler for a unary or client-streaming method: one response or one error status. */
function unaryImpl(info: MethodInfo, chain: Chain, opts: BindOptions) {
  return (call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    void runUnary(chain, new ServerCall(call, info, opts.tracker.draining), callback, opts);
  };
}

/** One unary or client-streaming call, from the chain to grpc-js's callback. */
async function runUnary(chain: Chain, ctx: ServerCall, callback: sendUnaryData<unknown>, opts: BindOptions): Promise<void> {
  const failed = await runCall(chain, ctx, opts.tracker);
  if (failed) callback(errorStatus(failed.error, ctx, opts.log));
  else callback(null, ctx.response, ctx.trailerIfAny);
}

/** Calls the handler of a unary or client-streaming method, keeping its response on the call. */
function unaryRun(info: MethodInfo, handler: AnyHandler | undefined) {
  return async (call: ServerCall, ctx: HandlerContext): Promise<void> => {
    const input = info.kind === 'unary' ? decodedRequest((call.call as ServerUnaryCall<unknown, unknown>).request) : decodedRequests(requestStream(call.call as ServerReadableStream<unknown, unknown>));
    call.response = await (handler as (i: unknown, c: HandlerContext) => Promise<unknown>)(input, ctx);
  };
}

/** Calls the handler of a server-streaming or bidi method, writing its messages with backpressure. */
function streamRun(info: MethodInfo, handler: AnyHandler | undefined) {
  return async (call: ServerCall, ctx: HandlerContext): Promise<void> => {
    const stream = call.call as ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;
    const input = info.kind === 'serverStream' ? decodedRequest((stream as ServerWritableStream<unknown, unknown>).request) : decodedRequests(requestStream(stream as ServerDuplexStream<unknown, unknown>));
    const output = (handler as (i: unknown, c: HandlerContext) => AsyncIterable<unknown>)(input, ctx);
    for await (const message of output) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await writeWithBackpressure(stream, message, ctx.signal);
    }
  };
}

/** grpc-js's handler for a server-streaming or bidi method: messages written with backpressure, then a status. */
function streamImpl(info: MethodInfo, chain: Chain, opts: BindOptions) {
  return (call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>) => {
    const ctx = new ServerCall(call, info, opts.tracker.draining);
    // A stream lives long and writes with backpressure on its signal: made up front.
    void ctx.signal;
    void runCall(chain, ctx, opts.tracker).then((failed) => {
      if (failed) {
        if (!call.cancelled) call.emit('error', errorStatus(failed.error, ctx, opts.log));
      } else {
        call.end(ctx.trailerIfAny);
      }
    });
  };
}

/** Turns a ServiceModule into grpc-js handlers running the middleware chain. */
export function bindService(module: ServiceModule, opts: BindOptions): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const [key, method] of Object.entries(module.definition)) {
    const info = methodInfo(method);
    const handler = (module.handlers as Record<string, AnyHandler | undefined>)[key];
    const streams = info.kind === 'serverStream' || info.kind === 'bidi';
    const chain = methodChain(module, info, handler, opts.middlewares, streams ? streamRun(info, handler) : unaryRun(info, handler));
    impl[key] = streams ? streamImpl(info, chain, opts) : unaryImpl(info, chain, opts);
  }
  return impl;
}
