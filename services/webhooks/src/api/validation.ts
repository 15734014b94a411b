// Request checks for the webhooks API: field shapes (INVALID_ARGUMENT) before anything is read or
// written. The address check of a URL (api/handlers.ts) comes after these.
import { checkText, invalidArgument, pageTokenCodec } from '@gantry/kit';
import type { webhooksv1 } from '@gantry/proto';
import { LIMITS } from '../domain/limits.js';
import { secretKeyBytes } from '../domain/signature.js';
import { SPEC_FIELDS, type Spec, type SpecField } from '../domain/webhook.js';

const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** Headers the service sets itself (Standard Webhooks, framing) or that are hop-by-hop. */
const RESERVED_HEADERS = new Set([
  'webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'content-length', 'host', 'user-agent',
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const EVENT_TYPE = /^[A-Za-z0-9._-]+$/;
/**
 * An event id is the `webhook-id` header, which Standard Webhooks signs as
 * `<webhook-id>.<webhook-timestamp>.<body>`: a '.' in it would make that string ambiguous, so ids
 * keep to letters, digits, '_', ':' and '-' (UUIDs, ULIDs, `evt_<hex>` all fit).
 */
const EVENT_ID = /^[A-Za-z0-9_:-]+$/;

export function checkId(field: string, id: string, max: number = LIMITS.maxIdChars): string {
  if (id.length === 0) throw invalidArgument(field, 'is required');
  return checkText(field, id, max);
}

export { checkText };

/** An absolute http(s) URL without credentials, up to 2,048 characters. */
export function checkUrl(field: string, url: string): URL {
  if (url.length === 0) throw invalidArgument(field, 'is required');
  if (url.length > LIMITS.maxUrlChars) throw invalidArgument(field, `is ${url.length} characters; the maximum is ${LIMITS.maxUrlChars}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidArgument(field, `${quote(url)} is not an absolute URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw invalidArgument(field, `must be http or https, not ${parsed.protocol.slice(0, -1)}`);
  if (parsed.username || parsed.password) throw invalidArgument(field, 'must not carry credentials (user:password@); send them in spec.headers');
  return parsed;
}

/** An event id: 1 to 256 characters that fit a `webhook-id` header. */
export function checkEventId(field: string, id: string): string {
  checkId(field, id, LIMITS.maxEventIdChars);
  if (!EVENT_ID.test(id)) throw invalidArgument(field, `${quote(id)} may hold only letters, digits, '_', ':' and '-': it becomes the webhook-id header, which receivers split on '.'`);
  return id;
}

export function checkEventType(field: string, t: string, allowStar: boolean): string {
  if (allowStar && t === '*') return t;
  if (t.length === 0 || t.length > LIMITS.maxEventTypeChars) throw invalidArgument(field, `must be 1 to ${LIMITS.maxEventTypeChars} characters`);
  if (!EVENT_TYPE.test(t)) throw invalidArgument(field, `${quote(t)} may hold only letters, digits, '.', '_' and '-'`);
  return t;
}

function checkMap(field: string, m: Record<string, string>, maxEntries: number, maxKey: number, maxValue: number): Record<string, string> {
  const entries = Object.entries(m);
  if (entries.length > maxEntries) throw invalidArgument(field, `has ${entries.length} entries; the maximum is ${maxEntries}`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > maxKey) throw invalidArgument(field, `key ${quote(k)} must be 1 to ${maxKey} characters`);
    if (v.length > maxValue) throw invalidArgument(`${field}[${k}]`, `is ${v.length} characters; the maximum is ${maxValue}`);
  }
  return m;
}

/** A whole spec as given (every field checked; the URL's addresses are checked separately). */
export function checkSpec(spec: webhooksv1.WebhookSpec | undefined): Spec {
  if (!spec) throw invalidArgument('spec', 'is required');
  checkUrl('spec.url', spec.url);
  if (spec.eventTypes.length < LIMITS.minEventTypes) throw invalidArgument('spec.event_types', 'must name at least one event type ("*" for every type)');
  if (spec.eventTypes.length > LIMITS.maxEventTypes) throw invalidArgument('spec.event_types', `names ${spec.eventTypes.length} types; the maximum is ${LIMITS.maxEventTypes}`);
  const eventTypes = [...new Set(spec.eventTypes.map((t, i) => checkEventType(`spec.event_types[${i}]`, t, true)))];
  checkMap('spec.headers', spec.headers, LIMITS.maxHeaders, LIMITS.maxHeaderNameChars, LIMITS.maxHeaderValueChars);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.headers)) {
    const name = k.toLowerCase();
    if (!HEADER_NAME.test(k)) throw invalidArgument('spec.headers', `${quote(k)} is not a valid header name`);
    if (RESERVED_HEADERS.has(name) || name.startsWith('webhook-')) throw invalidArgument('spec.headers', `${quote(k)} is reserved: the service sets it (Standard Webhooks and framing headers), or it is hop-by-hop`);
    if (!HEADER_VALUE.test(v)) throw invalidArgument(`spec.headers[${k}]`, 'must not contain control characters (CR, LF, NUL)');
    if (name in headers) throw invalidArgument('spec.headers', `${quote(k)} appears twice (header names are case-insensitive)`);
    headers[name] = v;
  }
  if (spec.rateLimitPerSecond > LIMITS.maxRateLimitPerSecond) throw invalidArgument('spec.rate_limit_per_second', `is ${spec.rateLimitPerSecond}; the maximum is ${LIMITS.maxRateLimitPerSecond} (0 = service default)`);
  if (spec.maxConcurrency > LIMITS.maxMaxConcurrency) throw invalidArgument('spec.max_concurrency', `is ${spec.maxConcurrency}; the maximum is ${LIMITS.maxMaxConcurrency} (0 = service default)`);
  return {
    url: spec.url,
    eventTypes,
    headers,
    description: checkText('spec.description', spec.description, LIMITS.maxDescriptionChars),
    paused: spec.paused,
    rateLimitPerSecond: spec.rateLimitPerSecond,
    maxConcurrency: spec.maxConcurrency,
    labels: checkMap('spec.labels', spec.labels, LIMITS.maxLabels, LIMITS.maxLabelKeyChars, LIMITS.maxLabelValueChars),
  };
}

