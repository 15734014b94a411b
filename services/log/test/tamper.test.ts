// Tampering with stored rows. The database itself refuses UPDATE and DELETE on entries; an attacker
// with superuser rights disables that trigger and edits, deletes or reorders rows, and Verify must
// then name the first seq that no longer checks out.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from '@gantry/kit';
import { unary } from '@gantry/kit';
import { requirePostgresInCi } from '@gantry/test-support/databases';
import { entryFieldsOf, entryHash, verifierKeyString, verifyCheckpoint, verifyEntryInclusion } from '../src/client/index.js';
import { ed25519PublicKeyRaw } from '../src/domain/checkpoint.js';
import { engines, payloads, readAll, startLogPlatform, uniquePartition, type LogPlatform } from './support.js';

const ENTRIES = 10;

requirePostgresInCi('the log tamper tests');

for (const engine of engines()) {
  describe(`tampering with stored log rows on ${engine.name}`, { skip: engine.skip }, () => {
    let p: LogPlatform;
    before(async () => {
      p = await startLogPlatform(engine.name);
    });
    after(async () => {
      await p?.close();
    });

    const verify = (partition: string) => unary(p.client.verify, p.client, { partition }, p.md);

    /** A partition of ENTRIES entries that verifies before anyone touches it. */
    const freshPartition = async (label: string) => {
      const partition = uniquePartition(label);
      await unary(p.client.appendBatch, p.client, { partition, data: payloads(ENTRIES), idempotencyKeys: [] }, p.md);
      const v = await verify(partition);
      assert.equal(v.valid, true, `the untouched partition verifies: ${v.reason}`);
      assert.equal(v.count, BigInt(ENTRIES));
      return partition;
    };

    /** Runs `edit` with the append-only trigger disabled, as a superuser could, and re-enables it. */
    const asAttacker = (edit: (tx: Sql) => Promise<unknown>) =>
      p.runtime.db.transaction(async (tx) => {
        await tx.query('ALTER TABLE log.entries DISABLE TRIGGER entries_append_only');
        await edit(tx);
        await tx.query('ALTER TABLE log.entries ENABLE TRIGGER entries_append_only');
      });

    test('the database refuses a plain UPDATE or DELETE of an entry or a tree node, and the partition still verifies', async () => {
      const partition = await freshPartition('refused');
      const db = p.runtime.db;
      await assert.rejects(db.query("UPDATE log.entries SET data = 'x' WHERE partition = $1 AND seq = 5", [partition]), /log\.entries is append-only/);
      await assert.rejects(db.query('DELETE FROM log.entries WHERE partition = $1 AND seq = 3', [partition]), /log\.entries is append-only/);
      await assert.rejects(db.query('UPDATE log.entries SET seq = seq + 100 WHERE partition = $1', [partition]), /append-only/);
      // The tree's node hashes live in the entries' rows (migration 004), under the same trigger.
      await assert.rejects(db.query("UPDATE log.entries SET nodes = '\\x00' WHERE partition = $1", [partition]), /log\.entries is append-only/);
      const { rows } = await db.query<{ n: string | number }>('SELECT count(*) AS n FROM log.entries WHERE partition = $1', [partition]);
      assert.equal(Number(rows[0]!.n), ENTRIES);
      assert.equal((await verify(partition)).valid, true);
    });

    test('editing the data of seq 5 makes Verify report seq 5, hash mismatch', async () => {
      const partition = await freshPartition('edit');
      await asAttacker((tx) => tx.query("UPDATE log.entries SET data = 'rewritten' WHERE partition = $1 AND seq = 5", [partition]));
      const v = await verify(partition);
      assert.equal(v.valid, false);
      assert.equal(v.firstBadSeq, 5n);
      assert.equal(v.reason, 'hash mismatch');
      assert.equal(v.count, 5n, 'seqs 0-4 still verify');
    });

    test('editing the timestamp of seq 2 makes Verify report seq 2, hash mismatch', async () => {
      const partition = await freshPartition('edit-ts');
      await asAttacker((tx) => tx.query('UPDATE log.entries SET ts_ms = ts_ms + 1 WHERE partition = $1 AND seq = 2', [partition]));
      const v = await verify(partition);
      assert.deepEqual({ valid: v.valid, firstBadSeq: v.firstBadSeq, reason: v.reason }, { valid: false, firstBadSeq: 2n, reason: 'hash mismatch' });
    });

    test('editing seq 5 and recomputing its hash breaks the link from seq 6', async () => {
      const partition = await freshPartition('rehash');
      const { entries } = await readAll(p.client, p.md, partition);
      const forged = { ...entries[5]!, data: Buffer.from('rewritten') };
      const forgedHash = entryHash(entryFieldsOf(forged));
      await asAttacker((tx) => tx.query('UPDATE log.entries SET data = $2, hash = $3 WHERE partition = $1 AND seq = 5', [partition, forged.data, forgedHash]));
      const v = await verify(partition);
      assert.deepEqual({ valid: v.valid, firstBadSeq: v.firstBadSeq, reason: v.reason }, { valid: false, firstBadSeq: 6n, reason: 'prev_hash does not chain' });
    });

    test('deleting seq 3 makes Verify report seq 3, missing seq', async () => {
      const partition = await freshPartition('delete');
      await asAttacker((tx) => tx.query('DELETE FROM log.entries WHERE partition = $1 AND seq = 3', [partition]));
      const v = await verify(partition);
      assert.deepEqual({ valid: v.valid, firstBadSeq: v.firstBadSeq, reason: v.reason, count: v.count }, { valid: false, firstBadSeq: 3n, reason: 'missing seq', count: 3n });
    });

    test('deleting the last entry is detected: the partition says it holds one more', async () => {
      const partition = await freshPartition('delete-last');
      await asAttacker((tx) => tx.query('DELETE FROM log.entries WHERE partition = $1 AND seq = $2', [partition, ENTRIES - 1]));
      const v = await verify(partition);
      assert.equal(v.valid, false);
      assert.equal(v.firstBadSeq, BigInt(ENTRIES - 1));
      assert.equal(v.reason, 'missing seq');
      assert.equal(v.count, BigInt(ENTRIES - 1));
    });

    test('swapping the contents of seq 4 and seq 6 makes Verify report seq 4', async () => {
      const partition = await freshPartition('swap');
      await asAttacker(async (tx) => {
        const { rows } = await tx.query<{ seq: string | number; data: Uint8Array; prev_hash: Uint8Array; hash: Uint8Array; ts_ms: string | number }>(
          'SELECT seq, ts_ms, data, prev_hash, hash FROM log.entries WHERE partition = $1 AND seq IN (4, 6) ORDER BY seq',
          [partition],
        );
        const [four, six] = rows as [(typeof rows)[0], (typeof rows)[0]];
        const put = (seq: number, r: typeof four) =>
          tx.query('UPDATE log.entries SET ts_ms = $3, data = $4, prev_hash = $5, hash = $6 WHERE partition = $1 AND seq = $2', [partition, seq, String(r.ts_ms), r.data, r.prev_hash, r.hash]);
        await put(4, six);
        await put(6, four);
      });
      const v = await verify(partition);
      assert.equal(v.valid, false);
      assert.equal(v.firstBadSeq, 4n);
      assert.equal(v.reason, 'prev_hash does not chain');
    });

    test('swapping only data and hash of seq 4 and seq 6 makes Verify report seq 4', async () => {
      const partition = await freshPartition('swap-data');
      await asAttacker((tx) =>
        tx.query(
          `UPDATE log.entries e SET data = o.data, hash = o.hash
             FROM log.entries o
            WHERE e.partition = $1 AND o.partition = $1 AND e.seq IN (4, 6) AND o.seq = 10 - e.seq`,
          [partition],
        ),
      );
      const v = await verify(partition);
      assert.deepEqual({ valid: v.valid, firstBadSeq: v.firstBadSeq, reason: v.reason }, { valid: false, firstBadSeq: 4n, reason: 'hash mismatch' });
    });

    test('renumbering seq 4 and seq 6 (reordering the rows) makes Verify report seq 4', async () => {
      const partition = await freshPartition('renumber');
      await asAttacker(async (tx) => {
        await tx.query('UPDATE log.entries SET seq = 1000000 WHERE partition = $1 AND seq = 4', [partition]);
        await tx.query('UPDATE log.entries SET seq = 4 WHERE partition = $1 AND seq = 6', [partition]);
        await tx.query('UPDATE log.entries SET seq = 6 WHERE partition = $1 AND seq = 1000000', [partition]);
      });
      const v = await verify(partition);
      assert.equal(v.valid, false);
      assert.equal(v.firstBadSeq, 4n);
    });

    test('deleting seq 5,000 of 6,000 (the first row of Verify\'s second read) makes Verify report seq 5,000', async () => {
      const partition = uniquePartition('delete-deep');
      for (let i = 0; i < 6; i++) await unary(p.client.appendBatch, p.client, { partition, data: payloads(1000, `b${i}`), idempotencyKeys: [] }, p.md);
      const intact = await verify(partition);
      assert.deepEqual({ valid: intact.valid, count: intact.count }, { valid: true, count: 6000n });
      await asAttacker((tx) => tx.query('DELETE FROM log.entries WHERE partition = $1 AND seq = 5000', [partition]));
      const v = await verify(partition);
      assert.deepEqual({ valid: v.valid, firstBadSeq: v.firstBadSeq, reason: v.reason, count: v.count }, { valid: false, firstBadSeq: 5000n, reason: 'missing seq', count: 5000n });
    });

    test('a row appended behind the service\'s back (seq = size) is detected at that seq', async () => {
      const partition = await freshPartition('extra');
      const { entries } = await readAll(p.client, p.md, partition);
      const last = entries[ENTRIES - 1]!;
      const extra = { partition, seq: BigInt(ENTRIES), timestampMs: BigInt(Date.now()), data: Buffer.from('smuggled'), prevHash: last.hash };
      await p.runtime.db.query('INSERT INTO log.entries (partition, seq, ts_ms, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)', [
        partition, String(extra.seq), String(extra.timestampMs), extra.data, extra.prevHash, entryHash(extra),
      ]);
      const v = await verify(partition);
      assert.equal(v.valid, false);
      assert.equal(v.firstBadSeq, BigInt(ENTRIES));
    });

    test('a chain rewritten consistently from seq 5 (hashes and partition head recomputed) still fails the client holding an earlier checkpoint', async () => {
      const partition = await freshPartition('rewrite');
      const key = createPrivateKey(readFileSync(join(p.dataDir, 'log', 'checkpoint-key.pem')));
      const pinned = verifierKeyString('gantry.local/log', ed25519PublicKeyRaw(key));
      const head = verifyCheckpoint((await unary(p.client.getCheckpoint, p.client, { partition }, p.md)).checkpoint, pinned, { partition });
      const { entries } = await readAll(p.client, p.md, partition);
      await asAttacker(async (tx) => {
        let prevHash = entries[4]!.hash;
        for (const e of entries.slice(5)) {
          const forged = { ...entryFieldsOf(e), data: Buffer.from(`rewritten-${e.seq}`), prevHash };
          const hash = entryHash(forged);
          await tx.query('UPDATE log.entries SET data = $3, prev_hash = $4, hash = $5 WHERE partition = $1 AND seq = $2', [partition, String(e.seq), forged.data, prevHash, hash]);
          prevHash = hash;
        }
        await tx.query('UPDATE log.partitions SET head_hash = $2 WHERE name = $1', [partition, prevHash]);
      });
      // The chain alone is self-consistent now; the Merkle tree the client pinned is not fooled.
      const { entries: served } = await readAll(p.client, p.md, partition);
      assert.deepEqual(served[7]!.data, Buffer.from('rewritten-7'));
      const proof = await unary(p.client.getInclusionProof, p.client, { partition, seq: 7n, treeSize: head.size }, p.md);
      assert.equal(verifyEntryInclusion(served[7]!, proof, head), false, 'the rewritten entry is not in the checkpointed tree');
      assert.equal(verifyEntryInclusion(served[3]!, await unary(p.client.getInclusionProof, p.client, { partition, seq: 3n, treeSize: head.size }, p.md), head), true, 'an untouched entry still is');
    });
  });
}
