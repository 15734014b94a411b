import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Metadata, type UntypedServiceImplementation, type sendUnaryData } from '@grpc/grpc-js';
import type { ServerDuplexStream, ServerReadableStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { GantryError, Status, toWireStatus } from '../errors.js';
import type { Logger } from '../logger.js';
import { peerIdentity, type PeerIdentity } from '../tls/identity.js';
import { decodedRequest, decodedRequests } from './decode.js';
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

export interface CallTracker {
  /** Registers a call; returns its abort controller and a function to call when it ends. */
  begin(): { controller: AbortController; end: () => void };
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
type CallRunner = (call: AnyCall, body: (ctx: HandlerContext) => Promise<void>) => Promise<{ ctx: CallContext; error?: unknown }>;

/** A call's context before the middlewares: the peer read lazily, the signal tied to cancellation and drain. */
function newCallContext(call: AnyCall, info: MethodInfo, signal: AbortSignal, draining: AbortSignal): CallContext {
  let peer: PeerIdentity | undefined;
  return {
    method: info,
    metadata: call.metadata,
    // Lazy: reading the peer certificate builds a new object with fingerprints on every call,
    // and most calls are keyed by their token's subject, not by the certificate.
    get peer() {
      return (peer ??= peerIdentity(call.getPeer(), call.getAuthContext().sslPeerCertificate));
    },
    signal,
    draining,
    trailer: new Metadata(),
    principal: undefined,
  };
}

/** Runs one call of a method through the middleware chain to `body` (the handler), tracked for draining. */
function callRunner(module: ServiceModule, info: MethodInfo, handler: AnyHandler | undefined, opts: BindOptions): CallRunner {
  return async (call, body) => {
    const { controller, end } = opts.tracker.begin();
    const onCancel = () => controller.abort(new GantryError(Status.CANCELLED, 'cancelled by the client'));
    const events = call as unknown as EventEmitter;
    events.on('cancelled', onCancel);
    const ctx = newCallContext(call, info, controller.signal, opts.tracker.draining);
    try {
      await compose(opts.middlewares, async () => {
        if (!handler) {
          throw new GantryError(Status.UNIMPLEMENTED, `${info.path} is not implemented${module.unimplementedReason ? `: ${module.unimplementedReason}` : ''}`);
        }
        await body(handlerContext(ctx));
      }, ctx);
      return { ctx };
    } catch (error) {
      return { ctx, error };
    } finally {
      events.off('cancelled', onCancel);
      end();
    }
  };
}

/** grpc-js's handler for a unary or client-streaming method: one response or one error status. */
function unaryImpl(info: MethodInfo, handler: AnyHandler | undefined, run: CallRunner, log: Logger) {
  return (call: ServerUnaryCall<unknown, unknown> | ServerReadableStream<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    let response: unknown;
    void run(call, async (ctx) => {
      const input = info.kind === 'unary' ? decodedRequest((call as ServerUnaryCall<unknown, unknown>).request) : decodedRequests(requestStream(call as ServerReadableStream<unknown, unknown>));
      response = await (handler as (i: unknown, c: HandlerContext) => Promise<unknown>)(input, ctx);
    }).then(({ ctx, error }) => {
      if (error !== undefined) callback(errorStatus(error, ctx, log));
      else callback(null, response, ctx.trailer);
    });
  };
}

/** grpc-js's handler for a server-streaming or bidi method: messages written with backpressure, then a status. */
function streamImpl(info: MethodInfo, handler: AnyHandler | undefined, run: CallRunner, log: Logger) {
  return (call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>) => {
    void run(call, async (ctx) => {
      const input = info.kind === 'serverStream' ? decodedRequest((call as ServerWritableStream<unknown, unknown>).request) : decodedRequests(requestStream(call as ServerDuplexStream<unknown, unknown>));
      const output = (handler as (i: unknown, c: HandlerContext) => AsyncIterable<unknown>)(input, ctx);
      for await (const message of output) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        await writeWithBackpressure(call, message, ctx.signal);
      }
    }).then(({ ctx, error }) => {
      if (error !== undefined) {
        if (!call.cancelled) call.emit('error', errorStatus(error, ctx, log));
      } else {
        call.end(ctx.trailer);
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
    const run = callRunner(module, info, handler, opts);
    const streams = info.kind === 'serverStream' || info.kind === 'bidi';
    impl[key] = streams ? streamImpl(info, handler, run, opts.log) : unaryImpl(info, handler, run, opts.log);
  }
  return impl;
}
