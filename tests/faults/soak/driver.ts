// The soak: mixed load on every service for a while, in one process (`--target=all`) or one
// process per service, sampling each process's resident memory, open file descriptors and sockets
// (from /proc), event-loop delay and heap (its /metrics). What it reports is the trend: a least-
// squares slope per hour over the samples after the warm-up. `npm run soak` runs it for 30 minutes;
// tests/faults/soak.test.ts runs it briefly in CI.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { streamOf, unary } from '@gantry/kit';
import { eventually } from '@gantry/test-support/clients';
import { verifyWebhook } from '@gantry/webhooks/client';
import { startGantry, type GantryServer } from '../../support/gantry-process.js';
import { APPROVAL_FLOW_TYPES, PlatformClients, SETTLEMENT_FLOW_TYPES, SUBSCRIBER } from '../../platform/support.js';

export type SoakMode = 'one' | 'separate';

/** The receiving endpoint's rate limit: above what the load announces, so deliveries keep up. */
const RECEIVER_RATE_PER_SECOND = 2_000;

export interface SoakOptions {
  mode: SoakMode;
  databaseUrl: string;
  durationMs: number;
  /** How often each process is sampled. */
  sampleEveryMs: number;
  /** Samples taken before this share of the run are left out of the slopes (start-up, warm caches). */
  warmupShare?: number;
  /** Progress lines (one per sample). */
  progress?: (line: string) => void;
}

export interface Sample {
  atMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** V8's heap as committed (heap_total), and memory outside it: C++ objects and buffers (external), ArrayBuffers alone. */
  heapTotalBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  fds: number;
  sockets: number;
  eventLoopDelayP99Ms: number;
}

export interface ProcessReport {
  target: string;
  samples: Sample[];
  /** Per hour, over the samples after the warm-up. */
  slopes: { rssMbPerHour: number; heapMbPerHour: number; heapTotalMbPerHour: number; externalMbPerHour: number; arrayBuffersMbPerHour: number; fdsPerHour: number; socketsPerHour: number; eventLoopDelayP99MsPerHour: number };
  /** After the warm-up: first and last sample's fds and sockets, and the most either reached. */
  descriptors: { fdsAfterWarmup: number; fdsAtEnd: number; fdsMax: number; socketsAfterWarmup: number; socketsAtEnd: number; socketsMax: number };
}

export interface SoakReport {
  mode: SoakMode;
  durationMs: number;
  operations: Record<string, number>;
  /** Errors by operation and gRPC status; the load expects none. */
  errors: Record<string, number>;
  /**
   * Events the flows announced and what the receiver got (each event id once); `behindAtLoadEnd`:
   * those announced but not yet delivered when the load stopped (what the dispatcher had left).
   */
  deliveries: { expected: number; received: number; unique: number; behindAtLoadEnd: number };
  audit: { expected: number; entries: number; chainValid: boolean };
  processes: ProcessReport[];
}

const MB = 1024 * 1024;
const HOUR_MS = 3_600_000;
const SOAK_PARTITION = 'soak.load';