/** The fields an update mask names (snake_case or camelCase); every field when empty. */
export function checkMask(paths: string[] | undefined): SpecField[] {
  if (!paths || paths.length === 0) return [...SPEC_FIELDS];
  return [...new Set(paths.map((p) => {
    const snake = p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (!(SPEC_FIELDS as readonly string[]).includes(snake)) throw invalidArgument('update_mask', `${quote(p)} is not a WebhookSpec field; use ${SPEC_FIELDS.join(', ')}`);
    return snake as SpecField;
  }))];
}

/** A caller-chosen secret, or '' for a generated one. */
export function checkSecret(field: string, secret: string): string {
  if (secret === '') return '';
  if (!secretKeyBytes(secret)) throw invalidArgument(field, 'must be "whsec_" followed by the base64 of 24 to 64 random bytes');
  return secret;
}

export function checkPayload(field: string, payload: Buffer): Buffer {
  if (payload.length > LIMITS.maxPayloadBytes) throw invalidArgument(field, `is ${payload.length} bytes; the maximum is ${LIMITS.maxPayloadBytes} (256 KiB)`);
  return payload;
}

export function checkPageSize(pageSize: number): number {
  if (pageSize < 0 || pageSize > LIMITS.maxPageSize) throw invalidArgument('page_size', `must be between 0 and ${LIMITS.maxPageSize} (0 = ${LIMITS.defaultPageSize})`);
  return pageSize === 0 ? LIMITS.defaultPageSize : pageSize;
}

/** Page tokens: a listing position (a webhook's created_version, a delivery's seq) tied to the filters of the first page. */
export const pageTokens = pageTokenCodec({ position: 'seq' });
