// The plaintext probe port speaks two protocols: gRPC (HTTP/2 without TLS, what kubelet's gRPC
// probes and grpc-health-probe send) and HTTP/1.1 (what Prometheus scrapes and `httpGet` probes
// send). grpc-js cannot be handed a connection, so it listens on a loopback port of its own and
// the probe port passes each HTTP/2 connection through to it; HTTP/1.1 connections go to a small
// node:http server with a fixed set of GET routes. The first bytes decide: every HTTP/2
// connection starts with the client preface "PRI * HTTP/2.0".
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';

/** A GET route of the probe port's HTTP/1.1 side. */
export type ProbeRoute = (req: IncomingMessage, res: ServerResponse) => void;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0');
/** How long a connection may take to send its first bytes, and HTTP/1.1 its request. */
const FIRST_BYTES_TIMEOUT_MS = 5_000;
/** Connections the probe port holds at once: probes and scrapes are a handful. */
const MAX_CONNECTIONS = 64;

export interface ProbePort {
  port: number;
  /** Routes by path (GET only); added as the process starts (metrics once telemetry is up). */
  routes: Map<string, ProbeRoute>;
  close(): void;
}

/** Listens on host:port and passes HTTP/2 connections to the gRPC server on `grpcPort` (loopback), HTTP/1.1 to the routes. */
export async function startProbePort(host: string, port: number, grpcPort: number): Promise<ProbePort> {
  const routes = new Map<string, ProbeRoute>();
  const sockets = new Set<Socket>();
  const http = createHttpServer({ requestTimeout: FIRST_BYTES_TIMEOUT_MS, headersTimeout: FIRST_BYTES_TIMEOUT_MS, maxHeaderSize: 8192 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = routes.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('the probe port answers GET only\n');
    } else if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${path} here; try ${[...routes.keys()].sort().join(', ')} (gRPC health: grpc.health.v1 over HTTP/2)\n`);
    } else {
      route(req, res);
    }
  });
  const server: NetServer = createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.setTimeout(0);
      if (startsHttp2(first)) {
        passThrough(socket, first, grpcPort, sockets);
      } else {
        socket.unshift(first);
        http.emit('connection', socket);
        socket.resume();
      }
    });
    socket.resume();
  });
  server.maxConnections = MAX_CONNECTIONS;
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve((server.address() as { port: number }).port));
  });
  return {
    port: bound,
    routes,
    close() {
      server.close();
      http.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** Whether a connection's first bytes are HTTP/2's preface ("PRI" already tells it from any HTTP/1.1 method). */
function startsHttp2(first: Buffer): boolean {
  const n = Math.min(first.length, H2_PREFACE.length);
  return n >= 3 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
}

/** Pipes `socket` (whose first bytes are `first`) to the gRPC server on loopback, both ends closed together. */
function passThrough(socket: Socket, first: Buffer, grpcPort: number, sockets: Set<Socket>): void {
  const upstream = connect({ host: '127.0.0.1', port: grpcPort });
  sockets.add(upstream);
  const end = () => {
    socket.destroy();
    upstream.destroy();
  };
  upstream.once('close', () => (sockets.delete(upstream), end()));
  upstream.on('error', end);
  socket.once('close', end);
  upstream.write(first);
  socket.pipe(upstream);
  upstream.pipe(socket);
  socket.resume();
}
