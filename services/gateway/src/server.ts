import { readFileSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { buildInfo, type Logger } from '@gantry/kit';
import { TARGET_HEADER, type Backends, type BackendTarget, type TargetHealth } from './backends.js';
import { bidiUnsupported, clientStreamCall, serverStreamCall, unaryCall, type CallInput } from './calls.js';
import type { GatewayConfig } from './config.js';
import { bearerHeader, headerValue, readBody, sendJson, sendStatus, traceHeaders, type Req, type Res } from './http.js';
import { resolveRoute, type Route, type RouteTable } from './routes.js';
import { GatewayError, Status } from './status.js';
import { BadRequest, parseBody, requestBinary, streamRequestBinaries } from './transcode.js';
import type { TemplateMatch } from './template.js';

export interface GatewayServerOptions {
  table: RouteTable;
  backends: Backends;
  settings: GatewayConfig;
  host: string;
  /** The HTTPS certificate and key (re-read every reloadIntervalMs, so rotations apply). */
  tls: { certFile: string; keyFile: string; reloadIntervalMs: number };
  /** HTTP/2 streams one connection may have open at once. */
  maxStreamsPerConnection: number;
  /** The OpenAPI document served at GET /openapi.json, as generated at build time. */
  openapi: string;
  log: Logger;
}

export interface GatewayServer {
  port: number;
  /** Stops accepting, lets unary calls finish for up to graceMs, cancels streams, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

const CORS_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
const CORS_HEADERS = `authorization, content-type, traceparent, tracestate, ${TARGET_HEADER}`;

/** How long a health check's result is reused: unauthenticated requests must not each cost mTLS handshakes. */
const HEALTH_CACHE_MS = 1000;

class Gateway {
  /** Server streams open now (bounded by maxConcurrentStreams). */
  streams = 0;
  private readonly healthCache = new Map<string, { atMs: number; check: Promise<TargetHealth> }>();
  /** Calls in flight, so a shutdown can wait for them. */
  readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: GatewayServerOptions) {}

  /** Every request: CORS, the gateway's own endpoints, then the routes of the descriptors. */
  async handle(req: Req, res: Res): Promise<void> {
    const started = performance.now();
    const verb = (req.method ?? 'GET').toUpperCase();
    let route: Route | undefined;
    try {
      const url = requestUrl(req.url);
      if (!this.cors(req, res, verb)) return;
      if (await this.ownEndpoint(verb, url.pathname, res)) return;
      const found = resolveRoute(this.opts.table.routes, verb, url.pathname);
      if (found.kind === 'none') throw new GatewayError(Status.NOT_FOUND, `no route for ${verb} ${url.pathname}; GET /openapi.json lists every route`);
      if (found.kind === 'verb') {
        res.setHeader('allow', found.allowed.join(', '));
        throw new GatewayError(Status.UNIMPLEMENTED, `${url.pathname} does not take ${verb}; it takes ${found.allowed.join(', ')}`, 405);
      }
      route = found.route;
      await this.call(req, res, found.route, found.match, url.searchParams);
    } catch (err) {
      this.fail(res, err);
    } finally {
      // Route templates and status only: paths carry ids, bodies and tokens are never logged.
      this.opts.log.debug({ method: verb, route: route?.template.source ?? 'none', http_version: req.httpVersion, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'gateway request');
    }
  }

  private fail(res: Res, err: unknown): void {
    if (err instanceof GatewayError) return sendStatus(res, err.httpStatus, err.toJSON());
    if (err instanceof BadRequest) return sendStatus(res, 400, { code: Status.INVALID_ARGUMENT, message: err.message, details: [] });
    this.opts.log.error({ err }, 'gateway request failed');
    if (!res.headersSent) sendStatus(res, 500, { code: Status.INTERNAL, message: 'the gateway failed to handle the request; see its log', details: [] });
    else if (!res.writableEnded) res.end();
  }

  /** CORS: off unless origins are configured; a preflight is answered here. False: answered. */
  private cors(req: Req, res: Res, verb: string): boolean {
    const origin = headerValue(req.headers, 'origin');
    const allowed = origin !== undefined && this.opts.settings.corsAllowedOrigins.includes(origin);
    if (allowed) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'origin');
    }
    if (verb !== 'OPTIONS' || headerValue(req.headers, 'access-control-request-method') === undefined) return true;
    if (!allowed) throw new GatewayError(Status.PERMISSION_DENIED, `origin ${origin ?? '(none)'} may not call this gateway from a browser; add it to gateway.corsAllowedOrigins (GANTRY_GATEWAY_CORS_ALLOWED_ORIGINS)`);
    res.writeHead(204, { 'access-control-allow-methods': CORS_METHODS, 'access-control-allow-headers': CORS_HEADERS, 'access-control-max-age': 600 });
    res.end();
    return false;
  }

  /** The routed RPC: its token checked for presence, its request built, the call made by kind. */
  private async call(req: Req, res: Res, route: Route, match: TemplateMatch, query: URLSearchParams): Promise<void> {
    const kind = route.method.methodKind;
    if (kind === 'bidi_streaming') throw bidiUnsupported(route);
    // Never forwarded without one: the gateway's certificate must authorize nothing on a caller's behalf.
    const authorization = bearerHeader(req.headers);
    if (!authorization) throw new GatewayError(Status.UNAUTHENTICATED, `missing bearer token: send the header 'authorization: Bearer <jwt>' (a dev token: gantry token --scope ...)`);
    const contentType = headerValue(req.headers, 'content-type');
    if (contentType !== undefined && !/^application\/json\b/i.test(contentType)) throw new GatewayError(Status.INVALID_ARGUMENT, `content-type ${contentType} is not accepted; send application/json`, 415);
    const text = await readBody(req, this.opts.settings.maxRequestBytes);
    if (route.body === undefined && text.trim() !== '') throw new BadRequest(`${route.verb} ${route.template.source} takes no body; pass fields as query parameters`);
    const body = route.body === undefined ? undefined : parseBody(text);
    const client = this.opts.backends.clientFor(route.method.parent.typeName, headerValue(req.headers, TARGET_HEADER));
    const s = this.opts.settings;
    const deadlineMs = kind === 'server_streaming' ? s.streamMaxDurationMs : s.requestTimeoutMs;
    const input: CallInput = { client, route, registry: this.opts.table.registry, authorization, deadlineMs, trace: traceHeaders(req.headers) };
    if (kind === 'client_streaming') return this.track(clientStreamCall(input, streamRequestBinaries(input.registry, route, body ?? [], s.maxStreamMessages), res));
    const request = requestBinary(input.registry, route, match, query, body);
    if (kind === 'unary') return this.track(unaryCall(input, request, res));
    if (this.streams >= s.maxConcurrentStreams) throw new GatewayError(Status.RESOURCE_EXHAUSTED, `the gateway has ${this.streams} streams open, its limit (gateway.maxConcurrentStreams); retry later`);
    this.streams++;
    try {
      await serverStreamCall(input, request, res, { heartbeatMs: s.streamHeartbeatMs, openAfterMs: Math.min(1000, s.streamHeartbeatMs) });
    } finally {
      this.streams--;
    }
  }

  private async track(call: Promise<void>): Promise<void> {
    this.inFlight.add(call);
    try {
      await call;
    } finally {
      this.inFlight.delete(call);
    }
  }

  /** /healthz, /readyz, /health, /ping, /ping/<target>, /openapi.json; true when it was one of them. */
  private async ownEndpoint(verb: string, path: string, res: Res): Promise<boolean> {
    if (verb !== 'GET') return false;
    if (path === '/healthz') return (sendJson(res, 200, { status: 'ok' }), true);
    if (path === '/ping') return (sendJson(res, 200, { message: 'pong', timestamp: new Date().toISOString() }), true);
    if (path === '/openapi.json') {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'max-age=300' });
      res.end(this.opts.openapi);
      return true;
    }
    if (path === '/health' || path === '/readyz') return (await this.health(res), true);
    const ping = /^\/ping\/([^/]+)$/.exec(path);
    if (ping) return (await this.ping(decodeURIComponent(ping[1]!), res), true);
    return false;
  }

  /** One target's health, checked at most once per HEALTH_CACHE_MS whoever asks. */
  private checkTarget(target: BackendTarget): Promise<TargetHealth> {
    const now = Date.now();
    const cached = this.healthCache.get(target.target);
    if (cached && now - cached.atMs < HEALTH_CACHE_MS) return cached.check;
    const check = this.opts.backends.health(target, this.opts.settings.healthTimeoutMs);
    this.healthCache.set(target.target, { atMs: now, check });
    return check;
  }

  /** Seed 001's aggregated health: the gateway itself and each service's grpc.health.v1 status with its latency. */
  private async health(res: Res): Promise<void> {
    const configured = this.opts.backends.targets.filter((t) => t.address !== undefined);
    const checks = await Promise.all(configured.map((t) => this.checkTarget(t)));
    const healthy = checks.length > 0 && checks.every((c) => c.status === 'SERVING');
    const info = buildInfo();
    const services: Record<string, unknown> = { gateway: { status: 'healthy', version: info.version, commit: info.commit } };
    for (const c of checks) services[c.target] = healthJson(c);
    for (const t of this.opts.backends.targets) services[t.target] ??= { status: 'not_configured', message: `no address (GANTRY_PEERS_${t.target.toUpperCase()}_ADDRESS)` };
    sendJson(res, healthy ? 200 : 503, { status: healthy ? 'healthy' : 'unhealthy', timestamp: new Date().toISOString(), services });
  }

  /** One service's health over gRPC: 200 when SERVING, 503 otherwise, 404 for a name that is no service. */
  private async ping(name: string, res: Res): Promise<void> {
    const target: BackendTarget | undefined = this.opts.backends.targets.find((t) => t.target === name);
    if (!target) throw new GatewayError(Status.NOT_FOUND, `no service named "${name}"; choose one of: ${this.opts.backends.targets.map((t) => t.target).join(', ')}`);
    const check = await this.checkTarget(target);
    const ok = check.status === 'SERVING';
    sendJson(res, ok ? 200 : 503, { message: ok ? `${name} ping successful` : `${name} ping failed`, healthy: ok, ...healthJson(check), timestamp: new Date().toISOString() });
  }
}

