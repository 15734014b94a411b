// The whole platform in one process (gantry serve --target=all on the embedded database): domain
// events from settlement and approvals reach a webhook receiver and the audit trail, and one
// trace spans the client call, the outbox relay, the log append and the webhook delivery.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { unary } from '@gantry/kit';
import { modulesFor } from '@gantry/cli/registry';
import { SettlementWallet } from '@gantry/settlement/client';
import { eventually } from '@gantry/test-support/clients';
import { startServicePlatform, type ServicePlatform } from '@gantry/test-support/harness';
import { about, APPROVAL_FLOW_TYPES, assertUnique, PlatformClients, Receiver, SETTLEMENT_FLOW_TYPES, SUBSCRIBER } from './support.js';

const WAIT_MS = 30_000;

describe('the platform in one process: events, audit trail and one trace across the services', () => {
  const spans = new InMemorySpanExporter();
  const receiver = new Receiver();
  let platform: ServicePlatform;
  let clients: PlatformClients;
  let secret: string;

  before(async () => {
    await receiver.start();
    platform = await startServicePlatform('PGlite', modulesFor('all'), {
      dbLabel: 't_platform',
      spanProcessors: [new SimpleSpanProcessor({ exporter: spans })],
      overrides: { webhooks: { allowedCidrs: [`${SUBSCRIBER}=127.0.0.1/32`], pollIntervalMs: 50 }, rateLimit: { points: 100_000 } },
    });
    const address = platform.address;
    clients = new PlatformClients({ settlement: address, approvals: address, webhooks: address, log: address }, platform.tls, platform.dataDir);
    secret = await clients.subscribe(receiver.url);
  });
  after(async () => {
    clients?.close();
    await platform?.close();
    await receiver.stop();
  });

  test('a settlement flow and an approval flow are delivered to the subscriber and appended to the audit trail, once each, with valid chains', async () => {
    const sessionId = await clients.settlementFlow();
    const approvalId = await clients.approvalFlow();
    const expected = SETTLEMENT_FLOW_TYPES.length + APPROVAL_FLOW_TYPES.length;
    const delivered = () => [...about(receiver.events(secret).map((r) => r.event), sessionId), ...about(receiver.events(secret).map((r) => r.event), approvalId)];
    assert.ok(await eventually(() => delivered().length >= expected, WAIT_MS), `receiver got ${delivered().length} of ${expected} events`);
    assert.deepEqual(about(delivered(), sessionId).map((e) => e.type).sort(), [...SETTLEMENT_FLOW_TYPES].sort());
    assert.deepEqual(about(delivered(), approvalId).map((e) => e.type).sort(), [...APPROVAL_FLOW_TYPES].sort());
    assertUnique(delivered().map((e) => e.id), 'deliveries');

    const audited = async () => [...about(await clients.audit('audit.settlement'), sessionId), ...about(await clients.audit('audit.approvals'), approvalId)];
    assert.ok(await eventually(async () => (await audited()).length >= expected, WAIT_MS), 'audit entries are missing');
    const audit = await audited();
    // The audit trail keeps commit order; it holds exactly the delivered events.
    assert.deepEqual(about(audit, sessionId).map((e) => e.type), SETTLEMENT_FLOW_TYPES);
    assert.deepEqual(about(audit, approvalId).map((e) => e.type), APPROVAL_FLOW_TYPES);
    assert.deepEqual(audit.map((e) => e.id).sort(), delivered().map((e) => e.id).sort());
    for (const partition of ['audit.settlement', 'audit.approvals']) {
      const v = await clients.verify(partition);
      assert.equal(v.valid, true, `${partition}: ${v.reason}`);
      // Only the platform's own workload (the monolith's certificate) wrote the audit trail, and the log says so.
      assert.deepEqual([...new Set(await clients.authors(partition))], ['spiffe://gantry.local/all'], `${partition}'s authors`);
    }
    // Both sinks have every row, so the outboxes are emptied.
    assert.ok(await eventually(async () => {
      const { rows } = await platform.runtime.db.query<{ n: number }>('SELECT ((SELECT count(*) FROM settlement.outbox) + (SELECT count(*) FROM approvals.outbox))::int AS n');
      return rows[0]!.n === 0;
    }, WAIT_MS), 'outbox rows left after both sinks sent them');
  });

  test('one trace shows the client call, the outbox relay, the log append and the webhook delivery with its traceparent', async () => {
    const tracer = trace.getTracer('platform-test');
    const root = tracer.startSpan('user settles a session', { kind: SpanKind.CLIENT });
    const traceId = root.spanContext().traceId;
    const c = clients.settlement;
    const wallet = SettlementWallet.generate();
    await unary(c.deposit, c, { walletAddress: wallet.address, amountMinor: 500n, transferId: `tr-${wallet.address}`, memo: '' }, clients.as('treasury', ['settlement.admin']));
    const { sessionId } = await context.with(trace.setSpan(context.active(), root), () => unary(c.approveCreditLine, c, wallet.approve(100n), clients.as('casino-l2', ['settlement.credit'])));
    root.end();

    const inTrace = () => spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const has = (name: string, kind: SpanKind) => (s: ReadableSpan) => s.name === name && s.kind === kind;
    const delivery = (s: ReadableSpan) => s.kind === SpanKind.CLIENT && s.attributes['webhook.event_type'] === 'settlement.credit_line.approved';
    assert.ok(await eventually(() => inTrace().some(delivery) && inTrace().some(has('gantry.log.v1.LogService/AppendBatch', SpanKind.SERVER)), WAIT_MS), `trace has: ${inTrace().map((s) => s.name).join(', ')}`);
    const names = inTrace();
    for (const [name, kind] of [
      ['gantry.settlement.v1.SettlementService/ApproveCreditLine', SpanKind.SERVER],
      ['outbox.relay log', SpanKind.PRODUCER],
      ['outbox.relay webhooks', SpanKind.PRODUCER],
      ['gantry.log.v1.LogService/AppendBatch', SpanKind.SERVER],
      ['gantry.webhooks.v1.WebhooksService/PublishEvents', SpanKind.SERVER],
    ] as const) {
      assert.ok(names.some(has(name, kind)), `the trace lacks ${name}; it has ${names.map((s) => s.name).join(', ')}`);
    }
    // The receiver continues the same trace from the delivery span.
    const deliverySpan = names.find(delivery)!;
    const received = receiver.events(secret).find((r) => r.event.subject === sessionId && r.event.type === 'settlement.credit_line.approved');
    assert.ok(received, 'the event was not delivered');
    assert.equal(received.headers.traceparent, `00-${traceId}-${deliverySpan.spanContext().spanId}-01`);
  });
});
