// Log entries: the canonical encoding, the chain hash, the Merkle leaf hash, and a streaming
// chain checker. Pure: no I/O, only node:crypto.
//
// The canonical encoding is the byte string every hash of an entry is taken over; clients
// recompute it independently, so a layout never changes in place: a new layout is a new domain
// separator, and each entry is hashed in the layout it was appended with. Two layouts exist:
//
// Version 2, every entry appended since authors are recorded (its author is non-empty):
//
//   offset    size  field
//   0         20    "gantry.log.v2.entry\0"  ASCII domain separator (19 characters + one 0x00 byte)
//   20        2     P = byte length of the partition name, u16 big-endian
//   22        P     partition name, UTF-8
//   22+P      8     seq, u64 big-endian
//   30+P      8     timestamp in milliseconds since the Unix epoch (UTC), i64 big-endian
//   38+P      2     A = byte length of the author, u16 big-endian (1 to 1024 in practice)
//   40+P      A     author, UTF-8: the appender's subject (a token's sub, or a workload's SPIFFE ID)
//   40+P+A    4     D = byte length of data, u32 big-endian
//   44+P+A    D     data
//   44+P+A+D  32    prev_hash: the hash of entry seq - 1, or 32 zero bytes for seq 0
//
// Version 1, entries appended before authors were recorded (no author; still verified as such):
//
//   0         20    "gantry.log.v1.entry\0"
//   20        2     P, then the partition name
//   22+P      8     seq
//   30+P      8     timestamp ms
//   38+P      4     D, then the data
//   42+P+D    32    prev_hash
//
// Every variable-length field is length-prefixed and the fixed-size fields sit at positions the
// prefixes determine, and the two versions differ in their first bytes, so two different entries
// can never encode to the same bytes. An entry without an author is version 1, one with an author
// version 2: dropping or changing the author changes every hash of the entry.
//
//   entry.hash = SHA-256(encoding)            the hash chain (entry.prev_hash links to it)
//   leaf hash  = SHA-256(0x00 || encoding)    RFC 6962 leaf of the partition's Merkle tree at seq
import { createHash, hash } from 'node:crypto';

/** Size in bytes of every hash in the log (SHA-256). */
export const HASH_BYTES = 32;

/** The prev_hash of seq 0: 32 zero bytes. */
export const ZERO_HASH: Buffer = Buffer.alloc(HASH_BYTES);

/** Partition names the contract allows: 1-128 characters of [A-Za-z0-9._-]. */
export const PARTITION_NAME_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** The domain separator that starts the version 1 encoding (entries without an author). */
export const ENTRY_DOMAIN_SEPARATOR: Buffer = Buffer.from('gantry.log.v1.entry\0', 'ascii');

/** The domain separator that starts the version 2 encoding (entries with an author). */
export const ENTRY_V2_DOMAIN_SEPARATOR: Buffer = Buffer.from('gantry.log.v2.entry\0', 'ascii');

// Field limits of the encoding itself (the service's own limits are far lower).
const MAX_U16 = 0xffff;
const MAX_U32 = 0xffff_ffff;
const MAX_U64 = (1n << 64n) - 1n;
const MIN_I64 = -(1n << 63n);
const MAX_I64 = (1n << 63n) - 1n;

/** The fields an entry's hashes cover. */
export interface EntryFields {
  partition: string;
  seq: bigint;
  timestampMs: bigint;
  data: Uint8Array;
  prevHash: Uint8Array;
  /**
   * Who appended it: the authenticated caller's subject, as the log server saw it. Undefined or
   * empty for entries appended before authors were recorded, which are encoded as version 1.
   */
  author?: string | undefined;
}

/** An entry as stored: its fields plus the chain hash the store recorded for it. */
export interface StoredEntry extends EntryFields {
  hash: Uint8Array;
}

/** True when `name` is a partition name the contract allows. */
export function isValidPartitionName(name: string): boolean {
  return PARTITION_NAME_PATTERN.test(name);
}

/** The layout an entry is hashed in: 2 when it has an author, 1 (the layout before authors) when not. */
export function entryEncodingVersion(e: Pick<EntryFields, 'author'>): 1 | 2 {
  return e.author === undefined || e.author === '' ? 1 : 2;
}

/**
 * The encoding split into its pieces, so hashing can feed them to SHA-256 one by one instead of
 * copying a (possibly 1 MiB) payload into a fresh buffer for every entry.
 */
/**
 * UTF-8 bytes of the last few strings encoded: every entry of a batch repeats its partition and
 * usually its author. The buffers are only read (copied into the encoding), never handed out.
 */
const recentUtf8 = new Map<string, Buffer>();
const RECENT_UTF8_MAX = 64;
/** Longer strings are encoded each time (a partition is at most 128 characters, an author 1,024 bytes). */
const RECENT_UTF8_MAX_CHARS = 1024;

