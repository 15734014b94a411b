// Each delivery attempt is a CLIENT span, child of the trace context stored with the event, and the
// receiver gets that span's traceparent. Its own file: the runtime registers the global tracer
// provider once per process, so only the first runtime of a process gets the test's span processor.
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { eventually } from '@gantry/test-support/clients';
import { Receiver, rpc, spec, startWebhooksPlatform, TEST_WEBHOOKS_CONFIG, uniquePath, type WebhooksPlatform } from './support.js';

const WAIT_MS = 5000;
/** An attempt outlasts the drain bound, so a stop aborts it rather than letting it time out. */
const WEBHOOKS_CONFIG = { ...TEST_WEBHOOKS_CONFIG, attemptTimeoutMs: 3000, drainTimeoutMs: 300 };

describe('delivery attempts as traced outbound HTTP calls (PGlite)', () => {
  const exporter = new InMemorySpanExporter();
  let p: WebhooksPlatform;
  let rx: Receiver;
  let api: ReturnType<typeof rpc>;
  /** rebind.test: a public address at registration, a private one once `rebound` (the SSRF guard refuses it at delivery). */
  const dns = { rebound: false };
  before(async () => {
    rx = await new Receiver().start();
    p = await startWebhooksPlatform('PGlite', { webhooks: WEBHOOKS_CONFIG, spanProcessors: [new SimpleSpanProcessor({ exporter })], options: {
      resolver: async (host) => [{ address: host === 'rebind.test' && !dns.rebound ? '93.184.216.34' : '10.0.0.1', family: 4 }],
    } });
    api = rpc(p);
  });
  after(async () => {
    await p?.close();
    await rx?.close();
  });

  /** A new endpoint of its own event type at a fresh receiver path (with a query, to see it redacted). */
  async function endpoint(url?: (path: string) => string) {
    const path = uniquePath('traced');
    const type = `order.${path.slice(1).replaceAll('/', '')}`;
    const res = await api.create({ spec: spec(url ? url(path) : `${rx.url(path)}?token=s3cr3t&v=1`, { eventTypes: [type] }) });
    return { path, type, id: res.webhook!.webhookId };
  }
  const traceparent = () => ({ traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') });
  /** The ended CLIENT spans of one delivery, by attempt. */
  const spansOf = (deliveryId: string): ReadableSpan[] =>
    exporter
      .getFinishedSpans()
      .filter((s) => s.kind === SpanKind.CLIENT && s.attributes['webhook.delivery_id'] === deliveryId)
      .sort((a, b) => Number(a.attributes['webhook.attempt']) - Number(b.attributes['webhook.attempt']));

  test('an attempt is a CLIENT span, child of the event\'s trace context, and the receiver gets that span\'s traceparent (and the tracestate, never baggage)', async () => {
    const e = await endpoint();
    const parent = traceparent();
    const {
      deliveryIds: [id],
    } = await api.publish({
      eventId: `evt-traced-${e.id}`,
      eventType: e.type,
      owner: 'alice',
      traceContext: { traceparent: `00-${parent.traceId}-${parent.spanId}-01`, tracestate: 'gantry=t1', baggage: 'user=alice' },
    });
    assert.ok(await eventually(() => rx.at(`${e.path}?token=s3cr3t&v=1`).length === 1, WAIT_MS));
    const got = rx.at(`${e.path}?token=s3cr3t&v=1`)[0]!;
    const header = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(got.headers.traceparent));
    assert.ok(header, `traceparent header: ${String(got.headers.traceparent)}`);
    assert.equal(header[1], parent.traceId);
    assert.equal(got.headers.tracestate, 'gantry=t1');
    assert.equal(got.headers.baggage, undefined);
    assert.ok(await eventually(() => spansOf(id!).length === 1, WAIT_MS), 'the span is exported');
    const span = spansOf(id!)[0]!;
    assert.equal(span.name, 'POST');
    assert.equal(span.spanContext().traceId, parent.traceId);
    assert.equal(span.spanContext().spanId, header[2], 'the receiver\'s parent is the attempt\'s span');
    assert.equal(span.parentSpanContext?.spanId, parent.spanId, 'the attempt\'s parent is the event\'s cause');
    assert.deepEqual(
      {
        method: span.attributes['http.request.method'],
        address: span.attributes['server.address'],
        port: span.attributes['server.port'],
        url: span.attributes['url.full'],
        status: span.attributes['http.response.status_code'],
        webhook: span.attributes['webhook.id'],
        type: span.attributes['webhook.event_type'],
        attempt: span.attributes['webhook.attempt'],
      },
      { method: 'POST', address: '127.0.0.1', port: rx.port, url: `http://127.0.0.1:${rx.port}/REDACTED?REDACTED`, status: 200, webhook: e.id, type: e.type, attempt: 1 },
    );
    assert.notEqual(span.status.code, SpanStatusCode.ERROR);
  });

  test('a failed attempt\'s span has status ERROR with the reason; the retry is a second span under the same parent', async () => {
    const e = await endpoint((path) => rx.url(path));
    rx.script.set(e.path, [{ status: 500 }]);
    const parent = traceparent();
    const {
      deliveryIds: [id],
    } = await api.publish({ eventId: `evt-traced-fail-${e.id}`, eventType: e.type, owner: 'alice', traceContext: { traceparent: `00-${parent.traceId}-${parent.spanId}-01` } });
    assert.ok(await eventually(() => spansOf(id!).length === 1, WAIT_MS));
    // The outcome is recorded after the span ends; only then is the retry scheduled.
    assert.ok(await eventually(async () => ((await api.history({ webhookId: e.id })).deliveries[0]?.attempts.length ?? 0) === 1, WAIT_MS));
    p.clock.nowMs += 6_000;
    assert.ok(await eventually(() => spansOf(id!).length === 2, WAIT_MS));
    const [failed, retried] = spansOf(id!);
    assert.deepEqual([failed!.status.code, failed!.status.message, failed!.attributes['http.response.status_code'], failed!.attributes['error.type']], [SpanStatusCode.ERROR, 'the endpoint answered 500', 500, '500']);
    assert.deepEqual([retried!.status.code, retried!.attributes['http.response.status_code'], retried!.attributes['webhook.attempt']], [SpanStatusCode.UNSET, 200, 2]);
    for (const s of [failed!, retried!]) assert.equal(s.parentSpanContext?.spanId, parent.spanId);
    assert.deepEqual(rx.at(e.path).map((r) => r.headers.traceparent), [failed, retried].map((s) => `00-${parent.traceId}-${s!.spanContext().spanId}-01`));
  });

  test('an event without trace context gets a root span, and the receiver still gets its traceparent', async () => {
    const e = await endpoint((path) => rx.url(path));
    const {
      deliveryIds: [id],
    } = await api.publish({ eventId: `evt-untraced-${e.id}`, eventType: e.type, owner: 'alice' });
    assert.ok(await eventually(() => spansOf(id!).length === 1, WAIT_MS));
    const span = spansOf(id!)[0]!;
    assert.equal(span.parentSpanContext, undefined);
    assert.equal(rx.at(e.path)[0]!.headers.traceparent, `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
  });

  test('an attempt that times out, or whose address the SSRF guard refuses, still ends its span, with status ERROR and the reason', async () => {
    const slow = await endpoint((path) => rx.url(path));
    rx.script.set(slow.path, [{ status: 200, delayMs: WEBHOOKS_CONFIG.attemptTimeoutMs + 1000 }]);
    const refused = await endpoint((path) => `https://rebind.test${path}`);
    dns.rebound = true;
    const [a, b] = await Promise.all([
      api.publish({ eventId: `evt-slow-${slow.id}`, eventType: slow.type, owner: 'alice' }),
      api.publish({ eventId: `evt-refused-${refused.id}`, eventType: refused.type, owner: 'alice' }),
    ]);
    assert.ok(await eventually(() => spansOf(a.deliveryIds[0]!).length === 1 && spansOf(b.deliveryIds[0]!).length === 1, WEBHOOKS_CONFIG.attemptTimeoutMs + WAIT_MS));
    const timedOut = spansOf(a.deliveryIds[0]!)[0]!;
    assert.equal(timedOut.status.code, SpanStatusCode.ERROR);
    assert.match(timedOut.status.message ?? '', /timeout/i);
    assert.equal(timedOut.attributes['http.response.status_code'], undefined);
    const refusal = spansOf(b.deliveryIds[0]!)[0]!;
    assert.equal(refusal.status.code, SpanStatusCode.ERROR);
    assert.match(refusal.status.message ?? '', /refused address: rebind.test resolves to 10.0.0.1/);
    assert.equal(refusal.attributes['server.address'], 'rebind.test');
  });

  test('an attempt aborted by a draining dispatcher still ends its span, with status ERROR (runs last: it stops the service)', async () => {
    const e = await endpoint((path) => rx.url(path));
    rx.hold.add(e.path);
    const {
      deliveryIds: [id],
    } = await api.publish({ eventId: `evt-drain-${e.id}`, eventType: e.type, owner: 'alice' });
    assert.ok(await eventually(() => rx.at(e.path).length === 1, WAIT_MS), 'the attempt is open');
    // Shutting the runtime down shuts the exporter down, which drops its list for a new one: keep this one.
    const spans = exporter.getFinishedSpans();
    await p.close();
    const aborted = spans.filter((s) => s.kind === SpanKind.CLIENT && s.attributes['webhook.delivery_id'] === id);
    assert.equal(aborted.length, 1);
    assert.equal(aborted[0]!.status.code, SpanStatusCode.ERROR);
    assert.match(aborted[0]!.status.message ?? '', /dispatcher stopped/);
  });
});
