// Admission: each call is decided on its headers, before the server reads its body. Calls are
// written by hand over HTTP/2 where a grpc-js client would not send what the test needs: a message
// that declares more bytes than it delivers, a body that never ends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { constants as http2, type ClientHttp2Session } from 'node:http2';
import { status, type Metadata } from '@grpc/grpc-js';
import { devPkiPaths } from '../src/index.js';
import { ExactMessageDecoder } from '../src/server/message-decoder.js';
import { bearer, callEcho, echoClient, eventually, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';
import { messagePrefix, rawCall, rawConnect, type RawCall, type RawStatus } from '@gantry/test-support/raw-grpc';

const ECHO = '/gantry.test.v1.EchoService/Echo';
const KiB = 1024;

/** The call's status; fails the test with `unanswered` if none came within `ms`. */
async function answerWithin(call: RawCall, ms: number, unanswered: string): Promise<RawStatus> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  const answer = await Promise.race([call.status, timeout]);
  clearTimeout(timer);
  return answer ?? assert.fail(unanswered);
}

/** A raw HTTP/2 connection with the dev client certificate (no workload grant). */
function connect(platform: TestPlatform): Promise<ClientHttp2Session> {
  const pki = devPkiPaths(join(platform.dataDir, 'pki'));
  return rawConnect(platform.runtime.port, { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile });
}

/** An Echo call that declares a message of `declaredBytes` and sends only its first `sentBytes`, never ending. */
function withheldEcho(session: ClientHttp2Session, metadata: Record<string, string>, declaredBytes: number, sentBytes: number): RawCall {
  return rawCall(session, ECHO, metadata, Buffer.concat([messagePrefix(declaredBytes), Buffer.alloc(sentBytes, 0x41)]));
}

