// `npm run bench -- webhooks [--quick|--growth]`: signed deliveries/s from the webhooks service to a
// local receiver beside direct POSTs to the same receiver in the same run, end-to-end latency from
// PublishEvent to the receiver, and CPU per delivery; with --growth, the same and the claim's
// latency as the delivery history grows.
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
//              counts from the first publish to the last delivery received. Measured twice: one
//              PublishEvent per event (as issue #18 measured; the publish calls bound it), and the
//              same events PUBLISH_BATCH per PublishEvents call (what the dispatcher delivers when
//              publishing is cheap).
//   bare queue the same events, published the same two ways, through the least a durable signed
//              sender does on the same PostgreSQL (bare-queue.ts: a publish statement, leased claims
//              of 100, signed POSTs, outcome and attempt rows; no gRPC, TLS, auth, limits, tracing,
//              retry schedule or registry): what any durable design reaches on this machine, so the
//              part of the gap to direct POSTs that is the platform's shows apart from durability's.
//   latency    per delivery: PublishEvent sent -> the receiver has the request; p50/p99, under the
//              throughput load and with events sent one at a time.
//   CPU        of the server process and of its PostgreSQL backends over a delivery round, per
//              delivery (publishing included: one PublishEvent per ENDPOINTS deliveries).
//   growth     (--growth) deliveries/s and the claim's latency with 10^4 and with 10^6 delivered
//              rows in the history, 10^5 pending retries in the queue each time, rows seeded with
//              SQL. The claim is timed in this process on the server's database once the server has
//              stopped: claims of up to 100 due deliveries, each followed by one outcome batch.
// Checks (every run, --quick too): every delivery arrived exactly once and every signature verifies
// (with the `standardwebhooks` package, not the service's signer).
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { request as httpRequest } from 'undici';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import { ratioLine } from '../../kit/bench/baseline.js';
import { check, cpuSeconds, median, parseBenchArgs, pinProcess, progress, startChild, writeResult } from '../../kit/bench/lib.js';
import { benchDatabase, cpuOf, percentile, startBenchServer, type BenchDatabase, type TargetReady } from '../../kit/bench/load.js';
import { profileReport, profileWindow, type ProfileSummary } from '../../kit/bench/profile.js';
import { growthRun } from './growth.js';

const args = parseBenchArgs(process.argv.slice(2));
const quick = args.quick;
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
const CLIENTS = 32;
const ENDPOINTS = 4;
const ROUND_TIMEOUT_MS = 120_000;
const SCOPES = ['webhooks.manage', 'webhooks.read', 'webhooks.publish', 'webhooks.admin'];
const payload = Buffer.from(JSON.stringify({ type: 'bench.event', data: { amountMinor: 1234, note: 'x'.repeat(200) } }));

// --- The receiver -------------------------------------------------------------------------------
interface Arrival {
  at: number;
  headers: Record<string, string>;
  body: Buffer;
}
/** Each delivery by `path webhook-id`; a second arrival is a duplicate. */
const arrivals = new Map<string, Arrival>();
let duplicates = 0;
let onArrival: (() => void) | undefined;
const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const id = req.headers['webhook-id'];
    if (typeof id === 'string') {
      const key = `${req.url} ${id}`;
      if (arrivals.has(key)) duplicates++;
      else if (req.url === '/baseline') arrivals.set(key, { at: performance.now(), headers: {}, body: Buffer.alloc(0) });
      else {
        const h = (name: string) => String(req.headers[name] ?? '');
        arrivals.set(key, { at: performance.now(), headers: { 'webhook-id': id, 'webhook-timestamp': h('webhook-timestamp'), 'webhook-signature': h('webhook-signature') }, body: Buffer.concat(chunks) });
      }
      onArrival?.();
    }
    res.writeHead(200).end();
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
/** Each endpoint's signing secret, by its path. */
const secrets = new Map<string, string>();

/** Sends `n` requests with CLIENTS in flight. */
async function closedLoop(n: number, send: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < n) await send(next++);
  }));
}

/** The arrivals whose event id starts with `prefix`, each checked against its endpoint's secret; returns how many did not verify. */
function unverified(prefix: string): number {
  let bad = 0;
  for (const [key, a] of arrivals) {
    const [path, id] = key.split(' ') as [string, string];
    if (!id.startsWith(prefix)) continue;
    try {
      new Webhook(secrets.get(path)!).verify(a.body, a.headers);
    } catch {
      bad++;
    }
  }
  return bad;
}

