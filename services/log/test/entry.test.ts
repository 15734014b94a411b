import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ChainVerifier,
  ZERO_HASH,
  canonicalEntryBytes,
  entryEncodingVersion,
  entryHash,
  entryLeafHash,
  isValidPartitionName,
  verifyChain,
  verifyChainAsync,
  type StoredEntry,
} from '../src/domain/entry.js';
import { hashLeaf } from '../src/domain/merkle.js';

/**
 * A valid chain of n entries in one partition, hashed as the server hashes them; entries from
 * `authorsFrom` on record an author (version 2), those before do not (appended before authors).
 */
function makeChain(n: number, partition = 'orders', authorsFrom = n): StoredEntry[] {
  const entries: StoredEntry[] = [];
  let prevHash: Buffer = ZERO_HASH;
  for (let i = 0; i < n; i++) {
    const author = i >= authorsFrom ? `user-${i % 3}` : undefined;
    const fields = { partition, seq: BigInt(i), timestampMs: 1_700_000_000_000n + BigInt(i), data: Buffer.from(`payload ${i}`), prevHash, author };
    const hash = entryHash(fields);
    entries.push({ ...fields, hash });
    prevHash = hash;
  }
  return entries;
}

describe('canonical entry encoding', () => {
  // Pinned so an accidental change to the encoding fails here. The expected bytes and hashes were
  // computed once by an independent implementation of the layout in entry.ts (Python's struct:
  // ">H", ">Q", ">q", ">I"), not by this code.
  test('the golden entry encodes to the pinned bytes, chain hash and leaf hash', () => {
    const e = { partition: 'orders', seq: 1n, timestampMs: 1_700_000_000_000n, data: Buffer.from('hello'), prevHash: Buffer.alloc(32, 0x11) };
    assert.equal(
      canonicalEntryBytes(e).toString('hex'),
      '67616e7472792e6c6f672e76312e656e74727900' + // "gantry.log.v1.entry\0"
        '0006' + '6f7264657273' + // partition length, "orders"
        '0000000000000001' + // seq
        '0000018bcfe56800' + // timestamp ms
        '00000005' + '68656c6c6f' + // data length, "hello"
        '11'.repeat(32), // prev_hash
    );
    assert.equal(entryHash(e).toString('hex'), 'a3bc5750503c894eb5de26df6fe22ca96a37407f75fa11d3bbe57cc678d78d70');
    assert.equal(entryLeafHash(e).toString('hex'), 'c305c007ad89eee081cc85b4121ddcdf9c970d9825aab4e3d19c441a5e37a5a1');
    assert.deepEqual(entryLeafHash(e), hashLeaf(canonicalEntryBytes(e)));
  });

  // Pinned the same way (Python's struct, ">H" for the author's length): the layout of entries
  // that record their author, as docs/log.md describes it to outside verifiers.
  test('an entry with an author encodes to the pinned version 2 bytes, chain hash and leaf hash', () => {
    const e = { partition: 'orders', seq: 1n, timestampMs: 1_700_000_000_000n, author: 'spiffe://gantry.local/settlement', data: Buffer.from('hello'), prevHash: Buffer.alloc(32, 0x11) };
    assert.equal(entryEncodingVersion(e), 2);
    assert.equal(
      canonicalEntryBytes(e).toString('hex'),
      '67616e7472792e6c6f672e76322e656e74727900' + // "gantry.log.v2.entry\0"
        '0006' + '6f7264657273' + // partition length, "orders"
        '0000000000000001' + // seq
        '0000018bcfe56800' + // timestamp ms
        '0020' + '7370696666653a2f2f67616e7472792e6c6f63616c2f736574746c656d656e74' + // author length, "spiffe://gantry.local/settlement"
        '00000005' + '68656c6c6f' + // data length, "hello"
        '11'.repeat(32), // prev_hash
    );
    assert.equal(entryHash(e).toString('hex'), '74968ab640bffbe6d60fe7168453902cdeaee7e7a371475903dbb9cbcce7aed9');
    assert.equal(entryLeafHash(e).toString('hex'), '131187a8da3e78a34b6e2943aa363658d3aed4e377c7ee5cb529fbcb9a566307');
    assert.deepEqual(entryLeafHash(e), hashLeaf(canonicalEntryBytes(e)));
  });

  test('an entry without an author (undefined or empty) keeps the version 1 bytes, so entries from before authors still verify', () => {
    const v1 = { partition: 'orders', seq: 1n, timestampMs: 1_700_000_000_000n, data: Buffer.from('hello'), prevHash: Buffer.alloc(32, 0x11) };
    for (const author of [undefined, '']) {
      assert.equal(entryEncodingVersion({ author }), 1);
      assert.equal(entryHash({ ...v1, author }).toString('hex'), 'a3bc5750503c894eb5de26df6fe22ca96a37407f75fa11d3bbe57cc678d78d70');
    }
  });

  test('the author is covered: changing it, dropping it, or moving its bytes into the data changes the hashes', () => {
    const e = { partition: 'p', seq: 3n, timestampMs: 5n, author: 'alice', data: Buffer.from('x'), prevHash: ZERO_HASH };
    const hashes = [e, { ...e, author: 'alicf' }, { ...e, author: undefined }, { ...e, author: 'alic', data: Buffer.from('ex') }, { ...e, author: 'alicex', data: Buffer.alloc(0) }].map((f) => entryHash(f).toString('hex'));
    assert.equal(new Set(hashes).size, hashes.length);
    assert.throws(() => canonicalEntryBytes({ ...e, author: 'a'.repeat(65_536) }), /author must be at most 65535 bytes/);
  });

  test('property: with and without an author never encode to the same bytes', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ minLength: 1, maxLength: 40 }), fc.uint8Array({ maxLength: 60 }), fc.uint8Array({ maxLength: 60 }), (partition, author, dataA, dataB) => {
        const base = { partition, seq: 0n, timestampMs: 0n, prevHash: ZERO_HASH };
        assert.notDeepEqual(canonicalEntryBytes({ ...base, author, data: dataA }), canonicalEntryBytes({ ...base, data: dataB }));
      }),
    );
  });

  test('seq 0 with the zero prev_hash and a pre-1970 timestamp encodes the timestamp as a signed i64', () => {
    const e = { partition: 'p', seq: 0n, timestampMs: -1n, data: Buffer.from([0]), prevHash: ZERO_HASH };
    assert.equal(canonicalEntryBytes(e).subarray(31, 39).toString('hex'), 'ffffffffffffffff');
    assert.equal(entryHash(e).toString('hex'), 'd8f7b070acea61c077b130f0013b92976bedba855b61025f7052e3ea5353bd0d');
  });

  test('fields that do not fit the encoding are refused: prev_hash not 32 bytes, negative or huge seq, partition over 65535 bytes', () => {
    const ok = { partition: 'p', seq: 0n, timestampMs: 0n, data: Buffer.alloc(1), prevHash: ZERO_HASH };
    assert.throws(() => canonicalEntryBytes({ ...ok, prevHash: Buffer.alloc(31) }), /prev_hash must be 32 bytes/);
    assert.throws(() => canonicalEntryBytes({ ...ok, seq: -1n }), /seq must be/);
    assert.throws(() => canonicalEntryBytes({ ...ok, seq: 1n << 64n }), /seq must be/);
    assert.throws(() => canonicalEntryBytes({ ...ok, timestampMs: 1n << 63n }), /i64/);
    assert.throws(() => canonicalEntryBytes({ ...ok, partition: 'x'.repeat(65_536) }), /partition must be at most 65535 bytes/);
    assert.equal(canonicalEntryBytes({ ...ok, partition: 'x'.repeat(65_535) }).length, 20 + 2 + 65_535 + 8 + 8 + 4 + 1 + 32);
  });

  test('moving a byte between partition and data changes the encoding (length prefixes keep fields apart)', () => {
    const a = { partition: 'ab', seq: 0n, timestampMs: 0n, data: Buffer.from('c'), prevHash: ZERO_HASH };
    const b = { ...a, partition: 'a', data: Buffer.from('bc') };
    assert.notDeepEqual(entryHash(a), entryHash(b));
  });

  test('partition names follow the contract: 1-128 of [A-Za-z0-9._-]', () => {
    for (const ok of ['a', 'orders.eu-1_x', 'x'.repeat(128)]) assert.ok(isValidPartitionName(ok), ok);
    for (const bad of ['', 'x'.repeat(129), 'a b', 'a/b', 'é', 'a\n']) assert.equal(isValidPartitionName(bad), false, JSON.stringify(bad));
  });
});

