// `npm run bench -- webhooks [--quick]`: signed deliveries/s from the webhooks service to a local
// receiver, and end-to-end latency from PublishEvent to the receiver, beside a baseline measured in
// the same run.
//
// Server: services/gantry/bench/target-server.ts (the webhooks target, full kit stack, the local
// receiver's address allow-listed, per-endpoint limits far above the load) on a fresh PostgreSQL
// database (fsync on); pinned to CPU 0 once ready. This process (CPU 1) runs the receiver (node:http,
// answers 200 at once) and the publishers.
//
// Figures:
//   baseline   this process POSTs the same payload straight to the receiver, 32 at a time (what
//              loopback HTTP and the receiver take without the service in between).
//   delivery   32 publishers call PublishEvent; each event fans out to ENDPOINTS endpoints, so each
//              is ENDPOINTS deliveries, each a signed POST with its own attempt record; deliveries/s
//              counts from the first publish to the last delivery received.
//   latency    per delivery: PublishEvent sent -> the receiver has the request; p50/p99, under the
//              throughput load (includes the backlog) and with events sent one at a time.
// After the run, every delivery must have arrived exactly once (by endpoint and webhook-id).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { request as httpRequest } from 'undici';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { median, parseBenchArgs, progress, writeResult } from '../../kit/bench/lib.js';
import { startBenchTarget, percentile } from '../../kit/bench/load.js';

const args = parseBenchArgs(process.argv.slice(2));
const quick = args.quick;
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
const rounds = quick ? 1 : 3;
const CLIENTS = 32;
const ENDPOINTS = 4;
const eventsPerRound = quick ? 200 : 1000;
const baselinePosts = quick ? 2000 : 10_000;
const payload = Buffer.from(JSON.stringify({ type: 'bench.event', data: { amountMinor: 1234, note: 'x'.repeat(200) } }));

// --- The receiver -------------------------------------------------------------------------------
/** Arrival time of each delivery, by `path webhook-id`; a second arrival is a duplicate. */
const arrivals = new Map<string, number>();
let duplicates = 0;
let onArrival: (() => void) | undefined;
const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
  req.resume();
  req.on('end', () => {
    const id = req.headers['webhook-id'];
    if (typeof id === 'string') {
      const key = `${req.url} ${id}`;
      if (arrivals.has(key)) duplicates++;
      else arrivals.set(key, performance.now());
      onArrival?.();
    }
    res.writeHead(200).end();
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

// webhooks.admin: the local receiver is an internal target, allow-listed by a bare CIDR (an admin's to register).
const bench = await startBenchTarget('webhooks', ['webhooks.manage', 'webhooks.read', 'webhooks.publish', 'webhooks.admin'], {
  step,
  config: { webhooks: { allowedCidrs: ['127.0.0.1/32'], defaultRateLimitPerSecond: 100_000, defaultMaxConcurrency: 64 } },
});

interface Round { deliveriesPerSec: number; p50Ms: number; p99Ms: number; deliveries: number }
const roundsOut: Round[] = [];
const singleEvents = quick ? 20 : 100;
/** Publish -> receiver for events sent one at a time (no backlog). */
const unloaded: number[] = [];
const baselines: number[] = [];

try {
  const { dataDir, port, token } = bench.ready;
  const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
  const client = new webhooksv1.WebhooksServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
  const md = bearerMetadata(token);

  step(`setup: ${ENDPOINTS} endpoints subscribed to bench.event at the local receiver`);
  for (let i = 0; i < ENDPOINTS; i++) {
    await unary(
      client.createWebhook,
      client,
      { owner: '', externalId: `bench-${i}`, secret: '', spec: { url: `${receiverUrl}/hook/${i}`, eventTypes: ['bench.event'], headers: {}, description: 'bench', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} } },
      md,
    );
  }

  /** Sends `n` requests with `CLIENTS` in flight. */
  const closedLoop = async (n: number, send: (i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
      while (next < n) await send(next++);
    }));
  };

  let roundNo = 0;
  const deliveryRound = async (events: number): Promise<Round> => {
    roundNo++;
    const prefix = `r${roundNo}`;
    const expected = events * ENDPOINTS;
    const before = arrivals.size;
    const publishedAt = new Map<string, number>();
    const allArrived = new Promise<void>((resolve) => (onArrival = () => arrivals.size - before >= expected && resolve()));
    const t0 = performance.now();
    await closedLoop(events, async (i) => {
      const eventId = `${prefix}-${i}`;
      publishedAt.set(eventId, performance.now());
      await unary(client.publishEvent, client, { eventId, eventType: 'bench.event', payload, contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} }, md);
    });
    await Promise.race([allArrived, new Promise((r) => setTimeout(r, 120_000))]);
    onArrival = undefined;
    const got = [...arrivals].filter(([key]) => key.split(' ')[1]!.startsWith(`${prefix}-`));
    if (got.length < expected) throw new Error(`round ${roundNo}: ${got.length} of ${expected} deliveries arrived within 120 s`);
    const lastArrival = Math.max(...got.map(([, t]) => t));
    const latencies = got.map(([key, t]) => t - publishedAt.get(key.split(' ')[1]!)!).sort((a, b) => a - b);
    return { deliveriesPerSec: expected / ((lastArrival - t0) / 1000), p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), deliveries: expected };
  };

  const baselineRound = async (): Promise<number> => {
    const t0 = performance.now();
    await closedLoop(baselinePosts, async (i) => {
      const res = await httpRequest(`${receiverUrl}/baseline`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', 'webhook-id': `base-${roundNo}-${i}-${t0}` } });
      await res.body.dump();
    });
    return baselinePosts / ((performance.now() - t0) / 1000);
  };

  step(`warm-up: ${Math.ceil(eventsPerRound / 5)} events`);
  await deliveryRound(Math.ceil(eventsPerRound / 5));
  for (let r = 1; r <= rounds; r++) {
    step(`round ${r}/${rounds}: baseline (${baselinePosts} direct POSTs), then ${eventsPerRound} events x ${ENDPOINTS} endpoints`);
    baselines.push(await baselineRound());
    roundsOut.push(await deliveryRound(eventsPerRound));
  }
  // Latency without a backlog: one event at a time, each waiting for its ENDPOINTS deliveries.
  step(`unloaded latency: ${singleEvents} events one at a time`);
  for (let i = 0; i < singleEvents; i++) {
    const eventId = `single-${i}`;
    const before = arrivals.size;
    const arrived = new Promise<void>((resolve) => (onArrival = () => arrivals.size - before >= ENDPOINTS && resolve()));
    const t0 = performance.now();
    await unary(client.publishEvent, client, { eventId, eventType: 'bench.event', payload, contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} }, md);
    await Promise.race([arrived, new Promise((r) => setTimeout(r, 10_000))]);
    for (const [key, t] of arrivals) if (key.endsWith(` ${eventId}`)) unloaded.push(t - t0);
  }
  onArrival = undefined;
  unloaded.sort((a, b) => a - b);
  if (duplicates > 0) throw new Error(`${duplicates} deliveries arrived more than once`);
  client.close();
} finally {
  await bench.stop();
  receiver.close();
}

