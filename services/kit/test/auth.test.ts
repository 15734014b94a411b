import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import jwt from 'jsonwebtoken';
import { FailedAuthLimiter, JwksFileSource, JwksUrlSource, MAX_TOKEN_CHARS, mintToken, TokenVerifier } from '../src/index.js';
import { bearer, callEcho, checkHealth, echoClient, startEchoPlatform, type EchoStub, type TestPlatform } from '@gantry/test-support/harness';

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('bearer tokens on RPCs', () => {
  let platform: TestPlatform;
  let client: EchoStub;
  let jwksText: string;
  let kid: string;

  before(async () => {
    platform = await startEchoPlatform();
    client = echoClient(platform.address, platform.clientCredentials);
    jwksText = readFileSync(join(platform.dataDir, 'jwt', 'jwks.json'), 'utf8');
    kid = (JSON.parse(jwksText) as { keys: { kid: string }[] }).keys[0]!.kid;
  });
  after(async () => {
    client.close();
    await platform.close();
  });

  const echo = (token: string | undefined) => callEcho(client, { message: 'hi' }, bearer(token));

  /** Asserts the call was refused with `code`; returns the details for further checks. */
  async function refused(token: string | undefined, code: status): Promise<string> {
    const { res, err } = await echo(token);
    assert.equal(res, undefined, 'the call should have been refused');
    assert.equal(err?.code, code, `expected ${status[code]}, got ${err ? status[err.code] : 'OK'}: ${err?.details}`);
    return err.details;
  }

  test('a valid token with the scope is accepted and its subject is the principal', async () => {
    const { res, err } = await echo(platform.token('alice', ['echo.read']));
    assert.equal(err, undefined);
    assert.equal(res?.principal, 'alice');
  });

  test('a call without a token is UNAUTHENTICATED', async () => {
    assert.match(await refused(undefined, status.UNAUTHENTICATED), /missing bearer token/);
  });

  test('an authorization header that is not a bearer token is UNAUTHENTICATED', async () => {
    const md = bearer(undefined);
    md.set('authorization', `Basic ${Buffer.from('alice:secret').toString('base64')}`);
    const { err } = await callEcho(client, { message: 'hi' }, md);
    assert.equal(err?.code, status.UNAUTHENTICATED);
  });

  test('an expired token is UNAUTHENTICATED', async () => {
    const token = platform.token('alice', ['echo.read'], { ttlSec: 300, nowMs: Date.now() - 3600_000 });
    assert.match(await refused(token, status.UNAUTHENTICATED), /expired/);
  });

  test('a token for another audience is UNAUTHENTICATED', async () => {
    assert.match(await refused(platform.token('alice', ['echo.read'], { audience: 'someone-else' }), status.UNAUTHENTICATED), /audience/);
  });

  test('a token from another issuer is UNAUTHENTICATED', async () => {
    assert.match(await refused(platform.token('alice', ['echo.read'], { issuer: 'evil-issuer' }), status.UNAUTHENTICATED), /issuer/);
  });

  test('an unsigned alg=none token is UNAUTHENTICATED', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: 'mallory', scope: 'echo.read', iat: now, exp: now + 300, iss: 'gantry-dev', aud: 'gantry' };
    for (const alg of ['none', 'None', 'NONE']) {
      const token = `${b64url({ alg, typ: 'JWT', kid })}.${b64url(claims)}.`;
      assert.match(await refused(token, status.UNAUTHENTICATED), /algorithm/);
    }
  });

  test("an HS256 token keyed with the server's public key (algorithm confusion) is UNAUTHENTICATED", async () => {
    const publicKey = createPublicKey({ key: (JSON.parse(jwksText) as { keys: JsonWebKey[] }).keys[0]!, format: 'jwk' });
    const secrets = [publicKey.export({ type: 'spki', format: 'pem' }) as string, jwksText];
    for (const secret of secrets) {
      const now = Math.floor(Date.now() / 1000);
      const token = jwt.sign({ sub: 'mallory', scope: 'echo.read', iat: now, exp: now + 300, iss: 'gantry-dev', aud: 'gantry' }, secret, { algorithm: 'HS256', keyid: kid });
      assert.match(await refused(token, status.UNAUTHENTICATED), /algorithm HS256/);
    }
  });

  test('a token signed by a key outside the JWKS is UNAUTHENTICATED, even reusing a known kid', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forged = mintToken({ subject: 'mallory', scopes: ['echo.read'], issuer: 'gantry-dev', audience: 'gantry', ttlSec: 300, key: privateKey, kid });
    assert.match(await refused(forged, status.UNAUTHENTICATED), /signature/);
    const unknownKid = mintToken({ subject: 'mallory', scopes: ['echo.read'], issuer: 'gantry-dev', audience: 'gantry', ttlSec: 300, key: privateKey, kid: 'not-a-key' });
    assert.match(await refused(unknownKid, status.UNAUTHENTICATED), /unknown signing key/);
  });

  test('a token lacking the scope is PERMISSION_DENIED naming the scope', async () => {
    const details = await refused(platform.token('bob', ['echo.write']), status.PERMISSION_DENIED);
    assert.match(details, /echo\.read/);
    assert.match(details, /bob/);
  });

  test('health Check needs no token', async () => {
    const { status: serving, err } = await checkHealth(platform.address, platform.clientCredentials);
    assert.equal(err, undefined);
    assert.equal(serving, 'SERVING');
  });
});

