// The layout of a page of entries as the store's page query returns them (READ_PAGE_SQL in
// log-store.ts, through Database.copyRows), one place for the two readers of it: the store's
// (entries as objects) and the API's (Read and Tail messages encoded straight from the page,
// api/entry-wire.ts).
//
// Per entry, one binary COPY tuple of the query's six columns: a 16-bit field count, then per
// field a 32-bit length (-1 for NULL) and the value, integers big-endian: seq (int8), ts_ms (int8),
// data, prev_hash and hash (bytea; HASH_BYTES each), author (text as UTF-8, NULL when unrecorded).
import { HASH_BYTES } from '../domain/entry.js';

/** The tuple's field count, and the sizes of its fixed-size values. */
const FIELDS = 6;
const INT8_BYTES = 8;
const LENGTH_BYTES = 4;

/** Byte offsets within one entry of a page, from its start: each value follows its length. */
export const PAGE_ENTRY = { fieldCount: 0, seqLength: 2, seq: 6, timestampMsLength: 14, timestampMs: 18, dataLength: 26, data: 30 } as const;

/** The seq of the entry at `entryAt`. */
export const seqAt = (page: Buffer, entryAt: number): bigint => page.readBigInt64BE(entryAt + PAGE_ENTRY.seq);

/** Where the entry's prev_hash starts, given its data length; its hash follows it, after its own length. */
export const prevHashAt = (entryAt: number, dataLength: number) => entryAt + PAGE_ENTRY.data + dataLength + LENGTH_BYTES;
/** Where the entry's hash starts, given its data length. */
export const hashAt = (entryAt: number, dataLength: number) => prevHashAt(entryAt, dataLength) + HASH_BYTES + LENGTH_BYTES;
/** Where the entry's author length starts (-1 for none), given its data length; the author follows it. */
export const authorLengthAt = (entryAt: number, dataLength: number) => hashAt(entryAt, dataLength) + HASH_BYTES;

/**
 * Where each entry of `page` starts, in seq order, after checking each tuple's layout. The query
 * orders its rows by seq; a page out of seq order all the same is sorted here. Throws when a
 * tuple is not one of an entry, or the page does not end on an entry's end.
 */
export function entryOffsets(partition: string, page: Buffer): number[] {
  const offsets: number[] = [];
  let ordered = true;
  let at = 0;
  const malformed = (what: string) => new Error(`a page of partition ${partition} has ${what} at byte ${at} of ${page.length}`);
  while (at < page.length) {
    if (at + PAGE_ENTRY.data > page.length) throw malformed('an entry cut short');
    if (page.readInt16BE(at + PAGE_ENTRY.fieldCount) !== FIELDS) throw malformed(`a row of ${page.readInt16BE(at)} columns, not ${FIELDS}`);
    if (page.readInt32BE(at + PAGE_ENTRY.seqLength) !== INT8_BYTES || page.readInt32BE(at + PAGE_ENTRY.timestampMsLength) !== INT8_BYTES) throw malformed('a seq or timestamp that is not an int8');
    const dataLength = page.readInt32BE(at + PAGE_ENTRY.dataLength);
    const authorAt = authorLengthAt(at, dataLength);
    if (dataLength < 0 || authorAt + LENGTH_BYTES > page.length) throw malformed('an entry cut short');
    const prevHash = prevHashAt(at, dataLength);
    if (page.readInt32BE(prevHash - LENGTH_BYTES) !== HASH_BYTES || page.readInt32BE(hashAt(at, dataLength) - LENGTH_BYTES) !== HASH_BYTES) throw malformed(`a hash that is not ${HASH_BYTES} bytes`);
    if (offsets.length > 0 && compareSeqs(page, at, offsets[offsets.length - 1]!) <= 0) ordered = false;
    offsets.push(at);
    const next = authorAt + LENGTH_BYTES + Math.max(0, page.readInt32BE(authorAt));
    if (next > page.length) throw malformed('an entry cut short');
    at = next;
  }
  if (!ordered) offsets.sort((a, b) => compareSeqs(page, a, b));
  return offsets;
}

/** Orders two entries of a page by seq, without a BigInt per entry (seqs are never negative). */
function compareSeqs(page: Buffer, a: number, b: number): number {
  return page.readUInt32BE(a + PAGE_ENTRY.seq) - page.readUInt32BE(b + PAGE_ENTRY.seq) || page.readUInt32BE(a + PAGE_ENTRY.seq + 4) - page.readUInt32BE(b + PAGE_ENTRY.seq + 4);
}
