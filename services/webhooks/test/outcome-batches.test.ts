// Batched outcomes against a real database, on PGlite and PostgreSQL, with no dispatcher running
// (the test claims for itself): many attempts of many endpoints recorded in one transaction, some
// failed and some succeeded; a crash between claim and outcome; a batch the database refuses in
// part, retried one outcome at a time by the committer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Database } from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { OutcomeCommitter } from '../src/delivery/outcome-committer.js';
import type { ClaimedAttempt, ClaimLimits } from '../src/store/delivery-claims.js';
import type { EndpointAttemptResult } from '../src/store/delivery-outcomes.js';
import { WebhooksStore } from '../src/store/webhooks-store.js';
import { endpointWithDeliveries, openQueueDatabase, type QueueDatabase } from './queue-database.js';

requirePostgresInCi('the webhooks outcome batch tests');

const LIMITS: ClaimLimits = { endpoints: 100, batch: 100, defaultMaxConcurrency: 100, defaultRateLimitPerSecond: 1000, leaseMs: 60_000 };
const NO_DISABLE = { failures: 0, forMs: 0 };
const RETRY_MS = 5000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let tokenNo = 0;
const newToken = () => `lease-batch-${++tokenNo}`;

/** The result of `c` answered with HTTP `status`: a success, a retry in RETRY_MS, or (`final`) a dead letter. */
function result(c: ClaimedAttempt, status: number, now: Date, final = false, leaseToken = c.leaseToken): EndpointAttemptResult {
  const ok = status >= 200 && status < 300;
  return {
    deliveryId: c.deliveryId,
    leaseToken,
    webhookId: c.webhookId,
    attempt: { attemptNumber: c.attemptNumber, startedAt: now, latencyMs: 3, responseStatus: status, error: ok ? '' : `status ${status}`, responseBodyExcerpt: '' },
    next: ok ? { status: 'SUCCEEDED', at: now } : final ? { status: 'DEAD_LETTERED', at: now } : { status: 'PENDING', at: new Date(now.getTime() + RETRY_MS) },
    succeeded: ok,
    disableRule: NO_DISABLE,
    maxAttempts: 8,
  };
}

