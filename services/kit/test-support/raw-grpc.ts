// gRPC calls written by hand over node:http2, for tests that need what a grpc-js client will not
// send: a message that declares more bytes than it delivers, a body withheld, many streams on one
// connection at once.
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { readFileSync } from 'node:fs';

/** Client TLS files; the dev server certificate names `localhost`. */
export interface RawTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  serverName?: string;
}

/** One HTTP/2 connection (mTLS) to a gRPC server at `127.0.0.1:<port>`. */
export function rawConnect(port: number, tls: RawTls): Promise<ClientHttp2Session> {
  const session = connect(`https://127.0.0.1:${port}`, {
    ca: readFileSync(tls.caFile),
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    servername: tls.serverName ?? 'localhost',
    // Node's default (10 MB) would make this client reset its own streams (ENHANCE_YOUR_CALM) when
    // a test queues megabytes of request bodies on one connection.
    maxSessionMemory: 1024,
  });
  return new Promise((resolve, reject) => {
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/** How a call ended: its gRPC status, and how long after it was opened. */
export interface RawStatus {
  code: number;
  message: string;
  afterMs: number;
}

export interface RawCall {
  stream: ClientHttp2Stream;
  /** Resolves with the status the server sent (trailers or a trailers-only response); never rejects. */
  status: Promise<RawStatus | undefined>;
  /** Resolves once every byte given to `write` has been handed to the connection (flow control permitting). */
  flushed: Promise<void>;
}

/** The 5-byte gRPC message prefix: not compressed, `length` bytes follow. */
export function messagePrefix(length: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/**
 * Opens a call of `path` with `metadata` and writes `body` (raw bytes, prefixes included) without
 * ending the stream, unless `end` is set.
 */
export function rawCall(session: ClientHttp2Session, path: string, metadata: Record<string, string>, body: Buffer, end = false): RawCall {
  const startedMs = performance.now();
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...metadata });
  const status = new Promise<RawStatus | undefined>((resolve) => {
    const settle = (headers: Record<string, unknown>) => {
      const code = headers['grpc-status'];
      if (code !== undefined) resolve({ code: Number(code), message: decodeURIComponent(String(headers['grpc-message'] ?? '')), afterMs: performance.now() - startedMs });
    };
    stream.on('response', settle);
    stream.on('trailers', settle);
    stream.on('close', () => resolve(undefined));
    stream.on('error', () => resolve(undefined));
  });
  // Read (and drop) whatever the server sends, so its responses never wait on our window.
  stream.on('data', () => undefined);
  const flushed = new Promise<void>((resolve) => {
    if (end) stream.end(body, () => resolve());
    else stream.write(body, () => resolve());
  });
  return { stream, status, flushed };
}

/** A protobuf string/bytes field: tag (`field`, wire type 2), length, bytes. */
export function lengthDelimited(field: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

/** A protobuf varint. */
export function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}
