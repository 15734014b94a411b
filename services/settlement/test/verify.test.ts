// The server's signature check (libsodium, domain/verify.ts) against the client library's signer and
// verifier (node:crypto): every honest signature verifies under both, and the signatures only
// libsodium refuses are the small-order ones RFC 8032 leaves open.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import fc from 'fast-check';
import { Status } from '@gantry/kit';
import { checkSignature } from '../src/api/validation.js';
import { canonicalMessage, generateWallet, signRequest, verifySignature as clientVerify, walletAddress, type SignedFields } from '../src/domain/signing.js';
import { verifySignature } from '../src/domain/verify.js';

const SESSION = '11111111-2222-4333-8444-555555555555';
const draw = (walletAddress: string, amountMinor = 5n): SignedFields => ({ operation: 'CreditDraw', walletAddress, sessionId: SESSION, amountMinor, reason: 'r' });

/** The identity point's encoding (y = 1): a public key of order 1. */
const IDENTITY = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]);
/** R = identity, S = 0: under the cofactorless equation [S]B = R + [k]A this holds for A = identity and any message. */
const IDENTITY_SIGNATURE = Buffer.concat([IDENTITY, Buffer.alloc(32)]);

describe('server signature check (libsodium)', () => {
  test('a signature verifies only for its own message and key', () => {
    const w = generateWallet();
    const fields = draw(w.address);
    const sig = signRequest(w, fields, 42n, 'nonce-123');
    assert.ok(verifySignature(sig.publicKey, canonicalMessage(fields, 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(sig.publicKey, canonicalMessage(draw(w.address, 6n), 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(sig.publicKey, canonicalMessage(fields, 43n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(generateWallet().publicKey, canonicalMessage(fields, 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(Buffer.alloc(32, 0xff), canonicalMessage(fields, 42n, 'nonce-123'), sig.signature), 'a non-point key is refused');
    assert.ok(!verifySignature(sig.publicKey.subarray(1), canonicalMessage(fields, 42n, 'nonce-123'), sig.signature), 'a short key is refused');
    assert.ok(!verifySignature(sig.publicKey, canonicalMessage(fields, 42n, 'nonce-123'), sig.signature.subarray(0, 63)), 'a short signature is refused');
  });

  test('agrees with the client library on signatures of random messages, flipped bits included', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(64 * 8 - 1), fc.boolean(), (message, bit, flip) => {
        const signature = sign(null, message, privateKey);
        if (flip) signature[bit >> 3]! ^= 1 << (bit & 7);
        assert.equal(verifySignature(raw, message, signature), !flip);
        assert.equal(clientVerify(raw, Buffer.from(message), signature), !flip);
      }),
      { numRuns: 300 },
    );
  });

  test('a small-order key cannot sign: node:crypto (OpenSSL) accepts the identity key for any message, the server does not', () => {
    const message = randomBytes(40);
    assert.equal(clientVerify(IDENTITY, message, IDENTITY_SIGNATURE), true, 'OpenSSL accepts it: the reason the server does not use it');
    assert.equal(verifySignature(IDENTITY, message, IDENTITY_SIGNATURE), false);
  });

  test('a draw "signed" by the identity key is refused before any database work (PERMISSION_DENIED)', () => {
    const fields = draw(walletAddress(IDENTITY));
    const now = 1_700_000_000_000;
    const sig = { publicKey: IDENTITY, signature: IDENTITY_SIGNATURE, timestampMs: BigInt(now), nonce: 'nonce-12345' };
    assert.throws(() => checkSignature(sig, fields, now), (err: { code?: number }) => err.code === Status.PERMISSION_DENIED);
  });
});
