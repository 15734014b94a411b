// Endpoint secrets at rest: AES-256-GCM under a key from config, with the key id stored beside the
// ciphertext so keys rotate (the first key encrypts, every key decrypts). The additional data binds
// a ciphertext to its webhook and slot: a ciphertext copied to another row does not decrypt.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

export interface SealedSecret {
  keyId: string;
  ciphertext: Buffer;
}

/** Parses `<id>=<base64>` entries (comma- or newline-separated); throws saying what is wrong. */
export function parseKeyring(text: string, origin: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const entry of text.split(/[,\n]/).map((e) => e.trim()).filter((e) => e !== '' && !e.startsWith('#'))) {
    const m = /^([A-Za-z0-9._-]{1,64})=([A-Za-z0-9+/]+={0,2})$/.exec(entry);
    if (!m) throw new Error(`${origin}: each entry must be <keyId>=<base64 of ${KEY_BYTES} bytes>`);
    const key = Buffer.from(m[2]!, 'base64');
    if (key.length !== KEY_BYTES) throw new Error(`${origin}: key ${m[1]} is ${key.length} bytes; AES-256 needs ${KEY_BYTES}`);
    if (keys.has(m[1]!)) throw new Error(`${origin}: key id ${m[1]} appears twice`);
    keys.set(m[1]!, key);
  }
  if (keys.size === 0) throw new Error(`${origin}: no keys`);
  return keys;
}

export class SecretBox {
  private readonly primaryId: string;

  constructor(private readonly keys: Map<string, Buffer>) {
    this.primaryId = keys.keys().next().value!;
  }

  seal(plaintext: string, aad: string): SealedSecret {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.primaryId)!, nonce);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: this.primaryId, ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
  }

  open(sealed: SealedSecret, aad: string): string {
    const key = this.keys.get(sealed.keyId);
    if (!key) throw new Error(`webhook secret encrypted with key ${sealed.keyId}, which is not configured (webhooks.secretKeys); add it back to decrypt`);
    const c = sealed.ciphertext;
    const decipher = createDecipheriv('aes-256-gcm', key, c.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(c.subarray(c.length - TAG_BYTES));
    return Buffer.concat([decipher.update(c.subarray(NONCE_BYTES, c.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  }
}
