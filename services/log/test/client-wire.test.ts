import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { logv1 } from '@gantry/proto';
import { decodeReadResponse, decodeTailResponse } from '../src/client/entry-wire.js';

type Decoded = { entries: logv1.Entry[] };

/** Comparable form: an invalid Date (a timestamp past JavaScript's range) equals another only as text. */
const comparable = (m: Decoded) => m.entries.map((e) => ({ ...e, timestamp: e.timestamp === undefined ? undefined : String(e.timestamp.getTime()) }));

/** What each decoder makes of `bytes`: its comparable result, or the fact that it threw. */
function outcome(decode: (b: Buffer) => Decoded, bytes: Buffer): unknown {
  try {
    return comparable(decode(bytes));
  } catch {
    return 'threw';
  }
}

function assertSameAsGenerated(bytes: Buffer): void {
  assert.deepStrictEqual(outcome(decodeReadResponse, bytes), outcome((b) => logv1.ReadResponse.decode(b), bytes));
  assert.deepStrictEqual(outcome(decodeTailResponse, bytes), outcome((b) => logv1.TailResponse.decode(b), bytes));
}

const bytesArb = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));
/** Any entry the contract can carry, far past what a server writes: seqs to 2^64 - 1, dates before 1970. */
const anyEntry = fc.record({
  partition: fc.string({ maxLength: 20, unit: 'binary' }),
  seq: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  timestamp: fc.option(fc.date({ noInvalidDate: true }), { nil: undefined }),
  data: bytesArb(300),
  prevHash: bytesArb(40),
  hash: bytesArb(40),
  author: fc.string({ maxLength: 40, unit: 'binary' }),
});
/** Entries as a server writes them: what the fast path reads itself. */
const serverEntry = fc.record({
  partition: fc.stringMatching(/^[a-z][a-z0-9._-]{0,40}$/),
  seq: fc.bigInt({ min: 0n, max: 2n ** 49n - 1n }),
  timestamp: fc.date({ min: new Date(0), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
  data: bytesArb(300).filter((b) => b.length > 0),
  prevHash: bytesArb(32).filter((b) => b.length > 0),
  hash: bytesArb(32).filter((b) => b.length > 0),
  author: fc.string({ maxLength: 40 }),
});
const encode = (entries: logv1.Entry[]) => Buffer.from(logv1.ReadResponse.encode({ entries }).finish());

/** A hand-written Entry message: the fields given, as (tag, write) pairs, in that order. */
function entryMessage(write: (w: BinaryWriter) => void): Buffer {
  const entry = new BinaryWriter();
  write(entry);
  return Buffer.from(new BinaryWriter().uint32(0x0a).bytes(entry.finish()).finish());
}

describe('the client library decodes Read and Tail responses as the generated decoder does', () => {
  test('any entries the contract can carry decode to what the generated decoder returns', () => {
    fc.assert(fc.property(fc.array(anyEntry, { maxLength: 30 }), (entries) => assertSameAsGenerated(encode(entries))), { numRuns: 300 });
  });

  test("a server's entries are read in place: their bytes fields are views of the message", () => {
    fc.assert(
      fc.property(fc.array(serverEntry, { minLength: 1, maxLength: 30 }), (entries) => {
        const message = encode(entries);
        const decoded = decodeReadResponse(message);
        assert.deepStrictEqual(decoded, logv1.ReadResponse.decode(message));
        for (const e of decoded.entries) for (const field of [e.data, e.prevHash, e.hash]) assert.equal(field.buffer, message.buffer, 'a bytes field shares the memory of its message');
      }),
      { numRuns: 200 },
    );
  });

  test('mutated, truncated and extended messages decode or fail exactly as with the generated decoder', () => {
    const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom('set', 'insert', 'delete', 'truncate'), byte: fc.integer({ min: 0, max: 255 }) });
    fc.assert(
      fc.property(fc.array(anyEntry, { minLength: 1, maxLength: 5 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (entries, mutations) => {
        let bytes = encode(entries);
        for (const { at, kind, byte } of mutations) {
          const i = at % (bytes.length + 1);
          if (kind === 'set' && i < bytes.length) bytes[i] = byte;
          else if (kind === 'insert') bytes = Buffer.concat([bytes.subarray(0, i), Buffer.of(byte), bytes.subarray(i)]);
          else if (kind === 'delete') bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)]);
          else if (kind === 'truncate') bytes = bytes.subarray(0, i);
        }
        assertSameAsGenerated(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  test('every prefix of a message, and every message with one byte raised or lowered, decodes or fails as with the generated decoder', () => {
    const message = encode([
      { partition: 'orders', seq: 300n, timestamp: new Date(1_765_000_000_123), data: Buffer.from('first'), prevHash: Buffer.alloc(32, 1), hash: Buffer.alloc(32, 2), author: 'spiffe://gantry.local/ns/gantry/sa/settlement' },
      { partition: 'orders', seq: 301n, timestamp: new Date(1_765_000_000_124), data: Buffer.alloc(200, 3), prevHash: Buffer.alloc(32, 2), hash: Buffer.alloc(32, 4), author: '' },
    ]);
    // Entries that end in a varint, so that a shorter entry length leaves it straddling the end.
    const seqLast = (seq: bigint) => entryMessage((w) => w.uint32(0x0a).string('orders').uint32(0x22).bytes(Buffer.from('x')).uint32(0x10).uint64(seq));
    for (const bytes of [message, Buffer.concat([seqLast(300n), seqLast(2n ** 40n)])]) {
      for (let length = 0; length <= bytes.length; length++) assertSameAsGenerated(bytes.subarray(0, length));
      for (let i = 0; i < bytes.length; i++) {
        for (const delta of [1, -1]) {
          const changed = Buffer.from(bytes);
          changed[i] = (changed[i]! + delta) & 0xff;
          assertSameAsGenerated(changed);
        }
      }
    }
  });

  test('unknown fields of every wire type are skipped, in an entry, its timestamp and the response', () => {
    const timestamp = (extra: (w: BinaryWriter) => void) => {
      const t = new BinaryWriter().uint32(0x08).int64(1_765_000_000n).uint32(0x10).int32(5_000_000);
      extra(t);
      return t.finish();
    };
    const unknowns: ((w: BinaryWriter) => void)[] = [
      (w) => w.uint32((20 << 3) | 0).uint64(2n ** 63n), // varint, two-byte tag
      (w) => w.uint32((9 << 3) | 1).fixed64(7n), // fixed64
      (w) => w.uint32((10 << 3) | 2).bytes(Buffer.from('unknown')), // length-delimited
      (w) => w.uint32((11 << 3) | 5).fixed32(7), // fixed32
      (w) => w.uint32((12 << 3) | 3).uint32((1 << 3) | 0).uint32(1).uint32((12 << 3) | 4), // group
      (w) => w.uint32((1 << 3) | 0).uint32(3), // a known field number with another wire type
    ];
    for (const unknown of unknowns) {
      const inEntry = entryMessage((w) => {
        w.uint32(0x0a).string('p');
        unknown(w);
        w.uint32(0x10).uint64(5n).uint32(0x22).bytes(Buffer.from('data'));
      });
      const inTimestamp = entryMessage((w) => w.uint32(0x1a).bytes(timestamp(unknown)).uint32(0x22).bytes(Buffer.from('data')));
      const inResponse = (() => {
        const w = new BinaryWriter();
        unknown(w);
        return Buffer.concat([Buffer.from(w.finish()), inEntry]);
      })();
      for (const message of [inEntry, inTimestamp, inResponse]) {
        assertSameAsGenerated(message);
        assert.equal(decodeReadResponse(message).entries[0]!.data.toString(), 'data', 'the entry around the unknown field is read');
      }
    }
  });

  test('fields out of order or repeated, large seqs, dates before 1970 and invalid UTF-8 decode as the generated decoder does', () => {
    const cases = [
      entryMessage((w) => w.uint32(0x32).bytes(Buffer.alloc(32, 1)).uint32(0x10).uint64(9n).uint32(0x0a).string('late')),
      entryMessage((w) => w.uint32(0x10).uint64(1n).uint32(0x10).uint64(2n).uint32(0x22).bytes(Buffer.from('a')).uint32(0x22).bytes(Buffer.from('b'))),
      entryMessage((w) => w.uint32(0x10).uint64(2n ** 64n - 1n)),
      entryMessage((w) => w.uint32(0x10).uint64(2n ** 49n)),
      entryMessage((w) => w.uint32(0x1a).bytes(new BinaryWriter().uint32(0x08).int64(-86_400n).finish())),
      entryMessage((w) => w.uint32(0x1a).bytes(new BinaryWriter().uint32(0x10).int32(-1).finish())),
      entryMessage((w) => w.uint32(0x1a).bytes(new Uint8Array()).uint32(0x1a).bytes(new BinaryWriter().uint32(0x08).int64(1n).finish())),
      entryMessage((w) => w.uint32(0x0a).bytes(Buffer.from([0x61, 0xff, 0xc3, 0x28, 0xe2, 0x82, 0xf0, 0x9f, 0x98]))),
      entryMessage((w) => w.uint32(0x3a).bytes(Buffer.from([0xed, 0xa0, 0x80, 0xef, 0xbb, 0xbf, 0x62]))),
      Buffer.alloc(0),
    ];
    for (const message of cases) assertSameAsGenerated(message);
    assert.equal(decodeReadResponse(cases[0]!).entries[0]!.partition, 'late');
    assert.equal(decodeReadResponse(cases[1]!).entries[0]!.seq, 2n, 'the last of a repeated field wins');
  });
});
