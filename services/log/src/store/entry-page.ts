// The layout of a page of entries as the store's page query packs them (READ_PAGE_SQL in
// log-store.ts), one place for the two readers of it: the store's (entries as objects) and the API's
// (Read and Tail messages encoded straight from the page, api/entry-wire.ts).
//
// Per entry, integers big-endian: seq (int8), ts_ms (int8), data length (int4), data, prev_hash
// and hash (HASH_BYTES each), author length (int4, -1 for NULL), author (UTF-8).
import { HASH_BYTES } from '../domain/entry.js';

/** Byte offsets within one entry of a page, from its start. */
export const PAGE_ENTRY = { seq: 0, timestampMs: 8, dataLength: 16, data: 20 } as const;

/** The seq of the entry at `entryAt`. */
export const seqAt = (page: Buffer, entryAt: number): bigint => page.readBigInt64BE(entryAt + PAGE_ENTRY.seq);

/** Where the entry's prev_hash starts, given its data length. */
export const prevHashAt = (entryAt: number, dataLength: number) => entryAt + PAGE_ENTRY.data + dataLength;
/** Where the entry's author length starts, given its data length; the author follows it. */
export const authorLengthAt = (entryAt: number, dataLength: number) => prevHashAt(entryAt, dataLength) + 2 * HASH_BYTES;

/**
 * Where each entry of `page` starts, in seq order. string_agg follows its input's order, which
 * PostgreSQL keeps without promising it: a page out of seq order is sorted here. Throws when the
 * page does not end on an entry's end.
 */
export function entryOffsets(partition: string, page: Buffer): number[] {
  const offsets: number[] = [];
  let ordered = true;
  let at = 0;
  while (at + PAGE_ENTRY.data <= page.length) {
    if (offsets.length > 0 && compareSeqs(page, at, offsets[offsets.length - 1]!) <= 0) ordered = false;
    offsets.push(at);
    const authorAt = authorLengthAt(at, page.readInt32BE(at + PAGE_ENTRY.dataLength));
    if (authorAt + 4 > page.length) break;
    at = authorAt + 4 + Math.max(0, page.readInt32BE(authorAt));
  }
  if (at !== page.length) throw new Error(`a page of partition ${partition} ends mid-entry (${at} of ${page.length} bytes)`);
  if (!ordered) offsets.sort((a, b) => compareSeqs(page, a, b));
  return offsets;
}

/** Orders two entries of a page by seq, without a BigInt per entry (seqs are never negative). */
function compareSeqs(page: Buffer, a: number, b: number): number {
  return page.readUInt32BE(a) - page.readUInt32BE(b) || page.readUInt32BE(a + 4) - page.readUInt32BE(b + 4);
}
