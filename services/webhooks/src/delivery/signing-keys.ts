// The signing keys of endpoints, decrypted once and kept briefly. Every attempt signs with its
// endpoint's secret, which the claim reads sealed; opening it (AES-256-GCM) and decoding it took
// about as long as the HMAC itself, for the same few endpoints over and over. A key is kept for
// `ttlMs` at most and only while the sealed secret it came from is the one the claim read: a
// rotation stores a new ciphertext, which misses and is opened. At most `maxEntries` are kept; the
// oldest goes first.
import type { SealedSecret, SecretBox } from '../domain/secret-box.js';
import { secretKeyBytes } from '../domain/signature.js';

interface Entry {
  keyId: string;
  ciphertext: Buffer;
  /** The secret's key bytes; undefined when the stored secret is not a valid `whsec_` one. */
  key: Buffer | undefined;
  expiresAtMs: number;
}

export class SigningKeys {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly box: SecretBox,
    private readonly limits: { ttlMs: number; maxEntries: number },
    /** A monotonic clock in ms (the TTL is not a schedule: a moved test clock need not move it). */
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** The key bytes of `sealed`, opened with `aad`; `slot` tells an endpoint's current secret from its previous one. */
  keyOf(sealed: SealedSecret, aad: string, slot: 'current' | 'previous'): Buffer | undefined {
    const name = `${slot} ${aad}`;
    const now = this.nowMs();
    const hit = this.entries.get(name);
    if (hit && hit.expiresAtMs > now && hit.keyId === sealed.keyId && hit.ciphertext.equals(sealed.ciphertext)) return hit.key;
    const key = secretKeyBytes(this.box.open(sealed, aad));
    this.entries.delete(name);
    if (this.entries.size >= this.limits.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(name, { keyId: sealed.keyId, ciphertext: Buffer.from(sealed.ciphertext), key, expiresAtMs: now + this.limits.ttlMs });
    return key;
  }
}
