// Read and Tail messages encoded straight from a store page, in the bytes ts-proto would write for
// the same entries (tested byte for byte). Going through objects cost, per entry, a StoredEntry,
// three Buffer views, two BigInts, an Entry, a Date, a Timestamp and its BigInt, and the writer's
// forks, most of the server's CPU of a Read and a quarter of it in garbage collection; here an
// entry is its fields' bytes copied once into the message.
//
// Entry (log.proto): 1 partition, 2 seq (uint64), 3 timestamp {1 seconds, 2 nanos}, 4 data,
// 5 prev_hash, 6 hash, 7 author; ReadResponse and TailResponse: 1 repeated Entry. ts-proto leaves
// out fields with default values (seq 0, empty data, empty author, zero seconds or nanos).
import { logv1 } from '@gantry/proto';
import { HASH_BYTES } from '../domain/entry.js';
import { PAGE_ENTRY, authorLengthAt, hashAt, prevHashAt, seqAt } from '../store/entry-page.js';
import type { EntryPage } from '../store/log-store.js';

/** A Read or Tail response already encoded: the service definition below sends its bytes as they are. */
export class EncodedEntries {
  constructor(
    readonly bytes: Buffer,
    /** Entries in the message. */
    readonly count: number,
    /** The seq of its last entry. */
    readonly lastSeq: bigint,
  ) {}
}

/** LogService whose Read and Tail also send {@link EncodedEntries}. */
export const logServiceDefinition = {
  ...logv1.LogServiceService,
  read: { ...logv1.LogServiceService.read, responseSerialize: (m: logv1.ReadResponse | EncodedEntries): Buffer => (m instanceof EncodedEntries ? m.bytes : logv1.LogServiceService.read.responseSerialize(m)) },
  tail: { ...logv1.LogServiceService.tail, responseSerialize: (m: logv1.TailResponse | EncodedEntries): Buffer => (m instanceof EncodedEntries ? m.bytes : logv1.LogServiceService.tail.responseSerialize(m)) },
};

const TAG = { entries: 0x0a, partition: 0x0a, seq: 0x10, timestamp: 0x1a, data: 0x22, prevHash: 0x2a, hash: 0x32, author: 0x3a, seconds: 0x08, nanos: 0x10 } as const;

/**
 * The page's entries as messages of at most `maxEntries` entries and about `maxBytes` of payload
 * and author (a message holds at least one entry), in seq order.
 */
export function* encodedChunks(page: EntryPage, maxEntries: number, maxBytes: number): Generator<EncodedEntries> {
  const partition = Buffer.from(page.partition, 'utf8');
  const { offsets } = page;
  // Each entry's encoded size, from the pass that sizes a message to the one that writes it.
  const sizes: number[] = [];
  let first = 0;
  while (first < offsets.length) {
    let end = first;
    let payloadBytes = 0;
    let messageBytes = 0;
    while (end < offsets.length && end - first < maxEntries) {
      const f = readFields(page.bytes, offsets[end]!);
      const entryBytes = entrySize(f, partition.length);
      // What the chunk limit counts of an entry: its payload and author bytes.
      const payload = f.dataLength + f.authorLength;
      if (end > first && payloadBytes + payload > maxBytes) break;
      payloadBytes += payload;
      sizes[end - first] = entryBytes;
      messageBytes += 1 + varintSize(entryBytes) + entryBytes;
      end++;
    }
    const out = Buffer.allocUnsafe(messageBytes);
    let at = 0;
    for (let i = first; i < end; i++) at = writeEntry(out, at, page.bytes, offsets[i]!, partition, sizes[i - first]!);
    if (at !== messageBytes) throw new Error(`encoded ${at} bytes of a ${messageBytes}-byte message`);
    yield new EncodedEntries(out, end - first, seqAt(page.bytes, offsets[end - 1]!));
    first = end;
  }
}

/** The fields of one entry as they are encoded. */
interface EntryFields {
  seqLo: number;
  seqHi: number;
  seconds: number;
  nanos: number;
  dataLength: number;
  authorLength: number;
  timestampBytes: number;
}

const fields: EntryFields = { seqLo: 0, seqHi: 0, seconds: 0, nanos: 0, dataLength: 0, authorLength: 0, timestampBytes: 0 };

