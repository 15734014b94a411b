import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate } from '@gantry/kit';
import { engines, openFreshDatabase, requirePostgresInCi } from '@gantry/test-support/databases';
import { entryLeafHash, verifyChain } from '../src/domain/entry.js';
import { CompactRange, rootFromLeafHashes } from '../src/domain/merkle.js';
import { GroupCommitter } from '../src/store/group-commit.js';
import { LOG_SCHEMA, LogStore, logMigrations, type StoredEntry } from '../src/store/log-store.js';

requirePostgresInCi('the group commit tests');

const payload = (label: string) => Buffer.from(label);

/** Everything stored in `partition`, in seq order, with the head the partition records. */
async function readAll(store: LogStore, partition: string): Promise<{ entries: StoredEntry[]; size: bigint; root: Buffer }> {
  const entries: StoredEntry[] = [];
  for (let from = 0n; ; ) {
    const page = await store.readRange(partition, from, 1n << 62n, 1000);
    if (page.length === 0) break;
    entries.push(...page);
    from = page[page.length - 1]!.seq + 1n;
  }
  const head = (await store.partition(partition))!;
  return { entries, size: head.size, root: CompactRange.deserialize(head.size, head.compactRange).root() };
}

/** The log's invariants over a whole partition: gapless seqs, an intact chain, and a tree of exactly these leaves. */
async function assertIntact(store: LogStore, partition: string, count: number): Promise<StoredEntry[]> {
  const { entries, size, root } = await readAll(store, partition);
  assert.equal(entries.length, count, 'every acknowledged entry is stored, once');
  assert.equal(size, BigInt(count), 'the head counts them');
  assert.deepEqual(entries.map((e) => e.seq), entries.map((_, i) => BigInt(i)), 'seqs are gapless');
  assert.equal(verifyChain(entries, 0n, undefined, { size }).valid, true, 'the chain verifies');
  assert.deepEqual(root, rootFromLeafHashes(entries.map((e) => entryLeafHash(e))), 'the recorded tree is the tree of these entries');
  return entries;
}

for (const engine of engines()) {
  describe(`group commit on ${engine.name}`, { skip: engine.skip }, () => {
    let world: Awaited<ReturnType<typeof openFreshDatabase>>;
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_log_group');
      await migrate(world.db, LOG_SCHEMA, logMigrations);
    });
    after(async () => world?.close());

    test('300 concurrent appends of 600 entries, pipelined two statements at a time, each get the entries they sent, with gapless seqs, an intact chain and the right tree', async () => {
      const store = new LogStore(world.db);
      const committer = new GroupCommitter(store);
      const receipts = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          // Single appends and batches of two and three, as unary Append and AppendBatch send them.
          committer.append('pipelined', `author-${i % 7}`, Array.from({ length: 1 + (i % 3) }, (_, j) => payload(`${i}.${j}`))),
        ),
      );
      const stored = await assertIntact(store, 'pipelined', 600);
      const bySeq = new Map(stored.map((e) => [e.seq, e]));
      for (const [i, entries] of receipts.entries()) {
        assert.deepEqual(entries.map((e) => e.data.toString()), Array.from({ length: 1 + (i % 3) }, (_, j) => `${i}.${j}`), `append ${i} got its own entries back`);
        for (const e of entries) {
          const s = bySeq.get(e.seq)!;
          assert.deepEqual([s.data, s.hash, s.author], [e.data, e.hash, `author-${i % 7}`], `append ${i}'s receipt is what was stored at seq ${e.seq}`);
        }
      }
    });

    test('a page stops once it holds 16 MiB of payload: five 4 MiB entries come as pages of four and one, whole', async () => {
      const store = new LogStore(world.db);
      const committer = new GroupCommitter(store);
      const big = (i: number) => Buffer.alloc(4 * 1024 * 1024, i);
      for (let i = 0; i < 5; i++) await committer.append('large', 'author', [big(i)]);
      const first = await store.readRange('large', 0n, 1n << 62n, 1000);
      assert.deepEqual(first.map((e) => e.seq), [0n, 1n, 2n, 3n], 'the fifth entry would take the page past 16 MiB');
      const rest = await store.readRange('large', 4n, 1n << 62n, 1000);
      assert.deepEqual(rest.map((e) => e.seq), [4n]);
      for (const e of [...first, ...rest]) assert.ok(e.data.equals(big(Number(e.seq))), `entry ${e.seq} is whole`);
      await assertIntact(store, 'large', 5);
    });

    test('appends planned on a head another replica moved miss, write nothing, and land after its entries; nothing is lost or duplicated', async () => {
      // Two stores on one database stand for two replicas: each has its own head cache and committer.
      const [a, b] = [new LogStore(world.db), new LogStore(world.db)];
      const [ca, cb] = [new GroupCommitter(a), new GroupCommitter(b)];
      // appendBatch is the safe path a takes with no head known: its first append, and after each miss.
      let safePath = 0;
      const appendBatch = a.appendBatch.bind(a);
      a.appendBatch = (...args) => (safePath++, appendBatch(...args));
      await ca.append('contended', 'a', [payload('a-first')]);
      const appends: Promise<StoredEntry[]>[] = [];
      for (let round = 0; round < 20; round++) {
        // b appends while a's pipelined appends are planned on the head a last saw.
        appends.push(cb.append('contended', 'b', [payload(`b${round}`)]));
        for (let i = 0; i < 5; i++) appends.push(ca.append('contended', 'a', [payload(`a${round}.${i}`)]));
        if (round % 4 === 3) await Promise.all(appends);
      }
      await Promise.all(appends);
      const stored = await assertIntact(a, 'contended', 1 + 20 * 6);
      assert.equal(new Set(stored.map((e) => e.data.toString())).size, stored.length, 'no payload was written twice');
      assert.ok(safePath > 1, `a's pipelined appends missed and took the safe path (${safePath} times)`);
    });
  });
}
