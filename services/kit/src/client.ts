import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor, Metadata, type CallOptions, type ChannelCredentials, type ClientUnaryCall, type ChannelOptions, type ClientOptions, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { traceContextInterceptor } from './telemetry/setup.js';

export interface ClientTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Name to verify in the server certificate when the address is an IP or a port-forward. */
  serverName?: string;
}

/** mTLS channel credentials from PEM files (this workload's certificate, the platform CA). */
export function clientCredentials(tls: ClientTls): ChannelCredentials {
  return credentials.createSsl(readFileSync(tls.caFile), readFileSync(tls.keyFile), readFileSync(tls.certFile));
}

/**
 * How much a server may send on a connection before the client has read it (HTTP/2 flow control,
 * per stream and per connection). Node's default, 64 KiB, is less than one of the 1 MiB stream
 * messages Gantry sends (log Read and Tail, watches): the server then sends a message in 64 KiB
 * steps, each waiting for the client's WINDOW_UPDATE, and the two processes take turns instead of
 * working at once. 4 MiB is a few messages ahead; it is also what a client may hold unread.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 4 * 1024 * 1024;

/** Channel options every Gantry client uses: trace propagation, limits, and the TLS server name. */
export function clientOptions(tls: ClientTls, extra: ChannelOptions = {}): Partial<ClientOptions> {
  return {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
    'grpc.keepalive_time_ms': 30_000,
    ...(tls.serverName ? { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName } : {}),
    ...extra,
    interceptors: [traceContextInterceptor],
  };
}

/**
 * Channel options for calls between services: spread over every address a `dns:///` target
 * resolves to (a headless Service's pods) with round_robin, rather than pinning one pod.
 */
export function peerChannelOptions(serverName?: string): Partial<ClientOptions> {
  return {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    ...(serverName ? { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName } : {}),
    interceptors: [traceContextInterceptor],
  };
}

/** Metadata carrying a bearer token. */
export function bearerMetadata(token: string | undefined): Metadata {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A generated client's unary method, callback style. */
export type UnaryMethod<Req, Res> = (req: Req, md: Metadata, opts: CallOptions, cb: (err: ServiceError | null, res?: Res) => void) => ClientUnaryCall;

/** Calls a grpc-js unary method and returns a promise (rejects with the ServiceError). */
export function unary<Req, Res>(method: UnaryMethod<Req, Res>, self: object, req: Req, md: Metadata, timeoutMs = 30_000, signal?: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    let cancel = () => {};
    const call = method.call(self, req, md, { deadline: Date.now() + timeoutMs }, (err, res) => {
      signal?.removeEventListener('abort', cancel);
      if (err) reject(err);
      else resolve(res!);
    });
    // An abort (a stopping caller) cancels the call, which then fails CANCELLED, instead of waiting out its deadline.
    cancel = () => call.cancel();
    if (signal?.aborted) cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
  });
}

/** A server stream as an async iterable (grpc-js streams are Node Readables). */
export function streamOf<T>(stream: ClientReadableStream<T>): AsyncIterable<T> {
  return stream as unknown as AsyncIterable<T>;
}

const HealthClient = makeGenericClientConstructor(healthService as never, 'Health');
type HealthCheckClient = { check(req: { service: string }, md: Metadata, opts: CallOptions, cb: (err: ServiceError | null, res?: { status: string }) => void): void; close(): void };

/**
 * grpc.health.v1 Check of `service` ('' = the whole server): its status (SERVING, NOT_SERVING, …),
 * or the gRPC error (NOT_FOUND for a service the server does not have). `waitForReady`: a server
 * that cannot be reached yet (starting, or a NetworkPolicy not programmed yet for a new Pod) is
 * tried again until the deadline instead of failing at once with UNAVAILABLE.
 */
export function checkHealth(
  address: string,
  creds: ChannelCredentials,
  opts: Partial<ClientOptions> = {},
  service = '',
  timeoutMs = 3000,
  waitForReady = false,
): Promise<{ status?: string; err?: ServiceError }> {
  const client = new HealthClient(address, creds, opts) as unknown as HealthCheckClient;
  const md = new Metadata();
  if (waitForReady) md.setOptions({ waitForReady: true });
  return new Promise<{ status?: string; err?: ServiceError }>((resolve) => {
    client.check({ service }, md, { deadline: Date.now() + timeoutMs }, (err, res) => resolve(err ? { err } : { status: res!.status }));
  }).finally(() => client.close());
}