// --- One server and its load ---------------------------------------------------------------------
interface Round { deliveriesPerSec: number; p50Ms: number; p99Ms: number; publishCallP50Ms: number; deliveries: number; serverCpuUsPerDelivery: number; pgCpuUsPerDelivery: number; profile?: ProfileSummary }
/** How a round publishes: one PublishEvent per event, or PUBLISH_BATCH events per PublishEvents call. */
type Publishing = 'single' | 'batch';
const PUBLISH_BATCH = 100;

/** CPU seconds of the server and its database's backends (new backends counted whole, as they started during the round). */
async function cpuNow(serverPid: number, db: BenchDatabase): Promise<{ server: number; pg: Map<number, number> }> {
  const pids = await db.backendPids();
  return { server: cpuSeconds(serverPid), pg: new Map(pids.map((pid) => [pid, cpuOf([pid])])) };
}

function cpuSince(before: { server: number; pg: Map<number, number> }, after: { server: number; pg: Map<number, number> }): { server: number; pg: number } {
  let pg = 0;
  for (const [pid, s] of after.pg) pg += s - (before.pg.get(pid) ?? 0);
  return { server: after.server - before.server, pg };
}

/**
 * One measured round: `events` published by CLIENTS publishers (one per call, or PUBLISH_BATCH per
 * call), every delivery awaited at the receiver and checked (once each, signature valid); CPU of the
 * delivering process (`workerPid`) and of the database's PostgreSQL backends per delivery.
 */
async function deliveryRound(r: { label: string; events: number; publishing: Publishing; workerPid: number; db: BenchDatabase; publish: (eventIds: string[]) => Promise<unknown> }): Promise<Round> {
  const prefix = `${r.label}-${Date.now()}-`;
  const expected = r.events * ENDPOINTS;
  const before = arrivals.size;
  const publishedAt = new Map<string, number>();
  const allArrived = new Promise<void>((resolve) => (onArrival = () => arrivals.size - before >= expected && resolve()));
  const window = await profileWindow(r.workerPid, await r.db.backendPids());
  const cpu0 = await cpuNow(r.workerPid, r.db);
  const t0 = performance.now();
  const calls: number[] = [];
  const callCount = r.publishing === 'single' ? r.events : Math.ceil(r.events / PUBLISH_BATCH);
  await closedLoop(callCount, async (i) => {
    const ids = r.publishing === 'single' ? [`${prefix}${i}`] : Array.from({ length: Math.min(PUBLISH_BATCH, r.events - i * PUBLISH_BATCH) }, (_, k) => `${prefix}${i * PUBLISH_BATCH + k}`);
    const sent = performance.now();
    for (const id of ids) publishedAt.set(id, sent);
    await r.publish(ids);
    calls.push(performance.now() - sent);
  });
  await Promise.race([allArrived, new Promise((resolve) => setTimeout(resolve, ROUND_TIMEOUT_MS))]);
  onArrival = undefined;
  const cpu = cpuSince(cpu0, await cpuNow(r.workerPid, r.db));
  const profile = await window.stop(expected, (cpu.server * 1e6) / expected);
  const got = [...arrivals].filter(([key]) => key.split(' ')[1]!.startsWith(prefix));
  check(got.length === expected, `round ${r.label}: ${got.length} of ${expected} deliveries arrived within ${ROUND_TIMEOUT_MS / 1000} s`);
  check(duplicates === 0, `${duplicates} deliveries arrived more than once`);
  const bad = unverified(prefix);
  check(bad === 0, `round ${r.label}: ${bad} of ${expected} deliveries carry a signature that does not verify`);
  const lastArrival = Math.max(...got.map(([, a]) => a.at));
  const latencies = got.map(([key, a]) => a.at - publishedAt.get(key.split(' ')[1]!)!).sort((a, b) => a - b);
  return {
    deliveriesPerSec: expected / ((lastArrival - t0) / 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    publishCallP50Ms: percentile(calls.sort((a, b) => a - b), 50),
    deliveries: expected,
    serverCpuUsPerDelivery: (cpu.server * 1e6) / expected,
    pgCpuUsPerDelivery: (cpu.pg * 1e6) / expected,
    ...(profile ? { profile } : {}),
  };
}

class Load {
  private roundNo = 0;
  private readonly md: Metadata;
  readonly client: InstanceType<typeof webhooksv1.WebhooksServiceClient>;

  constructor(ready: TargetReady, private readonly serverPid: number, private readonly db: BenchDatabase) {
    const tls = { caFile: join(ready.dataDir, 'pki/ca.crt'), certFile: join(ready.dataDir, 'pki/client.crt'), keyFile: join(ready.dataDir, 'pki/client.key'), serverName: 'localhost' };
    this.client = new webhooksv1.WebhooksServiceClient(`127.0.0.1:${ready.port}`, clientCredentials(tls), clientOptions(tls));
    this.md = bearerMetadata(ready.token);
  }

  /** ENDPOINTS endpoints at the receiver subscribed to bench.event; returns their ids. */
  async endpoints(): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < ENDPOINTS; i++) {
      const path = `/hook/${i}`;
      const res = await unary(
        this.client.createWebhook,
        this.client,
        { owner: '', externalId: `bench-${i}`, secret: '', spec: { url: `${receiverUrl}${path}`, eventTypes: ['bench.event'], headers: {}, description: 'bench', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} } },
        this.md,
      );
      if (res.created) secrets.set(path, res.secret);
      ids.push(res.webhook!.webhookId);
    }
    return ids;
  }

  publish(eventId: string): Promise<unknown> {
    return unary(this.client.publishEvent, this.client, event(eventId), this.md);
  }

  publishBatch(eventIds: string[]): Promise<unknown> {
    return unary(this.client.publishEvents, this.client, { events: eventIds.map(event) }, this.md);
  }

  /** `events` published by CLIENTS publishers (`publishing` says how); waits for every delivery, checks each arrived once with a valid signature. */
  deliveryRound(events: number, publishing: Publishing = 'single'): Promise<Round> {
    return deliveryRound({ label: `r${++this.roundNo}`, events, publishing, workerPid: this.serverPid, db: this.db, publish: (ids) => (publishing === 'single' ? this.publish(ids[0]!) : this.publishBatch(ids)) });
  }

  /** Events one at a time, each waiting for its ENDPOINTS deliveries: latency without a backlog. */
  async unloaded(events: number): Promise<number[]> {
    const out: number[] = [];
    const prefix = `single-${Date.now()}-`;
    for (let i = 0; i < events; i++) {
      const eventId = `${prefix}${i}`;
      const before = arrivals.size;
      const arrived = new Promise<void>((resolve) => (onArrival = () => arrivals.size - before >= ENDPOINTS && resolve()));
      const t0 = performance.now();
      await this.publish(eventId);
      await Promise.race([arrived, new Promise((r) => setTimeout(r, 10_000))]);
      for (const [key, a] of arrivals) if (key.endsWith(` ${eventId}`)) out.push(a.at - t0);
    }
    onArrival = undefined;
    check(out.length === events * ENDPOINTS, `unloaded: ${out.length} of ${events * ENDPOINTS} deliveries arrived`);
    check(unverified(prefix) === 0, 'unloaded: a signature does not verify');
    return out.sort((a, b) => a - b);
  }

  close(): void {
    this.client.close();
  }
}

