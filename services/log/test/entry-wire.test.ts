import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { tuplesOf } from '@gantry/test-support/copy-tuples';
import { logv1 } from '@gantry/proto';
import { encodedChunks } from '../src/api/entry-wire.js';
import { toEntry } from '../src/api/handlers.js';
import { entryOffsets } from '../src/store/entry-page.js';
import type { EntryPage, StoredEntry } from '../src/store/log-store.js';

/** The page the store's page query returns for these entries: one binary COPY tuple each, in the order given. */
function packPage(entries: readonly StoredEntry[]): Buffer {
  const int8 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    return b;
  };
  return tuplesOf(entries.map((e) => [int8(e.seq), int8(e.timestampMs), e.data, e.prevHash, e.hash, e.author === undefined ? undefined : Buffer.from(e.author, 'utf8')]));
}

const pageOf = (partition: string, entries: readonly StoredEntry[]): EntryPage => {
  const bytes = packPage(entries);
  return { partition, bytes, offsets: entryOffsets(partition, bytes) };
};

const hash = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));
const entriesArb = fc
  .record({
    partition: fc.stringMatching(/^[a-z][a-z0-9._-]{0,40}$/),
    firstSeq: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 63n - 1000n })),
    rows: fc.array(
      fc.record({
        timestampMs: fc.oneof(fc.constant(0n), fc.constant(1000n), fc.bigInt({ min: 0n, max: 253_402_300_799_999n })),
        data: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        prevHash: hash,
        hash,
        author: fc.option(fc.string({ maxLength: 40, unit: 'grapheme' }), { nil: undefined }),
      }),
      { minLength: 1, maxLength: 40 },
    ),
  })
  .map(({ partition, firstSeq, rows }) => rows.map((r, i): StoredEntry => ({ partition, seq: firstSeq + BigInt(i), ...r })));

describe('Read and Tail messages encoded from a page', () => {
  test('each message is byte for byte what ts-proto writes for the same entries, and together they hold every entry in seq order', () => {
    fc.assert(
      fc.property(entriesArb, fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 2000 }), (entries, maxEntries, maxBytes) => {
        const chunks = [...encodedChunks(pageOf(entries[0]!.partition, entries), maxEntries, maxBytes)];
        let at = 0;
        for (const chunk of chunks) {
          const slice = entries.slice(at, at + chunk.count);
          assert.deepEqual(chunk.bytes, Buffer.from(logv1.ReadResponse.encode({ entries: slice.map(toEntry) }).finish()));
          assert.equal(chunk.lastSeq, slice[slice.length - 1]!.seq);
          assert.ok(chunk.count >= 1 && chunk.count <= maxEntries, `a message holds 1 to ${maxEntries} entries, not ${chunk.count}`);
          const payload = slice.reduce((n, e) => n + e.data.length + Buffer.byteLength(e.author ?? ''), 0);
          assert.ok(chunk.count === 1 || payload <= maxBytes, `${payload} payload bytes over the ${maxBytes} limit in ${chunk.count} entries`);
          at += chunk.count;
        }
        assert.equal(at, entries.length);
      }),
      { numRuns: 300 },
    );
  });

  test('a page out of seq order is sent in seq order', () => {
    fc.assert(
      fc.property(entriesArb, (entries) => {
        const shuffled = [...entries].reverse();
        const decoded = [...encodedChunks(pageOf(entries[0]!.partition, shuffled), 1000, 1 << 20)].flatMap((c) => logv1.ReadResponse.decode(c.bytes).entries);
        assert.deepEqual(decoded.map((e) => e.seq), entries.map((e) => e.seq));
      }),
      { numRuns: 50 },
    );
  });

  test('a page that ends inside an entry, or holds rows of another layout, is refused', () => {
    const [entries] = fc.sample(entriesArb, { numRuns: 1, seed: 7 });
    const bytes = packPage(entries!);
    for (let cut = 1; cut < bytes.length; cut += 7) assert.throws(() => entryOffsets('p', bytes.subarray(0, cut)), /cut short|columns|not an int8|bytes at byte/, `cut at ${cut}`);
    assert.throws(() => entryOffsets('p', Buffer.concat([bytes, Buffer.alloc(3)])), /cut short/);
    const changed = (at: number, write: (b: Buffer) => void) => {
      const b = Buffer.from(bytes);
      write(b.subarray(at));
      return b;
    };
    assert.throws(() => entryOffsets('p', changed(0, (b) => b.writeInt16BE(7))), /a row of 7 columns, not 6/);
    assert.throws(() => entryOffsets('p', changed(2, (b) => b.writeInt32BE(4))), /not an int8/);
    const first = entries![0]!;
    assert.throws(() => entryOffsets('p', changed(30 + first.data.length, (b) => b.writeInt32BE(31))), /hash that is not 32 bytes/);
    assert.throws(() => entryOffsets('p', changed(26, (b) => b.writeInt32BE(-1))), /cut short/);
  });
});
