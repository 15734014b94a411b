// The webhooks service over real gRPC (mTLS, JWT) and a real local HTTP receiver, on PGlite and
// PostgreSQL: the registry, signed deliveries the receiver verifies, retries on a fake clock,
// Retry-After, 410, dead letters and their replay, secret rotation, and the SSRF guard.
import { lookup } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { webhooksv1 } from '@gantry/proto';
import { assertStatus, eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import type { Database, Sql } from '@gantry/kit';
import { checkEvent, publishEvents } from '../src/api/publish.js';
import { verifyWebhook } from '../src/client/index.js';
import { WebhooksStore } from '../src/store/webhooks-store.js';
import { ALL_SCOPES, event, Receiver, rpc, spec, startWebhooksPlatform, uniquePath, type WebhooksPlatform } from './support.js';

requirePostgresInCi('the webhooks service tests');

const { WEBHOOK_STATUS_ACTIVE: ACTIVE, WEBHOOK_STATUS_PAUSED: PAUSED, WEBHOOK_STATUS_DISABLED: DISABLED } = webhooksv1.WebhookStatus;
const { DELIVERY_STATUS_PENDING: D_PENDING, DELIVERY_STATUS_SUCCEEDED: D_OK, DELIVERY_STATUS_DEAD_LETTERED: D_DEAD, DELIVERY_STATUS_CANCELLED: D_CANCELLED } = webhooksv1.DeliveryStatus;
const WAIT_MS = 5000;

for (const engine of engines()) {
  describe(`webhooks service over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    let rx: Receiver;
    let api: ReturnType<typeof rpc>;
    before(async () => {
      rx = await new Receiver().start();
      p = await startWebhooksPlatform(engine.name);
      api = rpc(p);
    });
    after(async () => {
      await p?.close();
      await rx?.close();
    });

    /** A new endpoint at a fresh path of the receiver; its secret and id. */
    async function endpoint(over: Partial<webhooksv1.WebhookSpec> = {}, who = api) {
      const path = uniquePath('hook');
      // Each endpoint subscribes to a type of its own, so other tests' events do not reach it.
      const type = `order.${path.slice(1).replaceAll('/', '')}`;
      const res = await who.create({ spec: spec(rx.url(path), { eventTypes: [type], ...over }) });
      return { path, type, id: res.webhook!.webhookId, secret: res.secret, webhook: res.webhook! };
    }
    const delivery = async (deliveryId: string) => (await api.history({ eventId: '' })).deliveries.find((d) => d.deliveryId === deliveryId);
    /** Waits until the delivery's attempt `n` is recorded: only then is its next attempt scheduled, so the clock may move. */
    const recorded = async (deliveryId: string, n: number) => assert.ok(await eventually(async () => ((await delivery(deliveryId))?.attempts.length ?? 0) >= n, WAIT_MS), `attempt ${n} recorded`);

    test('CreateWebhook returns a whsec_ secret once; GetWebhook and ListWebhooks never show it, and the database holds only ciphertext', async () => {
      const { id, secret, webhook } = await endpoint({ labels: { team: 'a' } });
      assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
      assert.equal(webhook.status, ACTIVE);
      const got = await api.get(id);
      const text = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x));
      assert.equal(text(got).includes(secret), false);
      const { rows } = await p.runtime.db.query(`SELECT * FROM webhooks.endpoints WHERE webhook_id = $1`, [id]);
      assert.equal(text(rows[0]).includes(secret.slice(6)), false);
      assert.ok((await api.list()).webhooks.some((w) => w.webhookId === id));
    });

    test('with external_id, a repeated create returns the existing webhook (created = false, no secret)', async () => {
      const url = rx.url(uniquePath('ext'));
      const a = await api.create({ externalId: 'uid-1', spec: spec(url) });
      const b = await api.create({ externalId: 'uid-1', spec: spec(url) });
      assert.deepEqual([a.created, b.created, b.secret, b.webhook!.webhookId], [true, false, '', a.webhook!.webhookId]);
      const listed = await api.list({ externalId: 'uid-1' });
      assert.deepEqual(listed.webhooks.map((w) => w.webhookId), [a.webhook!.webhookId]);
    });

    test('invalid specs are refused with INVALID_ARGUMENT naming the field, and nothing is created', async () => {
      const before = (await api.list({ pageSize: 500 })).webhooks.length;
      const bad: [Partial<webhooksv1.WebhookSpec>, RegExp][] = [
        [{ url: 'ftp://x/' }, /spec.url: must be http or https/],
        [{ url: 'not a url' }, /spec.url/],
        [{ url: `https://example.com/${'a'.repeat(2048)}` }, /maximum is 2048/],
        [{ eventTypes: [] }, /at least one event type/],
        [{ eventTypes: Array.from({ length: 65 }, (_, i) => `t${i}`) }, /maximum is 64/],
        [{ headers: { 'webhook-signature': 'x' } }, /reserved/],
        [{ headers: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`x-h${i}`, 'v'])) }, /maximum is 32/],
      ];
      for (const [over, msg] of bad) await assertStatus(api.create({ spec: spec(rx.url('/x'), over) }), status.INVALID_ARGUMENT, msg);
      await assertStatus(api.create({ spec: spec(rx.url('/x')), secret: 'whsec_short' }), status.INVALID_ARGUMENT, /secret/);
      assert.equal((await api.list({ pageSize: 500 })).webhooks.length, before);
    });

    test('another owner\'s webhook is PERMISSION_DENIED; an unknown id NOT_FOUND; an empty id INVALID_ARGUMENT', async () => {
      const { id } = await endpoint();
      await assertStatus(rpc(p, 'mallory').get(id), status.PERMISSION_DENIED, /another owner/);
      await assertStatus(api.get('wh_nope'), status.NOT_FOUND);
      await assertStatus(api.get(''), status.INVALID_ARGUMENT);
      assert.ok(!(await rpc(p, 'mallory').list()).webhooks.some((w) => w.webhookId === id));
    });

    test('UpdateWebhook with a mask changes only the named fields, bumps the version, and refuses a stale expected_version with ABORTED', async () => {
      const { id, webhook } = await endpoint({ description: 'one' });
      const updated = await api.update({ webhookId: id, spec: spec('ignored', { description: 'two', paused: true }), updateMask: ['description', 'paused'] });
      assert.deepEqual([updated.spec!.description, updated.spec!.url, updated.status], ['two', webhook.spec!.url, PAUSED]);
      assert.ok(updated.version > webhook.version);
      await assertStatus(api.update({ webhookId: id, spec: spec('x'), updateMask: ['description'], expectedVersion: webhook.version }), status.ABORTED, /re-read/);
      await assertStatus(api.update({ webhookId: id, spec: spec('x'), updateMask: ['colour'] }), status.INVALID_ARGUMENT, /update_mask/);
    });

    test('a published event reaches every subscribed endpoint once, signed so that verifyWebhook accepts it; a republish is a duplicate; another body under the same id is ALREADY_EXISTS', async () => {
      // Owned by someone else than the other tests' endpoints: "*" would otherwise receive their events too.
      const fan = rpc(p, 'fanout');
      const a = await endpoint({ eventTypes: ['invoice.paid'] }, fan);
      const b = await endpoint({ eventTypes: ['*'] }, fan);
      const c = await endpoint({ eventTypes: ['invoice.void'] }, fan);
      const payload = Buffer.from('{"invoice":42}');
      const first = await fan.publish({ eventId: 'evt-fanout-1', eventType: 'invoice.paid', payload, owner: 'fanout' });
      assert.equal(first.duplicate, false);
      assert.equal(first.deliveryIds.length, 2);
      assert.ok(await eventually(() => rx.at(a.path).length === 1 && rx.at(b.path).length === 1, WAIT_MS));
      for (const [e, got] of [[a, rx.at(a.path)[0]!], [b, rx.at(b.path)[0]!]] as const) {
        assert.deepEqual(got.body, payload);
        assert.equal(got.headers['webhook-id'], 'evt-fanout-1');
        assert.equal(got.headers['content-type'], 'application/json');
        const v = verifyWebhook(got.headers as Record<string, string>, got.body, e.secret, { now: () => p.clock.nowMs });
        assert.equal(v.id, 'evt-fanout-1');
      }
      assert.equal(rx.at(c.path).length, 0);
      const again = await fan.publish({ eventId: 'evt-fanout-1', eventType: 'invoice.paid', payload, owner: 'fanout' });
      assert.deepEqual([again.duplicate, again.deliveryIds.sort()], [true, first.deliveryIds.sort()]);
      await assertStatus(fan.publish({ eventId: 'evt-fanout-1', eventType: 'invoice.paid', payload: Buffer.from('{}'), owner: 'fanout' }), status.ALREADY_EXISTS);
      assert.ok(await eventually(async () => (await fan.history({ webhookId: a.id })).deliveries[0]?.status === D_OK, WAIT_MS));
      const [h] = (await fan.history({ webhookId: a.id })).deliveries;
      assert.equal(h!.attempts.length, 1);
      assert.equal(h!.attempts[0]!.responseStatus, 200);
      assert.equal(rx.at(a.path).length, 1, 'delivered once');
    });

    test('failed attempts retry on the schedule as the fake clock moves (5 s, then 5 min), and a success ends the delivery', async () => {
      const e = await endpoint();
      rx.script.set(e.path, [{ status: 500 }, { status: 502 }]);
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-retry-${e.id}`, eventType: e.type, owner: 'alice' });
      await recorded(id!, 1);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 1, 'no retry before the clock moves');
      p.clock.nowMs += 6_000; // 5 s ± 20 % (random = 0.5: exactly 5 s)
      await recorded(id!, 2);
      p.clock.nowMs += 60_000;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 2, 'the third attempt waits 5 minutes');
      p.clock.nowMs += 300_000;
      assert.ok(await eventually(() => rx.at(e.path).length === 3, WAIT_MS));
      assert.ok(await eventually(async () => (await delivery(id!))?.status === D_OK, WAIT_MS));
      const d = (await delivery(id!))!;
      assert.deepEqual(d.attempts.map((a) => a.responseStatus), [500, 502, 200]);
      assert.deepEqual(d.attempts.map((a) => a.attemptNumber), [1, 2, 3]);
      // Every attempt carries the same webhook-id, each with its own timestamp.
      assert.deepEqual(new Set(rx.at(e.path).map((r) => r.headers['webhook-id'])).size, 1);
    });

    test('503 with Retry-After: 120 holds the next attempt for 120 s, not the schedule\'s 5 s', async () => {
      const e = await endpoint();
      rx.script.set(e.path, [{ status: 503, headers: { 'retry-after': '120' } }]);
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-ra-${e.id}`, eventType: e.type, owner: 'alice' });
      await recorded(id!, 1);
      p.clock.nowMs += 10_000;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 1);
      p.clock.nowMs += 111_000;
      assert.ok(await eventually(() => rx.at(e.path).length === 2, WAIT_MS));
    });

    test('410 Gone dead-letters the delivery at once and disables the endpoint, with the reason in the registry and a webhook.endpoint.disabled event to the owner', async () => {
      const e = await endpoint();
      const ops = await endpoint({ eventTypes: ['webhook.endpoint.disabled'] });
      rx.script.set(e.path, [{ status: 410 }]);
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-410-${e.id}`, eventType: e.type, owner: 'alice' });
      assert.ok(await eventually(async () => (await api.get(e.id)).status === DISABLED, WAIT_MS));
      assert.match((await api.get(e.id)).disabledReason, /410/);
      const announced = () => rx.at(ops.path).map((r) => JSON.parse(r.body.toString()) as { type: string; data: { webhook_id: string; reason: string } }).filter((b) => b.data.webhook_id === e.id);
      assert.ok(await eventually(() => announced().length === 1, WAIT_MS), 'the owner is told through its other endpoint');
      assert.equal(announced()[0]!.type, 'webhook.endpoint.disabled');
      assert.match(announced()[0]!.data.reason, /410/);
      assert.equal((await delivery(id!))!.status, D_DEAD, JSON.stringify(await delivery(id!), (_k, x: unknown) => (typeof x === "bigint" ? String(x) : x)));
      await assertStatus(api.trigger(e.id), status.FAILED_PRECONDITION, /disabled/);
      const back = await api.update({ webhookId: e.id, reenable: true });
      assert.deepEqual([back.status, back.consecutiveFailures], [ACTIVE, 0]);
    });

    test('after max attempts a delivery is dead-lettered; RetryFailedDeliveries replays it with a fresh round and it succeeds', async () => {
      const e = await endpoint();
      rx.script.set(e.path, Array.from({ length: 8 }, () => ({ status: 500 })));
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-dead-${e.id}`, eventType: e.type, owner: 'alice' });
      for (let n = 1; n <= 8; n++) {
        await recorded(id!, n);
        p.clock.nowMs += 11 * 3600_000;
      }
      assert.ok(await eventually(async () => (await delivery(id!))?.status === D_DEAD, WAIT_MS));
      await assertStatus(api.retry({ selector: { $case: 'deliveryId', value: 'dlv_nope' }, webhookId: '' }), status.NOT_FOUND);
      const replay = await api.retry({ selector: { $case: 'deliveryId', value: id! }, webhookId: '' });
      assert.deepEqual([replay.requeued, replay.deliveryIds], [1, [id]]);
      assert.ok(await eventually(async () => (await delivery(id!))?.status === D_OK, WAIT_MS));
      assert.equal((await delivery(id!))!.attempts.length, 9);
      await assertStatus(api.retry({ selector: { $case: 'deliveryId', value: id! }, webhookId: '' }), status.FAILED_PRECONDITION, /not DEAD_LETTERED/);
      // The clock moved 88 hours: a 30-day window still holds the delivery.
      const stats = await api.stats(e.id, 30 * 24 * 3600);
      assert.deepEqual([stats.totalDeliveries, stats.succeeded, stats.totalAttempts, stats.failedAttempts, stats.successRateBp], [1n, 1n, 9n, 8n, 10_000]);
    });

    test('GetWebhookStatistics of an endpoint without deliveries is all zeros and no times; after a failed and a successful attempt it counts both and dates each', async () => {
      const e = await endpoint();
      const empty = await api.stats(e.id);
      assert.deepEqual(
        [empty.totalDeliveries, empty.succeeded, empty.deadLettered, empty.pending, empty.totalAttempts, empty.failedAttempts, empty.successRateBp, empty.latencyP50Ms, empty.latencyP99Ms],
        [0n, 0n, 0n, 0n, 0n, 0n, 0, 0, 0],
      );
      assert.deepEqual([empty.lastSuccessAt, empty.lastFailureAt], [undefined, undefined]);
      rx.script.set(e.path, [{ status: 500 }]);
      const failedAt = p.clock.nowMs;
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-stats-${e.id}`, eventType: e.type, owner: 'alice' });
      await recorded(id!, 1);
      const midway = await api.stats(e.id);
      assert.deepEqual([midway.totalDeliveries, midway.pending, midway.totalAttempts, midway.failedAttempts, midway.successRateBp], [1n, 1n, 1n, 1n, 0]);
      assert.deepEqual([midway.lastSuccessAt, midway.lastFailureAt?.getTime()], [undefined, failedAt]);
      p.clock.nowMs += 6_000;
      assert.ok(await eventually(async () => (await delivery(id!))?.status === D_OK, WAIT_MS));
      const s = await api.stats(e.id);
      assert.deepEqual([s.totalDeliveries, s.succeeded, s.deadLettered, s.pending, s.totalAttempts, s.failedAttempts, s.successRateBp], [1n, 1n, 0n, 0n, 2n, 1n, 10_000]);
      assert.equal(s.lastFailureAt?.getTime(), failedAt);
      assert.ok(s.lastSuccessAt && s.lastSuccessAt.getTime() > failedAt, 'the success is dated after the failure');
      assert.ok(s.latencyP50Ms >= 0 && s.latencyP99Ms >= s.latencyP50Ms);
    });

    test('after RotateSecret both the new and the old secret verify during the overlap; with overlap 0 only the new one', async () => {
      const e = await endpoint();
      const r = await api.rotate(e.id, 3600);
      assert.ok(r.previousSecretExpiresAt);
      await api.publish({ eventId: `evt-rot-${e.id}`, eventType: e.type, owner: 'alice' });
      assert.ok(await eventually(() => rx.at(e.path).length === 1, WAIT_MS));
      const got = rx.at(e.path)[0]!;
      const h = got.headers as Record<string, string>;
      assert.equal(h['webhook-signature']!.split(' ').length, 2);
      verifyWebhook(h, got.body, e.secret, { now: () => p.clock.nowMs });
      verifyWebhook(h, got.body, r.secret, { now: () => p.clock.nowMs });
      const r2 = await api.rotate(e.id, 0);
      assert.equal(r2.previousSecretExpiresAt, undefined);
      await api.publish({ eventId: `evt-rot2-${e.id}`, eventType: e.type, owner: 'alice' });
      assert.ok(await eventually(() => rx.at(e.path).length === 2, WAIT_MS));
      const h2 = rx.at(e.path)[1]!.headers as Record<string, string>;
      assert.equal(h2['webhook-signature']!.split(' ').length, 1);
      assert.throws(() => verifyWebhook(h2, rx.at(e.path)[1]!.body, r.secret, { now: () => p.clock.nowMs }));
      verifyWebhook(h2, rx.at(e.path)[1]!.body, r2.secret, { now: () => p.clock.nowMs });
    });

    test('a paused endpoint queues events and gets them on resume; TriggerWebhook reaches it while paused; DeleteWebhook cancels what is pending', async () => {
      const e = await endpoint({ paused: true });
      await api.publish({ eventId: `evt-pause-${e.id}`, eventType: e.type, owner: 'alice' });
      const t = await api.trigger(e.id);
      assert.ok(await eventually(() => rx.at(e.path).length === 1, WAIT_MS));
      assert.equal(rx.at(e.path)[0]!.headers['webhook-id'], t.eventId);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 1);
      await api.update({ webhookId: e.id, spec: spec('x', { paused: false }), updateMask: ['paused'] });
      assert.ok(await eventually(() => rx.at(e.path).length === 2, WAIT_MS));
      const f = await endpoint({ paused: true });
      const { deliveryIds: [id] } = await api.publish({ eventId: `evt-del-${f.id}`, eventType: f.type, owner: 'alice' });
      assert.equal((await delivery(id!))!.status, D_PENDING);
      await api.delete(f.id);
      await api.delete(f.id);
      await assertStatus(api.get(f.id), status.NOT_FOUND);
      assert.equal((await delivery(id!))!.status, D_CANCELLED);
    });

    /** The webhook each delivery goes to. */
    async function targets(deliveryIds: string[]): Promise<string[]> {
      const { rows } = await p.runtime.db.query(`SELECT webhook_id FROM webhooks.deliveries WHERE delivery_id = ANY($1::text[])`, [deliveryIds]);
      return rows.map((r) => r.webhook_id as string).sort();
    }
    const deliveriesOfEvents = async (eventIds: string[]) =>
      Number((await p.runtime.db.query(`SELECT count(*) AS n FROM webhooks.deliveries WHERE event_id = ANY($1::text[])`, [eventIds])).rows[0]!.n);
    const storedEvents = async (eventIds: string[]) => Number((await p.runtime.db.query(`SELECT count(*) AS n FROM webhooks.events WHERE event_id = ANY($1::text[])`, [eventIds])).rows[0]!.n);

    test('PublishEvents queues each event to the endpoints subscribed to its type (and of its owner), answers in request order, and every delivery reaches the receiver', async () => {
      const owner = `batch-${engine.name}`;
      const mine = rpc(p, owner);
      const other = rpc(p, `${owner}-other`);
      const tag = uniquePath('batch').slice(1).replaceAll('/', '');
      const paid = `invoice.paid.${tag}`;
      const void_ = `invoice.void.${tag}`;
      const a = await endpoint({ eventTypes: [paid] }, mine);
      const b = await endpoint({ eventTypes: ['*'] }, mine);
      const c = await endpoint({ eventTypes: [paid] }, other);
      const ids = [`evt-b1-${tag}`, `evt-b2-${tag}`, `evt-b3-${tag}`, `evt-b4-${tag}`];
      // Events of two owners in one call: an administrator's to publish.
      const out = await rpc(p, 'alice', [...ALL_SCOPES, 'webhooks.admin']).publishBatch([
        { eventId: ids[0]!, eventType: paid, owner, payload: Buffer.from('{"n":0}') },
        { eventId: ids[1]!, eventType: void_, owner, payload: Buffer.from('{"n":1}') },
        { eventId: ids[2]!, eventType: paid, owner: `${owner}-other`, payload: Buffer.from('{"n":2}') },
        { eventId: ids[3]!, eventType: `nobody.${tag}`, owner: `${owner}-other`, payload: Buffer.from('{"n":3}') },
      ]);
      assert.deepEqual(out.results.map((r) => [r.eventId, r.duplicate]), ids.map((id) => [id, false]));
      assert.deepEqual(await targets(out.results[0]!.deliveryIds), [a.id, b.id].sort(), 'owner and type: a (paid) and b (*), not c (another owner)');
      assert.deepEqual(await targets(out.results[1]!.deliveryIds), [b.id], 'only "*" takes invoice.void');
      assert.deepEqual(await targets(out.results[2]!.deliveryIds), [c.id], 'the other owner\'s paid subscriber only');
      assert.deepEqual(out.results[3]!.deliveryIds, [], 'no subscriber');
      assert.ok(await eventually(() => rx.at(a.path).length === 1 && rx.at(b.path).length === 2 && rx.at(c.path).length === 1, WAIT_MS), 'every delivery is made');
      assert.deepEqual(rx.at(b.path).map((r) => r.headers['webhook-id']).sort(), [ids[0], ids[1]]);
      const got = rx.at(c.path)[0]!;
      assert.deepEqual([got.headers['webhook-id'], got.body.toString()], [ids[2], '{"n":2}']);
      verifyWebhook(got.headers as Record<string, string>, got.body, c.secret, { now: () => p.clock.nowMs });
      assert.ok(await eventually(async () => (await mine.history({ webhookId: a.id })).deliveries[0]?.status === D_OK, WAIT_MS));
    });

    test('a re-sent batch answers duplicate = true with the same delivery ids and queues nothing; a batch of old and new events queues only the new ones', async () => {
      const e = await endpoint();
      const first = await api.publishBatch([0, 1, 2].map((n) => ({ eventId: `evt-rs${n}-${e.id}`, eventType: e.type, owner: 'alice' })));
      assert.deepEqual(first.results.map((r) => [r.duplicate, r.deliveryIds.length]), [[false, 1], [false, 1], [false, 1]]);
      assert.ok(await eventually(() => rx.at(e.path).length === 3, WAIT_MS));
      const again = await api.publishBatch([0, 1, 2].map((n) => ({ eventId: `evt-rs${n}-${e.id}`, eventType: e.type, owner: 'alice' })));
      assert.deepEqual(again.results, first.results.map((r) => ({ ...r, duplicate: true })));
      const mixed = await api.publishBatch([
        { eventId: `evt-rs3-${e.id}`, eventType: e.type, owner: 'alice' },
        { eventId: `evt-rs1-${e.id}`, eventType: e.type, owner: 'alice' },
      ]);
      assert.deepEqual(mixed.results.map((r) => [r.eventId, r.duplicate]), [[`evt-rs3-${e.id}`, false], [`evt-rs1-${e.id}`, true]]);
      assert.deepEqual(mixed.results[1]!.deliveryIds, first.results[1]!.deliveryIds);
      // A single PublishEvent of a batch's event is a repeat too: one idempotency rule for both RPCs.
      const single = await api.publish({ eventId: `evt-rs0-${e.id}`, eventType: e.type, owner: 'alice' });
      assert.deepEqual([single.duplicate, single.deliveryIds], [true, first.results[0]!.deliveryIds]);
      assert.equal(await deliveriesOfEvents([0, 1, 2, 3].map((n) => `evt-rs${n}-${e.id}`)), 4);
      assert.ok(await eventually(() => rx.at(e.path).length === 4, WAIT_MS));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 4, 'each event delivered once');
    });

    test('an event_id reused with another payload fails the whole batch with ALREADY_EXISTS naming its index, and nothing of the batch is stored or queued', async () => {
      const e = await endpoint();
      await api.publish({ eventId: `evt-reuse-${e.id}`, eventType: e.type, owner: 'alice', payload: Buffer.from('{"v":1}') });
      assert.ok(await eventually(() => rx.at(e.path).length === 1, WAIT_MS));
      const fresh = [`evt-reuse-a-${e.id}`, `evt-reuse-b-${e.id}`];
      await assertStatus(
        api.publishBatch([
          { eventId: fresh[0]!, eventType: e.type, owner: 'alice' },
          { eventId: `evt-reuse-${e.id}`, eventType: e.type, owner: 'alice', payload: Buffer.from('{"v":2}') },
          { eventId: fresh[1]!, eventType: e.type, owner: 'alice' },
        ]),
        status.ALREADY_EXISTS,
        /^events\[1\]: event evt-reuse-.* was published before/,
      );
      assert.equal(await storedEvents(fresh), 0);
      assert.equal(await deliveriesOfEvents(fresh), 0);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(rx.at(e.path).length, 1, 'nothing of the failed batch is delivered');
    });

    test('PublishEvents with no events, 501 events, one event_id twice or an invalid event is INVALID_ARGUMENT naming the index, and nothing is stored', async () => {
      const e = await endpoint();
      const ev = (n: number) => ({ eventId: `evt-inv${n}-${e.id}`, eventType: e.type, owner: 'alice' });
      await assertStatus(api.publishBatch([]), status.INVALID_ARGUMENT, /^events: holds 0 events; send 1 to 500/);
      await assertStatus(api.publishBatch(Array.from({ length: 501 }, (_, n) => ev(n))), status.INVALID_ARGUMENT, /^events: holds 501 events/);
      await assertStatus(api.publishBatch([ev(0), ev(1), ev(0)]), status.INVALID_ARGUMENT, /^events\[2\]\.event_id: .* is also events\[0\]'s/);
      await assertStatus(api.publishBatch([ev(0), ev(1), { ...ev(2), eventType: 'bad type' }]), status.INVALID_ARGUMENT, /^events\[2\]\.event_type:/);
      await assertStatus(api.publishBatch([ev(0), { ...ev(1), payload: Buffer.alloc(256 * 1024 + 1) }]), status.INVALID_ARGUMENT, /^events\[1\]\.payload:/);
      await assertStatus(api.publishBatch([{ ...ev(0), eventId: '' }]), status.INVALID_ARGUMENT, /^events\[0\]\.event_id: is required/);
      assert.equal(await storedEvents([0, 1, 2].map((n) => `evt-inv${n}-${e.id}`)), 0);
      // 500 is allowed (of a type no endpoint takes: what is stored is the point here, not delivery).
      const full = await api.publishBatch(Array.from({ length: 500 }, (_, n) => ({ ...ev(n), eventType: `nobody.${e.id}` })));
      assert.ok(full.results.length === 500 && full.results.every((r, n) => r.eventId === `evt-inv${n}-${e.id}` && !r.duplicate));
      assert.equal(await storedEvents(full.results.map((r) => r.eventId)), 500);
    });

    test('PublishEvents without the webhooks.publish scope is PERMISSION_DENIED', async () => {
      const e = await endpoint();
      const manager = rpc(p, 'alice', ['webhooks.manage', 'webhooks.read']);
      await assertStatus(manager.publishBatch([{ eventId: `evt-scope-${e.id}`, eventType: e.type, owner: 'alice' }]), status.PERMISSION_DENIED);
      assert.equal(await storedEvents([`evt-scope-${e.id}`]), 0);
    });

    test('a batch is one transaction of at most two statements (one when no id repeats), with the same SQL texts for 1 event and for 300', async () => {
      const e = await endpoint();
      const statements: string[][] = [];
      const db = p.runtime.db;
      const counting: Database = Object.create(db, {
        transaction: {
          value: <T>(fn: (tx: Sql) => Promise<T>) => {
            const texts: string[] = [];
            statements.push(texts);
            return db.transaction((tx) => fn({ ...tx, query: (text, params) => (texts.push(text), tx.query(text, params)), queryArrays: (text, params) => (texts.push(text), tx.queryArrays(text, params)) }));
          },
        },
      }) as Database;
      const store = new WebhooksStore(counting);
      const alice = { subject: 'alice', scopes: new Set(ALL_SCOPES), workloadFamilies: new Set<string>(), admin: false };
      const batch = (n: number, from = 0) => Array.from({ length: n }, (_, i) => checkEvent(event({ eventId: `evt-sql${from + i}-${e.id}`, eventType: e.type, owner: 'alice' }), '', alice));
      const at = new Date(p.clock.nowMs);
      await publishEvents(store, batch(1), 8, at, () => '');
      await publishEvents(store, batch(300, 1), 8, at, () => '');
      // New events: the insert and fan-out statement alone; a repeat of all, or a mix: that statement, then the read-back.
      await publishEvents(store, batch(301), 8, at, () => '');
      await publishEvents(store, batch(302), 8, at, () => '');
      assert.deepEqual(statements.map((s) => s.length), [1, 1, 2, 2]);
      assert.equal(statements[0]!.join('\n'), statements[1]!.join('\n'));
      assert.equal(new Set(statements.flat()).size, 2);
      assert.equal(await deliveriesOfEvents(batch(302).map((x) => x.eventId)), 302);
    });
  });
}

describe('the SSRF guard over gRPC (no allow-list)', () => {
  let p: WebhooksPlatform;
  let rx: Receiver;
  /** DNS as the test says for *.test names (rebind.test: a public address until `rebound`, then 127.0.0.1); the system's for the rest. */
  const dns = { rebound: false };
  before(async () => {
    rx = await new Receiver().start();
    p = await startWebhooksPlatform('PGlite', {
      webhooks: { allowedCidrs: [] },
      options: {
        resolver: async (host) => {
          if (host === 'rebind.test') return [{ address: dns.rebound ? '127.0.0.1' : '93.184.216.34', family: 4 }];
          if (host === 'loopback.test') return [{ address: '127.0.0.1', family: 4 }];
          if (host === 'metadata.test') return [{ address: '169.254.169.254', family: 4 }];
          if (host === 'compat.test') return [{ address: '::7f00:1', family: 6 }];
          // Any other name goes to the system resolver: `localhost` is checked as real DNS answers it.
          return lookup(host, { all: true });
        },
      },
    });
  });
  after(async () => {
    await p?.close();
    await rx?.close();
  });

  test('registration refuses loopback, private, link-local (metadata), IPv6 loopback and IPv6 carrying 127.0.0.1 URLs, and names that resolve to them', async () => {
    const api = rpc(p);
    // IPv6 forms that carry 127.0.0.1: IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo (client).
    const embedded = ['[::127.0.0.1]', '[::ffff:0:127.0.0.1]', '[64:ff9b::127.0.0.1]', '[2002:7f00:1::1]', '[2001:0:4136:e378:8000:63bf:80ff:fffe]'].map((h) => `https://${h}/h`);
    for (const url of [rx.url('/direct'), 'http://10.0.0.5/h', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/h', 'http://2130706433/h', 'http://loopback.test/h', 'http://metadata.test/h', `http://localhost:${rx.port}/h`, 'https://compat.test/h', ...embedded]) {
      await assertStatus(api.create({ spec: spec(url) }), status.INVALID_ARGUMENT, /refused address/);
    }
  });

  test('a name that resolved to a public address at registration and to 127.0.0.1 at delivery (DNS rebinding) is refused at connect time; the receiver gets nothing', async () => {
    const api = rpc(p);
    // https on the default port: a public target at registration.
    const url = 'https://rebind.test/rebind';
    const { webhook } = await api.create({ spec: spec(url) });
    dns.rebound = true;
    const { deliveryIds: [id] } = await api.publish({ eventId: 'evt-rebind', owner: 'alice' });
    assert.ok(await eventually(async () => ((await api.history({ webhookId: webhook!.webhookId })).deliveries[0]?.attempts.length ?? 0) >= 1, WAIT_MS));
    const [d] = (await api.history({ webhookId: webhook!.webhookId })).deliveries;
    assert.equal(d!.deliveryId, id);
    assert.equal(d!.attempts[0]!.responseStatus, 0);
    assert.match(d!.attempts[0]!.error, /refused address: rebind.test resolves to 127.0.0.1 is a loopback address/);
    assert.equal(rx.received.length, 0);
  });
});
