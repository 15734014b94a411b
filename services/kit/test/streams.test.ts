import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status, type ClientDuplexStream, type ClientReadableStream, type ClientWritableStream, type ServiceError } from '@grpc/grpc-js';
import { bearer, callEcho, echoClient, eventually, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';
import type { EchoRequest, EchoResponse } from '@gantry/test-support/echo';

const MAX_RECEIVE_BYTES = 2048;

type Opts = { deadline: number };
interface StreamingStub {
  count(req: Partial<EchoRequest>, md: Metadata, opts: Opts): ClientReadableStream<EchoResponse>;
  collect(md: Metadata, opts: Opts, cb: (err: ServiceError | null, res?: EchoResponse) => void): ClientWritableStream<Partial<EchoRequest>>;
  chat(md: Metadata, opts: Opts): ClientDuplexStream<Partial<EchoRequest>, EchoResponse>;
}

/** Reads a server stream to its end: the messages, and the error if it ended with one. */
function drain(call: ClientReadableStream<EchoResponse> | ClientDuplexStream<Partial<EchoRequest>, EchoResponse>): Promise<{ messages: EchoResponse[]; err?: ServiceError }> {
  return new Promise((resolve) => {
    const messages: EchoResponse[] = [];
    call.on('data', (m: EchoResponse) => messages.push(m));
    call.on('error', (err: ServiceError) => resolve({ messages, err }));
    call.on('end', () => resolve({ messages }));
  });
}

describe('streaming calls and errors', () => {
  let platform: TestPlatform;
  let client: EchoStub;
  let stub: StreamingStub;
  let writer: Metadata;
  let reader: Metadata;
  const deadline = () => ({ deadline: Date.now() + 5000 });

  before(async () => {
    platform = await startEchoPlatform({ limits: { maxReceiveMessageBytes: MAX_RECEIVE_BYTES } });
    client = echoClient(platform.address, platform.clientCredentials);
    stub = client as unknown as StreamingStub;
    writer = bearer(platform.token('streamer', ['echo.write']));
    reader = bearer(platform.token('reader', ['echo.read']));
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  test('a server stream delivers every message in order, then ends OK', async () => {
    const { messages, err } = await drain(stub.count({ message: 'n', count: 5 }, writer, deadline()));
    assert.equal(err, undefined);
    assert.deepEqual(messages.map((m) => m.message), ['n-0', 'n-1', 'n-2', 'n-3', 'n-4']);
    assert.ok(messages.every((m) => m.principal === 'streamer' && m.peerIdentity === 'dev-client'));
  });

  test('a client stream receives every message before answering once', async () => {
    const res = await new Promise<EchoResponse>((resolve, reject) => {
      const call = stub.collect(writer, deadline(), (err, r) => (err ? reject(err) : resolve(r!)));
      for (const message of ['a', 'b', 'c']) call.write({ message });
      call.end();
    });
    assert.equal(res.message, 'a,b,c');
    assert.equal(res.principal, 'streamer');
  });

  test('a bidirectional stream answers each message as it arrives', async () => {
    const call = stub.chat(writer, { deadline: Date.now() + 5000 });
    const ended = drain(call);
    const replies: string[] = [];
    try {
      // Send the next message only after the previous reply: proves replies are not held back until the end.
      for (const message of ['one', 'two', 'three']) {
        const reply = new Promise<EchoResponse>((resolve) => call.once('data', resolve));
        call.write({ message });
        replies.push((await reply).message);
      }
    } finally {
      call.cancel();
    }
    assert.deepEqual(replies, ['one', 'two', 'three']);
    assert.equal((await ended).err?.code, status.CANCELLED);
  });

  // Kit bug: bindService hands the ServerDuplexStream itself to the handler as its AsyncIterable; when
  // the handler's for-await reaches the end of the input, Node's stream iterator destroys the stream
  // (destroyOnReturn), so the later call.end(trailer) never sends a status and the call hangs to its deadline.
  test('a bidirectional stream ends OK once the client half-closes', async () => {
    const call = stub.chat(writer, { deadline: Date.now() + 1500 });
    const done = drain(call);
    call.write({ message: 'only' });
    call.end();
    const { messages, err } = await done;
    assert.deepEqual(messages.map((m) => m.message), ['only']);
    assert.equal(err, undefined, `the stream ended with ${err ? status[err.code] : 'OK'}`);
  });

  test('a client cancelling a long server stream aborts the handler', async () => {
    const call = stub.count({ message: 'long', count: 1000, delayMs: 20 }, writer, { deadline: Date.now() + 30_000 });
    const ended = drain(call);
    const received: EchoResponse[] = [];
    await new Promise<void>((resolve) => {
      const onData = (m: EchoResponse) => {
        received.push(m);
        if (received.length === 2) {
          call.off('data', onData);
          resolve();
        }
      };
      call.on('data', onData);
    });
    assert.equal(platform.runtime.server.inFlightCalls, 1, 'the stream is in flight before the cancel');
    call.cancel();
    const { err } = await ended;
    assert.equal(err?.code, status.CANCELLED);
    assert.ok(await eventually(() => platform.runtime.server.inFlightCalls === 0, 1000, 10), 'the handler was still running 1 s after the cancel');
  });

  test('an invalid request is INVALID_ARGUMENT naming the field', async () => {
    const { err } = await callEcho(client, { message: 'x', fail: 'invalid' }, reader);
    assert.equal(err?.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^message:/);
  });

  test('an unexpected error is INTERNAL with a reference, and its message never reaches the caller', async () => {
    const { err } = await callEcho(client, { message: 'x', fail: 'unexpected' }, reader);
    assert.equal(err?.code, status.INTERNAL);
    assert.doesNotMatch(err.details, /hunter2/);
    assert.doesNotMatch(err.message, /hunter2/);
    assert.match(err.details, /reference [0-9a-f]{8}/);
  });

  test('a database that went away is UNAVAILABLE (retry), with a reference and without its message', async () => {
    const { err } = await callEcho(client, { message: 'x', fail: 'database-down' }, reader);
    assert.equal(err?.code, status.UNAVAILABLE);
    assert.doesNotMatch(err.details, /hunter2/);
    assert.match(err.details, /database is unavailable.*reference [0-9a-f]{8}/);
  });

  test('an unexpected error in a server stream is INTERNAL without its message', async () => {
    const { messages, err } = await drain(stub.count({ message: 's', count: 3, fail: 'unexpected' }, writer, deadline()));
    assert.equal(messages.length, 0);
    assert.equal(err?.code, status.INTERNAL);
    assert.doesNotMatch(err.details, /hunter2/);
  });

  test('a request larger than limits.maxReceiveMessageBytes is RESOURCE_EXHAUSTED', async () => {
    const { res, err } = await callEcho(client, { message: 'x'.repeat(MAX_RECEIVE_BYTES * 2) }, reader);
    assert.equal(res, undefined);
    assert.equal(err?.code, status.RESOURCE_EXHAUSTED);
    // Just under the limit still works: the limit, not the message, is what refused it.
    const ok = await callEcho(client, { message: 'x'.repeat(MAX_RECEIVE_BYTES - 64) }, reader);
    assert.equal(ok.err, undefined);
  });
});
