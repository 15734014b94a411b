// kill -9 of `gantry serve --target=webhooks` ten times while events are published, delivering to
// a real HTTP receiver, on PostgreSQL (issue 20).
// Each restart is on the same port, data dir and database; a call whose answer the kill swallowed
// is sent again unchanged (support.ts, untilAnswered), as the API's idempotency allows.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { unary } from '@gantry/kit';
import { verifyWebhook } from '@gantry/webhooks/client';
import { eventually } from '@gantry/test-support/clients';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { KILLS, killCycles, killedTarget, LOAD_TIMEOUT_MS, spread, untilAnswered, WORKERS } from './support.js';

requirePostgresInCi('the webhooks kill -9 fault test');

describe('kill -9 of webhooks under load, ten times, on PostgreSQL', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('webhooks: every acknowledged event reaches each endpoint, signed; a second arrival only where the service recorded a second attempt', async (t) => {
    const OWNER = 'kill-test';
    const ENDPOINTS = 2;
    // A real HTTP receiver: every request by endpoint path and webhook-id.
    const arrivals = new Map<string, { headers: IncomingHttpHeaders; body: Buffer }[]>();
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const key = `${req.url} ${String(req.headers['webhook-id'])}`;
        arrivals.set(key, [...(arrivals.get(key) ?? []), { headers: req.headers, body: Buffer.concat(chunks) }]);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    cleanups.push(async () => (receiver.closeAllConnections(), await new Promise((r) => receiver.close(r))));
    const receiverPort = (receiver.address() as AddressInfo).port;

    const { proc, clients, sql } = await killedTarget(
      'webhooks',
      {
        GANTRY_WEBHOOKS_ALLOWED_CIDRS: `${OWNER}=127.0.0.1/32`,
        GANTRY_WEBHOOKS_POLL_INTERVAL_MS: '100',
        // A claimed attempt of a killed process is retried 1.5 s after its claim, not 25 s.
        GANTRY_WEBHOOKS_ATTEMPT_TIMEOUT_MS: '1000',
        GANTRY_WEBHOOKS_LEASE_MARGIN_MS: '500',
        GANTRY_WEBHOOKS_DEFAULT_RATE_LIMIT_PER_SECOND: '100000',
        GANTRY_WEBHOOKS_DEFAULT_MAX_CONCURRENCY: '64',
      },
      cleanups,
    );
    const c = clients.webhooks;
    const md = clients.as(OWNER, ['webhooks.manage', 'webhooks.publish', 'webhooks.read']);
    const secrets = new Map<string, string>();
    for (let e = 0; e < ENDPOINTS; e++) {
      const spec = { url: `http://127.0.0.1:${receiverPort}/hook/${e}`, eventTypes: ['kill.event'], headers: {}, description: 'kill test', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} };
      const created = await unary(c.createWebhook, c, { owner: '', externalId: `kill-${e}`, secret: '', spec }, md);
      secrets.set(`/hook/${e}`, created.secret);
    }

    const counters = { retries: 0 };
    const published: string[] = [];
    let duplicatePublishes = 0;
    const worker = async (n: number, stopping: () => boolean) => {
      for (let i = 0; !stopping(); i++) {
        const eventId = `kill-${n}-${i}`;
        const req = { eventId, eventType: 'kill.event', payload: Buffer.from(JSON.stringify({ n, i })), contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} };
        const r = await untilAnswered(proc, () => unary(c.publishEvent, c, req, md), counters);
        assert.equal(r.deliveryIds.length, ENDPOINTS, `${eventId}: one delivery per endpoint`);
        if (r.duplicate) duplicatePublishes++;
        published.push(eventId);
      }
    };
    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 60, acked: () => published.length, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => Array.from({ length: WORKERS }, (_, n) => worker(n, stopping)));
    assert.equal(proc.kills, KILLS);

    const missing = () => [...secrets.keys()].flatMap((path) => published.filter((id) => !arrivals.has(`${path} ${id}`)).map((id) => `${path} ${id}`));
    const t0 = Date.now();
    assert.ok(await eventually(() => missing().length === 0, 60_000), `deliveries never arrived: ${missing().slice(0, 10).join(', ')} (${missing().length} in all)`);
    const lastArrivalMs = Date.now() - t0;
    const expectedKeys = new Set(published.flatMap((id) => [...secrets.keys()].map((path) => `${path} ${id}`)));
    assert.deepEqual([...arrivals.keys()].filter((k) => !expectedKeys.has(k)), [], 'arrivals of events no one published');
    for (const [key, list] of arrivals) {
      const secret = secrets.get(key.split(' ')[0]!)!;
      for (const a of list) assert.equal(verifyWebhook(a.headers, a.body, secret).id, key.split(' ')[1], `${key}: signed with the endpoint's secret`);
    }
    // The service's own record: every delivery succeeded, and one arrived more than once only
    // when its attempt was cut by a kill and started again (at-least-once; receivers dedupe by webhook-id).
    assert.ok(await eventually(async () => (await sql.query(`SELECT 1 FROM webhooks.deliveries WHERE status <> 'SUCCEEDED' LIMIT 1`)).rows.length === 0, 30_000), 'deliveries left unfinished');
    const deliveries = await sql.query<{ event_id: string; url: string; attempts: number }>(
      `SELECT d.event_id, e.url, d.attempts FROM webhooks.deliveries d JOIN webhooks.endpoints e USING (webhook_id)`,
    );
    assert.equal(deliveries.rows.length, published.length * ENDPOINTS);
    let repeated = 0;
    for (const d of deliveries.rows) {
      const key = `${new URL(d.url).pathname} ${d.event_id}`;
      const times = arrivals.get(key)?.length ?? 0;
      assert.ok(times <= d.attempts, `${key} arrived ${times} times in ${d.attempts} recorded attempts`);
      repeated += times - 1;
    }
    t.diagnostic(`${KILLS} kills; ${published.length} events acknowledged (${duplicatePublishes} answered as duplicates of a publish the kill had cut), ${published.length * ENDPOINTS} deliveries, all arrived and signed; ${repeated} arrived twice (attempt cut by a kill); last arrival ${lastArrivalMs} ms after the load; ${counters.retries} retries; restart ${spread(downMs)}`);
  });
});
