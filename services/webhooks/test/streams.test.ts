// The two watches over real gRPC on PGlite and PostgreSQL: the registry watch (bookmark, order,
// owners, resume from a version from the history, a stalled watcher cut off with the version to
// resume from) and the live delivery watch (a webhook created after the watch began, filters).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FLOW_CONTROL_WINDOW_BYTES } from '@gantry/kit';
import { status } from '@grpc/grpc-js';
import { webhooksv1 } from '@gantry/proto';
import { eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { RESUME_VERSION_TRAILER } from '../src/index.js';
import { Receiver, rpc, spec, startWebhooksPlatform, uniquePath, watchDeliveries, watchRegistry, type WebhooksPlatform } from './support.js';

requirePostgresInCi('the webhooks stream tests');

const { REGISTRY_EVENT_TYPE_BOOKMARK: BOOKMARK, REGISTRY_EVENT_TYPE_CREATED: CREATED, REGISTRY_EVENT_TYPE_UPDATED: UPDATED, REGISTRY_EVENT_TYPE_DELETED: DELETED, REGISTRY_EVENT_TYPE_SECRET_ROTATED: ROTATED } =
  webhooksv1.RegistryEventType;
const { DELIVERY_STATUS_SUCCEEDED: D_OK } = webhooksv1.DeliveryStatus;
const WAIT_MS = 10_000;

/** Waits until the process serves exactly this many watches of the kind (a watch is live once it follows the feed). */
async function live(p: WebhooksPlatform, kind: 'registry' | 'deliveries', n: number): Promise<void> {
  assert.ok(await eventually(() => p.streams()[kind] === n, WAIT_MS), `expected ${n} live ${kind} watches, have ${p.streams()[kind]}`);
}

const changes = (msgs: webhooksv1.WatchWebhookRegistryResponse[]) => msgs.filter((m) => m.type !== BOOKMARK);

for (const engine of engines()) {
  describe(`webhooks watches over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    let rx: Receiver;
    before(async () => {
      rx = await new Receiver().start();
      p = await startWebhooksPlatform(engine.name);
    });
    after(async () => {
      await p?.close();
      await rx?.close();
    });

    test('a registry watch from 0 starts with a BOOKMARK at the current version, then sends the owner\'s changes in version order and no other owner\'s', async () => {
      const api = rpc(p, 'reg-a');
      const head = (await api.list()).version;
      const w = watchRegistry(p, {}, 'reg-a');
      await live(p, 'registry', 1);
      assert.ok(await eventually(() => w.messages.length >= 1, WAIT_MS));
      assert.deepEqual([w.messages[0]?.type, w.messages[0]?.version, w.messages[0]?.webhook], [BOOKMARK, head, undefined]);
      const { webhook } = await api.create({ spec: spec(rx.url(uniquePath('reg'))) });
      await rpc(p, 'reg-other').create({ spec: spec(rx.url(uniquePath('reg'))) });
      const id = webhook!.webhookId;
      await api.update({ webhookId: id, spec: spec('x', { description: 'two' }), updateMask: ['description'] });
      await api.rotate(id, 0);
      await api.delete(id);
      assert.ok(await eventually(() => changes(w.messages).length >= 4, WAIT_MS), `got ${changes(w.messages).length} changes`);
      w.cancel();
      await w.ended;
      await live(p, 'registry', 0);
      const got = changes(w.messages);
      assert.deepEqual(got.map((m) => m.type), [CREATED, UPDATED, ROTATED, DELETED]);
      assert.deepEqual(new Set(got.map((m) => m.webhook!.webhookId)), new Set([id]), 'only reg-a\'s webhook');
      assert.deepEqual(got.map((m) => m.webhook!.version), got.map((m) => m.version), 'each change carries the webhook as of that version');
      assert.equal(got[1]!.webhook!.spec!.description, 'two');
      assert.equal(got[3]!.webhook!.status, webhooksv1.WebhookStatus.WEBHOOK_STATUS_DELETED);
      const versions = w.messages.map((m) => m.version);
      assert.deepEqual(versions, [...versions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    });

    test('a registry watch resumed from a version receives exactly the changes after it, read back from the history, then live ones', async () => {
      const api = rpc(p, 'reg-b');
      const { webhook } = await api.create({ spec: spec(rx.url(uniquePath('reg'))) });
      const id = webhook!.webhookId;
      const u1 = await api.update({ webhookId: id, spec: spec('x', { description: 'one' }), updateMask: ['description'] });
      const u2 = await api.update({ webhookId: id, spec: spec('x', { paused: true }), updateMask: ['paused'] });
      const w = watchRegistry(p, { fromVersion: webhook!.version }, 'reg-b');
      await live(p, 'registry', 1);
      assert.ok(await eventually(() => changes(w.messages).length >= 2, WAIT_MS));
      assert.deepEqual(changes(w.messages).map((m) => [m.type, m.version]), [[UPDATED, u1.version], [UPDATED, u2.version]]);
      const u3 = await api.update({ webhookId: id, spec: spec('x', { paused: false }), updateMask: ['paused'] });
      assert.ok(await eventually(() => changes(w.messages).length === 3, WAIT_MS));
      w.cancel();
      await w.ended;
      await live(p, 'registry', 0);
      assert.deepEqual(changes(w.messages).map((m) => m.version), [u1.version, u2.version, u3.version]);
    });

    test('an admin watching without an owner sees every owner\'s changes; another owner without the admin scope is PERMISSION_DENIED', async () => {
      const denied = await watchRegistry(p, { owner: 'reg-c' }, 'reg-d').ended;
      assert.equal(denied.err?.code, status.PERMISSION_DENIED);
      const from = (await rpc(p, 'reg-c').list()).version;
      const w = watchRegistry(p, { fromVersion: from }, 'root', ['webhooks.read', 'webhooks.admin']);
      await live(p, 'registry', 1);
      const a = (await rpc(p, 'reg-c').create({ spec: spec(rx.url(uniquePath('reg'))) })).webhook!;
      const b = (await rpc(p, 'reg-d').create({ spec: spec(rx.url(uniquePath('reg'))) })).webhook!;
      assert.ok(await eventually(() => changes(w.messages).length >= 2, WAIT_MS));
      w.cancel();
      await w.ended;
      await live(p, 'registry', 0);
      assert.deepEqual(changes(w.messages).map((m) => m.webhook!.webhookId), [a.webhookId, b.webhookId]);
    });

    test('WatchDeliveries without a webhook_id sees attempts to a webhook created after the watch began, and not another owner\'s', async () => {
      const api = rpc(p, 'dw-a');
      const w = watchDeliveries(p, {}, 'dw-a');
      await live(p, 'deliveries', 1);
      const path = uniquePath('dw');
      const type = `order.${path.slice(1)}`;
      const { webhook } = await api.create({ spec: spec(rx.url(path), { eventTypes: [type] }) });
      const other = await rpc(p, 'dw-b').create({ spec: spec(rx.url(uniquePath('dw')), { eventTypes: [type] }) });
      const { deliveryIds } = await api.publish({ eventId: `evt-dw-${webhook!.webhookId}`, eventType: type });
      assert.equal(deliveryIds.length, 1, 'an owner\'s event goes to its own endpoints only');
      const theirs = await rpc(p, 'dw-b').publish({ eventId: `evt-dw-b-${webhook!.webhookId}`, eventType: type });
      assert.equal(theirs.deliveryIds.length, 1);
      assert.ok(await eventually(() => w.messages.some((m) => m.delivery?.status === D_OK), WAIT_MS), 'the new webhook\'s attempt was not seen');
      // The other owner's delivery completes too; the watch never shows it.
      assert.ok(await eventually(async () => (await rpc(p, 'dw-b').history({ webhookId: other.webhook!.webhookId })).deliveries[0]?.status === D_OK, WAIT_MS));
      w.cancel();
      await w.ended;
      await live(p, 'deliveries', 0);
      assert.deepEqual(new Set(w.messages.map((m) => m.delivery!.webhookId)), new Set([webhook!.webhookId]));
      const done = w.messages.find((m) => m.delivery?.status === D_OK)!;
      assert.deepEqual([done.attempt?.attemptNumber, done.attempt?.responseStatus, done.delivery!.attempts.length], [1, 200, 1]);
    });

    test('WatchDeliveries on one webhook with event_types sends only those; an unknown webhook is NOT_FOUND, another owner\'s PERMISSION_DENIED', async () => {
      const api = rpc(p, 'dw-c');
      const path = uniquePath('dw');
      const { webhook } = await api.create({ spec: spec(rx.url(path), { eventTypes: ['*'] }) });
      const id = webhook!.webhookId;
      assert.equal((await watchDeliveries(p, { webhookId: 'wh_nope' }, 'dw-c').ended).err?.code, status.NOT_FOUND);
      assert.equal((await watchDeliveries(p, { webhookId: id }, 'dw-d').ended).err?.code, status.PERMISSION_DENIED);
      const w = watchDeliveries(p, { webhookId: id, eventTypes: ['wanted.type'] }, 'dw-c');
      await live(p, 'deliveries', 1);
      await api.publish({ eventId: `evt-unwanted-${id}`, eventType: 'unwanted.type', owner: 'dw-c' });
      await api.publish({ eventId: `evt-wanted-${id}`, eventType: 'wanted.type', owner: 'dw-c' });
      assert.ok(await eventually(() => w.messages.some((m) => m.delivery?.eventId === `evt-wanted-${id}` && m.delivery.status === D_OK), WAIT_MS));
      assert.ok(await eventually(() => rx.at(path).length === 2, WAIT_MS), 'both events were delivered');
      w.cancel();
      await w.ended;
      await live(p, 'deliveries', 0);
      assert.deepEqual(new Set(w.messages.map((m) => m.delivery!.eventType)), new Set(['wanted.type']));
    });
  });

  describe(`a stalled registry watcher on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    const QUEUE_EVENTS = 4;
    before(async () => {
      p = await startWebhooksPlatform(engine.name, { options: { streamQueueEvents: QUEUE_EVENTS } });
    });
    after(async () => p?.close());

    test('is cut off with RESOURCE_EXHAUSTED and the version to resume from, and resuming from it misses nothing', async () => {
      const api = rpc(p, 'stall');
      const { webhook } = await api.create({ spec: spec('http://127.0.0.1:9/stall') });
      const id = webhook!.webhookId;
      const from = webhook!.version;
      const w = watchRegistry(p, { fromVersion: from }, 'stall');
      await live(p, 'registry', 1);
      // The client stops reading: grpc-js stops taking data once its flow-control window is full
      // (FLOW_CONTROL_WINDOW_BYTES), HTTP/2 flow control stops the server's writes, and the
      // server's queue for this watch fills. Large changes (a full description and 32 labels,
      // about 10 KiB each), twice the window's worth.
      w.call.pause();
      const labels = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`label-${String(i).padStart(2, '0')}-${'k'.repeat(50)}`, 'v'.repeat(256)]));
      const total = Math.ceil((2 * FLOW_CONTROL_WINDOW_BYTES) / (10 * 1024));
      const made: bigint[] = [];
      for (let i = 0; i < total; i++) {
        made.push((await api.update({ webhookId: id, spec: spec('x', { description: `${i}`.padEnd(1024, '.'), labels }), updateMask: ['description', 'labels'] })).version);
      }
      // The feed drops a watch whose queue overflowed.
      await live(p, 'registry', 0);
      w.call.resume();
      const { err, trailers } = await w.ended;
      assert.equal(err?.code, status.RESOURCE_EXHAUSTED, 'the stalled watch was not cut off');
      assert.match(err!.details, /fell behind by more than 4 changes; watch again from version/);
      const received = changes(w.messages).map((m) => m.version);
      assert.ok(received.length < total, `the server buffered all ${total} changes for a stalled client instead of cutting it off`);
      const resume = BigInt(String(trailers?.get(RESUME_VERSION_TRAILER)[0]));
      assert.equal(resume, received.at(-1) ?? from, 'the trailer names the last version delivered');
      const again = watchRegistry(p, { fromVersion: resume }, 'stall');
      assert.ok(await eventually(() => changes(again.messages).length >= total - received.length, WAIT_MS), 'the resumed watch did not catch up');
      again.cancel();
      await again.ended;
      assert.deepEqual([...received, ...changes(again.messages).map((m) => m.version)], made, 'every change exactly once, in order');
    });
  });
}