const delivery = {
  deliveriesPerSec: Math.round(median(roundsOut.map((r) => r.deliveriesPerSec))),
  p50Ms: median(roundsOut.map((r) => r.p50Ms)),
  p99Ms: median(roundsOut.map((r) => r.p99Ms)),
};
const baseline = Math.round(median(baselines));
const single = { events: singleEvents, deliveries: unloaded.length, p50Ms: percentile(unloaded, 50), p99Ms: percentile(unloaded, 99) };
const out = writeResult('webhooks', { benchmark: 'webhooks', quick, rounds, clients: CLIENTS, endpoints: ENDPOINTS, payloadBytes: payload.length, delivery, unloadedLatency: single, baselinePostsPerSec: baseline, duplicates, raw: roundsOut });
process.stdout.write(
  [
    '',
    `webhooks benchmark${quick ? ' (--quick)' : ''}: median of ${rounds} round(s); ${CLIENTS} publishers on one HTTP/2 connection; each event to ${ENDPOINTS} endpoints; ${payload.length}-byte payloads;`,
    'the webhooks service, full stack (mTLS + JWT + rate limit + tracing) on PostgreSQL (fsync on), delivering signed POSTs to a node:http receiver in this process.',
    '',
    `  baseline: direct POSTs to the receiver, ${CLIENTS} in flight        ${baseline.toLocaleString('en-US').padStart(8)} /s`,
    `  delivered (publish -> outbox -> signed POST, attempt recorded) ${delivery.deliveriesPerSec.toLocaleString('en-US').padStart(8)} /s  (${((delivery.deliveriesPerSec / baseline) * 100).toFixed(0)}% of baseline)`,
    `  publish -> receiver latency under that load (a backlog builds: publishing outpaces delivery): p50 ${delivery.p50Ms.toFixed(2)} ms, p99 ${delivery.p99Ms.toFixed(2)} ms`,
    `  publish -> receiver latency one event at a time (${single.deliveries} deliveries): p50 ${single.p50Ms.toFixed(2)} ms, p99 ${single.p99Ms.toFixed(2)} ms`,
    `  every delivery arrived exactly once (${roundsOut.reduce((n, r) => n + r.deliveries, 0).toLocaleString('en-US')} measured)`,
    ...(quick ? ['  (--quick: short runs on a possibly busy machine)'] : []),
    `  figures: ${out}`,
    '',
  ].join('\n'),
);
