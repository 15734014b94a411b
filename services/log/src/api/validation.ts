import { invalidArgument, textPageTokenCodec } from '@gantry/kit';
import { PARTITION_NAME_PATTERN } from '../domain/entry.js';

/** Limits of the log's API; each is part of the contract (log.proto). */
export const LIMITS = {
  maxBatchEntries: 1000,
  maxBatchBytes: 4 * 1024 * 1024,
  /** One Read/Tail message: at most this many entries... */
  maxChunkEntries: 1000,
  /** ...or about this many payload bytes. */
  maxChunkBytes: 1024 * 1024,
  maxTailLast: 10_000,
  defaultPageSize: 100,
  maxPageSize: 1000,
  /** A follower re-reads at least this often even without a notification (e.g. while LISTEN reconnects). */
  followPollMs: 1000,
  /** Seqs are PostgreSQL bigints: anything above can never exist. */
  maxSeq: 2n ** 63n - 1n,
  /** Entries Verify reads per query. */
  verifyChunkEntries: 5000,
  maxIdempotencyKeyChars: 128,
} as const;

/** Printable ASCII without the space, so a key survives logs, headers and shells unchanged. */
const IDEMPOTENCY_KEY_PATTERN = new RegExp(`^[\\x21-\\x7e]{1,${LIMITS.maxIdempotencyKeyChars}}$`);

export function checkPartition(name: string): string {
  if (!PARTITION_NAME_PATTERN.test(name)) {
    throw invalidArgument('partition', `must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-' (got ${JSON.stringify(name.slice(0, 140))})`);
  }
  return name;
}

export function checkPayload(field: string, data: Buffer, maxPayloadBytes: number): Buffer {
  if (data.length === 0) throw invalidArgument(field, 'must not be empty');
  if (data.length > maxPayloadBytes) throw invalidArgument(field, `is ${data.length} bytes; the maximum is ${maxPayloadBytes}`);
  return data;
}

export function checkBatch(payloads: Buffer[], maxPayloadBytes: number): Buffer[] {
  if (payloads.length === 0) throw invalidArgument('data', 'must hold at least one payload');
  if (payloads.length > LIMITS.maxBatchEntries) throw invalidArgument('data', `holds ${payloads.length} payloads; the maximum is ${LIMITS.maxBatchEntries}`);
  payloads.forEach((p, i) => checkPayload(`data[${i}]`, p, maxPayloadBytes));
  const total = payloads.reduce((n, p) => n + p.length, 0);
  if (total > LIMITS.maxBatchBytes) throw invalidArgument('data', `totals ${total} bytes; the maximum per batch is ${LIMITS.maxBatchBytes}`);
  return payloads;
}

export function checkIdempotencyKey(field: string, key: string): string {
  if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
    throw invalidArgument(field, `must be 1 to ${LIMITS.maxIdempotencyKeyChars} printable ASCII characters without spaces (got ${JSON.stringify(key.slice(0, 140))})`);
  }
  return key;
}

/** A batch's keys: none, or one valid key per payload with no key twice. */
export function checkIdempotencyKeys(keys: string[], payloadCount: number): string[] {
  if (keys.length === 0) return keys;
  if (keys.length !== payloadCount) {
    throw invalidArgument('idempotency_keys', `holds ${keys.length} keys for ${payloadCount} payloads; send none, or one per payload in the same order`);
  }
  const firstIndex = new Map<string, number>();
  keys.forEach((key, i) => {
    checkIdempotencyKey(`idempotency_keys[${i}]`, key);
    const first = firstIndex.get(key);
    if (first !== undefined) throw invalidArgument(`idempotency_keys[${i}]`, `repeats idempotency_keys[${first}] (${JSON.stringify(key)}); each payload needs its own key`);
    firstIndex.set(key, i);
  });
  return keys;
}

/** ListPartitions page tokens: the base64url of the last name returned, opaque to clients. */
export const partitionPageTokens = textPageTokenCodec(PARTITION_NAME_PATTERN);

export function checkPageSize(pageSize: number): number {
  if (pageSize < 0 || pageSize > LIMITS.maxPageSize) throw invalidArgument('page_size', `must be between 0 and ${LIMITS.maxPageSize} (0 = ${LIMITS.defaultPageSize})`);
  return pageSize === 0 ? LIMITS.defaultPageSize : pageSize;
}
