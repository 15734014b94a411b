// Idempotency keys over real gRPC, on PGlite and on PostgreSQL: a producer that re-sends a keyed
// append (an outbox relay after a crash) gets the first receipt back and the log gains nothing; a
// key never names two entries, not even when many clients race with it; bad keys write nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type Metadata } from '@grpc/grpc-js';
import { requirePostgresInCi } from '@gantry/test-support/databases';
import { unary } from '@gantry/kit';
import type { logv1 } from '@gantry/proto';
import { ZERO_HASH } from '../src/client/index.js';
import { LogStore } from '../src/store/log-store.js';
import { assertStatus, engines, logClient, partitionSize, payloads, readAll, startLogPlatform, uniquePartition, type LogClient, type LogPlatform } from './support.js';

requirePostgresInCi('the log idempotency tests');

/** The platform token's subject (support.ts): a replica appending as that author shares its keys. */
const LOG_TEST_AUTHOR = { author: 'log-test', keyOwner: 'log-test' };

/** The receipt fields that identify an entry (everything but `duplicate`). */
const landed = (r: logv1.EntryReceipt) => ({ seq: r.seq, timestamp: r.timestamp?.getTime(), prevHash: r.prevHash, hash: r.hash });

for (const engine of engines()) {
  describe(`log idempotency keys on ${engine.name}`, { skip: engine.skip }, () => {
    let p: LogPlatform;
    before(async () => {
      p = await startLogPlatform(engine.name);
    });
    after(async () => {
      await p?.close();
    });

    const call = <Req, Res>(method: Parameters<typeof unary<Req, Res>>[0], req: Req, md: Metadata = p.md, client: LogClient = p.client) => unary(method, client, req, md, 30_000);
    const append = (partition: string, data: Buffer, idempotencyKey = '', client?: LogClient) => call(p.client.append, { partition, data, idempotencyKey }, p.md, client);
    const appendBatch = (partition: string, data: Buffer[], idempotencyKeys: string[] = [], client?: LogClient) =>
      call(p.client.appendBatch, { partition, data, idempotencyKeys }, p.md, client);
    const sizeOf = (partition: string) => partitionSize(p.client, p.md, partition);
    const verifyValid = async (partition: string, count: bigint) => {
      const v = await call(p.client.verify, { partition });
      assert.equal(v.valid, true, v.reason);
      assert.equal(v.count, count);
    };

    test('a keyed first append creates the partition, and re-sending it returns the same receipt with duplicate = true and writes nothing', async () => {
      const partition = uniquePartition('idem');
      assert.equal(await sizeOf(partition), undefined);
      const first = await append(partition, Buffer.from('event 1'), 'evt-0001');
      assert.equal(first.seq, 0n);
      assert.deepEqual(first.prevHash, ZERO_HASH);
      assert.equal(first.duplicate, false);
      assert.equal(await sizeOf(partition), 1n, 'the keyed append created the partition');

      const unkeyed = await append(partition, Buffer.from('no key'));
      assert.equal(unkeyed.duplicate, false, 'an unkeyed append is never a duplicate');
      for (let i = 0; i < 3; i++) {
        const again = await append(partition, Buffer.from('event 1'), 'evt-0001');
        assert.equal(again.duplicate, true);
        assert.deepEqual(landed(again), landed(first), 'the earlier entry\'s receipt: seq, timestamp, prev_hash, hash');
      }
      assert.equal(await sizeOf(partition), 2n, 'the re-sends wrote nothing');

      // A key used by Append is a key of the partition for AppendBatch too.
      const { receipts } = await appendBatch(partition, [Buffer.from('event 1')], ['evt-0001']);
      assert.deepEqual(receipts.map((r) => r.duplicate), [true]);
      assert.deepEqual(landed(receipts[0]!), landed(first));
      assert.equal(await sizeOf(partition), 2n);
      await verifyValid(partition, 2n);
    });

    test('a batch mixing used and new keys appends only the new payloads, in request order with consecutive seqs, and returns the earlier receipts in place', async () => {
      const partition = uniquePartition('mixed');
      const old = payloads(3, 'old');
      const firstBatch = await appendBatch(partition, old, ['k0', 'k1', 'k2']);
      assert.deepEqual(firstBatch.receipts.map((r) => [r.seq, r.duplicate]), [[0n, false], [1n, false], [2n, false]]);
      await append(partition, Buffer.from('unkeyed in between'));

      const fresh = payloads(3, 'new');
      const data = [old[1]!, fresh[0]!, old[0]!, fresh[1]!, fresh[2]!];
      const { receipts } = await appendBatch(partition, data, ['k1', 'n0', 'k0', 'n1', 'n2']);
      assert.deepEqual(receipts.map((r) => r.duplicate), [true, false, true, false, false]);
      assert.deepEqual(landed(receipts[0]!), landed(firstBatch.receipts[1]!));
      assert.deepEqual(landed(receipts[2]!), landed(firstBatch.receipts[0]!));
      assert.deepEqual([receipts[1]!.seq, receipts[3]!.seq, receipts[4]!.seq], [4n, 5n, 6n], 'the new payloads got consecutive seqs after the last entry');
      assert.deepEqual(receipts[3]!.prevHash, receipts[1]!.hash, 'the new entries chain to each other');
      assert.deepEqual(receipts[4]!.prevHash, receipts[3]!.hash);

      const { entries } = await readAll(p.client, p.md, partition);
      assert.deepEqual(entries.map((e) => e.data), [...old, Buffer.from('unkeyed in between'), ...fresh], 'only the new payloads were appended, in request order');

      const resent = await appendBatch(partition, data, ['k1', 'n0', 'k0', 'n1', 'n2']);
      assert.ok(resent.receipts.every((r) => r.duplicate), 'a batch whose keys are all used writes nothing');
      assert.deepEqual(resent.receipts.map(landed), receipts.map(landed));
      assert.equal(await sizeOf(partition), 7n);
      await verifyValid(partition, 7n);
    });

    test('a key re-used with different data is ALREADY_EXISTS naming the key and its seq, and nothing is written', async () => {
      const partition = uniquePartition('conflict');
      await appendBatch(partition, payloads(2), ['a', 'b']);
      await assertStatus(append(partition, Buffer.from('other data'), 'b'), status.ALREADY_EXISTS, /"b".*seq 1/);
      // The conflict sits after a new key: the new payload is not written either.
      await assertStatus(appendBatch(partition, [Buffer.from('new'), Buffer.from('other data')], ['c', 'a']), status.ALREADY_EXISTS, /"a".*seq 0/);
      assert.equal(await sizeOf(partition), 2n);
      const retry = await appendBatch(partition, [Buffer.from('new')], ['c']);
      assert.deepEqual(retry.receipts.map((r) => [r.seq, r.duplicate]), [[2n, false]], 'key c was not taken by the refused batch');
      await verifyValid(partition, 3n);
    });

    test('keys are per partition: the same key appends once in each partition', async () => {
      const [a, b] = [uniquePartition('per-a'), uniquePartition('per-b')];
      const ra = await append(a, Buffer.from('same'), 'shared-key');
      const rb = await append(b, Buffer.from('different data is fine elsewhere'), 'shared-key');
      assert.deepEqual([ra.duplicate, rb.duplicate, ra.seq, rb.seq], [false, false, 0n, 0n]);
    });

    test('bad keys are INVALID_ARGUMENT naming the field, and nothing is written (not even a new partition)', async () => {
      const partition = uniquePartition('badkey');
      await appendBatch(partition, payloads(2), ['x0', 'x1']);
      const unborn = uniquePartition('badkey-unborn');
      const two = () => payloads(2, 'bad');
      const refusals: [string, () => Promise<unknown>, RegExp][] = [
        ['a key of 129 characters', () => append(partition, Buffer.from('d'), 'k'.repeat(129)), /^idempotency_key: must be 1 to 128 printable ASCII/],
        ['a key with a space', () => append(partition, Buffer.from('d'), 'has space'), /^idempotency_key:/],
        ['a key with a tab', () => append(partition, Buffer.from('d'), 'tab\there'), /^idempotency_key:/],
        ['a non-ASCII key', () => append(partition, Buffer.from('d'), 'clé'), /^idempotency_key:/],
        ['an empty key inside the list', () => appendBatch(partition, two(), ['ok', '']), /^idempotency_keys\[1\]: must be 1 to 128/],
        ['a key of 129 characters in a batch', () => appendBatch(partition, two(), ['k'.repeat(129), 'ok']), /^idempotency_keys\[0\]:/],
        ['a key with a space in a batch', () => appendBatch(partition, two(), ['ok', 'a b']), /^idempotency_keys\[1\]:/],
        ['a key twice in one batch', () => appendBatch(partition, [...two(), Buffer.from('3')], ['d1', 'd2', 'd1']), /^idempotency_keys\[2\]: repeats idempotency_keys\[0\]/],
        ['fewer keys than payloads', () => appendBatch(partition, [...two(), Buffer.from('3')], ['k1', 'k2']), /^idempotency_keys: holds 2 keys for 3 payloads/],
        ['more keys than payloads', () => appendBatch(partition, [Buffer.from('1')], ['k1', 'k2']), /^idempotency_keys: holds 2 keys for 1 payloads/],
        ['a bad key on a first append', () => append(unborn, Buffer.from('d'), ' '), /^idempotency_key:/],
        ['bad keys on a first batch', () => appendBatch(unborn, two(), ['same', 'same']), /^idempotency_keys\[1\]:/],
      ];
      for (const [what, send, pattern] of refusals) {
        await assertStatus(send(), status.INVALID_ARGUMENT, pattern).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
      }
      assert.equal(await sizeOf(partition), 2n, 'nothing was written');
      assert.equal(await sizeOf(unborn), undefined, 'a refused first append does not create the partition');
      // The boundaries are accepted: 128 characters, and every printable character but the space.
      const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
      const ok = await appendBatch(partition, payloads(2, 'ok'), ['k'.repeat(128), printable]);
      assert.deepEqual(ok.receipts.map((r) => [r.seq, r.duplicate]), [[2n, false], [3n, false]]);
    });

    test('many concurrent appends with one key, through several clients and a second store, end as exactly one entry', async () => {
      const clients = Array.from({ length: 4 }, () => logClient(p.address, p.dataDir));
      // A second LogStore has its own head cache, as another replica would; it shares only the database.
      const replica = new LogStore(p.runtime.db);
      try {
        for (const round of [0, 1, 2]) {
          // Round 0 races on a partition that does not exist yet, so the creation races too.
          const partition = uniquePartition(`race${round}`);
          if (round > 0) await appendBatch(partition, payloads(round));
          const data = Buffer.from(`the one event of round ${round}`);
          const viaGrpc = clients.flatMap((c) => Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? append(partition, data, 'evt-race', c) : appendBatch(partition, [data], ['evt-race'], c).then((r) => r.receipts[0]!))));
          const viaReplica = Array.from({ length: 4 }, () => replica.appendKeyed(partition, [data], ['evt-race'], LOG_TEST_AUTHOR, BigInt(Date.now())).then(([r]) => r!));
          const [grpcReceipts, replicaReceipts] = await Promise.all([Promise.all(viaGrpc), Promise.all(viaReplica)]);
          const all = [...grpcReceipts.map((r) => ({ seq: r.seq, hash: r.hash, duplicate: r.duplicate })), ...replicaReceipts.map((r) => ({ seq: r.seq, hash: r.hash, duplicate: r.duplicate }))];
          assert.equal(all.filter((r) => !r.duplicate).length, 1, `round ${round}: exactly one call appended`);
          assert.ok(all.every((r) => r.seq === BigInt(round) && r.hash.equals(all[0]!.hash)), `round ${round}: every call got the one entry's receipt`);
          assert.equal(await sizeOf(partition), BigInt(round + 1), `round ${round}: one entry for the key`);
          await verifyValid(partition, BigInt(round + 1));
        }

        // Overlapping batches racing: every key ends as exactly one entry, each batch's new entries one consecutive run.
        const partition = uniquePartition('race-batch');
        const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
        const dataOf = (k: string) => Buffer.from(`payload of ${k}`);
        const windows = Array.from({ length: 8 }, (_, w) => keys.slice(w, w + 5));
        const results = await Promise.all(windows.map((ks, w) => appendBatch(partition, ks.map(dataOf), ks, clients[w % clients.length])));
        for (const { receipts } of results) {
          const fresh = receipts.filter((r) => !r.duplicate);
          fresh.forEach((r, i) => assert.equal(r.seq, fresh[0]!.seq + BigInt(i), 'the new entries of a batch are one consecutive run'));
        }
        const seqOfKey = new Map<string, bigint>();
        results.forEach(({ receipts }, w) => receipts.forEach((r, i) => {
          const key = windows[w]![i]!;
          if (seqOfKey.has(key)) assert.equal(r.seq, seqOfKey.get(key), `${key} has one seq in every receipt`);
          seqOfKey.set(key, r.seq);
        }));
        assert.equal(await sizeOf(partition), 12n, 'twelve keys, twelve entries');
        const { entries } = await readAll(p.client, p.md, partition);
        for (const [key, seq] of seqOfKey) assert.deepEqual(entries[Number(seq)]!.data, dataOf(key));
        await verifyValid(partition, 12n);
      } finally {
        for (const c of clients) c.close();
      }
    });
  });
}
