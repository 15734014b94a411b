// The gateway as its own target (`gantry serve --target=gateway`) in front of `--target=log`,
// found at peers.log.address: calls carry the caller's token (the log records the caller as
// author), targets without an address answer 503 saying which setting is missing, and the
// gateway's own certificate is granted nothing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { clientCredentials, clientOptions, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { tokenFor } from '@gantry/test-support/clients';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

describe('gantry serve --target=gateway in front of --target=log', () => {
  let log: GantryServer;
  let gateway: GantryServer;
  let base: string;
  let agent: Agent;

  async function get(method: string, path: string, opts: { token?: string; body?: string } = {}) {
    const headers: Record<string, string> = opts.body ? { 'content-type': 'application/json' } : {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: opts.body, dispatcher: agent });
    const text = await res.body.text();
    return { status: res.statusCode, body: JSON.parse(text) as Record<string, unknown> };
  }

  before(async () => {
    log = await startGantry('log');
    // The same data dir: the dev PKI (CA, the gateway's certificate) and the dev issuer's key.
    gateway = await startGantry('gateway', { GANTRY_DATA_DIR: log.dataDir, GANTRY_PEERS_LOG_ADDRESS: `127.0.0.1:${log.port}` });
    const line = gateway.logs.flatMap((l) => l.split('\n')).find((l) => l.includes('"HTTP gateway listening"'));
    base = `https://localhost:${(JSON.parse(line!) as { gateway_port: number }).gateway_port}`;
    agent = new Agent({ connect: { ca: readFileSync(join(log.dataDir, 'pki/ca.crt')) } });
  });
  after(async () => {
    await agent?.close();
    await gateway?.stop();
    await log?.stop();
  });

  test('the caller\'s token goes through: the log records the caller, not the gateway, as author', async () => {
    const token = tokenFor(log.dataDir, 'http-caller', ['log.append', 'log.read']);
    const res = await get('POST', '/v1/log/partitions/split/entries', { token, body: JSON.stringify({ data: Buffer.from('x').toString('base64') }) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.author, 'http-caller');
  });

  test('/health reports the configured service SERVING and the others not configured', async () => {
    const res = await get('GET', '/health');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const services = res.body.services as Record<string, { status: string; grpc_status?: string }>;
    assert.equal(services.log!.grpc_status, 'SERVING');
    assert.equal(services.settlement!.status, 'not_configured');
  });

  test('a service without an address answers 503 naming the setting to set', async () => {
    const token = tokenFor(log.dataDir, 'http-caller', ['settlement.read']);
    const res = await get('GET', '/v1/settlement/operatorKeys', { token });
    assert.equal(res.status, 503);
    assert.equal(res.body.code, status.UNAVAILABLE);
    assert.match(String(res.body.message), /GANTRY_PEERS_SETTLEMENT_ADDRESS/);
  });

  test('the gateway\'s own certificate authorizes nothing: a token-less call with it is UNAUTHENTICATED', async () => {
    const pki = (f: string) => join(log.dataDir, 'pki', f);
    const tls = { caFile: pki('ca.crt'), certFile: pki('gateway.crt'), keyFile: pki('gateway.key'), serverName: 'localhost' };
    const client = new logv1.LogServiceClient(`127.0.0.1:${log.port}`, clientCredentials(tls), clientOptions(tls));
    try {
      await assert.rejects(unary(client.listPartitions, client, { prefix: '', pageSize: 1, pageToken: '' }, new Metadata()), (err: { code: number; details: string }) => {
        assert.equal(err.code, status.UNAUTHENTICATED);
        assert.match(err.details, /workload gateway has no grant/);
        return true;
      });
    } finally {
      client.close();
    }
  });
});
