// The dispatcher's cache of opened signing keys (delivery/signing-keys.ts): it must never sign with
// a key other than the one the claim read sealed, and it stays bounded.
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SigningKeys } from '../src/delivery/signing-keys.js';
import { SecretBox } from '../src/domain/secret-box.js';
import { generateSecret, secretKeyBytes } from '../src/domain/signature.js';

/** A SecretBox that counts how often it opens a secret. */
function countingBox(): { box: SecretBox; opened: () => number } {
  const box = new SecretBox(new Map([['k1', randomBytes(32)]]));
  let opened = 0;
  const open = box.open.bind(box);
  box.open = (sealed, aad) => (opened++, open(sealed, aad));
  return { box, opened: () => opened };
}

describe('the signing key cache', () => {
  test('an endpoint\'s key is opened once while its sealed secret is unchanged; a rotated secret, the other slot, another webhook or an expired entry is opened again, and each gives its own key', () => {
    const { box, opened } = countingBox();
    let nowMs = 0;
    const keys = new SigningKeys(box, { ttlMs: 1000, maxEntries: 10 }, () => nowMs);
    const secret = generateSecret();
    const sealed = box.seal(secret, 'wh_1');
    assert.deepEqual(keys.keyOf(sealed, 'wh_1', 'current'), secretKeyBytes(secret));
    assert.deepEqual(keys.keyOf({ keyId: sealed.keyId, ciphertext: Buffer.from(sealed.ciphertext) }, 'wh_1', 'current'), secretKeyBytes(secret));
    assert.equal(opened(), 1);

    const rotated = generateSecret();
    assert.deepEqual(keys.keyOf(box.seal(rotated, 'wh_1'), 'wh_1', 'current'), secretKeyBytes(rotated));
    assert.deepEqual(keys.keyOf(sealed, 'wh_1', 'previous'), secretKeyBytes(secret));
    assert.equal(opened(), 3);
    // The same ciphertext under another webhook's additional data does not decrypt: nothing cached is reused for it.
    assert.throws(() => keys.keyOf(sealed, 'wh_2', 'previous'));

    nowMs = 1000;
    assert.deepEqual(keys.keyOf(sealed, 'wh_1', 'previous'), secretKeyBytes(secret));
    assert.equal(opened(), 5);
  });

  test('at most maxEntries keys are kept, the oldest dropped first', () => {
    const { box, opened } = countingBox();
    const keys = new SigningKeys(box, { ttlMs: 60_000, maxEntries: 2 });
    const sealed = [1, 2, 3].map((i) => box.seal(generateSecret(), `wh_${i}`));
    sealed.forEach((s, i) => keys.keyOf(s, `wh_${i + 1}`, 'current'));
    assert.equal(opened(), 3);
    keys.keyOf(sealed[2]!, 'wh_3', 'current');
    keys.keyOf(sealed[1]!, 'wh_2', 'current');
    assert.equal(opened(), 3);
    keys.keyOf(sealed[0]!, 'wh_1', 'current');
    assert.equal(opened(), 4);
  });
});
