// The trust rules as pure functions, by example and by fast-check properties: who may publish which
// events and who receives them (domain/families.ts), and where a delivery may connect
// (domain/address-guard.ts). trust.test.ts shows each attack they stop over real gRPC.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { AddressGuard, effectiveRange, type Target } from '../src/domain/address-guard.js';
import { EVERY_FAMILY, familyOf, PLATFORM_FAMILIES, publishDecision, readScope, receives, subscriptionFamilies, type Caller } from '../src/domain/families.js';

const caller = (over: Partial<Caller> = {}): Caller => ({ subject: 'alice', scopes: new Set(['webhooks.manage']), workloadFamilies: new Set(), admin: false, ...over });
const settlementWorkload = caller({ subject: 'spiffe://gantry.local/settlement', scopes: new Set(['webhooks.publish']), workloadFamilies: new Set(['settlement']) });

describe('event families: who publishes and who receives', () => {
  test('a family is the first word of the type', () => {
    assert.deepEqual(['settlement.credit.drawn', 'approvals.vote.cast', 'order', 'webhook.test'].map(familyOf), ['settlement', 'approvals', 'order', 'webhook']);
  });

  test('a platform family is published only by its workload, without an owner; anyone else gets PERMISSION_DENIED for it and publishes only its own events', () => {
    assert.deepEqual(publishDecision(settlementWorkload, 'settlement.credit.drawn', ''), { kind: 'platform', family: 'settlement' });
    assert.equal(publishDecision(settlementWorkload, 'settlement.credit.drawn', 'bob').kind, 'invalid');
    assert.equal(publishDecision(settlementWorkload, 'approvals.vote.cast', '').kind, 'denied', 'another workload\'s family');
    const publisher = caller({ scopes: new Set(['webhooks.publish']) });
    for (const type of ['settlement.credit.drawn', 'approvals.approval.created', 'webhook.endpoint.disabled']) assert.equal(publishDecision(publisher, type, '').kind, 'denied', type);
    // Even an administrator does not speak for the platform: it has no workload certificate.
    assert.equal(publishDecision(caller({ admin: true }), 'settlement.credit.drawn', '').kind, 'denied');
    assert.deepEqual(publishDecision(publisher, 'order.created', ''), { kind: 'owned', owner: 'alice' });
    assert.deepEqual(publishDecision(publisher, 'order.created', 'alice'), { kind: 'owned', owner: 'alice' });
    assert.equal(publishDecision(publisher, 'order.created', 'bob').kind, 'denied');
    assert.deepEqual(publishDecision(caller({ admin: true }), 'order.created', 'bob'), { kind: 'owned', owner: 'bob' });
  });

  test('subscribing to a platform family\'s type needs its read scope (or admin, or owning it); "*" takes in only the families the registrar may read', () => {
    assert.deepEqual(subscriptionFamilies(caller(), ['settlement.credit.drawn']), { deniedType: 'settlement.credit.drawn', family: 'settlement' });
    assert.deepEqual(subscriptionFamilies(caller(), ['*', 'order.created']), { families: [] });
    assert.deepEqual(subscriptionFamilies(caller({ scopes: new Set([readScope('settlement')]) }), ['settlement.credit.drawn', 'approvals.vote.cast']), { deniedType: 'approvals.vote.cast', family: 'approvals' });
    assert.deepEqual(subscriptionFamilies(caller({ scopes: new Set([readScope('settlement')]) }), ['*']), { families: ['settlement'] });
    assert.deepEqual(subscriptionFamilies(settlementWorkload, ['*']), { families: ['settlement'] });
    assert.deepEqual(subscriptionFamilies(caller({ admin: true }), ['*']), { families: [EVERY_FAMILY] });
    assert.deepEqual(subscriptionFamilies(caller({ admin: true }), ['approvals.vote.cast']), { families: ['approvals'] });
    assert.deepEqual(subscriptionFamilies(caller(), ['webhook.endpoint.disabled']), { families: [] }, 'the service\'s own events are the owner\'s');
  });

  const subject = fc.constantFrom('alice', 'bob', 'carol');
  const family = fc.constantFrom(...PLATFORM_FAMILIES, 'order', 'webhook');
  const eventType = family.chain((f) => fc.constantFrom(`${f}.a`, `${f}.b`));
  const anyCaller = fc.record({
    subject,
    scopes: fc.subarray([...PLATFORM_FAMILIES, 'order'].map(readScope)).map((s) => new Set(s)),
    workloadFamilies: fc.subarray([...PLATFORM_FAMILIES]).map((f) => new Set(f)),
    admin: fc.boolean(),
  });

  test('an endpoint never receives another owner\'s event, nor a platform event of a family its registrar could not read', () => {
    fc.assert(
      fc.property(anyCaller, subject, fc.array(fc.oneof(eventType, fc.constant('*')), { minLength: 1, maxLength: 4 }), anyCaller, eventType, subject, (registrar, owner, types, publisher, type, requested) => {
        const sub = subscriptionFamilies(registrar, types);
        if ('deniedType' in sub) return;
        const decision = publishDecision(publisher, type, requested === publisher.subject ? '' : requested);
        if (decision.kind !== 'platform' && decision.kind !== 'owned') return;
        const event = decision.kind === 'platform' ? { eventType: type, owner: '', family: decision.family } : { eventType: type, owner: decision.owner, family: '' };
        if (!receives({ owner, eventTypes: types, families: sub.families }, event)) return;
        if (event.family === '') assert.equal(owner, event.owner, 'an owned event reaches its owner only');
        else assert.ok(registrar.admin || registrar.scopes.has(readScope(event.family)) || registrar.workloadFamilies.has(event.family), `${event.family} reached an endpoint whose registrar may not read it`);
      }),
    );
  });

  test('a platform event is published only by a workload owning its family; nobody publishes for another owner without admin', () => {
    fc.assert(
      fc.property(anyCaller, eventType, fc.constantFrom('', 'alice', 'bob'), (publisher, type, requested) => {
        const d = publishDecision(publisher, type, requested);
        if (d.kind === 'platform') assert.ok(publisher.workloadFamilies.has(d.family));
        if (d.kind === 'owned' && d.owner !== publisher.subject) assert.ok(publisher.admin);
        if (PLATFORM_FAMILIES.includes(familyOf(type)) && !publisher.workloadFamilies.has(familyOf(type))) assert.equal(d.kind, 'denied');
      }),
    );
  });
});

