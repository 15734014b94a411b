// The delivery queue's claim and outcome transactions against a real database, on PGlite and
// PostgreSQL, with no dispatcher running (the test claims for itself): how much an endpoint's rate
// window and concurrency let a claim take, each delivery claimed once, and leases that expire as
// when a replica dies mid-attempt. rules.test.ts has the same rules as pure functions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, openPglite, openPostgres, type Database, type Sql } from '@gantry/kit';
import { engines, freshPgliteDir, freshPostgresDatabase, requirePostgresInCi } from '@gantry/test-support/databases';
import type { Spec } from '../src/domain/webhook.js';
import type { ClaimLimits } from '../src/store/delivery-claims.js';
import type { EventRow } from '../src/store/events.js';
import { WEBHOOKS_SCHEMA, WebhooksStore, webhooksMigrations } from '../src/store/webhooks-store.js';

requirePostgresInCi('the webhooks queue tests');

const LIMITS: ClaimLimits = { endpoints: 100, batch: 100, defaultMaxConcurrency: 100, defaultRateLimitPerSecond: 100, leaseMs: 60_000 };
const tokens = () => {
  let n = 0;
  return () => `lease-${++n}`;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const engine of engines()) {
  describe(`the webhooks delivery queue on ${engine.name}`, { skip: engine.skip }, () => {
    let db: Database;
    let store: WebhooksStore;
    let cleanup: (() => Promise<void>) | undefined;
    before(async () => {
      if (engine.name === 'PGlite') {
        const dir = mkdtempSync(join(tmpdir(), 'gantry-webhooks-queue-'));
        await freshPgliteDir(join(dir, 'db'));
        db = await openPglite(join(dir, 'db'));
        cleanup = async () => rmSync(dir, { recursive: true, force: true });
      } else {
        const fresh = await freshPostgresDatabase('t_hooks_queue');
        db = await openPostgres({ url: fresh.url, poolSize: 2, statementTimeoutMs: 10_000 });
        cleanup = fresh.drop;
      }
      await migrate(db, WEBHOOKS_SCHEMA, webhooksMigrations);
      store = new WebhooksStore(db);
    });
    after(async () => {
      await db?.close();
      await cleanup?.();
    });

    let endpoints = 0;
    /** A new endpoint subscribed to a type of its own, and `count` deliveries to it, due now, of `maxAttempts` each. */
    async function endpointWithDeliveries(over: Partial<Spec>, count: number, maxAttempts = 8): Promise<{ webhookId: string; deliveryIds: string[] }> {
      const id = `wh_queue${++endpoints}`;
      const type = `queue.${id}`;
      const at = new Date();
      const spec: Spec = { url: `http://127.0.0.1/${id}`, eventTypes: [type], headers: {}, description: '', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {}, ...over };
      const events: EventRow[] = Array.from({ length: count }, (_, i) => ({
        eventId: `evt-${id}-${i}`, eventType: type, owner: 'queue', family: '', payload: Buffer.from('{}'), contentType: 'application/json', digest: Buffer.alloc(32), occurredAt: null, traceContext: {},
      }));
      return store.transaction(async (tx) => {
        await tx.registry.insert({ id, owner: 'queue', externalId: '', spec, families: [], internalApproved: false, secret: { keyId: 'k', ciphertext: Buffer.from('sealed') }, headers: null, at });
        await tx.events.insertEvents(events, at);
        const queued = await tx.events.fanOut(events, maxAttempts, at);
        return { webhookId: id, deliveryIds: events.flatMap((e) => queued.get(e.eventId) ?? []) };
      });
    }
    const rateWindow = async (webhookId: string) => {
      const { rows } = await db.query(`SELECT rate_window_start_ms, rate_window_count FROM webhooks.endpoints WHERE webhook_id = $1`, [webhookId]);
      return { startMs: Number(rows[0]!.rate_window_start_ms), count: Number(rows[0]!.rate_window_count) };
    };

    test('claims in one second of the database clock start at most rate_limit_per_second attempts of an endpoint; the stored window counts exactly what was taken; every delivery is claimed once', async () => {
      const rate = 3;
      const { webhookId, deliveryIds } = await endpointWithDeliveries({ rateLimitPerSecond: rate }, 10);
      const newToken = tokens();
      const claimedIds: string[] = [];
      const perWindow = new Map<number, number>();
      for (const deadline = Date.now() + 15_000; claimedIds.length < deliveryIds.length && Date.now() < deadline; await sleep(40)) {
        const { claimed } = await store.queue.claim(new Date(), LIMITS, newToken);
        const mine = claimed.filter((c) => c.webhookId === webhookId);
        if (mine.length === 0) continue;
        claimedIds.push(...mine.map((c) => c.deliveryId));
        const w = await rateWindow(webhookId);
        perWindow.set(w.startMs, (perWindow.get(w.startMs) ?? 0) + mine.length);
        assert.equal(w.count, perWindow.get(w.startMs), 'the window counts what its claims took');
        assert.ok(w.startMs % 1000 === 0);
      }
      assert.deepEqual([...claimedIds].sort(), [...deliveryIds].sort(), 'each delivery claimed once');
      for (const [startMs, taken] of perWindow) assert.ok(taken <= rate, `${taken} attempts started in the second at ${startMs}`);
      assert.ok(perWindow.size >= Math.ceil(deliveryIds.length / rate), 'the claims spread over enough seconds');
    });

    test('an endpoint with max_concurrency 2 gets no third lease while two are live', async () => {
      const { webhookId } = await endpointWithDeliveries({ maxConcurrency: 2 }, 5);
      const newToken = tokens();
      const first = (await store.queue.claim(new Date(), LIMITS, newToken)).claimed.filter((c) => c.webhookId === webhookId);
      const second = (await store.queue.claim(new Date(), LIMITS, newToken)).claimed.filter((c) => c.webhookId === webhookId);
      assert.deepEqual([first.length, second.length], [2, 0]);
      assert.deepEqual(first.map((c) => [c.attemptNumber, c.attemptsInRound]), [[1, 1], [1, 1]]);
    });

    test('a claim whose endpoints read missed another replica\'s leases (its snapshot predates that claim\'s commit) still takes no more than max_concurrency leaves', async () => {
      const { webhookId } = await endpointWithDeliveries({ maxConcurrency: 2 }, 5);
      const newToken = tokens();
      const first = (await store.queue.claim(new Date(), LIMITS, newToken)).claimed.filter((c) => c.webhookId === webhookId);
      assert.equal(first.length, 2);
      // The race itself needs a claim committing between another's snapshot and its endpoint lock;
      // its effect is an endpoints read that counts none of those leases, which this store gets.
      const staleCount = (tx: Sql): Sql => ({
        query: async (text: string, params?: unknown[], options?: never) => {
          const result = await tx.query(text, params, options);
          if (text.includes('AS in_flight')) for (const row of result.rows as { in_flight: number }[]) row.in_flight = 0;
          return result;
        },
      }) as unknown as Sql;
      const stale = new WebhooksStore(new Proxy(db, {
        get: (target, key) => (key === 'transaction' ? (fn: (tx: Sql) => Promise<unknown>) => target.transaction((tx) => fn(staleCount(tx))) : Reflect.get(target, key, target)),
      }));
      const second = (await stale.queue.claim(new Date(), LIMITS, newToken)).claimed.filter((c) => c.webhookId === webhookId);
      assert.equal(second.length, 0, 'two live leases: no third, whatever the endpoints read counted');
    });

    test('an attempt named as answered no longer counts toward max_concurrency, yet its delivery is not claimed again while its lease holds; its outcome still records', async () => {
      const { webhookId, deliveryIds } = await endpointWithDeliveries({ maxConcurrency: 2 }, 4);
      const newToken = tokens();
      const mine = async (answered: string[]) => (await store.queue.claim(new Date(), LIMITS, newToken, answered)).claimed.filter((c) => c.webhookId === webhookId);
      const first = await mine([]);
      assert.equal(first.length, 2);
      assert.equal((await mine([])).length, 0, 'two live leases: no third');
      const answered = first[0]!;
      const second = await mine([answered.leaseToken]);
      assert.equal(second.length, 1, 'the answered attempt frees one place');
      assert.ok(!second.some((c) => c.deliveryId === answered.deliveryId), 'the answered delivery is not claimed again');
      assert.equal((await mine([answered.leaseToken])).length, 0, 'two HTTP requests out again: no more');
      const out = await store.queue.recordAttempt(
        {
          deliveryId: answered.deliveryId, leaseToken: answered.leaseToken, succeeded: true, disableRule: { failures: 0, forMs: 0 }, maxAttempts: 8,
          attempt: { attemptNumber: 1, startedAt: new Date(), latencyMs: 5, responseStatus: 200, error: '', responseBodyExcerpt: '' },
          next: { status: 'SUCCEEDED', at: new Date() },
        },
        webhookId,
        new Date(),
      );
      assert.deepEqual(out, { recorded: true });
      const claimedIds = [...first, ...second].map((c) => c.deliveryId);
      assert.equal(new Set(claimedIds).size, 3);
      assert.ok(claimedIds.every((id) => deliveryIds.includes(id)));
    });

    test('a delivery whose lease expired has that attempt recorded as lost and is claimed again; after its round\'s last attempt it is dead-lettered; an outcome under the lost lease is refused', async () => {
      const { webhookId, deliveryIds: [id] } = await endpointWithDeliveries({}, 1, 2);
      const newToken = tokens();
      const shortLease = { ...LIMITS, leaseMs: 1 };
      const mine = async () => {
        await sleep(30);
        const out = await store.queue.claim(new Date(), shortLease, newToken);
        return { claimed: out.claimed.filter((c) => c.webhookId === webhookId), deadLettered: out.deadLettered.filter((d) => d === id) };
      };
      const one = await mine();
      assert.deepEqual(one.claimed.map((c) => [c.deliveryId, c.attemptNumber]), [[id, 1]]);
      const two = await mine();
      assert.deepEqual([two.claimed.map((c) => [c.deliveryId, c.attemptNumber, c.attemptsInRound]), two.deadLettered], [[[id, 2, 2]], []]);
      const three = await mine();
      assert.deepEqual([three.claimed, three.deadLettered], [[], [id]]);
      const d = (await store.queue.delivery(id!))!;
      assert.equal(d.status, 'DEAD_LETTERED');
      assert.deepEqual(d.attempts.map((a) => a.attemptNumber), [1, 2]);
      assert.ok(d.attempts.every((a) => /lease expired/.test(a.error) && a.responseStatus === 0));
      const late = await store.queue.recordAttempt(
        {
          deliveryId: id!, leaseToken: two.claimed[0]!.leaseToken, succeeded: true, disableRule: { failures: 0, forMs: 0 }, maxAttempts: 2,
          attempt: { attemptNumber: 2, startedAt: new Date(), latencyMs: 5, responseStatus: 200, error: '', responseBodyExcerpt: '' },
          next: { status: 'SUCCEEDED', at: new Date() },
        },
        webhookId,
        new Date(),
      );
      assert.deepEqual(late, { recorded: false });
      assert.equal((await store.queue.delivery(id!))!.status, 'DEAD_LETTERED');
    });

    test('publishing a batch in one statement queues what insertEvents and fanOut queue one event at a time: the same endpoints per event in the same order (owners, families, "*", a disabled endpoint left out); a repeated id is neither stored nor fanned out again', async () => {
      const run = `fan${Date.now()}`;
      const at = new Date();
      const type = (k: string) => `${run}.${k}`;
      const endpoint = (id: string, owner: string, eventTypes: string[], families: string[] = []) => ({ id: `${run}_${id}`, owner: `${run}-${owner}`, eventTypes, families });
      const endpoints = [
        endpoint('a1', 'a', [type('one')]), endpoint('a2', 'a', ['*']), endpoint('b', 'b', [type('one'), type('two')]),
        endpoint('fam', 'c', [type('one')], [`${run}fam`]), endpoint('all', 'd', ['*'], ['*']), endpoint('off', 'a', [type('one')]),
      ];
      await store.transaction(async (tx) => {
        for (const e of endpoints) {
          const spec: Spec = { url: `http://127.0.0.1/${e.id}`, eventTypes: e.eventTypes, headers: {}, description: '', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} };
          await tx.registry.insert({ id: e.id, owner: e.owner, externalId: '', spec, families: e.families, internalApproved: false, secret: { keyId: 'k', ciphertext: Buffer.from('sealed') }, headers: null, at });
        }
        await tx.registry.disable(`${run}_off`, 'test', 0, at, at);
      });
      const shapes = [
        { eventType: type('one'), owner: `${run}-a`, family: '' }, { eventType: type('two'), owner: `${run}-b`, family: '' }, { eventType: type('one'), owner: `${run}-b`, family: '' },
        { eventType: type('one'), owner: '', family: `${run}fam` }, { eventType: type('three'), owner: `${run}-a`, family: '' }, { eventType: type('two'), owner: '', family: `${run}other` },
      ];
      const events = (path: string): EventRow[] => shapes.map((s, i) => ({ eventId: `${run}-${path}-${i}`, ...s, payload: Buffer.from(`{"i":${i}}`), contentType: 'application/json', digest: Buffer.alloc(32), occurredAt: null, traceContext: {} }));
      const endpointsOf = async (deliveryIds: readonly string[]) => Promise.all(deliveryIds.map(async (id) => (await store.queue.delivery(id))!.webhookId));

      const oneByOne = await store.transaction(async (tx) => {
        const queued: string[][] = [];
        for (const e of events('single')) {
          await tx.events.insertEvents([e], at);
          queued.push((await tx.events.fanOut([e], 8, at)).get(e.eventId) ?? []);
        }
        return queued;
      });
      const batch = await store.transaction((tx) => tx.events.publish(events('batch'), 8, at));
      assert.deepEqual([...batch.inserted].sort(), events('batch').map((e) => e.eventId).sort());
      const expected = [['a1', 'a2'], ['b'], ['b'], ['fam', 'all'], ['a2'], ['all']].map((ids) => ids.map((id) => `${run}_${id}`));
      for (const [i, e] of events('batch').entries()) {
        assert.deepEqual(await endpointsOf(batch.queued.get(e.eventId) ?? []), expected[i], `batch event ${i}`);
        assert.deepEqual(await endpointsOf(oneByOne[i]!), expected[i], `event ${i} one at a time`);
      }

      const again = await store.transaction((tx) => tx.events.publish(events('batch'), 8, at));
      assert.equal(again.inserted.size, 0);
      assert.equal(again.queued.size, 0);
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM webhooks.deliveries WHERE event_id LIKE $1`, [`${run}-batch-%`]);
      assert.equal(rows[0]!.n, expected.flat().length);
    });
  });
}