/** The request target as a URL; one that does not parse is a 400, never an exception that escapes. */
function requestUrl(target: string | undefined): URL {
  if (!target?.startsWith('/')) throw new GatewayError(Status.INVALID_ARGUMENT, 'the request target must be an absolute path (origin-form)');
  try {
    return new URL(target, 'https://gateway.invalid');
  } catch {
    throw new GatewayError(Status.INVALID_ARGUMENT, 'the request target is not a valid URL path');
  }
}

function healthJson(c: TargetHealth): Record<string, unknown> {
  return { status: c.status === 'SERVING' ? 'healthy' : 'unhealthy', grpc_status: c.status, latency_ms: c.latencyMs, ...(c.error ? { error: c.error } : {}) };
}

/** Re-reads the certificate and key at an interval; a changed pair applies to new connections. */
function watchCertificate(server: Http2SecureServer, tls: GatewayServerOptions['tls'], log: Logger): NodeJS.Timeout {
  let last = '';
  const timer = setInterval(() => {
    try {
      const cert = readFileSync(tls.certFile, 'utf8');
      const key = readFileSync(tls.keyFile, 'utf8');
      if (cert + key === last) return;
      if (last !== '') server.setSecureContext({ cert, key, minVersion: 'TLSv1.2' });
      last = cert + key;
      if (last !== '') log.debug('gateway certificate (re)loaded');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not re-read the gateway certificate; keeping the one in use');
    }
  }, tls.reloadIntervalMs);
  timer.unref();
  return timer;
}

