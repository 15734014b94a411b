// What the webhooks store's modules share: the NOTIFY channels its statements send on, and the
// decoding of column values, which arrive in whichever form the engine's driver chose (a bigint
// as a string or a number, a timestamp as a Date or a string, jsonb as an object or text).

/** NOTIFY channels: registry changes, and deliveries queued (dispatchers look again). Payloads are hints. */
export const REGISTRY_CHANNEL = 'webhooks_registry';
export const QUEUED_CHANNEL = 'webhooks_queued';
/** Payload: lines of `<delivery_id> <attempt_number or 0>`: an attempt completed or a delivery changed state. */
export const DELIVERY_CHANNEL = 'webhooks_deliveries';

export type Row = Record<string, unknown>;
export const big = (v: unknown): bigint => BigInt(v as string | number | bigint);
export const date = (v: unknown): Date => (v instanceof Date ? v : new Date(v as string));
export const optDate = (v: unknown): Date | null => (v === null || v === undefined ? null : date(v));
export const json = <T>(v: unknown): T => (typeof v === 'string' ? JSON.parse(v) : v) as T;

/**
 * The first row of a statement that returns at least one whatever it matches: a one-row table (the
 * registry head) LEFT JOINed to a page that may be empty. None is a broken invariant, as in the
 * kit's one(), which fits statements of exactly one row.
 */
export function first<R>(rows: readonly R[], what: string): R {
  if (rows.length === 0) throw new Error(`invariant: expected at least one row of ${what}, got 0`);
  return rows[0]!;
}
