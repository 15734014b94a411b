// Small helpers over node:http2's compatibility API, which serves HTTP/1.1 (allowHTTP1) and HTTP/2
// requests with the same shapes.
import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError, Status, type RpcStatusJson } from './status.js';

/** What the handlers use of a request (Http2ServerRequest and IncomingMessage alike). */
export interface Req extends AsyncIterable<Buffer | string> {
  method?: string | undefined;
  url?: string | undefined;
  headers: IncomingHttpHeaders;
  httpVersion: string;
  destroy(err?: Error): void;
}

/** What the handlers use of a response (Http2ServerResponse and ServerResponse alike). */
export interface Res {
  headersSent: boolean;
  writableEnded: boolean;
  statusCode: number;
  setHeader(name: string, value: string | number | readonly string[]): unknown;
  writeHead(status: number, headers?: Record<string, string | number>): unknown;
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  on(event: 'close', listener: () => void): unknown;
}

/** Answers a JSON value with `status`. */
export function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.writableEnded) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Answers a google.rpc.Status with its HTTP status. */
export function sendStatus(res: Res, httpStatus: number, status: RpcStatusJson, headers: Record<string, string> = {}): void {
  sendJson(res, httpStatus, status, headers);
}

/**
 * Reads the request body up to `maxBytes`: a Content-Length above it is refused before reading,
 * and a body that grows past it is refused as soon as it does (413, the request torn down).
 */
export async function readBody(req: Req, maxBytes: number): Promise<string> {
  const tooLarge = () => new GatewayError(Status.RESOURCE_EXHAUSTED, `the request body exceeds ${maxBytes} bytes (gateway.maxRequestBytes); send less per request`, 413);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The bearer token's header, as sent, when it is one: nothing else is passed on. */
export function bearerHeader(headers: IncomingHttpHeaders): string | undefined {
  const value = headers.authorization;
  return typeof value === 'string' && /^Bearer [A-Za-z0-9._~+/=-]+$/i.test(value.trim()) ? value.trim() : undefined;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The W3C trace context headers, when well-formed (a malformed or oversized one is dropped, not passed on). */
export function traceHeaders(headers: IncomingHttpHeaders): { traceparent: string; tracestate?: string } | undefined {
  const traceparent = headers.traceparent;
  if (typeof traceparent !== 'string' || !TRACEPARENT.test(traceparent)) return undefined;
  const tracestate = headers.tracestate;
  return typeof tracestate === 'string' && tracestate.length <= 512 ? { traceparent, tracestate } : { traceparent };
}

/** One header's value, when sent once. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' ? v : undefined;
}
