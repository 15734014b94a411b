// Delivery rules over real gRPC and a real local receiver, on PGlite and PostgreSQL, with one
// attempt per delivery so each failure is final: an endpoint that keeps failing is disabled only
// when the streak is long enough in count and in time (fake clock), dead letters replayed "since a
// time", the per-endpoint concurrency limit, and paging past the first page.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { flagsv1, webhooksv1 } from '@gantry/proto';
import { assertStatus, eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { Receiver, rpc, spec, startWebhooksPlatform, uniquePath, type WebhooksPlatform } from './support.js';

requirePostgresInCi('the webhooks delivery tests');

const { WEBHOOK_STATUS_ACTIVE: ACTIVE, WEBHOOK_STATUS_DISABLED: DISABLED } = webhooksv1.WebhookStatus;
const { DELIVERY_STATUS_SUCCEEDED: D_OK, DELIVERY_STATUS_DEAD_LETTERED: D_DEAD } = webhooksv1.DeliveryStatus;
const WAIT_MS = 10_000;
const MINUTE_MS = 60_000;
/** Disabled after this many failed attempts in a row... */
const DISABLE_AFTER_FAILURES = 4;
/** ...spanning at least this long. */
const DISABLE_AFTER_MS = 10 * MINUTE_MS;

for (const engine of engines()) {
  describe(`webhooks delivery rules on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    let rx: Receiver;
    let api: ReturnType<typeof rpc>;
    before(async () => {
      rx = await new Receiver().start();
      p = await startWebhooksPlatform(engine.name, {
        webhooks: { maxAttempts: 1, disableAfterFailures: DISABLE_AFTER_FAILURES, disableAfterMs: DISABLE_AFTER_MS, attemptTimeoutMs: 10_000 },
      });
      api = rpc(p, 'rules');
    });
    after(async () => {
      await p?.close();
      await rx?.close();
    });

    async function endpoint(over: Partial<webhooksv1.WebhookSpec> = {}) {
      const path = uniquePath('rule');
      const type = `order.${path.slice(1)}`;
      const { webhook } = await api.create({ spec: spec(rx.url(path), { eventTypes: [type], ...over }) });
      return { path, type, id: webhook!.webhookId };
    }
    const deliveries = async (webhookId: string) => (await api.history({ webhookId, pageSize: 500 })).deliveries;
    const statusOf = async (webhookId: string, deliveryId: string) => (await deliveries(webhookId)).find((d) => d.deliveryId === deliveryId)?.status;

    test('the kill switch webhooks.delivery.paused holds every delivery: events queue while it is on and go out once it is off', async () => {
      const e = await endpoint();
      const paused = (defaultVariant: 'on' | 'off') =>
        p.flags.put({ key: 'webhooks.delivery.paused', state: flagsv1.FlagState.FLAG_STATE_ENABLED, variants: { on: true, off: false }, defaultVariant, targeting: undefined, metadata: {}, source: '', version: 0n, updatedAt: undefined });
      await paused('on');
      assert.ok(await eventually(() => p.runtime.flags.getBooleanValue('webhooks.delivery.paused', false), WAIT_MS));
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await api.publish({ eventId: `evt-pause-${i}-${e.id}`, eventType: e.type, owner: 'rules' })).deliveryIds[0]!);
      // Several poll intervals (50 ms) pass without an attempt.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(rx.at(e.path).length, 0, 'nothing was delivered while paused');
      assert.ok((await deliveries(e.id)).every((d) => d.attempts.length === 0), 'no attempt was made while paused');
      await paused('off');
      assert.ok(await eventually(async () => rx.at(e.path).length === 3, WAIT_MS), 'the queued deliveries went out after resume');
      // The receiver counts a request before it answers, so the last outcome may not be recorded yet.
      for (const id of ids) assert.ok(await eventually(async () => (await statusOf(e.id, id)) === D_OK, WAIT_MS), `delivery ${id} did not succeed`);
      await p.flags.delete('webhooks.delivery.paused');
    });

    test(`an endpoint is disabled after ${DISABLE_AFTER_FAILURES} failures in a row only once they span 10 minutes of the clock`, async () => {
      const e = await endpoint();
      rx.script.set(e.path, Array.from({ length: 10 }, () => ({ status: 500 })));
      /** Publishes one event and waits until its (only) attempt failed for good. */
      const fail = async (n: number) => {
        const { deliveryIds: [id] } = await api.publish({ eventId: `evt-dis-${n}-${e.id}`, eventType: e.type, owner: 'rules' });
        assert.ok(await eventually(async () => (await statusOf(e.id, id!)) === D_DEAD, WAIT_MS), `delivery ${n} not dead-lettered`);
      };
      for (let n = 1; n <= DISABLE_AFTER_FAILURES; n++) {
        await fail(n);
        p.clock.nowMs += MINUTE_MS;
      }
      const streak = await api.get(e.id);
      assert.deepEqual([streak.status, streak.consecutiveFailures], [ACTIVE, DISABLE_AFTER_FAILURES], 'enough failures, but over 3 minutes: still active');
      p.clock.nowMs += DISABLE_AFTER_MS;
      await fail(DISABLE_AFTER_FAILURES + 1);
      const disabled = await api.get(e.id);
      assert.equal(disabled.status, DISABLED);
      assert.match(disabled.disabledReason, /5 attempts in a row failed over 14 minutes/);
      // A disabled endpoint gets no new deliveries, and TriggerWebhook says why.
      const later = await api.publish({ eventId: `evt-dis-after-${e.id}`, eventType: e.type, owner: 'rules' });
      assert.deepEqual(later.deliveryIds, []);
      await assertStatus(api.trigger(e.id), status.FAILED_PRECONDITION, /disabled/);
      const back = await api.update({ webhookId: e.id, reenable: true });
      assert.deepEqual([back.status, back.consecutiveFailures, back.disabledReason], [ACTIVE, 0, '']);
    });

    test('RetryFailedDeliveries with since replays only the webhook\'s dead letters completed at or after that time', async () => {
      const e = await endpoint();
      rx.script.set(e.path, [{ status: 500 }, { status: 500 }, { status: 500 }]);
      const publish = async (n: number) => (await api.publish({ eventId: `evt-since-${n}-${e.id}`, eventType: e.type, owner: 'rules' })).deliveryIds[0]!;
      const old = await publish(1);
      assert.ok(await eventually(async () => (await statusOf(e.id, old)) === D_DEAD, WAIT_MS));
      p.clock.nowMs += 60 * MINUTE_MS;
      const since = new Date(p.clock.nowMs);
      const recent = [await publish(2), await publish(3)];
      for (const id of recent) assert.ok(await eventually(async () => (await statusOf(e.id, id)) === D_DEAD, WAIT_MS));
      await assertStatus(api.retry({ selector: { $case: 'since', value: since }, webhookId: '' }), status.INVALID_ARGUMENT, /webhook_id/);
      await assertStatus(api.retry({ selector: { $case: 'since', value: new Date(p.clock.nowMs + MINUTE_MS) }, webhookId: e.id }), status.INVALID_ARGUMENT, /future/);
      await assertStatus(rpc(p, 'mallory').retry({ selector: { $case: 'since', value: since }, webhookId: e.id }), status.PERMISSION_DENIED);
      const replay = await api.retry({ selector: { $case: 'since', value: since }, webhookId: e.id });
      assert.equal(replay.requeued, 2);
      assert.deepEqual(new Set(replay.deliveryIds), new Set(recent));
      for (const id of recent) assert.ok(await eventually(async () => (await statusOf(e.id, id)) === D_OK, WAIT_MS), 'a replayed dead letter did not succeed');
      assert.equal(await statusOf(e.id, old), D_DEAD, 'the older dead letter stays');
      assert.equal(rx.at(e.path).length, 5, 'three failed attempts and two replays');
    });

    test('an endpoint with max_concurrency 2 never has more than 2 attempts in flight, and gets every event', async () => {
      const e = await endpoint({ maxConcurrency: 2 });
      rx.hold.add(e.path);
      const total = 6;
      for (let n = 0; n < total; n++) await api.publish({ eventId: `evt-conc-${n}-${e.id}`, eventType: e.type, owner: 'rules' });
      assert.ok(await eventually(() => rx.open.get(e.path) === 2, WAIT_MS), 'two attempts did not start');
      // Several claim rounds (poll interval 50 ms) pass while both are held: none may start a third.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(rx.at(e.path).length, 2, 'a third attempt started while two were in flight');
      rx.release(e.path);
      assert.ok(await eventually(async () => (await deliveries(e.id)).filter((d) => d.status === D_OK).length === total, WAIT_MS), 'not every event was delivered');
      assert.equal(rx.peak.get(e.path), 2);
      assert.equal(rx.at(e.path).length, total);
    });

    test('ListWebhooks and GetDeliveryHistory page past the first page: every item once, in order; a token with other filters is INVALID_ARGUMENT', async () => {
      const pager = rpc(p, 'pager');
      const made: string[] = [];
      for (let n = 0; n < 5; n++) made.push((await pager.create({ spec: spec(rx.url(uniquePath('page')), { eventTypes: ['order.paged'] }) })).webhook!.webhookId);
      const listed: string[] = [];
      let token = '';
      let pages = 0;
      do {
        const page = await pager.list({ pageSize: 2, pageToken: token });
        listed.push(...page.webhooks.map((w) => w.webhookId));
        token = page.nextPageToken;
        pages++;
      } while (token !== '');
      assert.deepEqual([listed, pages], [made, 3], 'oldest first, 2 + 2 + 1');
      const first = await pager.list({ pageSize: 2 });
      await assertStatus(pager.list({ pageSize: 2, pageToken: first.nextPageToken, status: ACTIVE }), status.INVALID_ARGUMENT, /page_token/);

      const { deliveryIds } = await pager.publish({ eventId: 'evt-paged', eventType: 'order.paged', owner: 'pager' });
      assert.equal(deliveryIds.length, 5);
      const history: string[] = [];
      token = '';
      do {
        const page = await pager.history({ eventId: 'evt-paged', pageSize: 2, pageToken: token });
        history.push(...page.deliveries.map((d) => d.deliveryId));
        token = page.nextPageToken;
      } while (token !== '');
      assert.deepEqual(history, [...deliveryIds].reverse(), 'newest first, each once');
      const h1 = await pager.history({ eventId: 'evt-paged', pageSize: 2 });
      await assertStatus(pager.history({ eventId: 'other', pageSize: 2, pageToken: h1.nextPageToken }), status.INVALID_ARGUMENT, /page_token/);
    });
  });
}