/** Starts the HTTPS listener (HTTP/2, and HTTP/1.1 by ALPN fallback). */
export async function startGatewayServer(opts: GatewayServerOptions): Promise<GatewayServer> {
  const gateway = new Gateway(opts);
  const server = createSecureServer({
    cert: readFileSync(opts.tls.certFile),
    key: readFileSync(opts.tls.keyFile),
    allowHTTP1: true,
    minVersion: 'TLSv1.2',
    settings: { maxConcurrentStreams: opts.maxStreamsPerConnection },
  });
  server.on('request', (req, res) => {
    gateway.handle(req as unknown as Req, res as unknown as Res).catch((err: unknown) => opts.log.error({ err }, 'gateway request handler failed'));
  });
  const sessions = new Set<ServerHttp2Session>();
  const sockets = new Set<Socket>();
  server.on('session', (s) => (sessions.add(s), s.once('close', () => sessions.delete(s))));
  server.on('secureConnection', (s) => (sockets.add(s), s.once('close', () => sockets.delete(s))));
  // A peer's protocol error ends its connection; it is never the process's error.
  server.on('sessionError', (err) => opts.log.debug({ err: err.message }, 'gateway HTTP/2 session error'));
  server.on('clientError', (err: Error, socket: Socket) => (opts.log.debug({ err: err.message }, 'gateway HTTP/1 client error'), socket.destroy()));
  server.setTimeout(120_000);
  const certTimer = watchCertificate(server, opts.tls, opts.log);
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => {
      clearInterval(certTimer);
      reject(new Error(`the HTTP gateway cannot listen on ${opts.host}:${opts.settings.port} (${err.message}); choose another port with GANTRY_GATEWAY_PORT (gateway.port)`, { cause: err }));
    };
    server.once('error', failed);
    server.listen(opts.settings.port, opts.host, () => (server.off('error', failed), resolve()));
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close(graceMs) {
      clearInterval(certTimer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([Promise.all([...gateway.inFlight]), grace]);
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