describe('admission on headers, before the body', () => {
  let platform: TestPlatform;
  let session: ClientHttp2Session;

  before(async () => {
    platform = await startEchoPlatform();
    session = await connect(platform);
  });
  after(async () => {
    session.destroy();
    await platform.close();
  });

  test('a call without credentials is answered UNAUTHENTICATED on its headers, while its body is still missing', async () => {
    const call = withheldEcho(session, {}, 1024 * KiB, 1000);
    const answer = await answerWithin(call, 3000, 'the server waited for the body of an unauthenticated call');
    assert.equal(answer.code, status.UNAUTHENTICATED, answer.message);
    assert.match(answer.message, /missing bearer token/);
  });

  test('a call whose token lacks the scope is answered PERMISSION_DENIED on its headers', async () => {
    const call = withheldEcho(session, { authorization: `Bearer ${platform.token('alice', ['echo.write'])}` }, 1024 * KiB, 1000);
    const answer = await answerWithin(call, 3000, 'the server waited for the body of a call it would refuse');
    assert.equal(answer.code, status.PERMISSION_DENIED, answer.message);
  });

  test("a message declaring more than its method's limit (64 KiB by default) is refused at its length prefix, before its bytes", async () => {
    const call = withheldEcho(session, { authorization: `Bearer ${platform.token('alice', ['echo.read'])}` }, 64 * KiB + 1, 0);
    const answer = await answerWithin(call, 3000, 'the server waited for the body of a message over the limit');
    assert.equal(answer.code, status.RESOURCE_EXHAUSTED, answer.message);
    assert.match(answer.message, /larger than max \(65537 vs 65536\)/);
  });

  test('a message at the limit is read and answered', async () => {
    const md = bearer(platform.token('alice', ['echo.read']));
    const client = echoClient(platform.address, platform.clientCredentials);
    try {
      // 64 KiB of message: the field's tag and 3-byte length take 4 bytes.
      const { err } = await callEcho(client, { message: 'x'.repeat(64 * KiB - 4) }, md);
      assert.equal(err, undefined, err?.details);
      const over = await callEcho(client, { message: 'x'.repeat(64 * KiB - 3) }, md);
      assert.equal(over.err?.code, status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });
});

describe('bounds per principal and on request bytes in flight', () => {
  let platform: TestPlatform;
  let client: EchoStub;
  let session: ClientHttp2Session;
  const both = ['echo.read', 'echo.write'];

  before(async () => {
    platform = await startEchoPlatform({ limits: { maxCallsPerPrincipal: 2, maxReceiveMessageBytes: 64 * KiB, maxRequestBytesInFlight: 128 * KiB } });
    client = echoClient(platform.address, platform.clientCredentials);
    session = await connect(platform);
  });
  after(async () => {
    client.close();
    session.destroy();
    await platform.close();
  });

  const echoAs = (subject: string) => callEcho(client, { message: 'hi' }, bearer(platform.token(subject, both)));

  test("a principal's calls beyond limits.maxCallsPerPrincipal are RESOURCE_EXHAUSTED; other principals are not held up", async () => {
    const md: Metadata = bearer(platform.token('alice', both));
    const streams = [0, 1].map(() => (client as unknown as { count(r: object, m: Metadata): { cancel(): void; on(e: string, f: () => void): void } }).count({ message: 'long', count: 1000, delayMs: 50 }, md));
    for (const s of streams) s.on('error', () => undefined);
    try {
      assert.ok(await eventually(async () => (await echoAs('alice')).err?.code === status.RESOURCE_EXHAUSTED, 3000), 'a third call of alice is refused');
      const { err } = await echoAs('alice');
      assert.match(err!.details, /alice has too many calls open in this process \(limits\.maxCallsPerPrincipal\)/);
      assert.equal((await echoAs('bob')).err, undefined, 'bob is not alice');
    } finally {
      for (const s of streams) s.cancel();
    }
    assert.ok(await eventually(async () => (await echoAs('alice')).err === undefined, 3000), 'once her streams end, alice may call again');
  });

  test('calls the request budget cannot take are refused at once with a retry pushback, and admitted once it frees', async () => {
    const alice = { authorization: `Bearer ${platform.token('alice', both)}` };
    // Each reserves the 64 KiB its prefix declares until its request has arrived, which it never does.
    const withheld = [withheldEcho(session, alice, 64 * KiB, 10), withheldEcho(session, alice, 64 * KiB, 10)];
    try {
      assert.ok(await eventually(async () => (await echoAs('bob')).err?.code === status.RESOURCE_EXHAUSTED, 3000), 'bob is refused while the budget is spent');
      const { err } = await echoAs('bob');
      assert.match(err!.details, /limits\.maxRequestBytesInFlight/);
      assert.equal(err!.metadata.get('grpc-retry-pushback-ms')[0], '1000');
    } finally {
      for (const call of withheld) call.stream.close(http2.NGHTTP2_CANCEL);
    }
    assert.ok(await eventually(async () => (await echoAs('bob')).err === undefined, 3000), 'the budget frees when the withheld calls end');
  });
});

/** In a describe: an Echo platform that refuses a peer after 3 failed authentications in 60 s, with a client. */
function failureCountingPlatform(): { platform: () => TestPlatform; client: () => EchoStub } {
  let platform: TestPlatform;
  let client: EchoStub;
  before(async () => {
    platform = await startEchoPlatform({ auth: { maxFailuresPerPeer: 3, failureWindowSec: 60 } });
    client = echoClient(platform.address, platform.clientCredentials);
  });
  after(async () => {
    client.close();
    await platform.close();
  });
  return { platform: () => platform, client: () => client };
}

describe('failed authentications per peer', () => {
  const fixture = failureCountingPlatform();

  test('a peer past auth.maxFailuresPerPeer is refused before any token is verified, a valid one included', async () => {
    const [platform, client] = [fixture.platform(), fixture.client()];
    const expired = platform.token('mallory', ['echo.read'], { nowMs: Date.now() - 3600_000 });
    for (let i = 0; i < 3; i++) assert.equal((await callEcho(client, { message: 'x' }, bearer(expired))).err?.code, status.UNAUTHENTICATED);
    const { err } = await callEcho(client, { message: 'x' }, bearer(platform.token('alice', ['echo.read'])));
    assert.equal(err?.code, status.RESOURCE_EXHAUSTED, err?.details);
    assert.match(err!.details, /3 failed authentications from 127\.0\.0\.1 in 60 s \(auth\.maxFailuresPerPeer\)/);
    assert.ok(Number(err!.metadata.get('grpc-retry-pushback-ms')[0]) > 0, 'says when to retry');
  });
});

describe('failed authentications per peer, with a token already verified', () => {
  const fixture = failureCountingPlatform();

  test('a cached token answered at once is refused too once its peer is past auth.maxFailuresPerPeer', async () => {
    const [platform, client] = [fixture.platform(), fixture.client()];
    const alice = bearer(platform.token('alice', ['echo.read']));
    assert.equal((await callEcho(client, { message: 'x' }, alice)).err, undefined, 'verified and cached');
    const expired = platform.token('mallory', ['echo.read'], { nowMs: Date.now() - 3600_000 });
    for (let i = 0; i < 3; i++) assert.equal((await callEcho(client, { message: 'x' }, bearer(expired))).err?.code, status.UNAUTHENTICATED);
    const { err } = await callEcho(client, { message: 'x' }, alice);
    assert.equal(err?.code, status.RESOURCE_EXHAUSTED, err?.details);
    assert.match(err!.details, /3 failed authentications from 127\.0\.0\.1/);
  });
});

describe('ExactMessageDecoder', () => {
  const framed = (payload: Buffer) => Buffer.concat([messagePrefix(payload.length), payload]);

  test('a prefix split over chunks byte by byte, with a length above 2^24, reads its full length', () => {
    const decoder = new ExactMessageDecoder(1 << 30, (size) => {
      assert.equal(size, 0x01020304);
      return false;
    });
    const prefix = Buffer.from([0, 1, 2, 3, 4]);
    for (const byte of prefix) assert.deepEqual(decoder.write(Buffer.from([byte])), []);
  });

  test('splits messages across and within chunks as grpc-js does: each with its prefix, empty ones included', () => {
    const decoder = new ExactMessageDecoder(1024);
    const wire = Buffer.concat([framed(Buffer.from('hello')), framed(Buffer.alloc(0)), framed(Buffer.from('world!'))]);
    const out: Buffer[] = [];
    for (let at = 0; at < wire.length; at += 3) out.push(...decoder.write(wire.subarray(at, at + 3)));
    assert.deepEqual(out.map((m) => m.subarray(5).toString()), ['hello', '', 'world!']);
    assert.deepEqual(out[0], framed(Buffer.from('hello')));
    assert.deepEqual(decoder.write(wire).map((m) => m.length), [10, 5, 11], 'all three from one chunk');
  });

  test('a message is copied out of the chunks it came in, so it holds none of their memory', () => {
    const decoder = new ExactMessageDecoder(1024);
    const chunk = Buffer.concat([framed(Buffer.from('abc')), Buffer.alloc(64 * KiB)]);
    const [message] = decoder.write(chunk.subarray(0, 8));
    assert.notEqual(message!.buffer, chunk.buffer);
    assert.equal(message!.length, 8);
    assert.equal(message!.buffer.byteLength, 65, 'its own buffer, of the smallest size V8 keeps off its heap (so grpc-js\'s subarray need not move it)');
    const large = Buffer.concat([framed(Buffer.alloc(200)), Buffer.alloc(64 * KiB)]);
    const [second] = decoder.write(large.subarray(0, 205));
    assert.equal(second!.buffer.byteLength, 205, 'a larger message: its own buffer, of its own size');
  });

  test('a prefix declaring more than the limit throws with grpc-js\'s message, before any of the message is kept', () => {
    const decoder = new ExactMessageDecoder(1024);
    assert.throws(() => decoder.write(messagePrefix(1025)), /^Error: Received message larger than max \(1025 vs 1024\)$/);
  });
});