/** Reads one entry's fields into the shared `fields` (no allocation per entry). */
function readFields(page: Buffer, entryAt: number): EntryFields {
  fields.seqHi = page.readUInt32BE(entryAt + PAGE_ENTRY.seq);
  fields.seqLo = page.readUInt32BE(entryAt + PAGE_ENTRY.seq + 4);
  // Commit times in milliseconds are far below 2^53: exact as a number.
  const ms = page.readUInt32BE(entryAt + PAGE_ENTRY.timestampMs) * 2 ** 32 + page.readUInt32BE(entryAt + PAGE_ENTRY.timestampMs + 4);
  if (page.readInt32BE(entryAt + PAGE_ENTRY.timestampMs) < 0) throw new Error('an entry has a timestamp before 1970');
  fields.seconds = Math.trunc(ms / 1000);
  fields.nanos = (ms % 1000) * 1_000_000;
  fields.timestampBytes = (fields.seconds !== 0 ? 1 + varintSize(fields.seconds) : 0) + (fields.nanos !== 0 ? 1 + varintSize(fields.nanos) : 0);
  fields.dataLength = page.readInt32BE(entryAt + PAGE_ENTRY.dataLength);
  fields.authorLength = Math.max(0, page.readInt32BE(authorLengthAt(entryAt, fields.dataLength)));
  return fields;
}

/** The encoded size of one Entry message (without its tag and length in the response). */
function entrySize(f: EntryFields, partitionBytes: number): number {
  return (
    1 + varintSize(partitionBytes) + partitionBytes +
    (f.seqHi !== 0 || f.seqLo !== 0 ? 1 + varint64Size(f.seqLo, f.seqHi) : 0) +
    1 + varintSize(f.timestampBytes) + f.timestampBytes +
    (f.dataLength !== 0 ? 1 + varintSize(f.dataLength) + f.dataLength : 0) +
    2 * (2 + HASH_BYTES) +
    (f.authorLength !== 0 ? 1 + varintSize(f.authorLength) + f.authorLength : 0)
  );
}

/** Writes one entry, of encoded `size`, as a ReadResponse/TailResponse `entries` field; returns where the next starts. */
function writeEntry(out: Buffer, at: number, page: Buffer, entryAt: number, partition: Buffer, size: number): number {
  const f = readFields(page, entryAt);
  out[at++] = TAG.entries;
  at = writeVarint(out, at, size);
  out[at++] = TAG.partition;
  at = writeVarint(out, at, partition.length);
  at += partition.copy(out, at);
  if (f.seqHi !== 0 || f.seqLo !== 0) {
    out[at++] = TAG.seq;
    at = writeVarint64(out, at, f.seqLo, f.seqHi);
  }
  out[at++] = TAG.timestamp;
  at = writeVarint(out, at, f.timestampBytes);
  if (f.seconds !== 0) {
    out[at++] = TAG.seconds;
    at = writeVarint(out, at, f.seconds);
  }
  if (f.nanos !== 0) {
    out[at++] = TAG.nanos;
    at = writeVarint(out, at, f.nanos);
  }
  const dataAt = entryAt + PAGE_ENTRY.data;
  if (f.dataLength !== 0) {
    out[at++] = TAG.data;
    at = writeVarint(out, at, f.dataLength);
    at += page.copy(out, at, dataAt, dataAt + f.dataLength);
  }
  const prevHash = prevHashAt(entryAt, f.dataLength);
  out[at++] = TAG.prevHash;
  out[at++] = HASH_BYTES;
  at += page.copy(out, at, prevHash, prevHash + HASH_BYTES);
  const hash = hashAt(entryAt, f.dataLength);
  out[at++] = TAG.hash;
  out[at++] = HASH_BYTES;
  at += page.copy(out, at, hash, hash + HASH_BYTES);
  if (f.authorLength !== 0) {
    const authorAt = authorLengthAt(entryAt, f.dataLength) + 4;
    out[at++] = TAG.author;
    at = writeVarint(out, at, f.authorLength);
    at += page.copy(out, at, authorAt, authorAt + f.authorLength);
  }
  return at;
}

/** Bytes of a varint of a non-negative integer below 2^53. */
function varintSize(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}

/** Writes a non-negative integer below 2^53 as a varint. */
function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

/** Bytes of a varint of the unsigned 64-bit integer hi:lo. */
function varint64Size(lo: number, hi: number): number {
  let bytes = 1;
  while (hi !== 0 || lo > 0x7f) {
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
    bytes++;
  }
  return bytes;
}

/** Writes the unsigned 64-bit integer hi:lo as a varint (protobuf.js's writeVarint64). */
function writeVarint64(out: Buffer, at: number, lo: number, hi: number): number {
  while (hi !== 0 || lo > 0x7f) {
    out[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[at++] = lo;
  return at;
}
