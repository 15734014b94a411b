// Retention against a real database, on PGlite and PostgreSQL: the pruner deletes final deliveries
// (with their attempts) and events past their horizon, in bounded batches, and keeps pending and
// recent ones. Time is a fake clock the test moves; nothing waits.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type Logger } from '@gantry/kit';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { Pruner } from '../src/delivery/pruner.js';
import { endpointWithDeliveries, openQueueDatabase, type QueueDatabase } from './queue-database.js';

requirePostgresInCi('the webhooks retention tests');

const DAY_MS = 24 * 3600 * 1000;
const RETAIN_MS = 7 * DAY_MS;
const BATCH = 2;
const quiet = { info: () => undefined, warn: () => undefined } as unknown as Logger;

for (const engine of engines()) {
  describe(`webhooks retention on ${engine.name}`, { skip: engine.skip }, () => {
    let q: QueueDatabase;
    before(async () => {
      q = await openQueueDatabase(engine.name, 't_hooks_retain');
    });
    after(async () => q?.close());

    /** Ends `ids` as `status` at `at`, each with one attempt. */
    const finish = async (ids: string[], status: 'SUCCEEDED' | 'DEAD_LETTERED' | 'CANCELLED', at: Date) => {
      await q.db.query(`UPDATE webhooks.deliveries SET status = $2, completed_at = $3, next_attempt_at = NULL, attempts = 1 WHERE delivery_id = ANY($1::text[])`, [ids, status, at]);
      await q.db.query(
        `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt)
         SELECT id, 1, $2, 1, 200, '', '' FROM unnest($1::text[]) AS id`,
        [ids, at],
      );
    };
    const count = async (table: string, column: string, ids: string[]) =>
      Number((await q.db.query(`SELECT count(*) AS n FROM webhooks.${table} WHERE ${column} = ANY($1::text[])`, [ids])).rows[0]!.n);

    test('old final deliveries, their attempts and their events are deleted in bounded batches; pending and recent ones stay until they too are past the horizon', async () => {
      const clock = new FakeClock(Date.now());
      const daysAgo = (n: number) => new Date(clock.now() - n * DAY_MS);
      const oldDone = await endpointWithDeliveries(q.store, 'wh_retain_old', { count: 5, at: daysAgo(10) });
      await finish(oldDone.deliveryIds.slice(0, 3), 'SUCCEEDED', daysAgo(9));
      await finish(oldDone.deliveryIds.slice(3), 'DEAD_LETTERED', daysAgo(8));
      // Published long ago and still retrying: neither it nor its event may go.
      const oldPending = await endpointWithDeliveries(q.store, 'wh_retain_pending', { count: 1, at: daysAgo(10) });
      const recent = await endpointWithDeliveries(q.store, 'wh_retain_recent', { count: 3, at: daysAgo(2) });
      await finish(recent.deliveryIds, 'SUCCEEDED', daysAgo(1));

      const retention = q.store.retention;
      let batches = 0;
      const counting = {
        pruneDeliveries: (before: Date, limit: number) => (batches++, retention.pruneDeliveries(before, limit)),
        pruneEvents: (before: Date, limit: number) => (batches++, retention.pruneEvents(before, limit)),
      } as typeof retention;
      const pruner = new Pruner(counting, { now: () => clock.now(), retainDeliveriesMs: RETAIN_MS, retainEventsMs: RETAIN_MS, intervalMs: 60_000, batch: BATCH, maxBatchesPerPass: 100, clock }, quiet);

      const first = await pruner.pruneOnce();
      assert.deepEqual(first, { deliveries: 5, attempts: 5, events: 5 });
      // 5 deliveries in batches of 2 (2, 2, 1) and 5 events likewise: no batch took more than BATCH rows.
      assert.equal(batches, 6);
      assert.equal(await count('deliveries', 'delivery_id', oldDone.deliveryIds), 0);
      assert.equal(await count('attempts', 'delivery_id', oldDone.deliveryIds), 0);
      assert.equal(await count('events', 'event_id', oldDone.eventIds), 0);
      assert.equal(await count('deliveries', 'delivery_id', oldPending.deliveryIds), 1, 'a pending delivery stays, however old');
      assert.equal(await count('events', 'event_id', oldPending.eventIds), 1, 'an event with a delivery left stays');
      assert.equal(await count('deliveries', 'delivery_id', recent.deliveryIds), 3, 'recent final deliveries stay');
      assert.equal(await count('attempts', 'delivery_id', recent.deliveryIds), 3);
      assert.equal(await count('events', 'event_id', recent.eventIds), 3);
      assert.deepEqual(await pruner.pruneOnce(), { deliveries: 0, attempts: 0, events: 0 }, 'a second pass finds nothing');

      // A week later the recent ones are past the horizon too; the pending one still stays.
      clock.advance(RETAIN_MS);
      assert.deepEqual(await pruner.pruneOnce(), { deliveries: 3, attempts: 3, events: 3 });
      assert.equal(await count('deliveries', 'delivery_id', oldPending.deliveryIds), 1);
      assert.equal(await count('events', 'event_id', oldPending.eventIds), 1);
    });

    test('a horizon of 0 keeps everything', async () => {
      const clock = new FakeClock(Date.now());
      const old = await endpointWithDeliveries(q.store, 'wh_retain_forever', { count: 2, at: new Date(clock.now() - 400 * DAY_MS) });
      await finish(old.deliveryIds, 'CANCELLED', new Date(clock.now() - 399 * DAY_MS));
      const pruner = new Pruner(q.store.retention, { now: () => clock.now(), retainDeliveriesMs: 0, retainEventsMs: 0, intervalMs: 60_000, batch: BATCH, maxBatchesPerPass: 100, clock }, quiet);
      assert.deepEqual(await pruner.pruneOnce(), { deliveries: 0, attempts: 0, events: 0 });
      assert.equal(await count('deliveries', 'delivery_id', old.deliveryIds), 2);
    });
  });
}
