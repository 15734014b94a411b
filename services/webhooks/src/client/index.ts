// Receiver-side verification of Standard Webhooks deliveries (what a Gantry webhook endpoint runs).
// Not built on the `standardwebhooks` package: its verify reads Date.now() with a fixed 5-minute
// tolerance and turns a Buffer body into a UTF-8 string first; this one takes the raw bytes, a
// tolerance and a clock. Signatures from that package verify here (test/signature.test.ts).
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Default timestamp tolerance, as the Standard Webhooks libraries use. */
export const DEFAULT_TOLERANCE_SEC = 5 * 60;
/** Signatures one header may carry that are looked at; the rest are ignored. */
const MAX_SIGNATURES = 16;

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
}

export interface VerifyOptions {
  /** Largest difference between webhook-timestamp and now, in seconds (default 300). */
  toleranceSec?: number;
  /** The clock in ms since the epoch (default Date.now). */
  now?: () => number;
}

export interface VerifiedWebhook {
  /** webhook-id: the event id, the same across retries; use it to drop duplicates. */
  id: string;
  timestamp: Date;
}

type Headers = Record<string, string | string[] | undefined> | { get(name: string): string | null };

function header(headers: Headers, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const h = headers as Record<string, string | string[] | undefined>;
  const v = h[name] ?? Object.entries(h).find(([k]) => k.toLowerCase() === name)?.[1];
  return Array.isArray(v) ? v.join(' ') : v;
}

/** The key bytes of a `whsec_` secret (or of a bare base64 secret). */
function keyOf(secret: string): Buffer {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  if (key.length === 0) throw new WebhookVerificationError('the secret is empty');
  return key;
}

/**
 * Checks a delivery's Standard Webhooks headers against its raw body and one or more secrets
 * (constant-time comparison, any of several `v1,` signatures, timestamp within tolerance);
 * returns its id and timestamp, or throws WebhookVerificationError.
 */
export function verifyWebhook(headers: Headers, body: Buffer | string, secret: string | readonly string[], opts: VerifyOptions = {}): VerifiedWebhook {
  const id = header(headers, 'webhook-id');
  const ts = header(headers, 'webhook-timestamp');
  const sigs = header(headers, 'webhook-signature');
  if (!id || !ts || !sigs) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header');
  if (!/^\d{1,12}$/.test(ts)) throw new WebhookVerificationError('webhook-timestamp is not a number of seconds');
  const tolerance = opts.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
  const nowSec = Math.floor((opts.now ?? Date.now)() / 1000);
  const timestampSec = Number(ts);
  if (nowSec - timestampSec > tolerance) throw new WebhookVerificationError('webhook-timestamp is too old (replayed, or the clocks disagree)');
  if (timestampSec - nowSec > tolerance) throw new WebhookVerificationError('webhook-timestamp is too far in the future');
  const raw = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const expected = (Array.isArray(secret) ? secret : [secret as string]).map((s) =>
    createHmac('sha256', keyOf(s)).update(`${id}.${timestampSec}.`).update(raw).digest(),
  );
  const given = sigs.split(' ').slice(0, MAX_SIGNATURES);
  let ok = false;
  for (const s of given) {
    const comma = s.indexOf(',');
    if (comma < 0 || s.slice(0, comma) !== 'v1') continue;
    const mac = Buffer.from(s.slice(comma + 1), 'base64');
    // Every candidate is compared (no early exit), each in constant time.
    for (const e of expected) if (mac.length === e.length && timingSafeEqual(mac, e)) ok = true;
  }
  if (!ok) throw new WebhookVerificationError('no signature matches: wrong secret, or the body or headers were altered');
  return { id, timestamp: new Date(timestampSec * 1000) };
}
