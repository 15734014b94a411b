// The HTTP/JSON gateway in front of a real `gantry serve --target=all`: each service answers the
// same over HTTP (undici over HTTP/1.1, node:http2 over HTTP/2) as over gRPC, a server stream
// arrives as Server-Sent Events, and errors come back as google.rpc.Status with the mapped HTTP status.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { bearerMetadata, clientCredentials, clientOptions, streamOf, unary } from '@gantry/kit';
import { approvalsv1, logv1, settlementv1, webhooksv1 } from '@gantry/proto';
import { tokenFor } from '@gantry/test-support/clients';
import { startGantry, type GantryServer } from '../support/gantry-process.js';

const MAX_REQUEST_BYTES = 4096;
const MAX_STREAMS = 2;
const ALL_SCOPES = ['log.read', 'log.append', 'settlement.read', 'settlement.admin', 'approvals.submit', 'approvals.read', 'approvals.vote', 'webhooks.read', 'webhooks.manage'];

interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): unknown;
}

describe('HTTP/JSON gateway against gantry serve --target=all', () => {
  let server: GantryServer;
  let base: string;
  let agent: Agent;
  let h2: ClientHttp2Session;
  let grpc: { log: logv1.LogServiceClient; settlement: settlementv1.SettlementServiceClient; approvals: approvalsv1.ApprovalsServiceClient; webhooks: webhooksv1.WebhooksServiceClient };
  const token = (scopes = ALL_SCOPES, subject = 'gateway-test') => tokenFor(server.dataDir, subject, scopes);
  const md = (scopes = ALL_SCOPES, subject = 'gateway-test') => bearerMetadata(token(scopes, subject));

  /** One request over HTTP/1.1 (undici). */
  async function http1(method: string, path: string, opts: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers };
    if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? token()}`;
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: opts.body, dispatcher: agent });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
  }

  /** One request over HTTP/2 (node:http2 speaks nothing else). */
  function http2(method: string, path: string, body?: string): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const stream = h2.request({ ':method': method, ':path': path, authorization: `Bearer ${token()}`, ...(body ? { 'content-type': 'application/json' } : {}) });
      let status = 0;
      let headers: Record<string, string | string[] | undefined> = {};
      let text = '';
      stream.on('response', (h) => ((status = Number(h[':status'])), (headers = h)));
      stream.on('data', (d: Buffer) => (text += d));
      stream.on('end', () => resolve({ status, headers, text, json: () => JSON.parse(text) }));
      stream.on('error', reject);
      stream.end(body);
    });
  }

  before(async () => {
    server = await startGantry('all', { GANTRY_GATEWAY_MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES), GANTRY_GATEWAY_MAX_CONCURRENT_STREAMS: String(MAX_STREAMS) });
    const listening = server.logs.flatMap((l) => l.split('\n')).map((l) => { try { return JSON.parse(l) as { msg?: string; gateway_port?: number }; } catch { return {}; } }).find((e) => e.msg === 'HTTP gateway listening');
    assert.ok(listening?.gateway_port, `no "HTTP gateway listening" line in:\n${server.logs.join('')}`);
    base = `https://localhost:${listening.gateway_port}`;
    const ca = readFileSync(join(server.dataDir, 'pki/ca.crt'));
    agent = new Agent({ connect: { ca } });
    h2 = connect(base, { ca });
    const pki = (f: string) => join(server.dataDir, 'pki', f);
    const tls = { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key') };
    const address = `127.0.0.1:${server.port}`;
    const [creds, opts] = [clientCredentials(tls), clientOptions({ ...tls, serverName: 'localhost' })];
    grpc = {
      log: new logv1.LogServiceClient(address, creds, opts),
      settlement: new settlementv1.SettlementServiceClient(address, creds, opts),
      approvals: new approvalsv1.ApprovalsServiceClient(address, creds, opts),
      webhooks: new webhooksv1.WebhooksServiceClient(address, creds, opts),
    };
  });
  after(async () => {
    h2?.close();
    await agent?.close();
    for (const c of Object.values(grpc ?? {})) c.close();
    await server?.stop();
  });

  test('log: an append over HTTP/2 is read back the same over HTTP/1.1 as over gRPC', async () => {
    const appended = await http2('POST', '/v1/log/partitions/gw-orders/entries', JSON.stringify({ data: Buffer.from('hello').toString('base64'), idempotencyKey: 'k1' }));
    assert.equal(appended.status, 200, appended.text);
    assert.equal((appended.json() as { seq: string }).seq, '0');

    const overHttp = await http1('GET', '/v1/log/partitions/gw-orders/entries:last');
    assert.equal(overHttp.status, 200, overHttp.text);
    const { entry } = overHttp.json() as { entry: Record<string, unknown> };
    const overGrpc = (await unary(grpc.log.getLastEntry, grpc.log, { partition: 'gw-orders' }, md())).entry!;
    assert.deepEqual(entry, {
      partition: overGrpc.partition,
      seq: String(overGrpc.seq),
      timestamp: overGrpc.timestamp!.toISOString(),
      data: Buffer.from(overGrpc.data).toString('base64'),
      prevHash: Buffer.from(overGrpc.prevHash).toString('base64'),
      hash: Buffer.from(overGrpc.hash).toString('base64'),
      author: overGrpc.author,
    });
  });

  test('settlement: a deposit over HTTP shows in the credit status over HTTP as over gRPC (int64 as strings)', async () => {
    const wallet = `0x${createHash('sha256').update(randomUUID()).digest('hex').slice(0, 40)}`;
    const deposit = await http1('POST', `/v1/settlement/wallets/${wallet}:deposit`, { body: JSON.stringify({ amountMinor: '12345', transferId: randomUUID(), memo: 'gateway test' }) });
    assert.equal(deposit.status, 200, deposit.text);
    const overHttp = (await http1('GET', `/v1/settlement/wallets/${wallet}/creditLine`)).json() as Record<string, unknown>;
    const overGrpc = await unary(grpc.settlement.getCreditStatus, grpc.settlement, { walletAddress: wallet }, md());
    assert.deepEqual(
      [overHttp.walletAddress, overHttp.l1BalanceMinor, overHttp.l1AvailableMinor, overHttp.hasActiveCredit],
      [overGrpc.walletAddress, String(overGrpc.l1BalanceMinor), String(overGrpc.l1AvailableMinor), overGrpc.hasActiveCredit],
    );
    assert.equal(overHttp.l1BalanceMinor, '12345');
  });

  test('approvals: a request submitted over HTTP reads the same over HTTP as over gRPC; votes go as a client stream (JSON array)', async () => {
    const content = Buffer.from('deploy v2');
    const submitted = await http1('POST', '/v1/approvals', {
      token: token(ALL_SCOPES, 'ops'),
      body: JSON.stringify({
        type: 'APPROVAL_TYPE_CONTRACT_DEPLOYMENT', priority: 'APPROVAL_PRIORITY_HIGH', title: 'deploy', content: content.toString('base64'),
        contentHash: createHash('sha256').update(content).digest('base64'), validators: ['alice', 'bob'], requiredApprovals: 1, ttl: '3600s',
      }),
    });
    assert.equal(submitted.status, 200, submitted.text);
    const id = (submitted.json() as { approval: { approvalId: string } }).approval.approvalId;
    const overHttp = (await http1('GET', `/v1/approvals/${id}`)).json() as { approval: Record<string, unknown> };
    const overGrpc = (await unary(grpc.approvals.getApprovalStatus, grpc.approvals, { approvalId: id }, md())).approval!;
    assert.deepEqual([overHttp.approval.approvalId, overHttp.approval.title, overHttp.approval.state, overHttp.approval.validators], [overGrpc.approvalId, overGrpc.title, 'APPROVAL_STATE_PENDING', overGrpc.validators]);

    const votes = await http1('POST', '/v1/approvals:batchVote', { token: token(ALL_SCOPES, 'alice'), body: JSON.stringify([{ approvalId: id, decision: 'VOTE_DECISION_APPROVE', reason: 'ok' }]) });
    assert.equal(votes.status, 200, votes.text);
    assert.equal((votes.json() as { accepted: number }).accepted, 1);
  });

  test('webhooks: a webhook created over HTTP reads the same over HTTP as over gRPC, and the registry lists the same', async () => {
    const spec = { url: 'https://hooks.example.com/gantry', eventTypes: ['example.thing.happened'], description: 'gateway test', labels: { team: 'edge' } };
    const created = await http1('POST', '/v1/webhooks', { body: JSON.stringify({ externalId: 'gw-1', spec }) });
    assert.equal(created.status, 200, created.text);
    const { webhook, secret } = created.json() as { webhook: { webhookId: string }; secret: string };
    assert.ok(secret.length > 0, 'the signing secret is returned once');
    const one = (await http1('GET', `/v1/webhooks/${webhook.webhookId}`)).json() as { webhook: { webhookId: string; externalId: string; spec: typeof spec & { paused: boolean } } };
    const oneOverGrpc = (await unary(grpc.webhooks.getWebhook, grpc.webhooks, { webhookId: webhook.webhookId }, md())).webhook!;
    assert.deepEqual(
      [one.webhook.webhookId, one.webhook.externalId, one.webhook.spec.url, one.webhook.spec.eventTypes, one.webhook.spec.labels, one.webhook.spec.paused],
      [oneOverGrpc.webhookId, oneOverGrpc.externalId, oneOverGrpc.spec!.url, oneOverGrpc.spec!.eventTypes, oneOverGrpc.spec!.labels, oneOverGrpc.spec!.paused],
    );
    const overHttp = await http1('GET', '/v1/webhooks?pageSize=10');
    assert.equal(overHttp.status, 200, overHttp.text);
    const overGrpc = await unary(grpc.webhooks.listWebhooks, grpc.webhooks, { owner: '', externalId: '', status: 0, pageSize: 10, pageToken: '' }, md());
    const body = overHttp.json() as { webhooks: { webhookId: string }[]; nextPageToken: string };
    assert.deepEqual(body.webhooks.map((w) => w.webhookId), overGrpc.webhooks.map((w) => w.webhookId));
    assert.ok(body.webhooks.some((w) => w.webhookId === webhook.webhookId));
    assert.equal(body.nextPageToken, overGrpc.nextPageToken);
  });

  test('a server stream arrives as Server-Sent Events: one data line per message, then the final status', async () => {
    for (const word of ['one', 'two']) {
      await unary(grpc.log.append, grpc.log, { partition: 'gw-stream', data: Buffer.from(word), idempotencyKey: '' }, md());
    }
    const res = await http1('GET', '/v1/log/partitions/gw-stream/entries?startSeq=0');
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    const events = res.text.trim().split('\n\n').map((block) => ({ event: /^event: (.*)$/m.exec(block)?.[1], data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown> }));
    const last = events.pop()!;
    assert.deepEqual(last, { event: 'status', data: { code: 0, message: 'OK', details: [] } });
    const overHttp = events.flatMap((e) => (e.data.entries as { data: string }[]).map((x) => Buffer.from(x.data, 'base64').toString()));
    const overGrpc: string[] = [];
    for await (const chunk of streamOf(grpc.log.read({ partition: 'gw-stream', startSeq: 0n, limit: 0n }, md()))) overGrpc.push(...chunk.entries.map((e) => Buffer.from(e.data).toString()));
    assert.deepEqual(overHttp, overGrpc);
    assert.deepEqual(overHttp, ['one', 'two']);
  });

  test('streams past gateway.maxConcurrentStreams are answered 429, and a client that disconnects frees its stream (its call is cancelled)', async () => {
    const open = async () => {
      const controller = new AbortController();
      const res = await request(`${base}/v1/log/partitions/gw-follow/entries:tail?follow=true`, { headers: { authorization: `Bearer ${token()}` }, dispatcher: agent, signal: controller.signal });
      return { res, abort: () => controller.abort() };
    };
    const streams = [await open(), await open()];
    for (const s of streams) assert.equal(s.res.statusCode, 200);
    const refused = await http1('GET', '/v1/log/partitions/gw-follow/entries:tail?follow=true');
    assert.equal(refused.status, 429, refused.text);
    assert.match((refused.json() as { message: string }).message, /gateway\.maxConcurrentStreams/);
    // A follow never ends by itself: its slot frees only when the disconnect cancels the gRPC call.
    for (const s of streams) {
      s.abort();
      await s.res.body.text().catch(() => undefined);
    }
    const deadline = Date.now() + 5000;
    let again = await open();
    while (again.res.statusCode === 429 && Date.now() < deadline) {
      await again.res.body.text();
      await new Promise((r) => setTimeout(r, 100));
      again = await open();
    }
    assert.equal(again.res.statusCode, 200);
    again.abort();
    await again.res.body.text().catch(() => undefined);
  });

  test('a stream the service refuses before answering is a plain error, not an event stream', async () => {
    const res = await http1('GET', '/v1/log/partitions/gw-none/entries:tail?follow=true', { token: token(['settlement.read']) });
    assert.equal(res.status, 403, res.text);
    assert.equal((res.json() as { code: number }).code, 7);
  });

  test('errors are google.rpc.Status with the mapped HTTP status: 401, 403, 400, 413, 404, 405, 501', async () => {
    const cases: [HttpAnswer, number, number, RegExp][] = [
      [await http1('GET', '/v1/log/partitions', { token: null }), 401, 16, /missing bearer token/],
      [await http1('POST', '/v1/log/partitions/gw-x/entries', { token: token(['log.read']), body: '{"data":"aGk="}' }), 403, 7, /needs scope log\.append/],
      [await http1('POST', '/v1/log/partitions/gw-x/entries', { body: '{"data": "aGk=",' }), 400, 3, /not valid JSON/],
      [await http1('POST', '/v1/log/partitions/gw-x/entries', { body: JSON.stringify({ data: Buffer.alloc(MAX_REQUEST_BYTES).toString('base64') }) }), 413, 8, /exceeds 4096 bytes/],
      [await http1('GET', '/v1/webhooks/does-not-exist'), 404, 5, /./],
      [await http1('GET', '/v1/nothing/here'), 404, 5, /no route for GET \/v1\/nothing\/here/],
      [await http1('DELETE', '/v1/approvals'), 405, 12, /takes GET, POST/],
      [await http1('POST', '/v1/approvals:stream', { body: '{}' }), 501, 12, /bidirectional stream.*call it over gRPC/],
    ];
    for (const [res, status, code, message] of cases) {
      assert.equal(res.status, status, res.text);
      const body = res.json() as { code: number; message: string; details: unknown[] };
      assert.equal(body.code, code, res.text);
      assert.match(body.message, message);
      assert.deepEqual(body.details, []);
    }
  });

  test('seed 001: /healthz, /health and /readyz aggregate every service SERVING, /ping pongs, /ping/<service> checks one', async () => {
    assert.equal((await http1('GET', '/healthz', { token: null })).status, 200);
    for (const path of ['/health', '/readyz']) {
      const res = await http1('GET', path, { token: null });
      assert.equal(res.status, 200, res.text);
      const body = res.json() as { status: string; services: Record<string, { status: string; grpc_status?: string; latency_ms?: number }> };
      assert.equal(body.status, 'healthy');
      assert.deepEqual(Object.keys(body.services).sort(), ['approvals', 'gateway', 'log', 'settlement', 'webhooks']);
      for (const name of ['approvals', 'log', 'settlement', 'webhooks']) {
        assert.equal(body.services[name]!.grpc_status, 'SERVING');
        assert.equal(typeof body.services[name]!.latency_ms, 'number');
      }
    }
    assert.equal(((await http1('GET', '/ping', { token: null })).json() as { message: string }).message, 'pong');
    const ping = await http1('GET', '/ping/settlement', { token: null });
    assert.equal(ping.status, 200, ping.text);
    assert.equal((ping.json() as { healthy: boolean }).healthy, true);
    const unknown = await http1('GET', '/ping/nosuch', { token: null });
    assert.equal(unknown.status, 404);
    assert.match((unknown.json() as { message: string }).message, /choose one of: .*settlement/);
  });

  test('serve prints the gateway URL and a curl example beside the gRPC address', () => {
    const printed = server.logs.join('');
    assert.match(printed, new RegExp(`HTTP/JSON gateway https://127\\.0\\.0\\.1:${new URL(base).port} `));
    assert.match(printed, /curl --cacert \S+ca\.crt https:\/\/127\.0\.0\.1:\d+\/health/);
  });

  test('GET /openapi.json serves the generated document', async () => {
    const res = await http1('GET', '/openapi.json', { token: null });
    assert.equal(res.status, 200);
    assert.equal((res.json() as { openapi: string }).openapi, '3.0.3');
  });

  test('CORS is off by default: no CORS headers, and a preflight is refused', async () => {
    const get = await http1('GET', '/ping', { token: null, headers: { origin: 'https://app.example.com' } });
    assert.equal(get.headers['access-control-allow-origin'], undefined);
    const preflight = await http1('OPTIONS', '/v1/webhooks', { token: null, headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } });
    assert.equal(preflight.status, 403);
  });
});