/** The least-squares slope of `y` over `x`, 0 with fewer than two points. */
export function slope(points: readonly { x: number; y: number }[]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** RSS, descriptors and sockets of a process from /proc. */
function procSample(pid: number): { rssBytes: number; fds: number; sockets: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  const dir = `/proc/${pid}/fd`;
  let fds = 0;
  let sockets = 0;
  for (const fd of readdirSync(dir)) {
    fds++;
    try {
      if (readlinkSync(join(dir, fd)).startsWith('socket:')) sockets++;
    } catch {
      // closed between the listing and the read
    }
  }
  return { rssBytes: rssKb * 1024, fds, sockets };
}

/** Event-loop delay p99 and memory by kind from a process's Prometheus text. */
async function metricsSample(healthPort: number): Promise<Pick<Sample, 'heapUsedBytes' | 'heapTotalBytes' | 'externalBytes' | 'arrayBuffersBytes' | 'eventLoopDelayP99Ms'>> {
  const text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  const memory = (kind: string) => Number(new RegExp(`^gantry_process_memory\\{[^}]*kind="${kind}"[^}]*\\} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heapUsedBytes: memory('heap_used'),
    heapTotalBytes: memory('heap_total'),
    externalBytes: memory('external'),
    arrayBuffersBytes: memory('array_buffers'),
    eventLoopDelayP99Ms: value('nodejs_eventloop_delay_p99') * 1000,
  };
}

/**
 * A webhook receiver that verifies each delivery as it arrives (the signature's timestamp is only
 * good for minutes) and keeps only how often each event id came: a soak's deliveries must not
 * grow its own memory.
 */
class CountingReceiver {
  readonly seen = new Map<string, number>();
  received = 0;
  unverified = 0;
  secret = '';
  private readonly server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.received++;
      try {
        const { id } = verifyWebhook(req.headers, Buffer.concat(chunks), this.secret);
        this.seen.set(id, (this.seen.get(id) ?? 0) + 1);
      } catch {
        this.unverified++;
      }
      res.writeHead(204).end();
    });
  });

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** Starts the platform in `mode` on `databaseUrl`, as the chart wires it (peers by address). */
async function startPlatform(mode: SoakMode, databaseUrl: string, receiver: CountingReceiver) {
  const env: NodeJS.ProcessEnv = {
    GANTRY_DATABASE_URL: databaseUrl,
    GANTRY_DATABASE_POOL_SIZE: '4',
    GANTRY_RATE_LIMIT_POINTS: '100000',
    GANTRY_WEBHOOKS_ALLOWED_CIDRS: `${SUBSCRIBER}=127.0.0.1/32`,
    // As the image sets it (Dockerfile): what is measured is what ships.
    MALLOC_ARENA_MAX: '2',
  };
  const servers = new Map<string, GantryServer>();
  if (mode === 'one') {
    servers.set('all', await startGantry('all', env));
  } else {
    // The first process creates the shared keys in its data dir; the others use the same dir.
    const log = await startGantry('log', env);
    servers.set('log', log);
    const shared = { ...env, GANTRY_DATA_DIR: log.dataDir };
    const webhooks = await startGantry('webhooks', shared);
    servers.set('webhooks', webhooks);
    const peers = { ...shared, GANTRY_PEERS_LOG_ADDRESS: `127.0.0.1:${log.port}`, GANTRY_PEERS_WEBHOOKS_ADDRESS: `127.0.0.1:${webhooks.port}` };
    servers.set('settlement', await startGantry('settlement', peers));
    servers.set('approvals', await startGantry('approvals', peers));
  }
  const first = [...servers.values()][0]!;
  const at = (target: string) => `127.0.0.1:${(servers.get(target) ?? servers.get('all'))!.port}`;
  const pki = (f: string) => join(first.dataDir, 'pki', f);
  const clients = new PlatformClients(
    { settlement: at('settlement'), approvals: at('approvals'), webhooks: at('webhooks'), log: at('log') },
    { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' },
    first.dataDir,
  );
  // The endpoint accepts more than the load announces (about 150 events/s on this machine): at the
  // service's default of 100/s the backlog grew for as long as the soak ran, by the endpoint's
  // rule rather than for want of dispatcher, and a growing queue is not the steady state measured.
  receiver.secret = await clients.subscribe(receiver.url, { rateLimitPerSecond: RECEIVER_RATE_PER_SECOND });
  return { servers, clients };
}

/** Runs the soak and reports; it stops every process it started. */
export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const receiver = new CountingReceiver();
  await receiver.start();
  const { servers, clients } = await startPlatform(opts.mode, opts.databaseUrl, receiver);
  const operations: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let events = 0;
  const samples = new Map<string, Sample[]>([...servers.keys()].map((t) => [t, []]));
  const startedMs = Date.now();
  const stopAt = startedMs + opts.durationMs;
  try {
    const count = (what: string) => (operations[what] = (operations[what] ?? 0) + 1);
    const fail = (what: string, err: unknown) => {
      const code = (err as { code?: number }).code;
      const key = `${what}: ${code === undefined ? (err as Error).message : GrpcStatus[code]}`;
      // The first of each kind is told at once, with its message: a soak that fails says why.
      if (errors[key] === undefined) opts.progress?.(`first error of its kind, ${key}: ${(err as Error).message}`);
      errors[key] = (errors[key] ?? 0) + 1;
    };
    /** Runs `op` back to back (with a short pause, to load rather than saturate) until the end. */
    const worker = async (what: string, op: () => Promise<number>) => {
      while (Date.now() < stopAt) {
        try {
          const announced = await op(); // not `events += await op()`: that adds to the value read before the await
          events += announced;
          count(what);
        } catch (err) {
          fail(what, err);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const log = clients.log;
    let appended = 0;
    const logOps = async () => {
      // Taken each round: PlatformClients renews it each minute, before the dev token's five run
      // out (an expired one, sent for long, would lock the peer out: auth.maxFailuresPerPeer).
      const writer = clients.as('soak-writer', ['log.append', 'log.read']);
      const data = Array.from({ length: 10 }, (_, i) => Buffer.from(`soak entry ${appended + i}`));
      const { receipts } = await unary(log.appendBatch, log, { partition: SOAK_PARTITION, data, idempotencyKeys: [] }, writer);
      appended += receipts.length;
      // A read of what was written, and a Tail left open briefly then cancelled: streams that end both ways.
      for await (const chunk of streamOf(log.read({ partition: SOAK_PARTITION, startSeq: receipts[0]!.seq, limit: 10n }, writer))) void chunk;
      const tail = log.tail({ partition: SOAK_PARTITION, startSeq: receipts[0]!.seq, last: 0, follow: true }, writer);
      tail.on('error', () => undefined); // the cancel below ends it with CANCELLED
      await new Promise((r) => setTimeout(r, 200));
      tail.cancel();
      return 0;
    };
    const sampler = (async () => {
      while (Date.now() < stopAt) {
        await new Promise((r) => setTimeout(r, Math.min(opts.sampleEveryMs, Math.max(0, stopAt - Date.now()))));
        const line: string[] = [];
        for (const [target, server] of servers) {
          const sample = { atMs: Date.now() - startedMs, ...procSample(server.child.pid!), ...(await metricsSample(server.healthPort)) };
          samples.get(target)!.push(sample);
          line.push(`${target} rss ${(sample.rssBytes / MB).toFixed(0)} MB (heap ${(sample.heapUsedBytes / MB).toFixed(0)}/${(sample.heapTotalBytes / MB).toFixed(0)}, external ${(sample.externalBytes / MB).toFixed(0)}) fds ${sample.fds} eld p99 ${sample.eventLoopDelayP99Ms.toFixed(1)} ms`);
        }
        opts.progress?.(`[${Math.round((Date.now() - startedMs) / 1000)} s of ${Math.round(opts.durationMs / 1000)} s] ${Object.values(operations).reduce((a, b) => a + b, 0)} operations, ${Object.values(errors).reduce((a, b) => a + b, 0)} errors, ${events - receiver.seen.size} events not yet delivered; ${line.join('; ')}`);
      }
    })();
    await Promise.all([
      worker('settlement flow', async () => (await clients.settlementFlow(), SETTLEMENT_FLOW_TYPES.length)),
      worker('approval flow', async () => (await clients.approvalFlow(), APPROVAL_FLOW_TYPES.length)),
      worker('log append, read and tail', logOps),
      sampler,
    ]);

    // Every announced event reaches the receiver once and the audit partitions, after the load.
    // A backlog left by the load drains at the dispatcher's pace: wait for it in proportion to the run.
    const behindAtLoadEnd = events - receiver.seen.size;
    const drainMs = Math.max(120_000, opts.durationMs / 4);
    await eventually(() => receiver.seen.size >= events, drainMs, 250);
    const reader = clients.as('auditor', ['log.read']);
    const auditSize = async () => {
      const { partitions } = await unary(log.listPartitions, log, { prefix: 'audit.', pageSize: 10, pageToken: '' }, reader);
      return partitions.reduce((n, p) => n + Number(p.size), 0);
    };
    await eventually(async () => (await auditSize()) >= events, drainMs, 500);
    const audited = { length: await auditSize() };
    const chainValid = (await clients.verify('audit.settlement')).valid && (await clients.verify('audit.approvals')).valid;
    if (receiver.unverified > 0) errors['deliveries whose signature did not verify'] = receiver.unverified;
    return {
      mode: opts.mode,
      durationMs: opts.durationMs,
      operations,
      errors,
      deliveries: { expected: events, received: receiver.received, unique: receiver.seen.size, behindAtLoadEnd },
      audit: { expected: events, entries: audited.length, chainValid },
      processes: [...samples].map(([target, series]) => report(target, series, opts.durationMs * (opts.warmupShare ?? 0.25))),
    };
  } finally {
    clients.close();
    // The first process last: its stop() removes the data dir the others share.
    for (const server of [...servers.values()].reverse()) await server.stop();
    await receiver.stop();
  }
}

function report(target: string, samples: Sample[], warmupMs: number): ProcessReport {
  const steady = samples.filter((s) => s.atMs >= warmupMs);
  const per = (y: (s: Sample) => number, unit = 1) => slope(steady.map((s) => ({ x: s.atMs, y: y(s) / unit }))) * HOUR_MS;
  const first = steady[0] ?? samples[0]!;
  const last = samples[samples.length - 1]!;
  return {
    target,
    samples,
    slopes: {
      rssMbPerHour: per((s) => s.rssBytes, MB),
      heapMbPerHour: per((s) => s.heapUsedBytes, MB),
      heapTotalMbPerHour: per((s) => s.heapTotalBytes, MB),
      externalMbPerHour: per((s) => s.externalBytes, MB),
      arrayBuffersMbPerHour: per((s) => s.arrayBuffersBytes, MB),
      fdsPerHour: per((s) => s.fds),
      socketsPerHour: per((s) => s.sockets),
      eventLoopDelayP99MsPerHour: per((s) => s.eventLoopDelayP99Ms),
    },
    descriptors: {
      fdsAfterWarmup: first.fds,
      fdsAtEnd: last.fds,
      fdsMax: Math.max(...steady.map((s) => s.fds)),
      socketsAfterWarmup: first.sockets,
      socketsAtEnd: last.sockets,
      socketsMax: Math.max(...steady.map((s) => s.sockets)),
    },
  };
}

/** The report as a table, one line per process. */
export function formatReport(r: SoakReport): string {
  const lines = [
    `soak (${r.mode === 'one' ? 'one process, --target=all' : 'one process per service'}), ${+(r.durationMs / 60_000).toFixed(1)} min: ${Object.entries(r.operations).map(([k, v]) => `${v} × ${k}`).join(', ')}`,
    `  errors: ${Object.keys(r.errors).length === 0 ? 'none' : JSON.stringify(r.errors)}`,
    `  deliveries: ${r.deliveries.unique} unique of ${r.deliveries.expected} announced (${r.deliveries.received} received; ${r.deliveries.behindAtLoadEnd} not yet delivered when the load stopped); audit entries ${r.audit.entries} of ${r.audit.expected}, chains ${r.audit.chainValid ? 'valid' : 'INVALID'}`,
    `  process      RSS MB/h   heap MB/h   heap total MB/h   external MB/h   fds/h   sockets/h   ELD p99 ms/h   RSS end MB   fds warm→end (max)   ELD p99 end ms`,
  ];
  for (const p of r.processes) {
    const end = p.samples[p.samples.length - 1]!;
    const f = (n: number, w: number, d = 1) => n.toFixed(d).padStart(w);
    lines.push(
      `  ${p.target.padEnd(11)}${f(p.slopes.rssMbPerHour, 10)}${f(p.slopes.heapMbPerHour, 12)}${f(p.slopes.heapTotalMbPerHour, 18)}${f(p.slopes.externalMbPerHour, 16)}${f(p.slopes.fdsPerHour, 8)}${f(p.slopes.socketsPerHour, 12)}${f(p.slopes.eventLoopDelayP99MsPerHour, 15)}${f(end.rssBytes / MB, 13, 0)}   ${`${p.descriptors.fdsAfterWarmup}→${p.descriptors.fdsAtEnd} (${p.descriptors.fdsMax})`.padStart(18)}${f(end.eventLoopDelayP99Ms, 17)}`,
    );
  }
  return lines.join('\n');
}
