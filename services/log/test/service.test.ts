// The log service over real gRPC (mTLS, JWT, rate limits) in this process, on PGlite and on
// PostgreSQL: what a client appends it reads back, hash-chained and provable, and bad input is
// refused without writing anything.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status, type Metadata } from '@grpc/grpc-js';
import { eventually } from '@gantry/test-support/clients';
import { requirePostgresInCi } from '@gantry/test-support/databases';
import { streamOf, unary } from '@gantry/kit';
import type { logv1 } from '@gantry/proto';
import {
  ZERO_HASH,
  entryFieldsOf,
  entryHash,
  entryLeafHash,
  verifierKeyString,
  verifyCheckpoint,
  verifyCheckpointConsistency,
  verifyEntryInclusion,
  type Checkpoint,
} from '../src/client/index.js';
import { ed25519PublicKeyRaw } from '../src/domain/checkpoint.js';
import { rootFromLeafHashes } from '../src/domain/merkle.js';
import { assertStatus, engines, grpcError, partitionSize, payloads, readAll, readStream, startLogPlatform, uniquePartition, type LogPlatform } from './support.js';

/** Small, so "over the maximum" is cheap to send; set through config, as an operator would. */
const MAX_PAYLOAD_BYTES = 8192;
const FOLLOW_LATENCY_MS = 1000;

requirePostgresInCi('the log service tests');

