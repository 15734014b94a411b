// The log's database upgrades in place to authors and per-owner idempotency keys (migration 003):
// a database written by the log as it was before (migrations 1 and 2, entries hashed without an
// author, keys of the whole partition) takes migration 003 alone, and afterwards its old entries
// still verify (chain, inclusion in a signed checkpoint) next to new entries that record their
// author, the checkpoints before and after are consistent, a producer re-sending a key it used
// before the upgrade still gets its earlier entry, and the audit partition is its owner's only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Status, migrate, migrationsApplied, type Database, type HandlerContext, type Principal, type Sql } from '@gantry/kit';
import { engines, openFreshDatabase, requirePostgresInCi } from '@gantry/test-support/databases';
import type { logv1 } from '@gantry/proto';
import { logHandlers } from '../src/api/handlers.js';
import { logServiceDefinition } from '../src/api/entry-wire.js';
import { ZERO_HASH, entryFieldsOf, entryHash, entryLeafHash, verifyCheckpoint, verifyCheckpointConsistency, verifyEntryInclusion, type Checkpoint } from '../src/client/index.js';
import { CompactRange } from '../src/domain/merkle.js';
import { CheckpointSigner } from '../src/signer.js';
import { AppendNotifier } from '../src/store/append-notifier.js';
import { GroupCommitter } from '../src/store/group-commit.js';
import { LOG_SCHEMA, LogStore, logMigrations } from '../src/store/log-store.js';

requirePostgresInCi('the log upgrade tests');

/** The log's migrations before authors were recorded. */
const migrationsBefore = logMigrations.filter((m) => m.version <= 2);

/**
 * Appends as the log did before migration 003, statement for statement: entries hashed without an
 * author (encoding version 1), their tree nodes, and idempotency keys of the whole partition.
 */
