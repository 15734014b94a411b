// The gRPC side of one routed request: unary, server stream (as Server-Sent Events) and client
// stream (a JSON array body), over a generic grpc-js client with pass-through serializers.
import { Metadata, type Client, type ClientReadableStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import type { Registry } from '@bufbuild/protobuf';
import type { Res } from './http.js';
import { sendJson, sendStatus } from './http.js';
import type { Route } from './routes.js';
import { GatewayError, httpStatusOf, Status, statusJsonOf } from './status.js';
import { responseJson } from './transcode.js';

const passThrough = (b: Buffer) => b;
const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** What one call needs: the client, the route, the caller's token header, and the deadline. */
export interface CallInput {
  client: Client;
  route: Route;
  registry: Registry;
  /** `Bearer <jwt>` as the caller sent it: passed on as gRPC metadata, never logged. */
  authorization: string;
  deadlineMs: number;
  /** The caller's W3C trace context, passed on so the services' spans join its trace. */
  trace?: { traceparent: string; tracestate?: string };
}

function metadataOf(input: CallInput): Metadata {
  const md = new Metadata();
  md.set('authorization', input.authorization);
  if (input.trace) {
    md.set('traceparent', input.trace.traceparent);
    if (input.trace.tracestate) md.set('tracestate', input.trace.tracestate);
  }
  return md;
}

/** Answers the end of a call that failed: its Status JSON with the mapped HTTP status. */
function sendCallError(res: Res, err: ServiceError | StatusObject): void {
  sendStatus(res, httpStatusOf(err.code), statusJsonOf(err));
}

function sendResponse(res: Res, input: CallInput, bytes: Buffer): void {
  try {
    sendJson(res, 200, responseJson(input.registry, input.route, bytes));
  } catch (err) {
    sendStatus(res, 500, { code: Status.INTERNAL, message: `the service's response could not be read as ${input.route.method.output.typeName}: ${(err as Error).message}`, details: [] });
  }
}

/** A unary call; a client that goes away cancels it. Resolves when answered. */
export function unaryCall(input: CallInput, request: Uint8Array, res: Res): Promise<void> {
  return new Promise((resolve) => {
    const call = input.client.makeUnaryRequest(input.route.grpcPath, passThrough, passThrough, toBuffer(request), metadataOf(input), { deadline: Date.now() + input.deadlineMs }, (err, value) => {
      if (err) sendCallError(res, err);
      else sendResponse(res, input, value!);
      resolve();
    });
    res.on('close', () => {
      if (!res.writableEnded) call.cancel();
    });
  });
}

/** A client-stream call: every message of the array written, then the one response. */
export function clientStreamCall(input: CallInput, requests: readonly Uint8Array[], res: Res): Promise<void> {
  return new Promise((resolve) => {
    const call = input.client.makeClientStreamRequest(input.route.grpcPath, passThrough, passThrough, metadataOf(input), { deadline: Date.now() + input.deadlineMs }, (err, value) => {
      if (err) sendCallError(res, err);
      else sendResponse(res, input, value!);
      resolve();
    });
    res.on('close', () => {
      if (!res.writableEnded) call.cancel();
    });
    for (const r of requests) call.write(toBuffer(r));
    call.end();
  });
}

/** How server streams are sent: heartbeats, and how long headers may wait for the service. */
export interface StreamLimits {
  heartbeatMs: number;
  /**
   * A stream the service has neither answered nor refused within this long is opened anyway (a
   * watch with nothing to say yet): refusals (auth, arguments) come sooner, as plain errors.
   */
  openAfterMs: number;
}

/** One Server-Sent Event: `event:` when named, one `data:` line (JSON has no raw newlines). */
export function sseEvent(data: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
}

/** The headers of an event stream, once: when the service answers, or when the first heartbeat is due. */
function openStream(res: Res): void {
  if (res.headersSent) return;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-store', 'x-accel-buffering': 'no' });
}

/**
 * A server stream as Server-Sent Events: each response a `data:` line of its JSON, then a final
 * `event: status` with the call's google.rpc.Status (code 0 when it ended well). A call that fails
 * before the service answers anything (no token, no scope, bad argument) is answered as a plain
 * error with its HTTP status instead. A client that goes away cancels the call.
 */
export function serverStreamCall(input: CallInput, request: Uint8Array, res: Res, limits: StreamLimits): Promise<void> {
  return new Promise((resolve) => {
    const call: ClientReadableStream<Buffer> = input.client.makeServerStreamRequest(input.route.grpcPath, passThrough, passThrough, toBuffer(request), metadataOf(input), { deadline: Date.now() + input.deadlineMs });
    const heartbeat = setInterval(() => {
      openStream(res);
      res.write(': keep-alive\n\n');
    }, limits.heartbeatMs);
    // After the client went away the call is being cancelled: messages still in flight are dropped.
    let gone = false;
    const opener = setTimeout(() => openStream(res), limits.openAfterMs);
    call.on('metadata', () => openStream(res));
    call.on('data', (bytes: Buffer) => {
      if (gone) return;
      openStream(res);
      let json: unknown;
      try {
        json = responseJson(input.registry, input.route, bytes);
      } catch (err) {
        call.cancel();
        res.write(sseEvent({ code: Status.INTERNAL, message: `a stream message could not be read: ${(err as Error).message}`, details: [] }, 'status'));
        return;
      }
      if (!res.write(sseEvent(json))) {
        call.pause();
        res.once('drain', () => call.resume());
      }
    });
    call.on('error', () => {}); // the 'status' event below carries the same end
    call.on('status', (status: StatusObject) => {
      clearInterval(heartbeat);
      clearTimeout(opener);
      if (gone) {
        // nothing to answer: the client is gone
      } else if (!res.headersSent && status.code !== Status.OK) sendCallError(res, status);
      else if (!res.writableEnded) {
        openStream(res);
        res.end(sseEvent(statusJsonOf(status), 'status'));
      }
      resolve();
    });
    res.on('close', () => {
      clearInterval(heartbeat);
      clearTimeout(opener);
      if (!res.writableEnded) {
        gone = true;
        call.cancel();
      }
    });
  });
}

/** Bidirectional streams need both directions at once, which request/response HTTP cannot carry. */
export function bidiUnsupported(route: Route): GatewayError {
  return new GatewayError(
    Status.UNIMPLEMENTED,
    `${route.grpcPath} is a bidirectional stream, which HTTP/JSON cannot carry; call it over gRPC (for example with grpcurl), or use its unary and server-streaming counterparts`,
  );
}
