// The gateway's gRPC side against a stand-in server (grpc-js, plaintext, raw bytes): what reaches
// the service (token, trace context), deadlines, stream duration, and a disconnect cancelling the call.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Server, ServerCredentials, status, type Metadata, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import { request, type Agent } from 'undici';
import type { GatewayServer } from '../src/server.js';
import { startTestGateway, type TestGateway } from './support.js';

const raw = (b: Buffer) => b;
const method = (name: string, responseStream: boolean) => ({ path: `/gantry.log.v1.LogService/${name}`, requestStream: false, responseStream, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw });
const TOKEN = 'Bearer aaa.bbb.ccc';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('gateway calls against a stand-in gRPC server', () => {
  let grpc: Server;
  let test_: TestGateway;
  let gateway: GatewayServer;
  let agent: Agent;
  const seen: Metadata[] = [];
  let cancelled: () => void = () => {};
  const get = (path: string, signal?: AbortSignal) => request(`https://localhost:${gateway.port}${path}`, { headers: { authorization: TOKEN, traceparent: TRACEPARENT }, dispatcher: agent, signal });

  before(async () => {
    grpc = new Server();
    grpc.addService(
      { GetLastEntry: method('GetLastEntry', false), Verify: method('Verify', false), Tail: method('Tail', true) },
      {
        // Answers an empty GetLastEntryResponse, recording what arrived with the call.
        GetLastEntry: (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => (seen.push(call.metadata), done(null, Buffer.alloc(0))),
        // Never answers: the caller's deadline ends it.
        Verify: () => {},
        // One message at once, then nothing until cancelled or past the deadline.
        Tail: (call: ServerWritableStream<Buffer, Buffer>) => {
          call.write(Buffer.alloc(0));
          call.on('cancelled', () => cancelled());
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    test_ = await startTestGateway(`127.0.0.1:${port}`, { requestTimeoutMs: 300, streamMaxDurationMs: 1500, streamHeartbeatMs: 1000 });
    gateway = test_.server;
    agent = test_.agent;
  });
  after(async () => {
    await test_?.close();
    grpc?.forceShutdown();
  });

  test('the service receives the caller\'s token and trace context, and nothing else of the request', async () => {
    const res = await get('/v1/log/partitions/p/entries:last');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(await res.body.json(), {});
    const md = seen.at(-1)!;
    assert.deepEqual(md.get('authorization'), [TOKEN]);
    assert.deepEqual(md.get('traceparent'), [TRACEPARENT]);
    assert.deepEqual(md.get('cookie'), []);
  });

  test('a unary call past gateway.requestTimeoutMs is 504 DEADLINE_EXCEEDED', async () => {
    const started = Date.now();
    const res = await get('/v1/log/partitions/p:verify');
    assert.equal(res.statusCode, 504);
    assert.equal(((await res.body.json()) as { code: number }).code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 3000);
  });

  test('a stream past gateway.streamMaxDurationMs ends with a DEADLINE_EXCEEDED status event', async () => {
    const res = await get('/v1/log/partitions/p/entries:tail?follow=true');
    assert.equal(res.statusCode, 200);
    const text = await res.body.text();
    const blocks = text.trim().split('\n\n').filter((b) => !b.startsWith(':'));
    assert.equal(blocks[0], 'data: {"entries":[]}');
    assert.match(blocks.at(-1)!, /^event: status\ndata: \{"code":4,/);
  });

  test('a client that disconnects cancels the gRPC call', async () => {
    const gone = new Promise<void>((resolve) => (cancelled = resolve));
    const controller = new AbortController();
    const res = await get('/v1/log/partitions/p/entries:tail?follow=true', controller.signal);
    assert.equal(res.statusCode, 200);
    controller.abort();
    await res.body.text().catch(() => undefined);
    await gone; // the stand-in server saw the cancellation (the test times out otherwise)
  });
});
