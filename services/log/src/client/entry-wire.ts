// Read and Tail responses decoded for the client library, to the same logv1.Entry objects the
// generated decoder builds (tested against it, field by field, on canonical and fuzzed input).
// The generated one copies each entry's three bytes fields into new Buffers, turns its Timestamp
// into a BigInt and a string before the Date, and decodes strings through TextDecoder: about
// 1.7-2.2 µs per entry, most of a Read's client CPU. Here the bytes fields are views of the
// received message and the rest is read in place.
//
// Only the encoding a Gantry server writes is decoded here (api/entry-wire.ts, or ts-proto's):
// one-byte tags of the known fields, varints up to 7 bytes. Anything else, from an unknown field
// to a negative timestamp or a truncated message, goes to the generated decoder, which either
// reads it the same way protobuf says or throws.
//
// Entry (log.proto): 1 partition, 2 seq (uint64), 3 timestamp {1 seconds, 2 nanos}, 4 data,
// 5 prev_hash, 6 hash, 7 author; ReadResponse and TailResponse: 1 repeated Entry.
import { logv1 } from '@gantry/proto';

const TAG = { entries: 0x0a, partition: 0x0a, seq: 0x10, timestamp: 0x1a, data: 0x22, prevHash: 0x2a, hash: 0x32, author: 0x3a, seconds: 0x08, nanos: 0x10 } as const;

/** Varints of up to 7 bytes (49 bits) are exact as numbers; longer ones take the generated path. */
const MAX_VARINT_BYTES = 7;
const NOT_HANDLED = -1;
const INT32_MAX = 0x7fffffff;

/** Where the last {@link varint} ended. */
let after = 0;

/** The varint at `at` as a number (and its end in `after`), or NOT_HANDLED past `end` or 7 bytes. */
function varint(buf: Buffer, at: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_VARINT_BYTES && at < end; i++) {
    const b = buf[at++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      after = at;
      return value;
    }
    scale *= 128;
  }
  return NOT_HANDLED;
}

/** The end of a length-delimited field whose length varint starts at `at` (its data from `after`), or NOT_HANDLED. */
function delimited(buf: Buffer, at: number, end: number): number {
  const length = varint(buf, at, end);
  if (length === NOT_HANDLED || after + length > end) return NOT_HANDLED;
  return after + length;
}

/** The Date of a Timestamp in [start, end), as the generated fromTimestamp computes it, or undefined. */
function timestampAt(buf: Buffer, start: number, end: number): Date | undefined {
  let seconds = 0;
  let nanos = 0;
  let at = start;
  while (at < end) {
    const tag = buf[at]!;
    const value = varint(buf, at + 1, end);
    if (value === NOT_HANDLED) return undefined;
    if (tag === TAG.seconds) seconds = value;
    else if (tag === TAG.nanos && value <= INT32_MAX) nanos = value;
    else return undefined;
    at = after;
  }
  return new Date(seconds * 1_000 + nanos / 1_000_000);
}

const EMPTY = Buffer.alloc(0);

/** The entry in [start, end), or undefined when its encoding is not one handled here. */
function entryAt(buf: Buffer, start: number, end: number): logv1.Entry | undefined {
  const entry: logv1.Entry = { partition: '', seq: 0n, timestamp: undefined, data: EMPTY, prevHash: EMPTY, hash: EMPTY, author: '' };
  let at = start;
  while (at < end) {
    const tag = buf[at]!;
    if (tag === TAG.seq) {
      const seq = varint(buf, at + 1, end);
      if (seq === NOT_HANDLED) return undefined;
      entry.seq = BigInt(seq);
      at = after;
      continue;
    }
    const fieldEnd = delimited(buf, at + 1, end);
    if (fieldEnd === NOT_HANDLED) return undefined;
    switch (tag) {
      case TAG.partition:
        entry.partition = buf.toString('utf8', after, fieldEnd);
        break;
      case TAG.timestamp: {
        const timestamp = timestampAt(buf, after, fieldEnd);
        if (timestamp === undefined) return undefined;
        entry.timestamp = timestamp;
        break;
      }
      case TAG.data:
        entry.data = buf.subarray(after, fieldEnd);
        break;
      case TAG.prevHash:
        entry.prevHash = buf.subarray(after, fieldEnd);
        break;
      case TAG.hash:
        entry.hash = buf.subarray(after, fieldEnd);
        break;
      case TAG.author:
        entry.author = buf.toString('utf8', after, fieldEnd);
        break;
      default:
        return undefined;
    }
    at = fieldEnd;
  }
  return entry;
}

/** The entries of a ReadResponse or TailResponse, or undefined when the message needs the generated decoder. */
function entriesOf(buf: Buffer): logv1.Entry[] | undefined {
  const entries: logv1.Entry[] = [];
  let at = 0;
  while (at < buf.length) {
    if (buf[at] !== TAG.entries) return undefined;
    const end = delimited(buf, at + 1, buf.length);
    if (end === NOT_HANDLED) return undefined;
    const entry = entryAt(buf, after, end);
    if (entry === undefined) return undefined;
    entries.push(entry);
    at = end;
  }
  return entries;
}

/**
 * A ReadResponse as the generated decoder reads it, except that each entry's `data`, `prevHash`
 * and `hash` are views of `message`: copy one (`Buffer.from`) to keep it past the message.
 */
export function decodeReadResponse(message: Buffer): logv1.ReadResponse {
  const entries = entriesOf(message);
  return entries === undefined ? logv1.ReadResponse.decode(message) : { entries };
}

/** The same for a TailResponse. */
export function decodeTailResponse(message: Buffer): logv1.TailResponse {
  const entries = entriesOf(message);
  return entries === undefined ? logv1.TailResponse.decode(message) : { entries };
}
