// Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
// `${webhook-id}.${webhook-timestamp}.${body}` with the secret's decoded bytes, sent as
// `v1,<base64>`; several space-separated signatures while a rotated secret overlaps.
//
// Signed over the body's raw bytes: the `standardwebhooks` package turns a Buffer body into a
// UTF-8 string first, which changes any body that is not valid UTF-8 (payloads are bytes here).
// Its signatures are the test oracle (test/signature.test.ts), with the spec's reference vector.
import { createHmac, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
/** Secret sizes the contract allows (bytes before base64), and the size generated. */
export const SECRET_MIN_BYTES = 24;
export const SECRET_MAX_BYTES = 64;
export const SECRET_GENERATED_BYTES = 32;

/** The secret's key bytes, or undefined when it is not `whsec_` + base64 of 24-64 bytes. */
export function secretKeyBytes(secret: string): Buffer | undefined {
  if (!secret.startsWith(SECRET_PREFIX)) return undefined;
  const b64 = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return undefined;
  const key = Buffer.from(b64, 'base64');
  if (key.length < SECRET_MIN_BYTES || key.length > SECRET_MAX_BYTES) return undefined;
  return key;
}

/** A new random `whsec_` secret. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_GENERATED_BYTES).toString('base64');
}

/** One `v1,<base64>` signature of a message. */
export function sign(key: Buffer, msgId: string, timestampSec: number, body: Buffer): string {
  const mac = createHmac('sha256', key).update(`${msgId}.${timestampSec}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** The Standard Webhooks headers of one attempt, signed with every key given (current first). */
export function signatureHeaders(keys: Buffer[], msgId: string, timestampSec: number, body: Buffer): Record<string, string> {
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(timestampSec),
    'webhook-signature': keys.map((k) => sign(k, msgId, timestampSec, body)).join(' '),
  };
}