for (const engine of engines()) {
  describe(`log service over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: LogPlatform;
    before(async () => {
      p = await startLogPlatform(engine.name, { log: { maxPayloadBytes: MAX_PAYLOAD_BYTES } });
    });
    after(async () => {
      await p?.close();
    });

    const call = <Req, Res>(method: Parameters<typeof unary<Req, Res>>[0], req: Req, md: Metadata = p.md) => unary(method, p.client, req, md, 30_000);
    const append = (partition: string, data: Buffer, md?: Metadata) => call(p.client.append, { partition, data, idempotencyKey: '' }, md);
    const appendBatch = (partition: string, data: Buffer[], md?: Metadata) => call(p.client.appendBatch, { partition, data, idempotencyKeys: [] }, md);
    const verify = (partition: string) => call(p.client.verify, { partition });
    const checkpoint = (partition: string) => call(p.client.getCheckpoint, { partition });
    const tail = (req: Partial<logv1.TailRequest> & { partition: string }, md: Metadata = p.md) =>
      p.client.tail({ last: 0, follow: false, ...req }, md, { deadline: Date.now() + 30_000 });
    /** The unary reads that take only a partition name. */
    const byPartitionName = [
      (partition: string) => call(p.client.verify, { partition }),
      (partition: string) => call(p.client.getLastEntry, { partition }),
      (partition: string) => call(p.client.getCheckpoint, { partition }),
    ];
    const sizeOf = (partition: string) => partitionSize(p.client, p.md, partition);

    /** The checkpoint key pinned out of band: derived from the key file, not from what the server says. */
    const pinnedVerifierKey = () => {
      const key = createPrivateKey(readFileSync(join(p.dataDir, 'log', 'checkpoint-key.pem')));
      return verifierKeyString('gantry.local/log', ed25519PublicKeyRaw(key));
    };

    test('Append returns seqs 0, 1, 2 whose prev_hash chains and whose hash the client recomputes from the entry read back', async () => {
      const partition = uniquePartition('append');
      const data = payloads(3);
      const receipts: logv1.AppendResponse[] = [];
      for (const d of data) receipts.push(await append(partition, d));
      assert.deepEqual(receipts.map((r) => r.seq), [0n, 1n, 2n]);
      assert.deepEqual(receipts[0]!.prevHash, ZERO_HASH, 'seq 0 chains to 32 zero bytes');
      for (let i = 1; i < 3; i++) assert.deepEqual(receipts[i]!.prevHash, receipts[i - 1]!.hash, `seq ${i} chains to seq ${i - 1}`);

      const { entries } = await readAll(p.client, p.md, partition);
      assert.equal(entries.length, 3);
      entries.forEach((e, i) => {
        assert.equal(e.partition, partition);
        assert.equal(e.seq, BigInt(i));
        assert.deepEqual(e.data, data[i]);
        assert.equal(e.timestamp?.getTime(), receipts[i]!.timestamp?.getTime());
        assert.deepEqual(e.prevHash, receipts[i]!.prevHash);
        assert.deepEqual(e.hash, receipts[i]!.hash);
        assert.deepEqual(entryHash(entryFieldsOf(e)), receipts[i]!.hash, `the client's own hash of seq ${i} matches the receipt`);
      });

      const v = await verify(partition);
      assert.equal(v.valid, true, v.reason);
      assert.equal(v.count, 3n);
      assert.deepEqual(v.finalHash, receipts[2]!.hash);
      assert.equal(v.firstBadSeq, undefined);
    });

    test('AppendBatch gives consecutive seqs after the existing entries, and concurrent batches never interleave', async () => {
      const partition = uniquePartition('batch');
      await append(partition, Buffer.from('first'));
      const { receipts } = await appendBatch(partition, payloads(5));
      assert.deepEqual(receipts.map((r) => r.seq), [1n, 2n, 3n, 4n, 5n]);
      for (let i = 1; i < receipts.length; i++) assert.deepEqual(receipts[i]!.prevHash, receipts[i - 1]!.hash);

      // Batches racing single appends: each batch must still be one consecutive run.
      const batches = Array.from({ length: 4 }, (_, i) => appendBatch(partition, payloads(25, `b${i}`)));
      const singles = Array.from({ length: 12 }, (_, i) => append(partition, Buffer.from(`single-${i}`)));
      const [batchResults, singleResults] = await Promise.all([Promise.all(batches), Promise.all(singles)]);
      for (const { receipts: run } of batchResults) {
        run.forEach((r, i) => assert.equal(r.seq, run[0]!.seq + BigInt(i), 'a batch is one consecutive run of seqs'));
      }
      const seqs = [...batchResults.flatMap((b) => b.receipts.map((r) => r.seq)), ...singleResults.map((r) => r.seq)].sort((a, b) => (a < b ? -1 : 1));
      assert.deepEqual(seqs, Array.from({ length: 112 }, (_, i) => BigInt(i + 6)), 'every seq from 6 to 117 exactly once');
      assert.equal(await sizeOf(partition), 118n);
      assert.equal((await verify(partition)).valid, true);
    });

    test('Read returns exactly what was appended, in order, honoring start_seq and limit', async () => {
      const partition = uniquePartition('read');
      const data = payloads(10);
      await appendBatch(partition, data);
      const seqsOf = (entries: logv1.Entry[]) => entries.map((e) => Number(e.seq));

      const all = await readAll(p.client, p.md, partition);
      assert.deepEqual(all.entries.map((e) => e.data), data);
      assert.deepEqual(seqsOf((await readAll(p.client, p.md, partition, 3n, 4n)).entries), [3, 4, 5, 6]);
      assert.deepEqual(seqsOf((await readAll(p.client, p.md, partition, 8n, 100n)).entries), [8, 9], 'a limit past the end stops at the end');
      assert.deepEqual(seqsOf((await readAll(p.client, p.md, partition, 7n, 0n)).entries), [7, 8, 9], 'limit 0 reads to the end');
      assert.deepEqual(seqsOf((await readAll(p.client, p.md, partition, 10n)).entries), [], 'start_seq = size is the (empty) end, not an error');
    });

    test('Read streams 1,500 entries in messages of at most 1,000, all of them in order', async () => {
      const partition = uniquePartition('chunks');
      const data = [...payloads(1000, 'a'), ...payloads(500, 'b')];
      await appendBatch(partition, data.slice(0, 1000));
      await appendBatch(partition, data.slice(1000));
      const { entries, chunks } = await readAll(p.client, p.md, partition);
      assert.equal(entries.length, 1500);
      assert.ok(chunks.length >= 2 && chunks.every((n) => n > 0 && n <= 1000), `chunk sizes ${chunks.join(', ')}`);
      entries.forEach((e, i) => {
        assert.equal(e.seq, BigInt(i));
        assert.deepEqual(e.data, data[i]);
      });
      const across = await readAll(p.client, p.md, partition, 999n, 501n);
      assert.deepEqual(across.entries.map((e) => Number(e.seq)), Array.from({ length: 501 }, (_, i) => 999 + i), 'a range across a chunk boundary');
    });

    test('Read messages stay around 1 MiB when entries are large', async () => {
      const partition = uniquePartition('bigchunks');
      const big = Array.from({ length: 300 }, (_, i) => Buffer.alloc(MAX_PAYLOAD_BYTES, i % 256));
      await appendBatch(partition, big);
      const { entries, chunks } = await readAll(p.client, p.md, partition);
      assert.equal(entries.length, 300);
      assert.ok(chunks.length >= 2, `300 entries of 4 KiB (1.2 MiB) came in ${chunks.length} message(s)`);
      assert.ok(chunks.every((n) => n * MAX_PAYLOAD_BYTES <= 1024 * 1024), `chunk sizes ${chunks.join(', ')}`);
    });

    test('GetLastEntry returns the newest entry, identical to what Read returns for it', async () => {
      const partition = uniquePartition('last');
      await appendBatch(partition, payloads(4));
      const receipt = await append(partition, Buffer.from('newest'));
      const { entry } = await call(p.client.getLastEntry, { partition });
      assert.equal(entry?.seq, 4n);
      assert.deepEqual(entry?.data, Buffer.from('newest'));
      assert.deepEqual(entry?.hash, receipt.hash);
      const { entries } = await readAll(p.client, p.md, partition, 4n);
      assert.deepEqual(entry, entries[0]);
    });

    test('ListPartitions filters by prefix and pages two at a time through five partitions', async () => {
      const prefix = `${uniquePartition('list')}.`;
      const names = ['p0', 'p1', 'p2', 'p3', 'p4'].map((n) => prefix + n);
      for (const [i, name] of names.entries()) await appendBatch(name, payloads(i + 1));
      await append(`${prefix.slice(0, -1)}-other`, Buffer.from('not under the prefix'));

      const pages: logv1.PartitionInfo[][] = [];
      let pageToken = '';
      do {
        const res = await call(p.client.listPartitions, { prefix, pageSize: 2, pageToken });
        pages.push(res.partitions);
        pageToken = res.nextPageToken;
        assert.ok(pages.length <= 3, 'paging ends');
      } while (pageToken !== '');
      assert.deepEqual(pages.map((page) => page.length), [2, 2, 1]);
      const listed = pages.flat();
      assert.deepEqual(listed.map((x) => x.name), names);
      assert.deepEqual(listed.map((x) => x.size), [1n, 2n, 3n, 4n, 5n]);
      for (const info of listed) {
        const { entry } = await call(p.client.getLastEntry, { partition: info.name });
        assert.deepEqual(info.lastHash, entry!.hash, `${info.name}: last_hash is the last entry's hash`);
        assert.ok(info.createdAt instanceof Date && info.lastAppendedAt instanceof Date);
      }

      for (const garbage of ['!!!', 'not a token', Buffer.from('has space').toString('base64url')]) {
        await assertStatus(call(p.client.listPartitions, { prefix, pageSize: 2, pageToken: garbage }), status.INVALID_ARGUMENT, /^page_token:/);
      }
      await assertStatus(call(p.client.listPartitions, { prefix, pageSize: 1001, pageToken: '' }), status.INVALID_ARGUMENT, /^page_size:/);
    });

    test('a ListPartitions prefix is literal: _ and . match only themselves', async () => {
      const base = uniquePartition('lit');
      for (const name of [`${base}_a`, `${base}Xa`, `${base}.b`, `${base}Yb`]) await append(name, Buffer.from('x'));
      const names = async (prefix: string) => (await call(p.client.listPartitions, { prefix, pageSize: 0, pageToken: '' })).partitions.map((x) => x.name);
      assert.deepEqual(await names(`${base}_`), [`${base}_a`]);
      assert.deepEqual(await names(`${base}.`), [`${base}.b`]);
      assert.deepEqual((await names(base)).length, 4);
    });

    test('bad partition names are refused with INVALID_ARGUMENT naming the field, and nothing is written', async () => {
      const before = (await call(p.client.listPartitions, { prefix: '', pageSize: 1000, pageToken: '' })).partitions.length;
      for (const bad of ['', 'x'.repeat(129), 'has space', 'slash/in-name', 'ünïcode', 'new\nline']) {
        const label = JSON.stringify(bad.slice(0, 20));
        await assertStatus(append(bad, Buffer.from('x')), status.INVALID_ARGUMENT, /^partition:/);
        await assertStatus(appendBatch(bad, [Buffer.from('x')]), status.INVALID_ARGUMENT, /^partition:/);
        await assertStatus(readAll(p.client, p.md, bad), status.INVALID_ARGUMENT, /^partition:/);
        await assertStatus(readStream(streamOf(tail({ partition: bad, follow: true }))), status.INVALID_ARGUMENT, /^partition:/);
        for (const byName of byPartitionName) {
          await assertStatus(byName(bad), status.INVALID_ARGUMENT, /^partition:/).catch((err: Error) => assert.fail(`${label}: ${err.message}`));
        }
      }
      const longest = 'x'.repeat(128);
      assert.equal(await sizeOf(longest), undefined, 'the over-long name was not truncated into a valid one');
      const after = (await call(p.client.listPartitions, { prefix: '', pageSize: 1000, pageToken: '' })).partitions.length;
      assert.equal(after, before, 'no partition was created');
      // The boundary itself is accepted: 128 characters.
      assert.equal((await append(`${uniquePartition('n')}${'y'.repeat(128 - 13)}`, Buffer.from('ok'))).seq, 0n);
    });

    test('empty data, data over log.maxPayloadBytes, an empty batch and a batch of 1,001 are refused naming the field; the partition is unchanged', async () => {
      const partition = uniquePartition('payload');
      const kept = await appendBatch(partition, payloads(2));
      const tooBig = Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 1);
      const refusals: [string, () => Promise<unknown>, RegExp][] = [
        ['empty data', () => append(partition, Buffer.alloc(0)), /^data: must not be empty/],
        ['data one byte over the maximum', () => append(partition, tooBig), new RegExp(`^data: .*maximum is ${MAX_PAYLOAD_BYTES}`)],
        ['an empty batch', () => appendBatch(partition, []), /^data: must hold at least one payload/],
        ['a batch of 1,001', () => appendBatch(partition, payloads(1001)), /^data: holds 1001 payloads; the maximum is 1000/],
        ['a batch with one payload over the maximum', () => appendBatch(partition, [Buffer.from('ok'), Buffer.from('ok'), tooBig]), /^data\[2\]:/],
        ['a batch with one empty payload', () => appendBatch(partition, [Buffer.from('ok'), Buffer.alloc(0)]), /^data\[1\]: must not be empty/],
      ];
      for (const [what, send, pattern] of refusals) {
        await assertStatus(send(), status.INVALID_ARGUMENT, pattern).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
        assert.equal(await sizeOf(partition), 2n, `${what}: the partition is unchanged`);
      }
      const { entries } = await readAll(p.client, p.md, partition);
      assert.deepEqual(entries.map((e) => e.hash), kept.receipts.map((r) => r.hash));

      const unborn = uniquePartition('unborn');
      await assertStatus(append(unborn, Buffer.alloc(0)), status.INVALID_ARGUMENT, /^data:/);
      await assertStatus(appendBatch(unborn, [tooBig]), status.INVALID_ARGUMENT, /^data\[0\]:/);
      assert.equal(await sizeOf(unborn), undefined, 'a refused first append does not create the partition');

      const atMax = await append(partition, Buffer.alloc(MAX_PAYLOAD_BYTES, 2));
      assert.equal(atMax.seq, 2n, 'a payload of exactly the maximum is accepted');
      assert.equal((await appendBatch(partition, payloads(1000))).receipts.length, 1000, 'a batch of exactly 1,000 is accepted');
    });

    test(
      'a batch totalling over 4 MiB is refused with INVALID_ARGUMENT naming data, and nothing is written',
      async () => {
        const partition = uniquePartition('bigbatch');
        await append(partition, Buffer.from('x'));
        const overFourMiB = Array.from({ length: Math.ceil((4 * 1024 * 1024 + 1) / MAX_PAYLOAD_BYTES) }, () => Buffer.alloc(MAX_PAYLOAD_BYTES, 7));
        try {
          await assertStatus(appendBatch(partition, overFourMiB), status.INVALID_ARGUMENT, /^data: totals/);
        } finally {
          assert.equal(await sizeOf(partition), 1n, 'nothing was written');
        }
      },
    );

    test(
      'an append the database fails leaves nothing behind, not even the partition it would have created',
      async () => {
        const partition = uniquePartition('fault');
        // A fault injected in the database for this partition only: every insert of its entries fails.
        await p.runtime.db.exec(`
          CREATE FUNCTION log.inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
          CREATE TRIGGER inject_fault BEFORE INSERT ON log.entries FOR EACH ROW WHEN (NEW.partition = '${partition}') EXECUTE FUNCTION log.inject_fault();`);
        try {
          await assertStatus(append(partition, Buffer.from('doomed')), status.UNAVAILABLE, /not acknowledged/);
          await assertStatus(appendBatch(partition, payloads(3)), status.UNAVAILABLE);
          const { rows } = await p.runtime.db.query<{ n: string | number }>('SELECT count(*) AS n FROM log.entries WHERE partition = $1', [partition]);
          assert.equal(Number(rows[0]!.n), 0, 'no entry was written');
          assert.equal(await sizeOf(partition), undefined, 'the partition was not created');
        } finally {
          await p.runtime.db.exec('DROP TRIGGER inject_fault ON log.entries; DROP FUNCTION log.inject_fault();');
        }
        const first = await append(partition, Buffer.from('after the fault'));
        assert.equal(first.seq, 0n, 'the first append that succeeds gets seq 0');
        assert.deepEqual(first.prevHash, ZERO_HASH);
      },
    );

    test('an unknown partition is NOT_FOUND for Read, Tail, Verify, GetLastEntry, GetCheckpoint and proofs', async () => {
      const partition = uniquePartition('unknown');
      await assertStatus(readAll(p.client, p.md, partition), status.NOT_FOUND, new RegExp(partition));
      await assertStatus(readStream(streamOf(tail({ partition, last: 5 }))), status.NOT_FOUND);
      for (const byName of byPartitionName) await assertStatus(byName(partition), status.NOT_FOUND, new RegExp(partition));
      await assertStatus(call(p.client.getInclusionProof, { partition, seq: 0n, treeSize: 0n }), status.NOT_FOUND);
      await assertStatus(call(p.client.getConsistencyProof, { partition, oldSize: 1n, newSize: 0n }), status.NOT_FOUND);
      assert.equal(await sizeOf(partition), undefined, 'reading does not create the partition');
    });

    test('start_seq past the end is OUT_OF_RANGE for Read and non-follow Tail; the partition is unchanged', async () => {
      const partition = uniquePartition('range');
      await appendBatch(partition, payloads(3));
      await assertStatus(readAll(p.client, p.md, partition, 4n), status.OUT_OF_RANGE, /start_seq 4 .*size 3/);
      await assertStatus(readAll(p.client, p.md, partition, 1n << 62n), status.OUT_OF_RANGE);
      await assertStatus(readStream(streamOf(tail({ partition, startSeq: 4n }))), status.OUT_OF_RANGE);
      await assertStatus(readStream(streamOf(tail({ partition, last: 10_001 }))), status.INVALID_ARGUMENT, /^last:/);
      assert.equal(await sizeOf(partition), 3n);
    });

    test(
      'a follow Tail from a start_seq past the signed 64-bit range is refused as out of range, not INTERNAL',
      async () => {
        const partition = uniquePartition('hugeseq');
        await append(partition, Buffer.from('x'));
        const stream = p.client.tail({ partition, startSeq: 1n << 63n, last: 0, follow: true }, p.md, { deadline: Date.now() + 2000 });
        const err = await grpcError(readStream(streamOf(stream)));
        assert.ok(err.code === status.OUT_OF_RANGE || err.code === status.INVALID_ARGUMENT, `got ${status[err.code]}: ${err.details}`);
      },
    );

    test('proofs outside the tree are OUT_OF_RANGE, old_size 0 is INVALID_ARGUMENT, and nothing changes', async () => {
      const partition = uniquePartition('proofrange');
      await appendBatch(partition, payloads(5));
      const inclusion = (seq: bigint, treeSize: bigint) => call(p.client.getInclusionProof, { partition, seq, treeSize });
      const consistency = (oldSize: bigint, newSize: bigint) => call(p.client.getConsistencyProof, { partition, oldSize, newSize });
      await assertStatus(inclusion(5n, 0n), status.OUT_OF_RANGE, /seq 5/);
      await assertStatus(inclusion(3n, 3n), status.OUT_OF_RANGE, /seq 3 is not in a tree of 3/);
      await assertStatus(inclusion(0n, 6n), status.OUT_OF_RANGE, /tree_size 6/);
      await assertStatus(consistency(0n, 3n), status.INVALID_ARGUMENT, /^old_size:/);
      await assertStatus(consistency(4n, 3n), status.OUT_OF_RANGE, /old_size 4/);
      await assertStatus(consistency(2n, 6n), status.OUT_OF_RANGE, /new_size 6/);
      await assertStatus(consistency(6n, 0n), status.OUT_OF_RANGE);
      assert.equal(await sizeOf(partition), 5n);
      assert.equal((await inclusion(4n, 0n)).treeSize, 5n, 'tree_size 0 means the current size');
      assert.deepEqual((await consistency(5n, 0n)), { oldSize: 5n, newSize: 5n, hashes: [] }, 'a tree is consistent with itself by an empty proof');
    });

    test('GetCheckpoint is signed by the pinned key, names the partition, and commits to the root the client computes', async () => {
      const partition = uniquePartition('checkpoint');
      await appendBatch(partition, payloads(7));
      const res = await checkpoint(partition);
      const pinned = pinnedVerifierKey();
      assert.equal(res.verifierKey, pinned, 'the server reports the key the key file holds');
      assert.equal(res.keyName, 'gantry.local/log');
      const head = verifyCheckpoint(res.checkpoint, pinned, { partition });
      assert.equal(head.origin, `gantry.local/log/${partition}`);
      assert.equal(head.size, 7n);
      assert.equal(res.size, 7n);
      assert.deepEqual(head.rootHash, res.rootHash);
      const { entries } = await readAll(p.client, p.md, partition);
      assert.deepEqual(head.rootHash, rootFromLeafHashes(entries.map((e) => entryLeafHash(entryFieldsOf(e)))), 'the root is the RFC 6962 hash of the entries read back');
      // The same verification with the key string the server returned.
      assert.equal(verifyCheckpoint(res.checkpoint, res.verifierKey, { partition }).size, 7n);
      // A note altered in transit does not open.
      const forged = res.checkpoint.replace(/\n7\n/, '\n8\n');
      assert.notEqual(forged, res.checkpoint);
      assert.throws(() => verifyCheckpoint(forged, pinned, { partition }));
    });

    test('a checkpoint of partition A is refused when the client pins partition B', async () => {
      const a = uniquePartition('pin-a');
      const b = `x${a}`; // "/xpin-a..." must not pass for "/pin-a...", nor the reverse
      await append(a, Buffer.from('a'));
      await append(b, Buffer.from('b'));
      const noteA = (await checkpoint(a)).checkpoint;
      const noteB = (await checkpoint(b)).checkpoint;
      const pinned = pinnedVerifierKey();
      assert.throws(() => verifyCheckpoint(noteA, pinned, { partition: b }), /not for partition/);
      assert.throws(() => verifyCheckpoint(noteB, pinned, { partition: a }), /not for partition/);
      assert.equal(verifyCheckpoint(noteA, pinned, { partition: a }).origin, `gantry.local/log/${a}`);
    });

    test('inclusion and consistency proofs verify client-side from entries read back and checkpoints taken as the log grows', async () => {
      const partition = uniquePartition('proofs');
      const pinned = pinnedVerifierKey();
      const heads = new Map<bigint, Checkpoint>();
      for (const grow of [1, 4, 3, 5, 1]) {
        await appendBatch(partition, payloads(grow));
        const head = verifyCheckpoint((await checkpoint(partition)).checkpoint, pinned, { partition });
        heads.set(head.size, head);
      }
      assert.deepEqual([...heads.keys()], [1n, 5n, 8n, 13n, 14n]);
      const { entries } = await readAll(p.client, p.md, partition);

      const pairs: [number, bigint][] = [[0, 1n], [0, 5n], [4, 5n], [3, 8n], [7, 8n], [5, 8n], [0, 13n], [6, 13n], [12, 13n], [13, 14n], [8, 14n]];
      for (const [seq, treeSize] of pairs) {
        const proof = await call(p.client.getInclusionProof, { partition, seq: BigInt(seq), treeSize });
        const entry = entries[seq]!;
        assert.equal(verifyEntryInclusion(entry, proof, heads.get(treeSize)!), true, `seq ${seq} in tree ${treeSize}`);
        // The proof binds that exact entry: another payload at that seq does not verify.
        const altered = { ...entry, data: Buffer.from('forged') };
        altered.hash = entryHash(entryFieldsOf(altered));
        assert.equal(verifyEntryInclusion(altered, proof, heads.get(treeSize)!), false, `a forged seq ${seq} does not verify`);
      }
      const proof7in13 = await call(p.client.getInclusionProof, { partition, seq: 7n, treeSize: 13n });
      assert.equal(verifyEntryInclusion(entries[7]!, proof7in13, heads.get(14n)!), false, 'a proof for another tree size does not verify');

      const sizes = [...heads.keys()];
      for (const [i, oldSize] of sizes.entries()) {
        for (const newSize of sizes.slice(i)) {
          const proof = await call(p.client.getConsistencyProof, { partition, oldSize, newSize });
          assert.equal(verifyCheckpointConsistency(heads.get(oldSize)!, heads.get(newSize)!, proof), true, `${oldSize} -> ${newSize}`);
        }
      }
      const proof5to13 = await call(p.client.getConsistencyProof, { partition, oldSize: 5n, newSize: 13n });
      assert.equal(verifyCheckpointConsistency(heads.get(8n)!, heads.get(13n)!, proof5to13.hashes), false, 'a proof from another old size does not verify');
    });

    test('a token with only log.read cannot Append or AppendBatch (PERMISSION_DENIED), and nothing is written', async () => {
      const partition = uniquePartition('scopes');
      await append(partition, Buffer.from('by a writer'));
      const reader = p.metadata('reader', ['log.read']);
      await assertStatus(append(partition, Buffer.from('by a reader'), reader), status.PERMISSION_DENIED, /log\.append/);
      await assertStatus(appendBatch(partition, [Buffer.from('by a reader')], reader), status.PERMISSION_DENIED, /log\.append/);
      assert.equal((await readAll(p.client, reader, partition)).entries.length, 1, 'the reader can read');
      const writer = p.metadata('writer', ['log.append']);
      await assertStatus(readAll(p.client, writer, partition), status.PERMISSION_DENIED, /log\.read/);
      assert.equal(await sizeOf(partition), 1n);
    });

    test('a Tail without follow returns the last N entries (or from start_seq) and ends', async () => {
      const partition = uniquePartition('tail');
      const data = payloads(10);
      await appendBatch(partition, data);
      const seqsOf = async (req: Partial<logv1.TailRequest>) => (await readStream(streamOf(tail({ partition, ...req })))).entries.map((e) => Number(e.seq));
      assert.deepEqual(await seqsOf({ last: 3 }), [7, 8, 9]);
      assert.deepEqual(await seqsOf({ last: 25 }), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'more than the partition holds: all of it');
      assert.deepEqual(await seqsOf({ last: 0 }), []);
      assert.deepEqual(await seqsOf({ startSeq: 6n, last: 1 }), [6, 7, 8, 9], 'start_seq wins over last');
      const { entries } = await readStream(streamOf(tail({ partition, last: 2 })));
      assert.deepEqual(entries.map((e) => e.data), data.slice(8));
    });

    test('a follow Tail receives entries appended after it started, in order, without gaps, each within 1 s', async (t) => {
      const partition = uniquePartition('follow');
      await appendBatch(partition, payloads(3));
      const stream = tail({ partition, startSeq: 3n, follow: true });
      const received: { entry: logv1.Entry; at: number }[] = [];
      const expected = 20 + 5 + 10;
      const done = new Promise<void>((resolve, reject) => {
        stream.on('data', (msg: logv1.TailResponse) => {
          const at = Date.now();
          for (const entry of msg.entries) received.push({ entry, at });
          if (received.length >= expected) resolve();
        });
        stream.on('error', reject);
      });

      const sent: { data: Buffer; ackAt: number; seq: bigint }[] = [];
      const data = payloads(20, 'one');
      for (const [i, d] of data.entries()) {
        const r = await append(partition, d);
        sent.push({ data: d, ackAt: Date.now(), seq: r.seq });
        if (i % 5 === 0) await new Promise((r) => setTimeout(r, 30));
      }
      const batch = payloads(5, 'batch');
      const rb = await appendBatch(partition, batch);
      rb.receipts.forEach((r, i) => sent.push({ data: batch[i]!, ackAt: Date.now(), seq: r.seq }));
      const racing = payloads(10, 'racing');
      const rs = await Promise.all(racing.map((d) => append(partition, d).then((r) => ({ data: d, ackAt: Date.now(), seq: r.seq }))));
      sent.push(...rs);

      try {
        await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received.length} of ${expected} entries arrived`)), 5000))]);
      } finally {
        stream.cancel();
      }
      assert.deepEqual(received.map((r) => Number(r.entry.seq)), Array.from({ length: expected }, (_, i) => i + 3), 'in seq order, no gaps, no repeats');
      let worstMs = -Infinity;
      for (const s of sent) {
        const got = received.find((r) => r.entry.seq === s.seq)!;
        assert.deepEqual(got.entry.data, s.data);
        const latencyMs = got.at - s.ackAt;
        worstMs = Math.max(worstMs, latencyMs);
        assert.ok(latencyMs <= FOLLOW_LATENCY_MS, `seq ${s.seq} arrived ${latencyMs} ms after its append was acknowledged`);
      }
      t.diagnostic(`worst delivery: ${worstMs} ms after the acknowledgement (negative: before it)`);
    });

    test('a follow Tail on a partition that does not exist yet receives its first entries', async () => {
      const partition = uniquePartition('unborn-follow');
      const stream = tail({ partition, startSeq: 0n, follow: true });
      const first = new Promise<logv1.Entry[]>((resolve, reject) => {
        stream.on('data', (msg: logv1.TailResponse) => resolve(msg.entries));
        stream.on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 100));
      await append(partition, Buffer.from('hello'));
      const entries = await first;
      stream.cancel();
      assert.equal(entries[0]?.seq, 0n);
      assert.deepEqual(entries[0]?.data, Buffer.from('hello'));
    });

    test('cancelling a follow Tail ends the call on the server', async () => {
      const partition = uniquePartition('cancel');
      await append(partition, Buffer.from('x'));
      // The previous test's cancelled Tail may take a moment to end on the server.
      assert.ok(await eventually(() => p.runtime.server.inFlightCalls === 0, 2000), 'no call in flight before');
      const stream = tail({ partition, last: 1, follow: true });
      const ended = new Promise<number | undefined>((resolve) => {
        stream.on('error', (err: { code?: number }) => resolve(err.code));
        stream.on('end', () => resolve(undefined));
      });
      await new Promise<void>((resolve) => stream.once('data', () => resolve()));
      assert.ok(p.runtime.server.inFlightCalls >= 1, 'the follow Tail is in flight');
      stream.cancel();
      assert.equal(await ended, status.CANCELLED);
      assert.ok(await eventually(() => p.runtime.server.inFlightCalls === 0, 2000), `${p.runtime.server.inFlightCalls} call(s) still in flight 2 s after the cancel`);
    });
  });
}
