// `gantry dev-key import`: a given ES256 key becomes the dev key the process trusts, laid out as
// the kit lays out its own (the chart's dev-key init container runs it in every pod).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TokenVerifier, ensureDevSigningKey, mintToken } from '@gantry/kit';
import { parseDevSigningKey, writeDevSigningKey } from '../src/commands/dev-key.js';

const scratch = mkdtempSync(join(tmpdir(), 'gantry-dev-key-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(scratch, String(++dirs), 'jwt');

/** The PEM the chart's `genPrivateKey "ecdsa"` makes: SEC1 "EC PRIVATE KEY", P-256. */
const p256Pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'sec1' }) as string;

describe('gantry dev-key import', () => {
  test('an imported key is the one ensureDevSigningKey then uses: same kid, and a token minted with it verifies', async () => {
    const dir = freshDir();
    const key = parseDevSigningKey(p256Pem(), 'signing-key.pem');
    const imported = await writeDevSigningKey(dir, key);
    const loaded = await ensureDevSigningKey(dir);
    assert.equal(loaded.kid, imported.kid, 'the kit keeps the imported key rather than making its own');
    assert.ok(loaded.privateKey.equals(key));
    assert.equal(statSync(imported.keyFile).mode & 0o777, 0o600);
    const jwks = JSON.parse(readFileSync(imported.jwksFile, 'utf8')) as { keys: Record<string, string>[] };
    assert.deepEqual(Object.keys(jwks.keys[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'], 'the public half only: no d');
    const token = mintToken({ subject: 'service:settlement', scopes: ['log.append'], issuer: 'gantry', audience: 'gantry', ttlSec: 60, key: loaded.privateKey, kid: loaded.kid });
    const verifier = TokenVerifier.fromConfig({ issuer: 'gantry', audience: 'gantry', clockToleranceSec: 30, maxTokenAgeSec: 86400 } as never, loaded.jwksFile);
    assert.equal((await verifier.verify(token)).subject, 'service:settlement');
  });

  test('importing into a data dir that already holds a dev key replaces it (the monolith keeps its data dir on a PVC)', async () => {
    const dir = freshDir();
    const first = await writeDevSigningKey(dir, parseDevSigningKey(p256Pem(), 'first'));
    const second = await writeDevSigningKey(dir, parseDevSigningKey(p256Pem(), 'second'));
    assert.notEqual(second.kid, first.kid);
    assert.equal((await ensureDevSigningKey(dir)).kid, second.kid);
  });

  test('a key that is not an EC P-256 private key is refused, naming the file and the key it needs', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cases: [string, string, RegExp][] = [
      ['rsa.pem', rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, /rsa.pem holds a key of type rsa; .* must be EC P-256/],
      ['p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, /p384.pem holds a key of type EC secp384r1/],
      ['ed25519.pem', generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, /ed25519.pem holds a key of type ed25519/],
      ['public.pem', rsa.publicKey.export({ format: 'pem', type: 'spki' }) as string, /public.pem is not a PEM private key/],
      ['garbage.pem', 'not a key', /garbage.pem is not a PEM private key .*dev-jwt Secret/],
    ];
    for (const [origin, pem, message] of cases) assert.throws(() => parseDevSigningKey(pem, origin), message, origin);
  });
});