describe('FailedAuthLimiter', () => {
  test('a host is surely allowed until it fails, not within the window after, and again once the window has passed', async () => {
    const clock = { nowMs: Date.UTC(2030, 0, 1) };
    const limiter = new FailedAuthLimiter({ maxFailuresPerPeer: 3, failureWindowSec: 60 }, () => clock.nowMs);
    assert.equal(limiter.surelyAllowed('10.0.0.1:5000'), true);
    await limiter.recordFailure('10.0.0.1');
    assert.equal(limiter.surelyAllowed('10.0.0.1:5001'), false, 'any port of the failing host');
    assert.equal(limiter.surelyAllowed('10.0.0.2:5000'), true, 'other hosts');
    clock.nowMs += 59_999;
    assert.equal(limiter.surelyAllowed('10.0.0.1:5000'), false);
    clock.nowMs += 1;
    assert.equal(limiter.surelyAllowed('10.0.0.1:5000'), true);
  });
});

describe('TokenVerifier', () => {
  const ISSUER = 'test-issuer';
  const AUDIENCE = 'test-audience';
  const T0_MS = Date.UTC(2030, 0, 1);
  let dir: string;
  let jwksFile: string;

  function newKey(): { privateKey: KeyObject; jwk: object; kid: string } {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = `k-${Math.random().toString(36).slice(2, 10)}`;
    return { privateKey, kid, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } };
  }

  /** A verifier whose clock reads `clock.nowMs`, with a 30 s skew tolerance. */
  function verifierAt(clock: { nowMs: number }): TokenVerifier {
    return new TokenVerifier(new JwksFileSource(jwksFile), { issuer: ISSUER, audience: AUDIENCE, clockToleranceSec: 30, maxTokenAgeSec: 3600 }, () => clock.nowMs);
  }

  function sign(key: { privateKey: KeyObject; kid: string }, claims: Record<string, unknown>): string {
    return jwt.sign({ sub: 'svc', scope: 'a b', iss: ISSUER, aud: AUDIENCE, ...claims }, key.privateKey, { algorithm: 'ES256', keyid: key.kid });
  }

  const sec = (ms: number) => Math.floor(ms / 1000);
  let key: ReturnType<typeof newKey>;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-jwks-'));
    jwksFile = join(dir, 'jwks.json');
    key = newKey();
    writeFileSync(jwksFile, JSON.stringify({ keys: [key.jwk] }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a token whose nbf is beyond the skew tolerance is refused, and accepted once that time comes', async () => {
    const clock = { nowMs: T0_MS };
    const verifier = verifierAt(clock);
    const token = sign(key, { iat: sec(T0_MS), nbf: sec(T0_MS) + 120, exp: sec(T0_MS) + 600 });
    await assert.rejects(verifier.verify(token), /not active/);
    clock.nowMs = T0_MS + 120_000;
    const principal = await verifier.verify(token);
    assert.equal(principal.subject, 'svc');
    assert.deepEqual([...principal.scopes], ['a', 'b']);
  });

  test('clock skew within the tolerance is accepted, beyond it refused', async () => {
    const clock = { nowMs: T0_MS };
    // Issued by a clock 20 s ahead of ours: nbf in our future, but within the 30 s tolerance.
    const ahead = sign(key, { iat: sec(T0_MS) + 20, nbf: sec(T0_MS) + 20, exp: sec(T0_MS) + 320 });
    assert.equal((await verifierAt(clock).verify(ahead)).subject, 'svc');

    // Expired 20 s ago by our clock: still inside the tolerance.
    const justExpired = sign(key, { iat: sec(T0_MS) - 300, exp: sec(T0_MS) - 20 });
    assert.equal((await verifierAt(clock).verify(justExpired)).subject, 'svc');

    // Expired 40 s ago: outside it.
    const expired = sign(key, { iat: sec(T0_MS) - 300, exp: sec(T0_MS) - 40 });
    await assert.rejects(verifierAt(clock).verify(expired), /expired/);
  });

  test('a cached verification does not outlive the token', async () => {
    const clock = { nowMs: T0_MS };
    const verifier = verifierAt(clock);
    const token = sign(key, { iat: sec(T0_MS), exp: sec(T0_MS) + 10 });
    const principal = await verifier.verify(token);
    assert.equal(verifier.cached(token), principal, 'answered from the cache while valid');
    assert.equal(verifier.cached(`${token}x`), undefined, 'only the exact token verified is cached');
    clock.nowMs = T0_MS + 41_000;
    assert.equal(verifier.cached(token), undefined, 'the cache honours exp (with the tolerance)');
    await assert.rejects(verifier.verify(token), /expired/);
  });

  test('a token older than maxTokenAgeSec is refused even when unexpired', async () => {
    const clock = { nowMs: T0_MS };
    const token = sign(key, { iat: sec(T0_MS) - 7200, exp: sec(T0_MS) + 3600 });
    await assert.rejects(verifierAt(clock).verify(token), /maxAge/);
  });

  test('a token whose iat lies in the future beyond the tolerance is refused, so it cannot outlive maxTokenAgeSec', async () => {
    const clock = { nowMs: T0_MS };
    // Claims to be issued a day from now and lives two: without the iat check the 1 h maximum age
    // would be counted from tomorrow, and the token would be good for a day and an hour.
    const future = sign(key, { iat: sec(T0_MS) + 86_400, exp: sec(T0_MS) + 2 * 86_400 });
    await assert.rejects(verifierAt(clock).verify(future), /iat .* is in the future/);
    // Within the tolerance (an issuer's clock 20 s ahead) it is accepted.
    const ahead = sign(key, { iat: sec(T0_MS) + 20, exp: sec(T0_MS) + 600 });
    assert.equal((await verifierAt(clock).verify(ahead)).subject, 'svc');
  });

  test('a token without iat is refused (its age cannot be known)', async () => {
    const clock = { nowMs: T0_MS };
    const token = jwt.sign({ sub: 'svc', iss: ISSUER, aud: AUDIENCE, exp: sec(T0_MS) + 600 }, key.privateKey, { algorithm: 'ES256', keyid: key.kid, noTimestamp: true });
    await assert.rejects(verifierAt(clock).verify(token), /iat/);
  });

  test('a token longer than MAX_TOKEN_CHARS is refused without being parsed', async () => {
    const clock = { nowMs: T0_MS };
    const padded = sign(key, { iat: sec(T0_MS), exp: sec(T0_MS) + 600, pad: 'x'.repeat(MAX_TOKEN_CHARS) });
    await assert.rejects(verifierAt(clock).verify(padded), new RegExp(`the maximum is ${MAX_TOKEN_CHARS}`));
  });

  test('a JWKS URL over plain http is refused', () => {
    assert.throws(() => new JwksUrlSource('http://idp.example.com/jwks.json'), /not https/);
    assert.doesNotThrow(() => new JwksUrlSource('https://idp.example.com/jwks.json'));
  });

  test('a JWKS file rewritten with a new key is picked up, and the removed key stops working', async () => {
    const clock = { nowMs: T0_MS };
    const verifier = verifierAt(clock);
    const oldToken = sign(key, { iat: sec(T0_MS), exp: sec(T0_MS) + 3600 });
    assert.equal((await verifier.verify(oldToken)).subject, 'svc');

    const rotated = newKey();
    writeFileSync(jwksFile, JSON.stringify({ keys: [rotated.jwk] }));
    const newToken = sign(rotated, { sub: 'rotated', iat: sec(T0_MS), exp: sec(T0_MS) + 3600 });
    assert.equal((await verifier.verify(newToken)).subject, 'rotated');

    // Verified tokens are cached for a minute; after that the old key's absence shows.
    clock.nowMs = T0_MS + 61_000;
    await assert.rejects(verifier.verify(oldToken), /unknown signing key/);
    key = rotated;
  });
});