describe('hash chain verification', () => {
  test('a valid chain verifies, with its count and final hash', () => {
    const chain = makeChain(10);
    const check = verifyChain(chain);
    assert.deepEqual(check, { valid: true, count: 10n, finalHash: chain[9]!.hash, reason: '' });
    assert.deepEqual(verifyChain([]), { valid: true, count: 0n, finalHash: Buffer.alloc(0), reason: '' });
  });

  test('a chain that starts without authors and goes on with them (a partition across the upgrade) verifies; a changed or dropped author is a hash mismatch', () => {
    const chain = makeChain(10, 'orders', 4);
    assert.deepEqual([entryEncodingVersion(chain[3]!), entryEncodingVersion(chain[4]!)], [1, 2]);
    assert.equal(verifyChain(chain).valid, true);
    for (const author of ['mallory', undefined]) {
      const forged = [...chain];
      forged[6] = { ...chain[6]!, author };
      const check = verifyChain(forged);
      assert.deepEqual([check.valid, check.firstBadSeq, check.reason], [false, 6n, 'hash mismatch'], `author ${author}`);
    }
    const claimed = [...chain];
    claimed[2] = { ...chain[2]!, author: 'claims an old entry' };
    assert.deepEqual([verifyChain(claimed).firstBadSeq, verifyChain(claimed).reason], [2n, 'hash mismatch'], 'an author added to an entry from before is caught too');
  });

  test('an edited entry is reported as a hash mismatch at its seq', () => {
    const chain = makeChain(10);
    chain[6] = { ...chain[6]!, data: Buffer.from('payload 6, edited') };
    const check = verifyChain(chain);
    assert.equal(check.valid, false);
    assert.equal(check.firstBadSeq, 6n);
    assert.equal(check.reason, 'hash mismatch');
    assert.equal(check.count, 6n);
    assert.deepEqual(check.finalHash, chain[5]!.hash);
  });

  test('an edited entry whose hash was recomputed breaks the link at the next seq', () => {
    const chain = makeChain(10);
    const edited = { ...chain[6]!, data: Buffer.from('forged') };
    chain[6] = { ...edited, hash: entryHash(edited) };
    assert.deepEqual([verifyChain(chain).firstBadSeq, verifyChain(chain).reason], [7n, 'prev_hash does not chain']);
  });

  test('a deleted entry is reported as a missing seq at the gap', () => {
    const chain = makeChain(10);
    chain.splice(4, 1);
    const check = verifyChain(chain);
    assert.deepEqual([check.valid, check.firstBadSeq, check.reason, check.count], [false, 4n, 'missing seq', 4n]);
  });

  test('entries deleted from the tail are reported as a missing seq when the partition size is known', () => {
    const chain = makeChain(10).slice(0, 8);
    assert.equal(verifyChain(chain).valid, true);
    const check = verifyChain(chain, 0n, ZERO_HASH, { size: 10n });
    assert.deepEqual([check.valid, check.firstBadSeq, check.reason], [false, 8n, 'missing seq']);
    const head = verifyChain(chain, 0n, ZERO_HASH, { size: 8n, lastHash: makeChain(10)[9]!.hash });
    assert.deepEqual([head.valid, head.firstBadSeq, head.reason], [false, 7n, 'last_hash does not match partition head']);
    assert.equal(verifyChain(chain, 0n, ZERO_HASH, { size: 8n, lastHash: chain[7]!.hash }).valid, true);
  });

  test('a reordered pair (seqs swapped between two rows) is reported at the lower seq', () => {
    const chain = makeChain(10);
    const [a, b] = [chain[3]!, chain[4]!];
    // The store reads in seq order, so swapped seq values put row 4's content at seq 3.
    chain[3] = { ...b, seq: 3n };
    chain[4] = { ...a, seq: 4n };
    const check = verifyChain(chain);
    assert.deepEqual([check.valid, check.firstBadSeq, check.reason], [false, 3n, 'prev_hash does not chain']);
  });

  test('a reordered pair (rows delivered out of order) is reported at the lower seq', () => {
    const chain = makeChain(10);
    [chain[3], chain[4]] = [chain[4]!, chain[3]!];
    const check = verifyChain(chain);
    assert.deepEqual([check.valid, check.firstBadSeq, check.reason], [false, 3n, 'missing seq']);
  });

  test('a swapped pair of payloads is reported as a hash mismatch at the lower seq', () => {
    const chain = makeChain(10);
    const [a, b] = [chain[3]!.data, chain[4]!.data];
    chain[3] = { ...chain[3]!, data: b };
    chain[4] = { ...chain[4]!, data: a };
    assert.deepEqual([verifyChain(chain).firstBadSeq, verifyChain(chain).reason], [3n, 'hash mismatch']);
  });

  test('verification resumes from a trusted seq and hash, and refuses a wrong starting hash', () => {
    const chain = makeChain(10);
    assert.deepEqual(verifyChain(chain.slice(5), 5n, chain[4]!.hash).count, 5n);
    const check = verifyChain(chain.slice(5), 5n, ZERO_HASH);
    assert.deepEqual([check.firstBadSeq, check.reason], [5n, 'prev_hash does not chain']);
  });

  test('the verifier stops at the first failure and ignores later pushes', () => {
    const chain = makeChain(5);
    const v = new ChainVerifier();
    assert.equal(v.push(chain[0]!), true);
    assert.equal(v.push(chain[2]!), false);
    assert.equal(v.push(chain[1]!), false);
    assert.deepEqual([v.result().firstBadSeq, v.result().reason, v.result().count], [1n, 'missing seq', 1n]);
  });

  test('an async stream of entries verifies the same way', async () => {
    const chain = makeChain(20);
    chain[13] = { ...chain[13]!, timestampMs: chain[13]!.timestampMs + 1n };
    async function* stream(): AsyncGenerator<StoredEntry> {
      for (const e of chain) yield e;
    }
    const check = await verifyChainAsync(stream());
    assert.deepEqual([check.firstBadSeq, check.reason], [13n, 'hash mismatch']);
  });

  test('any single-byte edit of any field of any entry is caught at that seq (fast-check)', () => {
    const chain = makeChain(12);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 11 }), fc.constantFrom('data', 'prevHash', 'hash', 'partition', 'timestampMs'), fc.nat(), (at, field, pick) => {
        const tampered = [...chain];
        const e = { ...chain[at]! };
        if (field === 'partition') e.partition = `${e.partition}x`;
        else if (field === 'timestampMs') e.timestampMs += BigInt((pick % 1000) + 1);
        else {
          const bytes = Buffer.from(e[field]);
          bytes[pick % bytes.length]! ^= 1 + (pick % 255);
          e[field] = bytes;
        }
        tampered[at] = e;
        const check = verifyChain(tampered);
        assert.equal(check.valid, false);
        assert.equal(check.firstBadSeq, BigInt(at));
      }),
      { numRuns: 200 },
    );
  });
});
