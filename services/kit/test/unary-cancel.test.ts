// unary() honours an AbortSignal: a stopping caller (the operator's reconciles) cancels its calls
// rather than waiting out their deadlines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentials, makeGenericClientConstructor, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { unary } from '../src/client.js';

const service = {
  hang: {
    path: '/test.Hang/Hang',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: Buffer) => v,
    requestDeserialize: (v: Buffer) => v,
    responseSerialize: (v: Buffer) => v,
    responseDeserialize: (v: Buffer) => v,
  },
};

test('aborting the signal cancels a call in flight (CANCELLED), and an aborted signal cancels before sending', async (t) => {
  const server = new Server();
  let received = 0;
  server.addService(service, { hang: () => void received++ }); // never answers
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const Client = makeGenericClientConstructor(service, 'Hang');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as { hang: Parameters<typeof unary>[0]; close(): void };
  t.after(() => {
    client.close();
    server.forceShutdown();
  });

  const stop = new AbortController();
  const t0 = performance.now();
  const call = unary(client.hang, client, Buffer.from('x'), new Metadata(), 60_000, stop.signal);
  while (received === 0) await new Promise((r) => setTimeout(r, 5));
  stop.abort();
  const err = (await call.then(() => assert.fail('the call must not succeed'), (e: unknown) => e)) as ServiceError;
  assert.equal(err.code, status.CANCELLED);
  assert.ok(performance.now() - t0 < 5_000, 'cancelled long before the 60 s deadline');

  const early = (await unary(client.hang, client, Buffer.from('x'), new Metadata(), 60_000, stop.signal).catch((e: unknown) => e)) as ServiceError;
  assert.equal(early.code, status.CANCELLED);
});
