// limits.maxConnectionAgeMs on the mTLS server, with real grpc-js clients and servers: a round_robin
// client that connected when only one replica existed finds the replicas added since once its
// connection ages out (the server's GOAWAY makes it re-resolve), calls in flight finish on the old
// connection, and streams run on past the age unless a finite grace cuts them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { experimental, status, type ClientReadableStream, type ClientUnaryCall, type Metadata, type ServiceError } from '@grpc/grpc-js';

type GrpcUri = experimental.GrpcUri;
import { devPkiPaths, peerChannelOptions } from '../src/index.js';
import type { EchoRequest, EchoResponse } from '@gantry/test-support/echo';
import { bearer, echoClient, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';

/** Connection age of the aging servers: short, so a test sees it pass a few times. */
const AGE_MS = 1500;

/**
 * A name resolver whose addresses the test sets (`gantry-test:///<name>` → ports on 127.0.0.1): what
 * DNS answers for a headless Service as pods come and go, without a DNS server.
 */
const addressBook = new Map<string, number[]>();
class AddressBookResolver implements experimental.Resolver {
  constructor(
    private readonly target: GrpcUri,
    private readonly listener: experimental.ResolverListener,
  ) {}
  updateResolution(): void {
    const endpoints = (addressBook.get(this.target.path) ?? []).map((port) => ({ addresses: [{ host: '127.0.0.1', port }] }));
    setImmediate(() => this.listener(experimental.statusOrFromValue(endpoints), {}, null, ''));
  }
  destroy(): void {}
  static getDefaultAuthority(target: GrpcUri): string {
    return target.path;
  }
}
experimental.registerResolver('gantry-test', AddressBookResolver);

/** One Echo call: the port of the server that answered it, or the error. */
function echoVia(client: EchoStub, md: Metadata, req: Partial<EchoRequest> = {}): Promise<{ port?: number; err?: ServiceError }> {
  return new Promise((resolve) => {
    const call: ClientUnaryCall = (client as unknown as { echo: (r: unknown, m: Metadata, o: unknown, cb: (e: ServiceError | null) => void) => ClientUnaryCall }).echo(
      { message: 'which', ...req }, md, { deadline: Date.now() + 10_000 }, (err) => resolve(err ? { err } : { port: Number(call.getPeer().split(':').pop()) }),
    );
  });
}

describe('maximum connection age', () => {
  let a: TestPlatform; // ages its connections, no grace limit (the default grace)
  let b: TestPlatform; // never ages its connections
  let c: TestPlatform; // ages them with a 500 ms grace
  let md: Metadata;

  before(async () => {
    a = await startEchoPlatform({ limits: { maxConnectionAgeMs: AGE_MS } });
    // Replicas of one service: the same CA, server certificate and JWT key.
    const pki = devPkiPaths(join(a.dataDir, 'pki'));
    const sameIdentity = { tls: { caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile }, auth: { jwksFile: join(a.dataDir, 'jwt', 'jwks.json') } };
    b = await startEchoPlatform({ ...sameIdentity, limits: { maxConnectionAgeMs: 0 } });
    c = await startEchoPlatform({ ...sameIdentity, limits: { maxConnectionAgeMs: AGE_MS, maxConnectionAgeGraceMs: 500 } });
    md = bearer(a.token('relay', ['echo.read', 'echo.write']));
  });
  after(async () => {
    for (const p of [a, b, c]) await p?.close();
  });

  test('a round_robin client that connected to A alone spreads over B, added to its address list later, once A ages its connection out; with no age it would stay', async () => {
    const [portA, portB] = [a.runtime.port, b.runtime.port];
    addressBook.set('scale-up', [portA]);
    addressBook.set('never-ages', [portB]);
    // The relays' channel options (round_robin), as a dns:/// peer address gets them.
    const scaled = echoClient('gantry-test:///scale-up', a.clientCredentials, peerChannelOptions('localhost'));
    const pinned = echoClient('gantry-test:///never-ages', a.clientCredentials, peerChannelOptions('localhost'));
    try {
      for (let i = 0; i < 3; i++) {
        assert.equal((await echoVia(scaled, md)).port, portA);
        assert.equal((await echoVia(pinned, md)).port, portB);
      }
      // The scale-up: each name now resolves to both replicas.
      addressBook.set('scale-up', [portA, portB]);
      addressBook.set('never-ages', [portB, portA]);

      const seen = { scaled: new Set<number>(), pinned: new Set<number>() };
      const errors: string[] = [];
      // Steady calls across A's GOAWAY (within AGE_MS ± 10% of connecting): none may fail.
      for (const until = Date.now() + 3 * AGE_MS; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
        for (const [client, into] of [[scaled, seen.scaled], [pinned, seen.pinned]] as const) {
          const { port, err } = await echoVia(client, md);
          if (err) errors.push(`${err.code} ${err.details}`);
          else into.add(port!);
        }
      }
      assert.deepEqual(errors, [], 'no call failed while A aged its connection out');
      assert.deepEqual([...seen.scaled].sort(), [portA, portB].sort(), 'after the age the client spreads over A and B');
      assert.deepEqual([...seen.pinned], [portB], 'B never ends its connection, so that client never learns of A');
    } finally {
      scaled.close();
      pinned.close();
    }
  });

  test('a call and a stream open at the GOAWAY finish on the old connection, the stream well past the age (no grace limit)', async () => {
    const client = echoClient(`127.0.0.1:${a.runtime.port}`, a.clientCredentials);
    try {
      assert.equal((await echoVia(client, md)).port, a.runtime.port);
      const messages = 10;
      const streamed = readStream(count(client, { message: 'tail', count: messages, delayMs: 300 }, md));
      // A unary call still running when the age passes, and calls after it, on a new connection.
      const slow = echoVia(client, md, { delayMs: AGE_MS * 1.2 });
      await new Promise((r) => setTimeout(r, AGE_MS * 1.3));
      assert.equal((await echoVia(client, md)).err, undefined, 'a new call after the GOAWAY goes over a new connection');
      assert.equal((await slow).err, undefined, 'the call in flight at the GOAWAY finished');
      const { received, err } = await streamed;
      assert.equal(err, undefined, `the stream was cut: ${err?.details}`);
      assert.equal(received, messages, `all ${messages} messages over ${messages * 300} ms, twice the age`);
    } finally {
      client.close();
    }
  });

  test('with a finite grace, a stream still open when the grace ends is cut with UNAVAILABLE', async () => {
    const client = echoClient(`127.0.0.1:${c.runtime.port}`, a.clientCredentials);
    try {
      const t0 = Date.now();
      const { received, err } = await readStream(count(client, { message: 'tail', count: 20, delayMs: 300 }, md));
      const elapsedMs = Date.now() - t0;
      assert.equal(err?.code, status.UNAVAILABLE, `cut with ${err?.code} ${err?.details}`);
      assert.ok(received > 0 && received < 20, `${received} messages before the cut`);
      assert.ok(elapsedMs >= AGE_MS * 0.9 + 500 - 100 && elapsedMs < AGE_MS * 1.1 + 500 + 1000, `cut after ${elapsedMs} ms: age ±10% plus the grace`);
    } finally {
      client.close();
    }
  });
});

/** Opens the Count server stream: `count` messages, one every `delayMs`. */
function count(client: EchoStub, req: Partial<EchoRequest>, md: Metadata): ClientReadableStream<EchoResponse> {
  return (client as unknown as { count: (r: unknown, m: Metadata) => ClientReadableStream<EchoResponse> }).count(req, md);
}

/** Reads a server stream to its end: how many messages came, and the error it ended with. */
function readStream<T>(call: ClientReadableStream<T>): Promise<{ received: number; err?: ServiceError }> {
  return new Promise((resolve) => {
    let received = 0;
    call.on('data', () => received++);
    call.on('error', (err: ServiceError) => resolve({ received, err }));
    call.on('end', () => resolve({ received }));
  });
}
