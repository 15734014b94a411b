// Its own file: the telemetry SDK (and its Prometheus reader) is registered once per process.
// The probe port answers a Prometheus scrape: after a settlement flow and an approval flow the
// text, read by a real parser, holds the RPC durations, draws by outcome, the approvals waiting for
// votes, the log entries appended, the relayed events and the process's version; and the same port still answers gRPC health.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { credentials } from '@grpc/grpc-js';
import parsePrometheusTextFormat, { type MetricFamily as Family } from 'parse-prometheus-text-format';
import { buildInfo, READINESS } from '@gantry/kit';
import { modulesFor } from '@gantry/cli/registry';
import { checkHealth, eventually } from '@gantry/test-support/clients';
import { startServicePlatform, type ServicePlatform } from '@gantry/test-support/harness';
import { PlatformClients, Receiver, SUBSCRIBER } from './support.js';

describe('metrics: a Prometheus scrape of the probe port', () => {
  let platform: ServicePlatform;
  let clients: PlatformClients;
  let probe: string;
  const receiver = new Receiver();

  before(async () => {
    await receiver.start();
    platform = await startServicePlatform('PGlite', modulesFor('all'), { dbLabel: 't_metrics', overrides: { webhooks: { allowedCidrs: [`${SUBSCRIBER}=127.0.0.1/32`], pollIntervalMs: 50 }, rateLimit: { points: 100_000 } } });
    const address = platform.address;
    clients = new PlatformClients({ settlement: address, approvals: address, webhooks: address, log: address }, platform.tls, platform.dataDir);
    probe = `127.0.0.1:${platform.runtime.healthPort}`;
    await clients.subscribe(receiver.url);
  });
  after(async () => {
    clients?.close();
    await platform?.close();
    await receiver.stop();
  });

  let lastText = '';
  async function scrape(): Promise<Map<string, Family>> {
    const res = await fetch(`http://${probe}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    lastText = await res.text();
    const families = parsePrometheusTextFormat(lastText);
    return new Map(families.map((f) => [f.name, f]));
  }
  const matching = (f: Family | undefined, labels: Record<string, string>) => f?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)) ?? [];
  const sample = (f: Family | undefined, labels: Record<string, string>) => matching(f, labels)[0];
  const total = (f: Family | undefined, labels: Record<string, string>) => matching(f, labels).reduce((n, m) => n + Number(m.value), 0);

  test('after the flows: draws by outcome, approvals pending, log entries appended, webhook deliveries and queue depth, RPC durations, relayed events and the version', async () => {
    await clients.settlementFlow();
    await clients.approvalFlow();
    await clients.submitApproval();
    // The relay sends the flows' events (4 + 4 + 1) to the log and to webhooks shortly after they commit.
    const relayed = async () => total((await scrape()).get('gantry_outbox_events_sent_total'), { gantry_sink: 'log' });
    assert.ok(await eventually(async () => (await relayed()) === 9, 30_000), `the outbox relay counted its events: ${await relayed()}`);
    const m = await scrape();
    assert.equal(sample(m.get('gantry_settlement_draws_total'), { outcome: 'booked' })?.value, '2');
    assert.equal(total(m.get('gantry_outbox_events_sent_total'), { gantry_outbox: 'settlement', gantry_sink: 'webhooks' }), 4);
    assert.equal(sample(m.get('gantry_approvals_pending'), {})?.value, '1', 'the submitted request without votes');
    // Each of the 9 events to the one subscribed endpoint: queued by the relay's publish, then delivered.
    assert.ok(await eventually(async () => total((await scrape()).get('gantry_webhooks_deliveries_total'), { outcome: 'succeeded' }) === 9, 30_000), 'the deliveries succeeded');
    const after = await scrape();
    assert.equal(total(after.get('gantry_webhooks_deliveries_total'), { outcome: 'queued' }), 9);
    assert.equal(total(after.get('gantry_webhooks_deliveries_total'), { outcome: 'failed' }), 0);
    assert.ok(await eventually(async () => sample((await scrape()).get('gantry_webhooks_queue_depth'), {})?.value === '0', 10_000), 'nothing left pending');
    // The relay's audit appends are keyed: each committed once, none a replay.
    assert.equal(total(m.get('gantry_log_entries_appended_total'), { duplicate: 'false' }), 9);
    assert.equal(total(m.get('gantry_log_entries_appended_total'), { duplicate: 'true' }), 0);
    const durations = m.get('rpc_server_duration');
    assert.equal(durations?.type, 'HISTOGRAM');
    // The parser folds a labelled histogram's series into one (its known limit), so the per-method count is read from the text line.
    assert.match(lastText, /^rpc_server_duration_count\{rpc_method="\/gantry\.settlement\.v1\.SettlementService\/CreditDraw",rpc_grpc_status_code="0"[^}]*\} 2$/m);
    // Node's runtime, for soaks and dashboards: event-loop delay and heap.
    assert.ok(Number(sample(m.get('nodejs_eventloop_delay_p99'), {})?.value) > 0, 'event-loop delay p99 is reported');
    assert.ok(total(m.get('v8js_memory_heap_used'), {}) > 0, 'heap use is reported');
    // And memory by kind, so a growing RSS can be told apart (JavaScript objects, buffers, native).
    const memory = (kind: string) => Number(sample(m.get('gantry_process_memory'), { kind })?.value);
    assert.ok(memory('rss') > memory('heap_used') && memory('heap_used') > 0 && memory('external') >= memory('array_buffers') && memory('array_buffers') > 0, 'memory by kind is reported');
    const info = sample(m.get('target_info'), {});
    assert.equal(info?.labels?.service_version, buildInfo().version);
  });

  test('the probe port answers HTTP/1.1 probes and still gRPC health; other paths and methods are refused', async () => {
    assert.equal((await checkHealth(probe, credentials.createInsecure(), READINESS)).status, 'SERVING');
    const ready = await fetch(`http://${probe}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), 'SERVING\n');
    assert.equal((await fetch(`http://${probe}/livez`)).status, 200);
    const missing = await fetch(`http://${probe}/nope`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /\/metrics/);
    assert.equal((await fetch(`http://${probe}/metrics`, { method: 'POST', body: 'x' })).status, 405);
  });
});
