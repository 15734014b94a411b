// Retention of the change history: the sweeper prunes it to its time and version bounds (config
// `approvals.history*`) in bounded batches, oldest first, never past a change still kept; a watch
// from before what is kept ends with OUT_OF_RANGE telling the client to list again. The clock is the
// test's: time moves by assignment, and nothing here waits for it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { approvalsConfigSchema } from '../src/config.js';
import { CREATED, newRequest, rpc, startApprovalsPlatform, watch, type ApprovalsPlatform } from './support.js';

requirePostgresInCi('the approvals retention tests');

const DAY_MS = 24 * 3600 * 1000;

/** A request that outlives every clock move here, so no expiry adds history under the test. */
const longLived = (validators: string[], m: number) => newRequest({ validators, m, expiry: { $case: 'ttl', value: { seconds: 20n * 24n * 3600n, nanos: 0 } } });

test('the history is kept 7 days and at most 100,000 versions unless configured otherwise', () => {
  const c = approvalsConfigSchema.parse({});
  assert.equal(c.historyRetentionMs, 7 * DAY_MS);
  assert.equal(c.historyMaxVersions, 100_000);
  assert.ok(c.historyPruneBatch > 0);
});

/** Versions of the history rows, oldest first. */
async function historyVersions(p: ApprovalsPlatform): Promise<bigint[]> {
  const { rows } = await p.runtime.db.query<{ version: bigint }>(`SELECT version FROM approvals.events ORDER BY version`);
  return rows.map((r) => r.version);
}

for (const engine of engines()) {
  describe(`approvals history retention on ${engine.name}`, { skip: engine.skip }, () => {
    let p: ApprovalsPlatform;
    before(async () => {
      // The sweeper runs every 100 ms on the test's clock, which stands still unless a test moves it.
      p = await startApprovalsPlatform(engine.name, { clock: { nowMs: Date.parse('2026-01-01T00:00:00Z') } });
    });
    after(async () => p?.close());

    test('changes older than the retention are pruned by the sweeper; a watch from before them is OUT_OF_RANGE saying to re-list, one from the kept history resumes', async () => {
      const old = await rpc(p).submit(longLived(['r1', 'r2'], 2));
      await rpc(p, 'r1').vote(old.approvalId);
      p.clock.nowMs += 8 * DAY_MS;
      const fresh = await rpc(p).submit(longLived(['r1', 'r2'], 2));
      assert.ok(await eventually(async () => (await historyVersions(p))[0] === fresh.version, 10_000), 'the sweeper did not prune the changes older than 7 days');

      const gone = await watch(p, { fromVersion: old.version }).ended;
      assert.equal(gone.err?.code, status.OUT_OF_RANGE);
      assert.match(gone.err!.details, /older than the retained history \(which starts at \d+\): list with ListApprovals and watch from its version/);

      const kept = watch(p, { fromVersion: fresh.version - 1n });
      const [first] = await kept.count(1);
      kept.cancel();
      assert.equal(first!.type, CREATED);
      assert.equal(first!.approval!.approvalId, fresh.approvalId);
      // The requests and votes themselves stay.
      assert.equal((await rpc(p).get(old.approvalId)).votes.length, 1);
    });

    test('a prune deletes at most its batch, oldest first, and stops at the first change still kept (a gapless history)', async () => {
      const base = p.clock.nowMs;
      const a = await rpc(p).submit(longLived(['r3'], 1));
      const b = await rpc(p).submit(longLived(['r3'], 1));
      p.clock.nowMs = base + 2 * DAY_MS;
      const young = await rpc(p).submit(longLived(['r3'], 1));
      // A change stamped earlier than the one before it (another replica's clock behind).
      p.clock.nowMs = base;
      const skewed = await rpc(p).submit(longLived(['r3'], 1));
      p.clock.nowMs = base + 2 * DAY_MS;
      const olderThan = new Date(base + DAY_MS);
      const before = await historyVersions(p);
      assert.deepEqual(before.slice(-4), [a.version, b.version, young.version, skewed.version]);

      assert.equal(await p.store.pruneHistory({ olderThan, maxVersions: 0 }, 1), 1);
      assert.deepEqual(await historyVersions(p), before.slice(1), 'one row, the oldest');
      assert.equal(await p.store.pruneHistory({ olderThan, maxVersions: 0 }, 100), before.length - 3);
      assert.deepEqual(await historyVersions(p), [young.version, skewed.version], 'a and b went; the skewed change stays behind the young one');
      assert.ok(b.version < young.version);
      assert.equal(await p.store.pruneHistory({ olderThan, maxVersions: 0 }, 100), 0);
      // The version bound prunes whatever the age.
      assert.equal(await p.store.pruneHistory({ olderThan: null, maxVersions: 1 }, 100), 1);
      assert.deepEqual(await historyVersions(p), [skewed.version]);
    });
  });
}