/** The bench event with id `eventId`. */
const event = (eventId: string): webhooksv1.PublishEventRequest => ({ eventId, eventType: 'bench.event', payload, contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} });

/** Direct POSTs of the same payload to the receiver, CLIENTS in flight; per second. */
async function baselineRound(posts: number): Promise<number> {
  const t0 = performance.now();
  await closedLoop(posts, async (i) => {
    const res = await httpRequest(`${receiverUrl}/baseline`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', 'webhook-id': `base-${t0}-${i}` } });
    await res.body.dump();
  });
  return posts / ((performance.now() - t0) / 1000);
}

// --- The bare durable queue (bare-queue.ts): the least a durable signed sender does ----------------
/** Its endpoints' signing keys, and publishing: the events and their deliveries in one statement per call. */
const bareKeys = Array.from({ length: ENDPOINTS }, () => randomBytes(32));
const BARE_PUBLISH_SQL = `WITH e AS (INSERT INTO bare_queue.events (id, payload) SELECT id, $2::bytea FROM unnest($1::text[]) AS id RETURNING id)
INSERT INTO bare_queue.deliveries (event_id, endpoint_id) SELECT e.id, ep.id FROM e CROSS JOIN bare_queue.endpoints ep`;
let bareRounds = 0;

/** One round through the bare queue on `db`: its worker started for the round (CPU 0), publishers here through a pool of 10. */
async function bareQueueRound(db: BenchDatabase, events: number, publishing: Publishing): Promise<Round> {
  const worker = await startChild<{ ready: boolean }>(fileURLToPath(new URL('./bare-queue.ts', import.meta.url)), [db.url]);
  pinProcess(worker.child.pid!, 0);
  const publishers = new pg.Pool({ connectionString: db.url, max: 10, application_name: 'bare-queue-publishers' });
  try {
    for (let i = 0; i < ENDPOINTS; i++) {
      secrets.set(`/bare/${i}`, `whsec_${bareKeys[i]!.toString('base64')}`);
      await publishers.query('INSERT INTO bare_queue.endpoints (id, url, secret) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [i, `${receiverUrl}/bare/${i}`, bareKeys[i]]);
    }
    return await deliveryRound({
      label: `bare${++bareRounds}`, events, publishing, workerPid: worker.child.pid!, db,
      publish: (ids) => publishers.query({ name: 'publish', text: BARE_PUBLISH_SQL, values: [ids, payload] }),
    });
  } finally {
    await publishers.end();
    await worker.stop();
  }
}

/** A fresh database and a webhooks server on it (CPU 0; this process on CPU 1), stopped and dropped by `run`'s end. */
async function withServer<T>(label: string, run: (load: Load, db: BenchDatabase, stopServer: () => Promise<void>) => Promise<T>): Promise<T> {
  step(`starting PostgreSQL and creating a database (${label})`);
  const db = await benchDatabase(`webhooks_${label}`);
  try {
    step('starting the webhooks server on it, pinned to CPU 0; this process on CPU 1');
    const server = await startBenchServer('webhooks', db.url, SCOPES, {
      config: { webhooks: { allowedCidrs: ['127.0.0.1/32'], defaultRateLimitPerSecond: 100_000, defaultMaxConcurrency: 64 } },
      cpu: 0,
    });
    pinProcess(process.pid, 1);
    const load = new Load(server.ready, server.pid, db);
    let stopped = false;
    const stopServer = async () => {
      if (stopped) return;
      stopped = true;
      load.close();
      await server.stop();
    };
    try {
      return await run(load, db, stopServer);
    } finally {
      await stopServer();
    }
  } finally {
    await db.drop().catch((err: unknown) => step(`could not drop the benchmark database: ${(err as Error).message}`));
  }
}

// --- Throughput and latency (default, --quick) ------------------------------------------------------
async function throughputRun(): Promise<void> {
  const rounds = quick ? 1 : 3;
  const eventsPerRound = quick ? 200 : 1000;
  const baselinePosts = quick ? 2000 : 10_000;
  const singleEvents = quick ? 20 : 100;
  const single: Round[] = [];
  const batched: Round[] = [];
  const baselines: number[] = [];
  const bareSingle: Round[] = [];
  const bareBatched: Round[] = [];
  const unloaded = await withServer('throughput', async (load, db) => {
    step(`setup: ${ENDPOINTS} endpoints subscribed to bench.event at the local receiver`);
    await load.endpoints();
    step(`warm-up: ${Math.ceil(eventsPerRound / 5)} events through the service, the same through the bare durable queue`);
    await load.deliveryRound(Math.ceil(eventsPerRound / 5));
    await bareQueueRound(db, Math.ceil(eventsPerRound / 5), 'batch');
    for (let r = 1; r <= rounds; r++) {
      step(`round ${r}/${rounds}: baseline (${baselinePosts} direct POSTs); ${eventsPerRound} events x ${ENDPOINTS} endpoints one PublishEvent each; the same ${PUBLISH_BATCH} per PublishEvents call; both through the bare durable queue`);
      baselines.push(await baselineRound(baselinePosts));
      single.push(await load.deliveryRound(eventsPerRound, 'single'));
      batched.push(await load.deliveryRound(eventsPerRound, 'batch'));
      bareSingle.push(await bareQueueRound(db, eventsPerRound, 'single'));
      bareBatched.push(await bareQueueRound(db, eventsPerRound, 'batch'));
    }
    step(`unloaded latency: ${singleEvents} events one at a time`);
    return load.unloaded(singleEvents);
  });
  const summary = (rs: Round[]) => {
    const pick = (f: (r: Round) => number) => median(rs.map(f));
    return {
      deliveriesPerSec: Math.round(pick((r) => r.deliveriesPerSec)),
      p50Ms: pick((r) => r.p50Ms),
      p99Ms: pick((r) => r.p99Ms),
      publishCallP50Ms: pick((r) => r.publishCallP50Ms),
      serverCpuUsPerDelivery: Math.round(pick((r) => r.serverCpuUsPerDelivery)),
      pgCpuUsPerDelivery: Math.round(pick((r) => r.pgCpuUsPerDelivery)),
    };
  };
  const delivery = summary(single);
  const batchPublished = summary(batched);
  const bare = { single: summary(bareSingle), batched: summary(bareBatched) };
  const baseline = Math.round(median(baselines));
  const unloadedLatency = { events: singleEvents, deliveries: unloaded.length, p50Ms: percentile(unloaded, 50), p99Ms: percentile(unloaded, 99) };
  const measured = [...single, ...batched, ...bareSingle, ...bareBatched].reduce((n, r) => n + r.deliveries, 0);
  const out = writeResult('webhooks', {
    benchmark: 'webhooks', quick, rounds, clients: CLIENTS, endpoints: ENDPOINTS, payloadBytes: payload.length, publishBatch: PUBLISH_BATCH,
    delivery, batchPublished, unloadedLatency, baselinePostsPerSec: baseline, ratio: delivery.deliveriesPerSec / baseline, batchPublishedRatio: batchPublished.deliveriesPerSec / baseline,
    bareQueue: { ...bare, ratio: bare.single.deliveriesPerSec / baseline, batchPublishedRatio: bare.batched.deliveriesPerSec / baseline },
    duplicates, raw: { single, batched, bareSingle, bareBatched },
  });
  const lines = (label: string, f: ReturnType<typeof summary>, b: ReturnType<typeof summary>) => [
    ratioLine(`${label}: delivered vs direct POSTs to the receiver`, f.deliveriesPerSec, baseline, '/s', { min: 0.5 }),
    `    publish -> receiver under that load: p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms (the publish call itself: p50 ${f.publishCallP50Ms.toFixed(2)} ms)`,
    `    CPU per delivery (its share of the publish call included): Gantry ${f.serverCpuUsPerDelivery.toLocaleString('en-US')} us, PostgreSQL ${f.pgCpuUsPerDelivery.toLocaleString('en-US')} us`,
    ratioLine(`    the bare durable queue, the same publishing: delivered vs direct POSTs`, b.deliveriesPerSec, baseline, '/s'),
    `      its CPU per delivery: worker ${b.serverCpuUsPerDelivery.toLocaleString('en-US')} us, PostgreSQL ${b.pgCpuUsPerDelivery.toLocaleString('en-US')} us; the service delivers ${(f.deliveriesPerSec / b.deliveriesPerSec).toFixed(2)} of its rate`,
  ];
  process.stdout.write(
    [
      '',
      `webhooks benchmark${quick ? ' (--quick)' : ''}: median of ${rounds} round(s); ${CLIENTS} publishers on one HTTP/2 connection; each event to ${ENDPOINTS} endpoints; ${payload.length}-byte payloads;`,
      'the webhooks service, full stack (mTLS + JWT + rate limit + tracing) on PostgreSQL (fsync on), delivering signed POSTs to a node:http receiver in this process.',
      'the bare durable queue (bench/bare-queue.ts): one publish statement, claims of 100 with a lease, signed POSTs over keep-alive, outcomes with an attempt row, on the same PostgreSQL; no platform.',
      '',
      ...lines('one PublishEvent per event', delivery, bare.single),
      ...lines(`${PUBLISH_BATCH} events per PublishEvents call`, batchPublished, bare.batched),
      `  publish -> receiver one event at a time (${unloadedLatency.deliveries} deliveries): p50 ${unloadedLatency.p50Ms.toFixed(2)} ms, p99 ${unloadedLatency.p99Ms.toFixed(2)} ms`,
      `  every delivery arrived exactly once and every signature verified (${measured.toLocaleString('en-US')} measured, ${unloadedLatency.deliveries} unloaded)`,
      ...(quick ? ['  (--quick: short runs on a possibly busy machine)'] : []),
      `  figures: ${out}`,
      ...profileReport([
        ['one PublishEvent per event', 'delivery', single.at(-1)?.profile],
        [`${PUBLISH_BATCH} events per PublishEvents call`, 'delivery', batched.at(-1)?.profile],
        ['the bare durable queue\'s worker, 100 events per publish', 'delivery', bareBatched.at(-1)?.profile],
      ]),
      '',
    ].join('\n'),
  );
}

try {
  if (args.growth) await growthRun({ withServer, step, endpoints: ENDPOINTS, quick });
  else await throughputRun();
} finally {
  receiver.close();
}

export type { Load, Round };
