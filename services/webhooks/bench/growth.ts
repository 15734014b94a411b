// `npm run bench -- webhooks --growth` (webhooks.bench.ts runs it): what a delivery costs as the
// history grows. For 10^4 and then 10^6 delivered rows (each with its event and attempt), beside
// 10^5 pending retries due in an hour (each with a failed attempt), all seeded with SQL
// generate_series on the server's database: deliveries/s through the service as in the throughput
// run, then, with the server stopped, claims of up to CLAIM_BATCH due deliveries timed in this
// process on the same database, each followed by its outcome batch (also timed).
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { openPostgres } from '@gantry/kit';
import { ratioLine } from '../../kit/bench/baseline.js';
import { check, median, writeResult } from '../../kit/bench/lib.js';
import { percentile, type BenchDatabase } from '../../kit/bench/load.js';
import type { EndpointAttemptResult } from '../src/store/delivery-outcomes.js';
import { WebhooksStore } from '../src/store/webhooks-store.js';
import type { Load, Round } from './webhooks.bench.js';

export interface GrowthDeps {
  withServer: <T>(label: string, run: (load: Load, db: BenchDatabase, stopServer: () => Promise<void>) => Promise<T>) => Promise<T>;
  step: (message: string) => void;
  endpoints: number;
  quick: boolean;
}

const DELIVERED_SIZES = [10_000, 1_000_000];
const PENDING_ROWS = 100_000;
const ROUNDS = 2;
const EVENTS_PER_ROUND = 1000;
const CLAIMS = 30;
const CLAIM_BATCH = 100;

interface AtSize {
  delivered: number;
  pending: number;
  seedSeconds: number;
  deliveriesPerSec: number;
  claimP50Ms: number;
  claimP99Ms: number;
  outcomeBatchP50Ms: number;
  outcomeBatchP99Ms: number;
  rounds: Round[];
}

export async function growthRun(d: GrowthDeps): Promise<void> {
  const sizes: AtSize[] = [];
  for (const delivered of DELIVERED_SIZES) sizes.push(await measureAt(d, delivered));
  const [small, large] = [sizes[0]!, sizes[1]!];
  const out = writeResult('webhooks-growth', { benchmark: 'webhooks-growth', quick: false, endpoints: d.endpoints, claimBatch: CLAIM_BATCH, sizes });
  process.stdout.write(
    [
      '',
      `webhooks --growth: ${PENDING_ROWS.toLocaleString('en-US')} pending retries each time; ${ROUNDS} rounds of ${EVENTS_PER_ROUND} events x ${d.endpoints} endpoints; ${CLAIMS} claims of up to ${CLAIM_BATCH} due deliveries.`,
      ...sizes.map(
        (s) =>
          `  ${s.delivered.toLocaleString('en-US').padStart(9)} delivered rows: ${Math.round(s.deliveriesPerSec).toLocaleString('en-US')} deliveries/s; claim p50 ${s.claimP50Ms.toFixed(2)} ms, p99 ${s.claimP99Ms.toFixed(2)} ms; outcome batch p50 ${s.outcomeBatchP50Ms.toFixed(2)} ms, p99 ${s.outcomeBatchP99Ms.toFixed(2)} ms (seeded in ${s.seedSeconds.toFixed(0)} s)`,
      ),
      ratioLine('claim latency p50, 10^6 vs 10^4 delivered rows', large.claimP50Ms, small.claimP50Ms, 'ms', { max: 1.5 }),
      ratioLine('outcome batch latency p50, 10^6 vs 10^4 delivered rows', large.outcomeBatchP50Ms, small.outcomeBatchP50Ms, 'ms', { max: 1.5 }),
      ratioLine('deliveries/s, 10^6 vs 10^4 delivered rows', large.deliveriesPerSec, small.deliveriesPerSec, '/s', { min: 0.67 }),
      `  figures: ${out}`,
      '',
    ].join('\n'),
  );
}

