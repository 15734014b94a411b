// The gateway's HTTP edge on its own (no services behind it): CORS by configuration, limits
// answered before a call is made, and what a request that names no route gets.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { ensureDevPki, silentLogger } from '@gantry/kit';
import { descriptorSetPath } from '@gantry/proto';
import { Backends } from '../src/backends.js';
import { gatewayConfigSchema } from '../src/config.js';
import { buildRouteTable, loadRegistry } from '../src/routes.js';
import { startGatewayServer, type GatewayServer } from '../src/server.js';
import { startTestGateway, type TestGateway } from './support.js';

const ORIGIN = 'https://app.example.com';

describe('gateway HTTP edge', () => {
  let gateway: TestGateway;
  let server: GatewayServer;
  let agent: Agent;
  const call = async (method: string, path: string, headers: Record<string, string> = {}, body?: string) => {
    const res = await request(`https://localhost:${server.port}${path}`, { method: method as 'GET', headers, body, dispatcher: agent });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };

  before(async () => {
    gateway = await startTestGateway(undefined, { maxRequestBytes: 2048, corsAllowedOrigins: [ORIGIN] });
    server = gateway.server;
    agent = gateway.agent;
  });
  after(() => gateway?.close());

  test('a configured origin gets CORS headers and its preflight is answered 204; another origin gets neither', async () => {
    const get = await call('GET', '/ping', { origin: ORIGIN });
    assert.equal(get.headers['access-control-allow-origin'], ORIGIN);
    const preflight = await call('OPTIONS', '/v1/log/partitions', { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' });
    assert.equal(preflight.status, 204);
    assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
    assert.match(String(preflight.headers['access-control-allow-methods']), /PATCH/);
    const other = await call('OPTIONS', '/v1/log/partitions', { origin: 'https://evil.example', 'access-control-request-method': 'GET' });
    assert.equal(other.status, 403);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });

  test('a Content-Length over the limit is 413 before the body is read; a non-JSON content type 415', async () => {
    const auth = { authorization: 'Bearer x.y.z' };
    const big = await call('POST', '/v1/log/partitions/p/entries', { ...auth, 'content-type': 'application/json' }, 'x'.repeat(4096));
    assert.equal(big.status, 413);
    assert.deepEqual([big.body.code, big.body.details], [8, []]);
    const form = await call('POST', '/v1/log/partitions/p/entries', { ...auth, 'content-type': 'text/plain' }, 'hi');
    assert.equal(form.status, 415);
  });

  test('a GET route sent a body is 400 (its fields go in the query); a malformed token header is treated as none (401)', async () => {
    const withBody = await call('GET', '/v1/log/partitions', { authorization: 'Bearer x.y.z' }, '{"prefix":"a"}');
    assert.equal(withBody.status, 400);
    assert.match(String(withBody.body.message), /takes no body; pass fields as query parameters/);
    const notBearer = await call('GET', '/v1/log/partitions', { authorization: 'Basic dXNlcjpwYXNz' });
    assert.equal(notBearer.status, 401);
  });

  test('a request target that is not a path is 400, and the gateway keeps serving', async () => {
    const { connect } = await import('node:tls');
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: readFileSync(gateway.caFile), ALPNProtocols: ['http/1.1'] }, () => {
        socket.write('GET http://[bad/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400/);
    assert.match(answer, /"code":3,"message":"the request target must be an absolute path/);
    assert.equal((await call('GET', '/ping')).status, 200);
  });

  test('/health without any service address is 503, and a routed call to it says which variable to set', async () => {
    const health = await call('GET', '/health');
    assert.equal(health.status, 503);
    assert.equal((health.body.services as Record<string, { status: string }>).log!.status, 'not_configured');
    const routed = await call('GET', '/v1/log/partitions', { authorization: 'Bearer x.y.z' });
    assert.equal(routed.status, 503);
    assert.match(String(routed.body.message), /GANTRY_PEERS_LOG_ADDRESS/);
  });
});

test('a taken port fails start-up with a message naming the setting to change', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-gateway-'));
  const { paths } = await ensureDevPki(join(dir, 'pki'));
  const backends = new Backends([], credentials.createInsecure(), {});
  const start = (port: number) =>
    startGatewayServer({
      table: buildRouteTable(loadRegistry(descriptorSetPath)),
      backends,
      settings: gatewayConfigSchema.parse({ port }),
      host: '127.0.0.1',
      tls: { certFile: paths.serverCertFile, keyFile: paths.serverKeyFile, reloadIntervalMs: 60_000 },
      maxStreamsPerConnection: 10,
      openapi: '{}',
      log: silentLogger(),
    });
  const first = await start(0);
  try {
    await assert.rejects(start(first.port), /cannot listen on 127\.0\.0\.1:\d+ \(listen EADDRINUSE.*GANTRY_GATEWAY_PORT/);
  } finally {
    await first.close(0);
    backends.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