function utf8(text: string): Buffer {
  if (text.length > RECENT_UTF8_MAX_CHARS) return Buffer.from(text, 'utf8');
  let bytes = recentUtf8.get(text);
  if (bytes) return bytes;
  bytes = Buffer.from(text, 'utf8');
  if (recentUtf8.size >= RECENT_UTF8_MAX) recentUtf8.clear();
  recentUtf8.set(text, bytes);
  return bytes;
}

function canonicalEntryParts(e: EntryFields): Uint8Array[] {
  if (e.prevHash.length !== HASH_BYTES) throw new RangeError(`prev_hash must be ${HASH_BYTES} bytes, got ${e.prevHash.length}`);
  if (e.seq < 0n || e.seq > MAX_U64) throw new RangeError(`seq must be in [0, 2^64), got ${e.seq}`);
  if (e.timestampMs < MIN_I64 || e.timestampMs > MAX_I64) throw new RangeError(`timestampMs does not fit in an i64: ${e.timestampMs}`);
  if (e.data.length > MAX_U32) throw new RangeError(`data must be at most ${MAX_U32} bytes, got ${e.data.length}`);
  const partition = utf8(e.partition);
  if (partition.length > MAX_U16) throw new RangeError(`partition must be at most ${MAX_U16} bytes of UTF-8, got ${partition.length}`);
  const author = entryEncodingVersion(e) === 2 ? utf8(e.author!) : undefined;
  if (author && author.length > MAX_U16) throw new RangeError(`author must be at most ${MAX_U16} bytes of UTF-8, got ${author.length}`);

  const separator = author ? ENTRY_V2_DOMAIN_SEPARATOR : ENTRY_DOMAIN_SEPARATOR;
  const authorBytes = author ? 2 + author.length : 0;
  const head = Buffer.allocUnsafe(separator.length + 2 + partition.length + 8 + 8 + authorBytes + 4);
  let at = separator.copy(head, 0);
  at = head.writeUInt16BE(partition.length, at);
  at += partition.copy(head, at);
  at = head.writeBigUInt64BE(e.seq, at);
  at = head.writeBigInt64BE(e.timestampMs, at);
  if (author) {
    at = head.writeUInt16BE(author.length, at);
    at += author.copy(head, at);
  }
  head.writeUInt32BE(e.data.length, at);
  return [head, e.data, e.prevHash];
}

/** The canonical encoding of an entry in its version (layouts in this file's header); throws RangeError on a field that does not fit. */
export function canonicalEntryBytes(e: EntryFields): Buffer {
  return Buffer.concat(canonicalEntryParts(e));
}

// RFC 6962 §2.1 prefixes a leaf with 0x00 (and an interior node with 0x01) so a leaf can never
// be passed off as an interior node (second-preimage resistance).
const LEAF_PREFIX = Buffer.from([0x00]);

/**
 * Payloads up to this size are copied once into a buffer holding 0x00 || encoding and hashed with
 * one-shot `crypto.hash` (the encoding is that buffer without its first byte). A Hash object per
 * hash costs more than the hashing for small entries, and its garbage was a large share of the
 * append path's CPU. Larger payloads are fed to SHA-256 in pieces instead of being copied.
 */
const ONE_SHOT_MAX_DATA = 64 * 1024;

/** 0x00 || canonical encoding, in one buffer. */
function leafInput(parts: Uint8Array[]): Buffer {
  let length = 1;
  for (const part of parts) length += part.length;
  const buf = Buffer.allocUnsafe(length);
  buf[0] = LEAF_PREFIX[0]!;
  let at = 1;
  for (const part of parts) {
    buf.set(part, at);
    at += part.length;
  }
  return buf;
}

function streamed(prefix: Uint8Array | undefined, parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  if (prefix) h.update(prefix);
  for (const part of parts) h.update(part);
  return h.digest();
}

/** The chain hash of an entry, stored as entry.hash: SHA-256(canonical encoding). */
export function entryHash(e: EntryFields): Buffer {
  const parts = canonicalEntryParts(e);
  return e.data.length <= ONE_SHOT_MAX_DATA ? hash('sha256', leafInput(parts).subarray(1), 'buffer') : streamed(undefined, parts);
}

/** The RFC 6962 Merkle leaf hash of an entry: SHA-256(0x00 || canonical encoding). */
export function entryLeafHash(e: EntryFields): Buffer {
  const parts = canonicalEntryParts(e);
  return e.data.length <= ONE_SHOT_MAX_DATA ? hash('sha256', leafInput(parts), 'buffer') : streamed(LEAF_PREFIX, parts);
}

/**
 * Both hashes of an entry from one encoding of its fields: the append path needs the chain hash
 * and the leaf hash of every entry, and building the encoding once saves its allocation and checks.
 */
export function entryHashes(e: EntryFields): { hash: Buffer; leafHash: Buffer } {
  const parts = canonicalEntryParts(e);
  if (e.data.length > ONE_SHOT_MAX_DATA) return { hash: streamed(undefined, parts), leafHash: streamed(LEAF_PREFIX, parts) };
  const input = leafInput(parts);
  return { hash: hash('sha256', input.subarray(1), 'buffer'), leafHash: hash('sha256', input, 'buffer') };
}