describe('the SSRF guard', () => {
  const https: Target = { scheme: 'https', port: 443 };
  const none = [] as const;

  test('IPv6 forms that carry an IPv4 address are judged by it: loopback, private and metadata addresses inside them are refused; public ones pass', () => {
    const guard = new AddressGuard([]);
    const refused: [string, RegExp][] = [
      // IPv4-compatible, as URLs and resolvers spell it (ipaddr.js reads the dotted '::127.0.0.1' as mapped).
      ['::7f00:1', /loopback address \(it carries 127\.0\.0\.1\)/],
      ['::127.0.0.1', /loopback/],
      ['::a9fe:a9fe', /linkLocal address \(it carries 169\.254\.169\.254\)/],
      ['::ffff:127.0.0.1', /loopback/],
      ['::ffff:0:10.0.0.1', /private address \(it carries 10\.0\.0\.1\)/],
      ['64:ff9b::127.0.0.1', /loopback/],
      ['64:ff9b:1::a00:1', /local-use NAT64/],
      ['2002:7f00:1::1', /loopback address \(it carries 127\.0\.0\.1\)/],
      ['2002:a00:1::', /private/],
      // Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted: 80ff:fffe).
      ['2001:0:4136:e378:8000:63bf:80ff:fffe', /loopback address \(it carries 127\.0\.0\.1\)/],
      ['::1', /loopback/],
      ['::', /unspecified/],
      ['fd00:ec2::254', /uniqueLocal/],
    ];
    for (const [ip, why] of refused) assert.match(guard.refusal(ip, https, none) ?? 'allowed', why, ip);
    for (const ip of ['::8.8.8.8', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:f7f7:f7f7', '2606:4700::1111', '8.8.8.8']) {
      assert.equal(guard.refusal(ip, https, none), undefined, ip);
    }
  });

  test('every address of an IPv6 range that embeds a non-public IPv4 range is refused, whatever the host bits', () => {
    const guard = new AddressGuard([]);
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(octet, octet, octet, fc.constantFrom('::', '::ffff:0:', '64:ff9b::'), (b, c, d, prefix) => {
        const inner = `127.${b}.${c}.${d}`;
        assert.match(guard.refusal(`${prefix}${inner}`, https, none) ?? 'allowed', /loopback/);
        assert.equal(effectiveRange(ipaddr.parse(`${prefix}${inner}`)).range, 'loopback');
      }),
    );
  });

  test('public targets take https on an allowed port only; an allow-listed range takes http and any port', () => {
    const guard = new AddressGuard(['10.1.0.0/16'], [443, 8443]);
    assert.match(guard.refusal('93.184.216.34', { scheme: 'http', port: 80 }, none) ?? '', /plain http goes only to allow-listed targets/);
    assert.match(guard.refusal('93.184.216.34', { scheme: 'https', port: 22 }, none) ?? '', /port 22 is not open to public targets; use 443 or 8443/);
    assert.equal(guard.refusal('93.184.216.34', { scheme: 'https', port: 8443 }, none), undefined);
    const approved = guard.allowance({ owner: 'alice', internalApproved: true });
    assert.equal(guard.refusal('10.1.2.3', { scheme: 'http', port: 6379 }, approved), undefined);
  });

  test('an owner\'s entry opens its range to that owner alone; a bare entry only to endpoints whose internal target was approved', () => {
    const guard = new AddressGuard(['10.1.0.0/16', 'alice=10.2.0.0/16', 'spiffe://gantry.local/operator=10.3.0.0/16']);
    const target: Target = { scheme: 'http', port: 8080 };
    const reach = (owner: string, internalApproved = false) => guard.allowance({ owner, internalApproved });
    assert.equal(guard.refusal('10.2.0.9', target, reach('alice')), undefined);
    assert.match(guard.refusal('10.2.0.9', target, reach('bob')) ?? '', /private address/);
    assert.match(guard.refusal('10.1.0.9', target, reach('alice')) ?? '', /private address/, 'a bare entry needs approval');
    assert.equal(guard.refusal('10.1.0.9', target, reach('bob', true)), undefined);
    assert.equal(guard.refusal('10.3.0.9', target, reach('spiffe://gantry.local/operator')), undefined, 'an owner containing ":" and "/"');
    assert.throws(() => new AddressGuard(['=10.0.0.0/8']), /names no owner/);
    assert.throws(() => new AddressGuard(['alice=10.0.0.0/33']), /is not <cidr> or <owner>=<cidr>/);
  });
});
