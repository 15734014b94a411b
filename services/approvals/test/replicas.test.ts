// Two approvals replicas (two runtimes in this process) on one PostgreSQL database: watches and
// to-do streams on one see what is done through the other (LISTEN/NOTIFY, then a read from the
// database), both sweepers expire each request once, and votes racing through both decide once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '@gantry/test-support/clients';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { ADDED, APPROVE, APPROVED, BOOKMARK, CREATED, FINALIZED, REMOVED, VOTED, newRequest, pending, rpc, startApprovalsPlatform, watch, type ApprovalsPlatform } from './support.js';

/** A change through one replica reaches a stream on the other within this time. */
const FOLLOW_LATENCY_MS = 1000;

requirePostgresInCi('the approvals replica tests');

describe('two approvals replicas sharing one PostgreSQL database', { skip: postgresSkip() }, () => {
  let a: ApprovalsPlatform;
  let b: ApprovalsPlatform;
  const clock = { nowMs: Date.now() };
  before(async () => {
    a = await startApprovalsPlatform('PostgreSQL', { clock });
    b = await startApprovalsPlatform('PostgreSQL', { clock, sharedDatabaseUrl: a.databaseUrl! });
  });
  after(async () => {
    // b first: a owns (and drops) the database.
    await b?.close();
    await a?.close();
  });

  test('a watch on replica B receives, in version order and within 1 s, each vote cast through replica A', async () => {
    const w = watch(b, {});
    await w.count(1);
    const req = await rpc(a).submit(newRequest({ n: 3, m: 3 }));
    const started = Date.now();
    for (const v of ['v0', 'v1', 'v2']) await rpc(a, v).vote(req.approvalId, APPROVE);
    assert.ok(await eventually(() => w.messages.filter((m) => m.type !== BOOKMARK).length >= 4, 5000), 'replica B did not see the votes');
    w.cancel();
    assert.ok(Date.now() - started < 3 * FOLLOW_LATENCY_MS + 2000);
    const changes = w.messages.filter((m) => m.type !== BOOKMARK);
    assert.deepEqual(changes.map((m) => m.type), [CREATED, VOTED, VOTED, FINALIZED]);
    assert.deepEqual(changes.map((m) => m.version), [0n, 1n, 2n, 3n].map((i) => req.version + i));
    assert.equal(changes[3]!.approval!.state, APPROVED);
  });

  test('a to-do stream on replica A sees a request submitted through B, and drops it when its validator votes through B', async () => {
    const todo = pending(a, 'pa');
    const req = await rpc(b).submit(newRequest({ validators: ['pa', 'pb'], m: 2 }));
    const [added] = await todo.count(1, FOLLOW_LATENCY_MS * 3);
    assert.deepEqual([added!.change, added!.approval!.approvalId], [ADDED, req.approvalId]);
    await rpc(b, 'pa').vote(req.approvalId, APPROVE);
    const [, removed] = await todo.count(2, FOLLOW_LATENCY_MS * 3);
    todo.cancel();
    assert.deepEqual([removed!.change, removed!.approval!.approvalId], [REMOVED, req.approvalId]);
  });

  test('both replicas sweeping expire each due request exactly once', async () => {
    const due = await Promise.all(Array.from({ length: 40 }, (_, i) => rpc(i % 2 ? a : b).submit(newRequest({ expiry: { $case: 'ttl', value: { seconds: 60n, nanos: 0 } } }))));
    clock.nowMs += 61_000;
    const idList = due.map((r) => r.approvalId);
    const expiredAll = await eventually(async () => {
      const { rows } = await a.runtime.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM approvals.requests WHERE approval_id = ANY($1::text[]) AND state = 'EXPIRED'`, [idList]);
      return Number(rows[0]!.n) === idList.length;
    }, 5000);
    assert.ok(expiredAll, 'the sweepers did not expire every due request');
    const { rows } = await a.runtime.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM approvals.events WHERE approval_id = ANY($1::text[]) AND type = 'FINALIZED'`, [idList]);
    assert.equal(Number(rows[0]!.n), idList.length, 'one FINALIZED change per request');
  });

  test('50 validators voting at once through both replicas produce exactly one finalization, seen once by watchers on both', async () => {
    const req = await rpc(a).submit(newRequest({ n: 50, m: 30 }));
    const watchers = [watch(a, { approvalId: req.approvalId, fromVersion: req.version }), watch(b, { approvalId: req.approvalId, fromVersion: req.version })];
    const outcomes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => rpc(i % 2 ? a : b, `v${i}`).vote(req.approvalId, APPROVE)));
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 30);
    for (const w of watchers) assert.ok(await eventually(() => w.messages.some((m) => m.type === FINALIZED), 5000));
    await new Promise((r) => setTimeout(r, 300));
    for (const w of watchers) {
      w.cancel();
      const changes = w.messages.filter((m) => m.type !== BOOKMARK);
      assert.equal(changes.filter((m) => m.type === FINALIZED).length, 1);
      assert.equal(changes.length, 30, '29 votes, then the deciding one');
    }
  });
});