/** Why a chain does not verify; the wording is the contract's (VerifyResponse.reason). */
export type ChainFailure =
  | 'missing seq'
  | 'seq out of order'
  | 'prev_hash does not chain'
  | 'hash mismatch'
  | 'seq beyond partition size'
  | 'last_hash does not match partition head';

/** The outcome of a chain check, shaped like VerifyResponse. */
export interface ChainCheck {
  valid: boolean;
  /** Entries that verified (those before the first bad one). */
  count: bigint;
  /** Hash of the last entry that verified; empty when none did. */
  finalHash: Buffer;
  /** The first seq whose entry does not verify; undefined when valid. */
  firstBadSeq?: bigint;
  /** Empty when valid. */
  reason: ChainFailure | '';
}

/** What the caller knows about the partition's end, to catch rows deleted from the tail. */
export interface ChainEnd {
  /** The partition's recorded size (next seq to assign). */
  size?: bigint;
  /** The partition's recorded last hash (empty or undefined for an empty partition: not checked). */
  lastHash?: Uint8Array;
}

/**
 * Streaming hash-chain checker. Feed entries in seq order with push(); it keeps O(1) state, so a
 * caller can stream a partition of any length through it. It stops at the first failure.
 */
export class ChainVerifier {
  private nextSeq: bigint;
  private prevHash: Buffer;
  private count = 0n;
  private failure: { seq: bigint; reason: ChainFailure } | undefined;

  /** Starts at startSeq expecting prevHash (ZERO_HASH at seq 0, or a trusted entry's hash to resume). */
  constructor(startSeq = 0n, prevHash: Uint8Array = ZERO_HASH) {
    if (startSeq < 0n) throw new RangeError(`startSeq must be >= 0, got ${startSeq}`);
    if (prevHash.length !== HASH_BYTES) throw new RangeError(`prevHash must be ${HASH_BYTES} bytes, got ${prevHash.length}`);
    this.nextSeq = startSeq;
    this.prevHash = Buffer.from(prevHash);
  }

  /** Checks the next entry; false once the chain is broken (later pushes are ignored). */
  push(entry: StoredEntry): boolean {
    if (this.failure) return false;
    // The first bad seq is always the position the chain expected next: a gap means that seq is
    // missing; a wrong link or hash means the row at that seq was altered (or rows were swapped).
    if (entry.seq !== this.nextSeq) return this.fail(entry.seq > this.nextSeq ? 'missing seq' : 'seq out of order');
    if (!this.prevHash.equals(entry.prevHash)) return this.fail('prev_hash does not chain');
    const hash = entryHash(entry);
    if (!hash.equals(entry.hash)) return this.fail('hash mismatch');
    this.prevHash = hash;
    this.nextSeq += 1n;
    this.count += 1n;
    return true;
  }

  /**
   * The verdict so far. With `end`, also catches what a stream cannot show by itself: rows
   * deleted from the tail (fewer entries than the recorded size) or a head that moved.
   */
  result(end: ChainEnd = {}): ChainCheck {
    let failure = this.failure;
    if (!failure && end.size !== undefined) {
      if (this.nextSeq < end.size) failure = { seq: this.nextSeq, reason: 'missing seq' };
      else if (this.nextSeq > end.size) failure = { seq: end.size, reason: 'seq beyond partition size' };
    }
    if (!failure && end.lastHash !== undefined && end.lastHash.length > 0 && this.count > 0n && !this.prevHash.equals(end.lastHash)) {
      failure = { seq: this.nextSeq - 1n, reason: 'last_hash does not match partition head' };
    }
    const finalHash = this.count > 0n ? Buffer.from(this.prevHash) : Buffer.alloc(0);
    if (!failure) return { valid: true, count: this.count, finalHash, reason: '' };
    return { valid: false, count: this.count, finalHash, firstBadSeq: failure.seq, reason: failure.reason };
  }

  private fail(reason: ChainFailure): false {
    this.failure = { seq: this.nextSeq, reason };
    return false;
  }
}

/** Checks a whole sequence of entries, starting at startSeq with prevHash; stops reading at the first failure. */
export function verifyChain(entries: Iterable<StoredEntry>, startSeq = 0n, prevHash: Uint8Array = ZERO_HASH, end?: ChainEnd): ChainCheck {
  const verifier = new ChainVerifier(startSeq, prevHash);
  for (const entry of entries) if (!verifier.push(entry)) break;
  return verifier.result(end);
}

/** The same for an async source such as a database cursor; stops reading at the first failure. */
export async function verifyChainAsync(entries: AsyncIterable<StoredEntry>, startSeq = 0n, prevHash: Uint8Array = ZERO_HASH, end?: ChainEnd): Promise<ChainCheck> {
  const verifier = new ChainVerifier(startSeq, prevHash);
  for await (const entry of entries) if (!verifier.push(entry)) break;
  return verifier.result(end);
}