async function appendBeforeAuthors(db: Database, partition: string, data: string[], keys: string[] = []): Promise<void> {
  await db.transaction(async (tx: Sql) => {
    await tx.query('INSERT INTO log.partitions (name, head_hash, compact_range) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [partition, ZERO_HASH, CompactRange.empty().serialize()]);
    const { rows } = await tx.query<{ size: bigint; head_hash: Buffer; compact_range: Buffer }>('SELECT size, head_hash, compact_range FROM log.partitions WHERE name = $1 FOR UPDATE', [partition]);
    const head = rows[0]!;
    const range = CompactRange.deserialize(BigInt(head.size), head.compact_range);
    const timestampMs = BigInt(Date.now());
    let prevHash = head.head_hash;
    for (const [i, text] of data.entries()) {
      const e = { partition, seq: BigInt(head.size) + BigInt(i), timestampMs, data: Buffer.from(text), prevHash };
      const hash = entryHash(e);
      await tx.query('INSERT INTO log.entries (partition, seq, ts_ms, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)', [partition, e.seq.toString(), timestampMs.toString(), e.data, prevHash, hash]);
      for (const n of range.append(entryLeafHash(e))) await tx.query('INSERT INTO log.tree_nodes (partition, level, idx, hash) VALUES ($1, $2, $3, $4)', [partition, n.level, n.index, n.hash]);
      if (keys[i]) await tx.query('INSERT INTO log.idempotency_keys (partition, key, seq) VALUES ($1, $2, $3)', [partition, keys[i], e.seq.toString()]);
      prevHash = hash;
    }
    await tx.query('UPDATE log.partitions SET size = $2, head_hash = $3, compact_range = $4, last_appended_at = now() WHERE name = $1', [
      partition, (BigInt(head.size) + BigInt(data.length)).toString(), prevHash, range.serialize(),
    ]);
  });
}

const token = (subject: string): Principal => ({ subject, scopes: new Set(['log.append', 'log.read']), expiresAtMs: Number.MAX_SAFE_INTEGER });
const workload = (name: string, families: string[]): Principal => ({ ...token(`spiffe://gantry.local/${name}`), workload: { name, families: new Set(families) } });
/** What the handlers see after the auth middleware: the caller, and signals nobody aborts. */
const as = (principal: Principal) => ({ principal, signal: new AbortController().signal, draining: new AbortController().signal }) as unknown as HandlerContext;

for (const engine of engines()) {
  describe(`log migrations across authors on ${engine.name}`, { skip: engine.skip }, () => {
    let world: { db: Database; close(): Promise<void> };
    before(async () => {
      world = await openFreshDatabase(engine.name, 't_log_upgrade');
    });
    after(async () => world?.close());

    test('a database written before authors takes migrations 003 to 005 only, and its old entries, keys (timed as their entries) and proofs (tree nodes in log.tree_nodes) work beside new authored ones (tree nodes in their entries)', async () => {
      const { db } = world;
      assert.deepEqual(await migrate(db, LOG_SCHEMA, migrationsBefore), [1, 2]);
      await appendBeforeAuthors(db, 'orders', ['o0', 'o1', 'o2'], ['k0', 'k1', 'k2']);
      await appendBeforeAuthors(db, 'orders', ['o3', 'o4']);
      await appendBeforeAuthors(db, 'audit.settlement', ['e0', 'e1'], ['evt-0', 'evt-1']);
      assert.equal(await migrationsApplied(db, LOG_SCHEMA, logMigrations), false, 'readiness waits for 003 to 005');

      assert.deepEqual(await migrate(db, LOG_SCHEMA, logMigrations), [3, 4, 5]);
      const { rows: keyTimes } = await db.query<{ timed: bigint }>('SELECT count(*) AS timed FROM log.idempotency_keys k JOIN log.entries e ON e.partition = k.partition AND e.seq = k.seq WHERE k.created_ms = e.ts_ms');
      assert.equal(keyTimes[0]!.timed, 5n, 'every key from before 005 takes its entry\'s time, so it expires with it');
      assert.deepEqual(await migrate(db, LOG_SCHEMA, logMigrations), []);
      assert.deepEqual(await migrate(db, LOG_SCHEMA, migrationsBefore), [], 'an old binary (a rollback) finds every version it knows applied');

      const signer = new CheckpointSigner('gantry.local/log', generateKeyPairSync('ed25519').privateKey);
      const store = new LogStore(db);
      const h = logHandlers({ store, committer: new GroupCommitter(store), notifier: new AppendNotifier(db), signer, maxPayloadBytes: 1024 * 1024 });
      const headOf = async (partition: string) => verifyCheckpoint((await h.getCheckpoint({ partition }, as(token('reader')))).checkpoint, signer.verifierKey, { partition });
      const beforeAppends = await headOf('orders');
      assert.equal(beforeAppends.size, 5n);

      // Keys from before the upgrade have no known author: they still answer every re-send.
      for (const who of ['alice', 'bob']) {
        const again = await h.append({ partition: 'orders', data: Buffer.from('o1'), idempotencyKey: 'k1' }, as(token(who)));
        assert.deepEqual([again.duplicate, again.seq, again.author], [true, 1n, ''], `${who} re-sending k1`);
      }
      await assert.rejects(h.append({ partition: 'orders', data: Buffer.from('not o1'), idempotencyKey: 'k1' }, as(token('alice'))), (err: unknown) => (err as { code?: number }).code === Status.ALREADY_EXISTS);
      const fresh = await h.appendBatch({ partition: 'orders', data: [Buffer.from('a5'), Buffer.from('a6')], idempotencyKeys: ['n1', 'n2'] }, as(token('alice')));
      assert.deepEqual(fresh.receipts.map((r) => [r.seq, r.author, r.duplicate]), [[5n, 'alice', false], [6n, 'alice', false]]);
      const bobs = await h.append({ partition: 'orders', data: Buffer.from('b7'), idempotencyKey: 'n1' }, as(token('bob')));
      assert.deepEqual([bobs.seq, bobs.author, bobs.duplicate], [7n, 'bob', false], 'a key new since the upgrade is its author\'s only');

      // The relay re-sending an event it appended before the upgrade finds it; a token holder is refused the partition.
      const relay = workload('settlement', ['settlement']);
      const resent = await h.appendBatch({ partition: 'audit.settlement', data: [Buffer.from('e1'), Buffer.from('e2')], idempotencyKeys: ['evt-1', 'evt-2'] }, as(relay));
      assert.deepEqual(resent.receipts.map((r) => [r.seq, r.duplicate, r.author]), [[1n, true, ''], [2n, false, 'spiffe://gantry.local/settlement']]);
      await assert.rejects(h.append({ partition: 'audit.settlement', data: Buffer.from('forged'), idempotencyKey: '' }, as(token('mallory'))), (err: unknown) => (err as { code?: number }).code === Status.PERMISSION_DENIED);

      for (const [partition, count] of [['orders', 8n], ['audit.settlement', 3n]] as const) {
        const v = await h.verify({ partition }, as(token('reader')));
        assert.deepEqual([v.valid, v.count, v.reason], [true, count, ''], `${partition} verifies across the upgrade`);
        await assertProvable(h, partition, await headOf(partition), Number(count));
      }
      const afterAppends = await headOf('orders');
      const consistency = await h.getConsistencyProof({ partition: 'orders', oldSize: beforeAppends.size, newSize: afterAppends.size }, as(token('reader')));
      assert.equal(verifyCheckpointConsistency(beforeAppends, afterAppends, consistency), true, 'the tree from before the upgrade is a prefix of the one after');
    });
  });
}

/** Every entry of the partition, old (no author) and new, is in the signed tree; re-attributed, none is. */
async function assertProvable(h: ReturnType<typeof logHandlers>, partition: string, head: Checkpoint, count: number): Promise<void> {
  const entries: logv1.Entry[] = [];
  // Through the wire encoding, as a client receives the messages.
  const { read } = logServiceDefinition;
  for await (const msg of h.read({ partition, startSeq: 0n, limit: 0n }, as(token('reader')))) entries.push(...read.responseDeserialize(read.responseSerialize(msg)).entries);
  assert.equal(entries.length, count);
  for (const e of entries) {
    const proof = await h.getInclusionProof({ partition, seq: e.seq, treeSize: head.size }, as(token('reader')));
    assert.equal(verifyEntryInclusion(e, proof, head), true, `${partition} seq ${e.seq} (author ${JSON.stringify(e.author)})`);
    const claimed = { ...e, author: e.author ? '' : 'claims an old entry' };
    assert.equal(verifyEntryInclusion({ ...claimed, hash: entryHash(entryFieldsOf(claimed)) }, proof, head), false, `${partition} seq ${e.seq} with its author changed`);
  }
}