for (const engine of engines()) {
  describe(`batched delivery outcomes on ${engine.name}`, { skip: engine.skip }, () => {
    let q: QueueDatabase;
    /** Transactions begun through `counted`. */
    let transactions = 0;
    let counted: WebhooksStore;
    before(async () => {
      q = await openQueueDatabase(engine.name, 't_hooks_batch');
      const db: Database = Object.create(q.db) as Database;
      db.transaction = (fn) => {
        transactions++;
        return q.db.transaction(fn);
      };
      counted = new WebhooksStore(db);
    });
    after(async () => q?.close());

    const streakOf = async (webhookId: string) => {
      const { rows } = await q.db.query(`SELECT consecutive_failures FROM webhooks.endpoints WHERE webhook_id = $1`, [webhookId]);
      return Number(rows[0]!.consecutive_failures);
    };
    const claimOf = async (webhookIds: string[], limits = LIMITS) => (await q.store.queue.claim(new Date(), limits, newToken)).claimed.filter((c) => webhookIds.includes(c.webhookId));

    test('one transaction records outcomes of many endpoints, some failed and some succeeded: each delivery moves on, each endpoint\'s streak counts its own outcomes in order', async () => {
      const a = await endpointWithDeliveries(q.store, 'wh_batch_a', { count: 2 });
      const b = await endpointWithDeliveries(q.store, 'wh_batch_b', { count: 2 });
      const c = await endpointWithDeliveries(q.store, 'wh_batch_c', { count: 1, maxAttempts: 1 });
      const claimed = await claimOf([a.webhookId, b.webhookId, c.webhookId]);
      assert.equal(claimed.length, 5);
      const by = (id: string) => claimed.find((x) => x.deliveryId === id)!;
      const now = new Date();
      const results = [
        result(by(a.deliveryIds[0]!), 200, now),
        result(by(b.deliveryIds[0]!), 500, now),
        result(by(a.deliveryIds[1]!), 503, now),
        result(by(c.deliveryIds[0]!), 404, now, true),
        result(by(b.deliveryIds[1]!), 0, now),
      ];
      const before = transactions;
      const outcomes = await counted.queue.recordAttempts(results, now);
      assert.equal(transactions - before, 1, 'one transaction for the whole batch');
      assert.deepEqual(outcomes, results.map(() => ({ recorded: true })));
      const status = async (id: string) => {
        const d = (await q.store.queue.delivery(id))!;
        return [d.status, d.attempts.map((x) => x.responseStatus)];
      };
      assert.deepEqual(await status(a.deliveryIds[0]!), ['SUCCEEDED', [200]]);
      assert.deepEqual(await status(a.deliveryIds[1]!), ['PENDING', [503]]);
      assert.deepEqual(await status(b.deliveryIds[0]!), ['PENDING', [500]]);
      assert.deepEqual(await status(b.deliveryIds[1]!), ['PENDING', [0]]);
      assert.deepEqual(await status(c.deliveryIds[0]!), ['DEAD_LETTERED', [404]]);
      const retry = (await q.store.queue.delivery(b.deliveryIds[0]!))!;
      assert.equal(retry.nextAttemptAt?.getTime(), now.getTime() + RETRY_MS, 'the retry is scheduled as judged');
      // a: a success, then a failure; b: two failures; c: one.
      assert.deepEqual([await streakOf(a.webhookId), await streakOf(b.webhookId), await streakOf(c.webhookId)], [1, 2, 1]);

      // The retries come due; a batch of two successes ends both streaks, again in one transaction.
      const again = await q.store.queue.claim(new Date(now.getTime() + RETRY_MS), LIMITS, newToken);
      const mine = again.claimed.filter((x) => [a.webhookId, b.webhookId].includes(x.webhookId));
      assert.equal(mine.length, 3);
      const later = new Date(now.getTime() + RETRY_MS);
      await counted.queue.recordAttempts(mine.map((x) => result(x, 204, later)), later);
      assert.deepEqual([await streakOf(a.webhookId), await streakOf(b.webhookId)], [0, 0]);
      assert.deepEqual((await q.store.queue.delivery(b.deliveryIds[0]!))!.attempts.map((x) => [x.attemptNumber, x.responseStatus]), [[1, 500], [2, 204]]);
    });

    test('a crash between claim and outcome: once the leases expire the deliveries are claimed again (the lost attempts recorded), and a late batch under the old leases writes nothing', async () => {
      const e = await endpointWithDeliveries(q.store, 'wh_batch_crash', { count: 3 });
      const shortLease = { ...LIMITS, leaseMs: 1 };
      const first = await claimOf([e.webhookId], shortLease);
      assert.equal(first.length, 3);
      // The replica that claimed them "dies": no outcome. The leases expire on the database clock.
      await sleep(30);
      const second = await claimOf([e.webhookId]);
      assert.deepEqual(second.map((x) => x.attemptNumber), [2, 2, 2], 'each claimed again for its next attempt');
      const now = new Date();
      const late = await q.store.queue.recordAttempts(first.map((x) => result(x, 200, now)), now);
      assert.deepEqual(late, first.map(() => ({ recorded: false })), 'outcomes under lost leases are refused');
      const fresh = await q.store.queue.recordAttempts(second.map((x) => result(x, 200, now)), now);
      assert.deepEqual(fresh, second.map(() => ({ recorded: true })));
      for (const id of e.deliveryIds) {
        const d = (await q.store.queue.delivery(id))!;
        assert.equal(d.status, 'SUCCEEDED');
        assert.deepEqual(d.attempts.map((x) => x.attemptNumber), [1, 2]);
        assert.match(d.attempts[0]!.error, /lease expired/);
        assert.equal(d.attempts[1]!.responseStatus, 200);
      }
    });

    test('the committer groups outcomes submitted together into one transaction, and when the database refuses the batch, retries each alone so the others are recorded', async () => {
      const e = await endpointWithDeliveries(q.store, 'wh_batch_commit', { count: 6 });
      const claimed = await claimOf([e.webhookId]);
      const now = new Date();
      const committer = new OutcomeCommitter(counted, () => now.getTime(), { maxPerTx: 100, maxTxInFlight: 1 });
      const before = transactions;
      const good = await Promise.all(claimed.slice(0, 3).map((x) => committer.submit(result(x, 200, now))));
      assert.deepEqual(good, [{ recorded: true }, { recorded: true }, { recorded: true }]);
      // The first submit starts a transaction of its own; the two queued behind it share the next.
      assert.equal(transactions - before, 2);
      // An error text PostgreSQL cannot store (a NUL byte) fails the whole statement.
      const poisoned = { ...result(claimed[4]!, 500, now), attempt: { ...result(claimed[4]!, 500, now).attempt, error: 'bad \u0000 byte' } };
      const rest = [committer.submit(result(claimed[3]!, 200, now)), committer.submit(poisoned), committer.submit(result(claimed[5]!, 200, now))];
      const settled = await Promise.allSettled(rest);
      assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal((await q.store.queue.delivery(claimed[3]!.deliveryId))!.status, 'SUCCEEDED');
      assert.equal((await q.store.queue.delivery(claimed[5]!.deliveryId))!.status, 'SUCCEEDED');
      const refused = (await q.store.queue.delivery(claimed[4]!.deliveryId))!;
      assert.deepEqual([refused.status, refused.attempts.length], ['PENDING', 0], 'the refused outcome wrote nothing: its lease will expire and it is retried');
    });
  });
}
