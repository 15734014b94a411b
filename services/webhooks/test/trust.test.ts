// The attacks of issue 17 on the webhooks service, each reproduced over real gRPC (mTLS, JWT or a
// workload certificate) against a real local receiver, on PGlite and PostgreSQL: another
// principal's or the platform's events read by a mere webhooks.manage holder, forged settlement
// events, plain http and unusual ports to public targets, an allow-listed internal range open to
// every owner (and its answers readable), a receiver's Authorization header returned by reads, and
// event ids that break the webhook-id header. Each test fails against the code before the fix.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status } from '@grpc/grpc-js';
import { unary } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { assertStatus, eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { receives } from '../src/domain/families.js';
import { parseKeyring, SecretBox } from '../src/domain/secret-box.js';
import type { Spec } from '../src/domain/webhook.js';
import { sealPlaintextHeaders, WebhooksStore } from '../src/index.js';
import { ALL_SCOPES, event, Receiver, rpc, spec, startWebhooksPlatform, TEST_WEBHOOKS_CONFIG, uniquePath, watchRegistry, type WebhooksClient, type WebhooksPlatform } from './support.js';

requirePostgresInCi('the webhooks trust tests');

const WAIT_MS = 5000;
const MANAGE_ONLY = ['webhooks.manage', 'webhooks.read'];
const SETTLEMENT_READER = [...MANAGE_ONLY, 'events.settlement.read'];
const { DELIVERY_STATUS_SUCCEEDED: D_OK } = webhooksv1.DeliveryStatus;

for (const engine of engines()) {
  describe(`the webhooks trust model on ${engine.name}`, { skip: engine.skip }, () => {
    let p: WebhooksPlatform;
    let rx: Receiver;
    let settlement: WebhooksClient;
    let approvals: WebhooksClient;
    /** DNS for *.test names: public.test is public; sneaky.test is public until `rebound`, then the allow-listed 127.0.0.1. */
    const dns = { rebound: false };
    before(async () => {
      rx = await new Receiver().start();
      p = await startWebhooksPlatform(engine.name, {
        // The receiver's address: for administrators' registrations (bare), and for two owners of their own.
        webhooks: { allowedCidrs: [...TEST_WEBHOOKS_CONFIG.allowedCidrs, 'mallory=127.0.0.1/32', 'reader=127.0.0.1/32', 'trusted=127.0.0.1/32'] },
        workloads: new Map([
          ['settlement', { scopes: ['webhooks.publish'], families: ['settlement'] }],
          ['approvals', { scopes: ['webhooks.publish'], families: ['approvals'] }],
        ]),
        options: {
          resolver: async (host) => {
            if (host === 'public.test') return [{ address: '93.184.216.34', family: 4 }];
            if (host === 'sneaky.test') return [{ address: dns.rebound ? '127.0.0.1' : '93.184.216.34', family: 4 }];
            throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
          },
        },
      });
      settlement = await p.asWorkload('settlement');
      approvals = await p.asWorkload('approvals');
    });
    after(async () => {
      await p?.close();
      await rx?.close();
    });

    const asWorkload = (c: WebhooksClient, events: Partial<webhooksv1.PublishEventRequest>[]) =>
      unary(c.publishEvents, c, { events: events.map((e, i) => event({ eventId: `evt_${i}`, ...e })) }, new Metadata());
    const storedEvents = async (ids: string[]) => Number((await p.runtime.db.query(`SELECT count(*) AS n FROM webhooks.events WHERE event_id = ANY($1::text[])`, [ids])).rows[0]!.n);
    const receivedIds = (path: string) => rx.at(path).map((r) => r.headers['webhook-id']);

    test('finding 3: a webhooks.manage holder\'s "*" endpoint gets none of the platform\'s settlement events, and subscribing to one is PERMISSION_DENIED; an endpoint registered with events.settlement.read gets them', async () => {
      const nosy = uniquePath('nosy');
      const entitled = uniquePath('entitled');
      const mallory = rpc(p, 'mallory', MANAGE_ONLY);
      await assertStatus(mallory.create({ spec: spec(rx.url(nosy), { eventTypes: ['settlement.credit.drawn'] }) }), status.PERMISSION_DENIED, /events\.settlement\.read/);
      const wildcard = await mallory.create({ spec: spec(rx.url(nosy), { eventTypes: ['*'] }) });
      assert.deepEqual(wildcard.webhook!.eventFamilies, []);
      const reader = await rpc(p, 'reader', SETTLEMENT_READER).create({ spec: spec(rx.url(entitled), { eventTypes: ['settlement.credit.drawn'] }) });
      assert.deepEqual(reader.webhook!.eventFamilies, ['settlement']);

      const id = `evt_${uniquePath('drawn').replace(/\W/g, '')}`;
      const published = await asWorkload(settlement, [{ eventId: id, eventType: 'settlement.credit.drawn', payload: Buffer.from('{"walletAddress":"0xabc","amountMinor":"300"}') }]);
      assert.equal(published.results[0]!.deliveryIds.length, 1, 'one delivery: the entitled endpoint');
      assert.ok(await eventually(() => receivedIds(entitled).includes(id), WAIT_MS));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(receivedIds(nosy), [], 'the wallet and amount never reach the nosy endpoint');
    });

    test('finding 4: a token with webhooks.publish cannot publish settlement.* events (PERMISSION_DENIED, nothing stored) nor another owner\'s; its own events reach only its own endpoints; a workload publishes only its own family, with no owner', async () => {
      const entitled = uniquePath('entitled4');
      await rpc(p, 'reader', SETTLEMENT_READER).create({ spec: spec(rx.url(entitled), { eventTypes: ['*'] }) });
      const forger = rpc(p, 'forger', ALL_SCOPES);
      const forged = `evt_forged_${process.pid}_${engine.name}`;
      await assertStatus(forger.publish({ eventId: forged, eventType: 'settlement.credit.drawn' }), status.PERMISSION_DENIED, /reserved event family settlement/);
      await assertStatus(forger.publishBatch([{ eventId: `${forged}_b`, eventType: 'order.created' }, { eventId: `${forged}_c`, eventType: 'approvals.approval.finalized' }]), status.PERMISSION_DENIED, /^events\[1\]: /);
      await assertStatus(forger.publish({ eventId: `${forged}_d`, eventType: 'order.created', owner: 'reader' }), status.PERMISSION_DENIED, /needs scope webhooks.admin/);
      assert.equal(await storedEvents([forged, `${forged}_b`, `${forged}_c`, `${forged}_d`]), 0);
      // Its own event, published with no owner, is its own: the reader's "*" endpoint does not get it.
      const own = await forger.publish({ eventId: `${forged}_own`, eventType: 'order.created' });
      assert.deepEqual(own.deliveryIds, []);
      // A workload: its family only, and never addressed to an owner.
      await assertStatus(asWorkload(approvals, [{ eventId: `${forged}_w1`, eventType: 'settlement.credit.drawn' }]), status.PERMISSION_DENIED);
      await assertStatus(asWorkload(settlement, [{ eventId: `${forged}_w2`, eventType: 'settlement.credit.drawn', owner: 'reader' }]), status.INVALID_ARGUMENT, /owner/);
      const real = await asWorkload(settlement, [{ eventId: `${forged}_w3`, eventType: 'settlement.credit_line.settled' }]);
      assert.equal(real.results[0]!.deliveryIds.length >= 1, true);
      assert.ok(await eventually(() => receivedIds(entitled).includes(`${forged}_w3`), WAIT_MS));
      assert.equal(receivedIds(entitled).includes(`${forged}_own`), false);
    });

    test('finding 9: plain http to a public address, and https on a port outside webhooks.allowedPorts, are refused at registration; https on 443 or 8443 is accepted', async () => {
      const api = rpc(p, 'web', MANAGE_ONLY);
      await assertStatus(api.create({ spec: spec('http://public.test/hook') }), status.INVALID_ARGUMENT, /plain http goes only to allow-listed targets; use https/);
      await assertStatus(api.create({ spec: spec('http://93.184.216.34/hook') }), status.INVALID_ARGUMENT, /plain http/);
      await assertStatus(api.create({ spec: spec('https://public.test:22/hook') }), status.INVALID_ARGUMENT, /port 22 is not open to public targets/);
      await api.create({ spec: spec('https://public.test/hook') });
      await api.create({ spec: spec('https://public.test:8443/hook') });
    });

    test('finding 9: IPv6 spellings that carry 127.0.0.1 (IPv4-compatible, -translated, NAT64, 6to4, Teredo) are refused at registration', async () => {
      const eve = rpc(p, 'eve', MANAGE_ONLY);
      for (const host of ['[::7f00:1]', '[::ffff:0:7f00:1]', '[64:ff9b::7f00:1]', '[2002:7f00:1::1]', '[2001:0:4136:e378:8000:63bf:80ff:fffe]']) {
        await assertStatus(eve.create({ spec: spec(`https://${host}/hook`) }), status.INVALID_ARGUMENT, /refused address: .* carries 127\.0\.0\.1/);
      }
    });

    test('finding 9: an allow-listed internal range is not every owner\'s: a bare entry needs an administrator to register it, an owner\'s entry opens it to that owner, and a public name rebound to it later is refused at delivery', async () => {
      const eve = rpc(p, 'eve', MANAGE_ONLY);
      await assertStatus(eve.create({ spec: spec(rx.url(uniquePath('probe'))) }), status.PERMISSION_DENIED, /only an administrator may register/);
      await assertStatus(eve.create({ spec: spec(`http://[::ffff:127.0.0.1]:${rx.port}/probe`) }), status.PERMISSION_DENIED);
      const admin = await rpc(p, 'ops', [...MANAGE_ONLY, 'webhooks.admin']).create({ spec: spec(rx.url(uniquePath('ops'))) });
      assert.ok(admin.webhook);

      // DNS rebinding into the allow-listed range: eve's endpoint was public when registered.
      const sneaky = await eve.create({ spec: spec('https://sneaky.test/hook', { eventTypes: ['order.sneaky'] }) });
      dns.rebound = true;
      const eveApi = rpc(p, 'eve', ALL_SCOPES);
      const { deliveryIds: [id] } = await eveApi.publish({ eventId: `evt_sneaky_${sneaky.webhook!.webhookId}`, eventType: 'order.sneaky' });
      assert.ok(await eventually(async () => ((await eveApi.history({ webhookId: sneaky.webhook!.webhookId })).deliveries[0]?.attempts.length ?? 0) >= 1, WAIT_MS));
      const [d] = (await eveApi.history({ webhookId: sneaky.webhook!.webhookId })).deliveries;
      assert.equal(d!.deliveryId, id);
      assert.match(d!.attempts[0]!.error, /refused address: sneaky.test resolves to 127.0.0.1 is a loopback address/);
    });

    test('finding 9: answers of an internal target are not kept: the attempt records the status, never a response excerpt', async () => {
      const trusted = rpc(p, 'trusted', ALL_SCOPES);
      const path = uniquePath('internal');
      const { webhook } = await trusted.create({ spec: spec(rx.url(path), { eventTypes: ['order.internal'] }) });
      await trusted.publish({ eventId: `evt_internal_${webhook!.webhookId}`, eventType: 'order.internal' });
      assert.ok(await eventually(async () => (await trusted.history({ webhookId: webhook!.webhookId })).deliveries[0]?.status === D_OK, WAIT_MS));
      const [attempt] = (await trusted.history({ webhookId: webhook!.webhookId })).deliveries[0]!.attempts;
      assert.deepEqual([attempt!.responseStatus, attempt!.responseBodyExcerpt], [200, '']);
    });

    test('finding 9: header values (a receiver\'s Authorization) are encrypted at rest and never returned by Get, List or the registry watch; deliveries carry them; an update that leaves them out keeps them', async () => {
      const owner = rpc(p, 'trusted', ALL_SCOPES);
      const token = `Bearer s3cr3t-${engine.name}-${process.pid}`;
      const watch = watchRegistry(p, {}, 'trusted', ALL_SCOPES);
      // Its BOOKMARK: from here on the watch sees every change.
      assert.ok(await eventually(() => watch.messages.length >= 1, WAIT_MS));
      const path = uniquePath('authz');
      const { webhook } = await owner.create({ spec: spec(rx.url(path), { eventTypes: ['order.authz'], headers: { Authorization: token, 'X-Team': 'payments' } }) });
      const id = webhook!.webhookId;
      assert.deepEqual([webhook!.headerNames, webhook!.spec!.headers], [['authorization', 'x-team'], {}]);
      const text = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : Buffer.isBuffer(x) ? x.toString('latin1') : x));
      assert.equal(text(await owner.get(id)).includes('s3cr3t'), false);
      assert.equal(text(await owner.list()).includes('s3cr3t'), false);
      await owner.update({ webhookId: id, spec: spec('x', { description: 'renamed' }), updateMask: ['description'] });
      assert.ok(await eventually(() => watch.messages.filter((m) => m.webhook?.webhookId === id).length >= 2, WAIT_MS));
      watch.cancel();
      assert.equal(text(watch.messages).includes('s3cr3t'), false);
      const { rows } = await p.runtime.db.query(`SELECT e.*, (SELECT json_agg(c.webhook) FROM webhooks.registry_changes c WHERE c.webhook_id = e.webhook_id) AS history FROM webhooks.endpoints e WHERE e.webhook_id = $1`, [id]);
      assert.equal(text(rows).includes('s3cr3t'), false, 'neither the endpoint row nor its history holds the value');
      await owner.publish({ eventId: `evt_authz_${id}`, eventType: 'order.authz' });
      assert.ok(await eventually(() => rx.at(path).length === 1, WAIT_MS));
      assert.deepEqual([rx.at(path)[0]!.headers.authorization, rx.at(path)[0]!.headers['x-team']], [token, 'payments']);
    });

    test('finding 9: header values an earlier version stored in the clear are sealed at start, and still sent', async () => {
      const owner = rpc(p, 'trusted', ALL_SCOPES);
      const path = uniquePath('legacy');
      const { webhook } = await owner.create({ spec: spec(rx.url(path), { eventTypes: ['order.legacy'] }) });
      const id = webhook!.webhookId;
      await p.runtime.db.query(`UPDATE webhooks.endpoints SET headers = '{"authorization":"Bearer legacy-token"}'::jsonb WHERE webhook_id = $1`, [id]);
      const keyFile = join(p.dataDir, 'webhooks', 'secret-keys');
      const box = new SecretBox(parseKeyring(readFileSync(keyFile, 'utf8'), keyFile));
      assert.ok((await sealPlaintextHeaders(new WebhooksStore(p.runtime.db), box)) >= 1);
      const { rows } = await p.runtime.db.query(`SELECT headers, headers_ciphertext IS NOT NULL AS sealed FROM webhooks.endpoints WHERE webhook_id = $1`, [id]);
      assert.deepEqual([JSON.stringify(rows[0]!.headers).includes('legacy-token'), rows[0]!.sealed], [false, true]);
      await owner.publish({ eventId: `evt_legacy_${id}`, eventType: 'order.legacy' });
      assert.ok(await eventually(() => rx.at(path).length === 1, WAIT_MS));
      assert.equal(rx.at(path)[0]!.headers.authorization, 'Bearer legacy-token');
    });

    test('finding 9: an event id with a "." (which would become a webhook-id the spec\'s signed string cannot carry) is INVALID_ARGUMENT', async () => {
      const api = rpc(p, 'trusted', ALL_SCOPES);
      await assertStatus(api.publish({ eventId: 'evt.1614265330', eventType: 'order.created' }), status.INVALID_ARGUMENT, /^event_id: .*only letters, digits/);
      await assertStatus(api.publishBatch([{ eventId: 'ok_1', eventType: 'order.created' }, { eventId: 'a.b', eventType: 'order.created' }]), status.INVALID_ARGUMENT, /^events\[1\]\.event_id/);
      assert.equal(await storedEvents(['evt.1614265330', 'ok_1', 'a.b']), 0);
    });

    test('the fan-out statement delivers exactly what the domain rule `receives` says, for every owner, subscription, entitlement and event', async () => {
      const store = new WebhooksStore(p.runtime.db);
      const tag = `m${process.pid}${engine.name.length}`;
      const fam = `fam${tag}`;
      const owners = [`${tag}-a`, `${tag}-b`];
      const subscriptions = [[`${fam}.x`], ['*'], [`other${tag}.x`], [`${fam}.x`, `other${tag}.x`]];
      const entitlements = [[], [fam], ['*']];
      const at = new Date(p.clock.nowMs);
      const endpoints = owners.flatMap((owner) => subscriptions.flatMap((eventTypes) => entitlements.map((families) => ({ owner, eventTypes, families }))));
      const ids = endpoints.map((_, i) => `wh_${tag}_${i}`);
      const events = [
        { eventType: `${fam}.x`, owner: '', family: fam },
        { eventType: `${fam}.y`, owner: '', family: fam },
        ...owners.flatMap((owner) => [{ eventType: `other${tag}.x`, owner, family: '' }, { eventType: `${fam}.x`, owner, family: '' }]),
      ].map((e, i) => ({ ...e, eventId: `evt_${tag}_${i}`, payload: Buffer.from('{}'), contentType: 'application/json', digest: Buffer.alloc(32), occurredAt: null, traceContext: {} }));
      const queued = await store.transaction(async (tx) => {
        for (const [i, e] of endpoints.entries()) {
          // Paused: the dispatcher leaves these deliveries alone.
          const spec: Spec = { url: 'https://public.test/matrix', eventTypes: e.eventTypes, headers: {}, description: '', paused: true, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} };
          await tx.registry.insert({ id: ids[i]!, owner: e.owner, externalId: '', spec, families: e.families, internalApproved: false, secret: { keyId: 'k', ciphertext: Buffer.from('x') }, headers: null, at });
        }
        await tx.events.insertEvents(events, at);
        return tx.events.fanOut(events, 8, at);
      });
      const { rows } = await p.runtime.db.query(`SELECT event_id, webhook_id FROM webhooks.deliveries WHERE delivery_id = ANY($1::text[])`, [[...queued.values()].flat()]);
      const got = new Set(rows.filter((r) => ids.includes(r.webhook_id as string)).map((r) => `${r.event_id as string} ${r.webhook_id as string}`));
      const expected = new Set(events.flatMap((ev) => endpoints.flatMap((ep, i) => (receives(ep, ev) ? [`${ev.eventId} ${ids[i]!}`] : []))));
      assert.ok(expected.size > 0 && expected.size < events.length * endpoints.length, 'a matrix with both outcomes');
      assert.deepEqual([...got].sort(), [...expected].sort());
    });

    test('TriggerWebhook sends no test event of a reserved family: a receiver trusts what its secret signs', async () => {
      const owner = rpc(p, 'trusted', ALL_SCOPES);
      const { webhook } = await owner.create({ spec: spec(rx.url(uniquePath('trigger')), { eventTypes: ['*'] }) });
      const c = p.client;
      const md = p.as('trusted', ALL_SCOPES);
      await assertStatus(unary(c.triggerWebhook, c, { webhookId: webhook!.webhookId, eventType: 'settlement.credit.drawn', payload: Buffer.from('{}') }, md), status.PERMISSION_DENIED, /reserved event family/);
      await assertStatus(unary(c.triggerWebhook, c, { webhookId: webhook!.webhookId, eventType: 'webhook.endpoint.disabled', payload: Buffer.from('{}') }, md), status.PERMISSION_DENIED);
      await unary(c.triggerWebhook, c, { webhookId: webhook!.webhookId, eventType: '', payload: Buffer.alloc(0) }, md);
    });
  });
}
