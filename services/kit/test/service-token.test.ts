// The tokens a service presents to its peers (the outbox relay): minted with the dev key in
// embedded mode and verified by the same verifier the servers use, or read from a file that an
// issuer rotates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devTokenSource, ensureDevSigningKey, fileTokenSource, JwksFileSource, TokenVerifier } from '../src/index.js';

const AUTH = { issuer: 'gantry-dev', audience: 'gantry', clockToleranceSec: 30, maxTokenAgeSec: 86_400 };

test('a dev service token is accepted by the servers\' verifier with the relay scopes, and is re-minted before it expires', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-token-'));
  try {
    const key = await ensureDevSigningKey(dir);
    const clock = { nowMs: Date.now() };
    const source = devTokenSource({ key: key.privateKey, kid: key.kid, issuer: AUTH.issuer, audience: AUTH.audience, subject: 'service:settlement', scopes: ['log.append', 'webhooks.publish'], ttlSec: 600, now: () => clock.nowMs });
    const verifier = new TokenVerifier(new JwksFileSource(key.jwksFile), AUTH, () => clock.nowMs);
    const first = source.token();
    const principal = await verifier.verify(first);
    assert.equal(principal.subject, 'service:settlement');
    assert.deepEqual([...principal.scopes].sort(), ['log.append', 'webhooks.publish']);
    clock.nowMs += 60_000;
    assert.equal(source.token(), first, 'reused while most of its life is left');
    clock.nowMs += 400_000;
    const second = source.token();
    assert.notEqual(second, first, 'a new token once less than a third of the lifetime is left');
    assert.equal((await verifier.verify(second)).subject, 'service:settlement');
    verifier.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a token file is re-read when it changes (rotation), and a missing or empty file is an error that names it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-token-'));
  try {
    const path = join(dir, 'token');
    const clock = { nowMs: 1_000_000 };
    const source = fileTokenSource(path, () => clock.nowMs);
    assert.throws(() => source.token(), new RegExp(`${path} does not exist.*GANTRY_PEERS_TOKEN_FILE`));
    writeFileSync(path, 'first.jwt\n');
    assert.equal(source.token(), 'first.jwt');
    writeFileSync(path, 'second.jwt');
    utimesSync(path, new Date(), new Date(Date.now() + 5_000));
    assert.equal(source.token(), 'first.jwt', 'checked at most every 10 s');
    clock.nowMs += 10_001;
    assert.equal(source.token(), 'second.jwt');
    writeFileSync(path, '  ');
    utimesSync(path, new Date(), new Date(Date.now() + 10_000));
    clock.nowMs += 10_001;
    assert.throws(() => source.token(), /is empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
