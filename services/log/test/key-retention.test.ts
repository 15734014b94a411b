// Idempotency keys expire after their horizon (migration 005, store/key-pruner.ts), on PGlite and
// on PostgreSQL, with a fake clock: a key inside the horizon still answers a re-send; past it the
// key is deleted in bounded batches, the entries stay and verify, and a re-send appends anew.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { requirePostgresInCi } from '@gantry/test-support/databases';
import { FakeClock, unary } from '@gantry/kit';
import { DEFAULT_KEY_RETENTION, IdempotencyKeyPruner, type KeyRetention } from '../src/store/key-pruner.js';
import { engines, startLogPlatform, uniquePartition, type LogPlatform } from './support.js';

requirePostgresInCi('the log idempotency key retention tests');

const DAY_MS = 24 * 3_600_000;
const RETENTION: KeyRetention = { ...DEFAULT_KEY_RETENTION, retentionMs: 7 * DAY_MS, batchKeys: 2, maxBatchesPerRun: 2 };

for (const engine of engines()) {
  describe(`log idempotency key retention on ${engine.name}`, { skip: engine.skip }, () => {
    let p: LogPlatform;
    before(async () => {
      p = await startLogPlatform(engine.name);
    });
    after(async () => {
      await p?.close();
    });

    const append = (partition: string, text: string, idempotencyKey: string) => unary(p.client.append, p.client, { partition, data: Buffer.from(text), idempotencyKey }, p.md);
    const keysOf = async (partition: string) => {
      const { rows } = await p.runtime.db.query<{ key: string }>('SELECT key FROM log.idempotency_keys WHERE partition = $1 ORDER BY key', [partition]);
      return rows.map((r) => r.key);
    };
    const errors: unknown[] = [];
    const prunerAt = (clock: FakeClock, limits = RETENTION) => new IdempotencyKeyPruner(p.runtime.db, limits, (err) => errors.push(err), clock);

    test('a key inside its horizon still answers a re-send; past it the key is deleted, the entry stays, and a re-send appends a new entry', async () => {
      const partition = uniquePartition('retention');
      const first = await append(partition, 'event 1', 'evt-1');
      const clock = new FakeClock(Date.now());
      const pruner = prunerAt(clock);

      clock.advance(6 * DAY_MS);
      assert.equal(await pruner.pruneOnce(), 0, 'nothing is older than 7 days yet');
      const resent = await append(partition, 'event 1', 'evt-1');
      assert.deepEqual([resent.duplicate, resent.seq], [true, first.seq], 'inside the horizon a re-send is a duplicate');

      clock.advance(DAY_MS + 60_000);
      assert.equal(await pruner.pruneOnce(), 1);
      assert.deepEqual(await keysOf(partition), []);
      const after = await append(partition, 'event 1', 'evt-1');
      assert.deepEqual([after.duplicate, after.seq], [false, first.seq + 1n], 'past the horizon the same key appends again');
      const verdict = await unary(p.client.verify, p.client, { partition }, p.md);
      assert.deepEqual([verdict.valid, verdict.count], [true, 2n], 'the entries stay and still verify');
      assert.deepEqual(await keysOf(partition), ['evt-1'], 'the new append recorded the key again');
      assert.deepEqual(errors, []);
    });

    test('one run deletes at most batchKeys x maxBatchesPerRun keys, and keeps the keys inside the horizon', async () => {
      const partition = uniquePartition('retention-bounded');
      // Keys of the other tests in this file are older still: prune them first, so the counts are this test's.
      await prunerAt(new FakeClock(Date.now() + 30 * DAY_MS), { ...RETENTION, maxBatchesPerRun: 1000 }).pruneOnce();
      for (let i = 0; i < 5; i++) await append(partition, `old ${i}`, `old-${i}`);
      await sleep(5);
      await append(partition, 'young', 'young-0');
      const { rows } = await p.runtime.db.query<{ key: string; created_ms: bigint }>('SELECT key, created_ms FROM log.idempotency_keys WHERE partition = $1', [partition]);
      const newestOld = Math.max(...rows.filter((r) => r.key.startsWith('old-')).map((r) => Number(r.created_ms)));
      const young = Number(rows.find((r) => r.key === 'young-0')!.created_ms);
      assert.ok(young > newestOld, 'the young key was recorded after the old ones');
      // The horizon falls between the old keys and the young one.
      const pruner = prunerAt(new FakeClock(newestOld + 1 + RETENTION.retentionMs));

      assert.equal(await pruner.pruneOnce(), 4, 'one run: two batches of two keys');
      assert.equal((await keysOf(partition)).length, 2);
      assert.equal(await pruner.pruneOnce(), 1, 'the last old key at the next run');
      assert.equal(await pruner.pruneOnce(), 0);
      assert.deepEqual(await keysOf(partition), ['young-0'], 'the key inside the horizon stays');
      assert.deepEqual(errors, []);
    });

    test('the background task prunes once per interval on its clock, and stops', async () => {
      const partition = uniquePartition('retention-task');
      await append(partition, 'event', 'evt-task');
      const clock = new FakeClock(Date.now() + 8 * DAY_MS);
      const pruner = prunerAt(clock);
      pruner.start();
      assert.deepEqual(clock.pending(), [RETENTION.intervalMs], 'the first run waits one interval');
      assert.deepEqual(await keysOf(partition), ['evt-task']);
      clock.advance(RETENTION.intervalMs);
      for (let i = 0; i < 100 && (await keysOf(partition)).length > 0; i++) await sleep(20);
      assert.deepEqual(await keysOf(partition), [], 'pruned by the run the interval started');
      await pruner.stop();
      assert.deepEqual(clock.pending(), [], 'no run is scheduled after stop');
      assert.deepEqual(errors, []);
    });
  });
}
