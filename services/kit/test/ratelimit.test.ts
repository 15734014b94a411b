import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { loadConfig, MethodRateLimiter, openPostgres } from '../src/index.js';
import { bearer, callEcho, echoClient, postgresSkip, requirePostgresInCi, requireTestDatabaseUrl, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';
import type { EchoResponse } from '@gantry/test-support/echo';

const ECHO = '/gantry.test.v1.EchoService/Echo';
const DEFAULT_POINTS = 5;
const ECHO_POINTS = 3;

/** One client-streaming Collect call; resolves with the response or the error (never rejects). */
function callCollect(client: EchoStub, messages: string[], md: Metadata): Promise<{ res?: EchoResponse; err?: ServiceError }> {
  return new Promise((resolve) => {
    const collect = client.collect as (md: Metadata, opts: object, cb: (e: ServiceError | null, r?: EchoResponse) => void) => { write(m: object): void; end(): void };
    const call = collect.call(client, md, { deadline: Date.now() + 5000 }, (err, res) => resolve(err ? { err } : { res: res! }));
    for (const message of messages) call.write({ message });
    call.end();
  });
}

function assertExhausted(err: ServiceError | undefined): { pushbackMs: number; retryAfterSec: number } {
  assert.equal(err?.code, status.RESOURCE_EXHAUSTED, `expected RESOURCE_EXHAUSTED, got ${err ? status[err.code] : 'OK'}`);
  const pushback = err.metadata.get('grpc-retry-pushback-ms')[0];
  const retryAfter = err.metadata.get('retry-after')[0];
  assert.match(String(pushback), /^[1-9]\d*$/, 'grpc-retry-pushback-ms is a positive integer');
  assert.match(String(retryAfter), /^[1-9]\d*$/, 'retry-after is a positive integer (seconds)');
  return { pushbackMs: Number(pushback), retryAfterSec: Number(retryAfter) };
}

describe('the in-memory rate limiter', () => {
  test("answers at once (rate-limiter-flexible's memory storage still has the shape it calls) and enforces the limit per key", async () => {
    const limiter = new MethodRateLimiter(loadConfig({ env: {}, overrides: { rateLimit: { points: 2, windowSec: 60 } } }).rateLimit, { kind: 'memory' });
    assert.deepEqual(await limiter.consume(ECHO, 'a'), { allowed: true }, 'the first call makes the limiter');
    assert.equal(limiter.synchronous(ECHO), true, 'a grpc-js-style shape check: an upgrade that breaks it fails here');
    const second = limiter.consume(ECHO, 'a');
    assert.ok(!(second instanceof Promise), 'no promise once made');
    assert.deepEqual(second, { allowed: true });
    const third = limiter.consume(ECHO, 'a');
    assert.ok(!(third instanceof Promise) && !third.allowed && third.retryAfterMs > 0 && third.retryAfterMs <= 60_000, JSON.stringify(third));
    assert.deepEqual(limiter.consume(ECHO, 'b'), { allowed: true }, 'other keys keep their own points');
  });
});

describe('rate limits per principal and method', () => {
  let platform: TestPlatform;
  let client: EchoStub;

  before(async () => {
    platform = await startEchoPlatform({ rateLimit: { points: DEFAULT_POINTS, windowSec: 60, methods: { [ECHO]: { points: ECHO_POINTS, windowSec: 60 } } } });
    client = echoClient(platform.address, platform.clientCredentials);
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  test("principal A's 6th call in the window is RESOURCE_EXHAUSTED with retry trailers, while principal B's calls succeed", async () => {
    const a = bearer(platform.token('principal-a', ['echo.write']));
    const b = bearer(platform.token('principal-b', ['echo.write']));
    for (let i = 1; i <= DEFAULT_POINTS; i++) {
      const { err } = await callCollect(client, ['x'], a);
      assert.equal(err, undefined, `call ${i} of ${DEFAULT_POINTS} should be allowed`);
    }
    const { res, err } = await callCollect(client, ['x'], a);
    assert.equal(res, undefined);
    const { pushbackMs, retryAfterSec } = assertExhausted(err);
    assert.ok(pushbackMs <= 60_000, `pushback ${pushbackMs} ms is within the 60 s window`);
    assert.equal(retryAfterSec, Math.ceil(pushbackMs / 1000));
    assert.match(err!.details, /rate limit/);

    for (let i = 1; i <= DEFAULT_POINTS; i++) {
      const other = await callCollect(client, ['y'], b);
      assert.equal(other.err, undefined, `principal B's call ${i} should be allowed`);
      assert.equal(other.res?.principal, 'principal-b');
    }
  });

  test('a per-method override sets that method its own budget; other methods keep the default', async () => {
    const c = bearer(platform.token('principal-c', ['echo.read', 'echo.write']));
    for (let i = 1; i <= ECHO_POINTS; i++) assert.equal((await callEcho(client, { message: 'x' }, c)).err, undefined, `Echo call ${i} should be allowed`);
    assertExhausted((await callEcho(client, { message: 'x' }, c)).err);
    // Collect is counted separately, with the default budget.
    for (let i = 1; i <= DEFAULT_POINTS; i++) assert.equal((await callCollect(client, ['x'], c)).err, undefined, `Collect call ${i} should be allowed`);
    assertExhausted((await callCollect(client, ['x'], c)).err);
  });

  test('calls refused before the limiter (no token) do not spend the budget', async () => {
    const d = bearer(platform.token('principal-d', ['echo.read']));
    for (let i = 0; i < ECHO_POINTS + 2; i++) assert.equal((await callEcho(client, { message: 'x' }, bearer(undefined))).err?.code, status.UNAUTHENTICATED);
    for (let i = 1; i <= ECHO_POINTS; i++) assert.equal((await callEcho(client, { message: 'x' }, d)).err, undefined);
  });
});

requirePostgresInCi('the shared rate limit tests');

describe('rate limits shared through PostgreSQL', { skip: postgresSkip() }, () => {
  const pools: pg.Pool[] = [];
  const databases: Awaited<ReturnType<typeof openPostgres>>[] = [];
  const subject = `replica-test-${randomBytes(6).toString('hex')}`;

  after(async () => {
    if (pools[0]) await pools[0].query('DELETE FROM gantry_rate_limits WHERE key LIKE $1', [`%:${subject}`]).catch(() => {});
    await Promise.all(databases.map((d) => d.close()));
  });

  test('two replicas (two pools) share one budget per principal and method', async () => {
    const url = requireTestDatabaseUrl();
    const config = loadConfig({ env: {}, overrides: { rateLimit: { store: 'postgres', points: 4, windowSec: 60 } } }).rateLimit;
    // The pools the runtime hands the limiter: the database adapter's own (its column parsers must not reach the limiter's queries).
    for (let i = 0; i < 2; i++) databases.push(await openPostgres({ url, poolSize: 2, statementTimeoutMs: 30_000 }));
    pools.push(...databases.map((d) => d.pool));
    const replicas = pools.map((pool) => new MethodRateLimiter(config, { kind: 'postgres', pool, assertReachable: () => {} }));

    const verdicts = [];
    for (let i = 0; i < 4; i++) verdicts.push(await replicas[i % 2]!.consume(ECHO, subject));
    assert.ok(verdicts.every((v) => v.allowed), 'four calls spread over two replicas fit the budget of four');
    for (const replica of replicas) {
      const verdict = await replica.consume(ECHO, subject);
      assert.equal(verdict.allowed, false, 'the fifth call is refused on either replica');
      assert.ok(!verdict.allowed && verdict.retryAfterMs > 0 && verdict.retryAfterMs <= 60_000);
    }
    // Another principal on the same replicas is unaffected.
    assert.equal((await replicas[0]!.consume(ECHO, `${subject}-other`)).allowed, true);
    await pools[0]!.query('DELETE FROM gantry_rate_limits WHERE key LIKE $1', [`%:${subject}-other`]);
  });
});