async function measureAt(d: GrowthDeps, delivered: number): Promise<AtSize> {
  return d.withServer(`growth_${delivered}`, async (load, db, stopServer) => {
    const ids = await load.endpoints();
    d.step(`seeding ${delivered.toLocaleString('en-US')} delivered and ${PENDING_ROWS.toLocaleString('en-US')} pending deliveries with SQL`);
    const t0 = performance.now();
    await seed(db, ids, delivered);
    const seedSeconds = (performance.now() - t0) / 1000;
    d.step(`seeded in ${seedSeconds.toFixed(0)} s; warm-up`);
    await load.deliveryRound(EVENTS_PER_ROUND / 5);
    const rounds: Round[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      d.step(`round ${r}/${ROUNDS}: ${EVENTS_PER_ROUND} events x ${d.endpoints} endpoints`);
      rounds.push(await load.deliveryRound(EVENTS_PER_ROUND));
    }
    await stopServer();
    d.step(`timing ${CLAIMS} claims and outcome batches in this process`);
    const probe = await timeClaims(db, ids);
    return {
      delivered,
      pending: PENDING_ROWS,
      seedSeconds,
      deliveriesPerSec: median(rounds.map((r) => r.deliveriesPerSec)),
      claimP50Ms: percentile(probe.claims, 50),
      claimP99Ms: percentile(probe.claims, 99),
      outcomeBatchP50Ms: percentile(probe.outcomes, 50),
      outcomeBatchP99Ms: percentile(probe.outcomes, 99),
      rounds,
    };
  });
}

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** `delivered` succeeded deliveries and PENDING_ROWS retries due in an hour, over the endpoints, each with its event and one attempt. */
async function seed(db: BenchDatabase, webhookIds: string[], delivered: number): Promise<void> {
  const endpoints = `ARRAY[${webhookIds.map(literal).join(', ')}]`;
  const rows = (prefix: string, n: number, status: 'SUCCEEDED' | 'PENDING') => [
    `INSERT INTO webhooks.events (event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, created_at, family)
     SELECT '${prefix}-' || g, 'bench.event', 'seed', convert_to(repeat('x', 260), 'UTF8'), 'application/json', '\\x00'::bytea, NULL, '{}'::jsonb, now() - interval '1 day', ''
       FROM generate_series(1, ${n}) g`,
    `INSERT INTO webhooks.deliveries (delivery_id, webhook_id, event_id, event_type, status, attempts, max_attempts, next_attempt_at, created_at, completed_at)
     SELECT 'dlv_${prefix}_' || g, (${endpoints})[1 + g % ${webhookIds.length}], '${prefix}-' || g, 'bench.event', '${status}', 1, 8,
            ${status === 'PENDING' ? `now() + interval '1 hour' + g * interval '1 ms'` : 'NULL'}, now() - interval '1 day',
            ${status === 'PENDING' ? 'NULL' : `now() - interval '1 day' + g * interval '10 microseconds'`}
       FROM generate_series(1, ${n}) g`,
    `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt)
     SELECT 'dlv_${prefix}_' || g, 1, now() - interval '1 day', 5, ${status === 'PENDING' ? `500, 'status 500'` : `200, ''`}, '' FROM generate_series(1, ${n}) g`,
  ];
  for (const sql of [...rows('seed', delivered, 'SUCCEEDED'), ...rows('pend', PENDING_ROWS, 'PENDING'), 'ANALYZE webhooks.events, webhooks.deliveries, webhooks.attempts']) await db.query(sql);
}

/** CLAIMS x CLAIM_BATCH due deliveries, claimed a batch at a time and each batch's outcomes recorded; the time of each claim and each outcome batch (ms). */
async function timeClaims(bench: BenchDatabase, webhookIds: string[]): Promise<{ claims: number[]; outcomes: number[] }> {
  const n = CLAIMS * CLAIM_BATCH;
  const endpoints = `ARRAY[${webhookIds.map(literal).join(', ')}]`;
  await bench.query(`INSERT INTO webhooks.events (event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, created_at, family)
     SELECT 'probe-' || g, 'bench.event', 'seed', convert_to(repeat('x', 260), 'UTF8'), 'application/json', '\\x00'::bytea, NULL, '{}'::jsonb, now(), '' FROM generate_series(1, ${n}) g`);
  await bench.query(`INSERT INTO webhooks.deliveries (delivery_id, webhook_id, event_id, event_type, status, max_attempts, next_attempt_at, created_at)
     SELECT 'dlv_probe_' || g, (${endpoints})[1 + g % ${webhookIds.length}], 'probe-' || g, 'bench.event', 'PENDING', 8, now() - interval '1 second', now() FROM generate_series(1, ${n}) g`);
  const db = await openPostgres({ url: bench.url, poolSize: 2, statementTimeoutMs: 60_000 });
  const store = new WebhooksStore(db);
  const limits = { endpoints: 100, batch: CLAIM_BATCH, defaultMaxConcurrency: 10_000, defaultRateLimitPerSecond: 1_000_000, leaseMs: 60_000 };
  const claims: number[] = [];
  const outcomes: number[] = [];
  try {
    for (let i = 0; i < CLAIMS; i++) {
      const t0 = performance.now();
      const { claimed } = await store.queue.claim(new Date(), limits, randomUUID);
      const t1 = performance.now();
      check(claimed.length === CLAIM_BATCH, `claim ${i + 1}: took ${claimed.length} of ${CLAIM_BATCH} due deliveries`);
      const now = new Date();
      const results = claimed.map((c): EndpointAttemptResult => ({
        deliveryId: c.deliveryId, leaseToken: c.leaseToken, webhookId: c.webhookId, succeeded: true, disableRule: { failures: 0, forMs: 0 }, maxAttempts: 8,
        attempt: { attemptNumber: c.attemptNumber, startedAt: now, latencyMs: 1, responseStatus: 200, error: '', responseBodyExcerpt: '' },
        next: { status: 'SUCCEEDED', at: now },
      }));
      const recorded = await store.queue.recordAttempts(results, now);
      outcomes.push(performance.now() - t1);
      claims.push(t1 - t0);
      check(recorded.every((r) => r.recorded), `claim ${i + 1}: an outcome was not recorded`);
    }
  } finally {
    await db.close();
  }
  return { claims: claims.sort((a, b) => a - b), outcomes: outcomes.sort((a, b) => a - b) };
}
