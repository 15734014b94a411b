// `npm run bench -- log [--quick]`: the log service's durable append throughput, Read streaming
// throughput and Tail end-to-end latency, each beside a baseline measured in the same run.
//
// Servers (each its own process, started on both cores and pinned to CPU 0 once ready; ghz and this
// process's Node clients on CPU 1; PostgreSQL floats over both cores):
//   stack-pg / stack-pglite  the log service through the full kit stack: mTLS, JWT, rate limit
//                            (far above the load), tracing into a counting exporter.
//   naive-pg / naive-pglite  baseline: bare grpc-js (no TLS, no JWT), one autocommit INSERT into a
//                            plain table per call, same database, same pool size (10).
// PostgreSQL is scripts/test-env/postgres.sh's server (fsync and synchronous_commit on), with a
// fresh database created for this run and dropped at the end.
//
// Figures:
//   Append       ghz, unary, one 128-byte entry per call, 1 and 64 concurrent calls on one HTTP/2
//                connection, all clients on ONE shared partition (the harder case: every append
//                contends for the same chain head). Acknowledged = committed.
//   AppendBatch  the same with 100 entries per call; reported as entries/s (calls/s x 100).
//   Read         a Node gRPC client (the client library's, @gantry/log/client) streams a partition
//                of N entries from seq 0 and counts them;
//                baseline: the same rows read straight from PostgreSQL with pg (keyset pages of
//                2,000, the service's query), no gRPC.
//   Tail         a Node follower Tail(follow) and a Node appender appending one entry at a time,
//                the send time in the payload: receive time - send time, p50/p99; baseline: the
//                appender's own send -> ack latency for the same appends.
// Checks (every run, --quick included; checks.ts): each partition the service was loaded with
// holds every acknowledged entry, verifies, and proves its first, middle and last entries into the
// signed tree; Read returned every row; the follower received every append.
// --growth (growth.ts) measures Append and proof latency at 10^4 and 10^6 entries instead.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { bearerMetadata, clientCredentials, clientOptions, streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { ratioLine } from '../../kit/bench/baseline.js';
import { check, cpuOf, cpuSeconds, ghz, ghzPath, median, parseBenchArgs, pinProcess, pinning, progress, repoRoot, startChild, writeResult, type LoadResult } from '../../kit/bench/lib.js';
import { profileReport, profileWindow, profiling, type ProfileSummary } from '../../kit/bench/profile.js';
import { LogServiceClient } from '../src/client/index.js';
import { checkPartition, expect, type Expected } from './checks.js';

const args = parseBenchArgs(process.argv.slice(2));
if (args.growth) {
  const { runGrowth } = await import('./growth.js');
  await runGrowth();
  process.exit();
}
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
const quick = args.quick;
const rounds = quick ? 1 : 2;
/** Target length of one measured ghz run; the call count is calibrated from a warm-up run. */
const runSeconds = quick ? 1 : 6;
// --quick (a smoke check under 30 s) measures PostgreSQL at 64 clients only: PGlite's start-up
// alone takes several seconds per server.
const concurrencies: readonly number[] = quick ? [64] : [1, 64];
const batchSize = 100;
const payloadBytes = 128;
// Each Read lasts a second or more: at 100,000 entries (0.3 s) the service/raw ratio of the same
// code ranged from 0.65 to 0.87 between runs on this shared machine.
const readEntries = quick ? 20_000 : 500_000;
const readRepeats = quick ? 2 : 3;
const tailAppends = quick ? 200 : 1000;
const tailWarmup = quick ? 20 : 50;
const TARGET = { appendsPerSec: 10_000, readEntriesPerSec: 100_000, tailP99Ms: 10 };
/** Issue #18's goals, as ratios to the baselines measured in the same run. */
const GOAL = { batchVsNaive: 0.7, readVsRawPg: 0.8, unaryVsNaive: 1.5, tailP99OverCommitP99Ms: 2 };
/** Entries each stack partition must hold, by `${engine}:${partition}`. */
const expected = new Map<string, Expected>();

type Engine = 'pg' | 'pglite';
const engines: readonly Engine[] = quick ? ['pg'] : ['pg', 'pglite'];
type Kind = 'stack' | 'naive';
type Method = 'Append' | 'AppendBatch';
interface Ready { port: number; dataDir: string; token?: string }

const protoset = join(repoRoot, 'proto/src/gen/gantry.binpb');
const serverScript = join(repoRoot, 'services/log/bench/log-server.ts');
const workDir = mkdtempSync(join(tmpdir(), 'gantry-bench-log-req-'));
const payload = Buffer.alloc(payloadBytes, 'gantry-log-bench ');

/** A binary-encoded request for ghz -B, one per (method, partition). */
function requestFile(method: Method, partition: string): string {
  const file = join(workDir, `${method}-${partition}.bin`);
  const bytes = method === 'Append'
    ? logv1.AppendRequest.encode({ partition, data: payload, idempotencyKey: '' }).finish()
    : logv1.AppendBatchRequest.encode({ partition, data: Array.from({ length: batchSize }, () => payload), idempotencyKeys: [] }).finish();
  writeFileSync(file, bytes);
  return file;
}

// --- PostgreSQL: a fresh database for this run --------------------------------------------------
step('starting PostgreSQL (scripts/test-env/postgres.sh start)');
const adminUrl = execFileSync('bash', [join(repoRoot, 'scripts/test-env/postgres.sh'), 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
const dbName = `gantry_bench_log_${process.pid}_${Date.now()}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const benchUrl = new URL(adminUrl);
benchUrl.pathname = `/${dbName}`;
const dbUrl = benchUrl.toString();

const bin = await ghzPath();

type Server = Awaited<ReturnType<typeof startChild<Ready>>>;
const servers = new Map<string, Server>();
const stopAll = async () => {
  await Promise.all([...servers.values()].map((s) => s.stop()));
  servers.clear();
};
let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  step('stopping servers, dropping the database');
  await stopAll();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((err: unknown) => step(`could not drop database ${dbName}: ${(err as Error).message}`));
  await admin.end().catch(() => {});
  rmSync(workDir, { recursive: true, force: true });
}
process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));

/** The PostgreSQL backends serving this run's database (kept off the servers' core while profiling). */
const backendPids = async () => (await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [dbName])).rows.map((r) => r.pid);
const key = (engine: Engine, kind: Kind, method: Method, c: number) => `${kind}-${engine}.${method}.c${c}`;
const results = new Map<string, LoadResult[]>();
let readFigures: ReturnType<typeof summariseRead> | undefined;
let tailFigures: ReturnType<typeof summariseTail> | undefined;

try {
  const names = engines.flatMap((e) => [`stack-${e}`, `naive-${e}`]);
  step(`starting ${names.length} servers (the log service and the naive baseline on ${engines.join(' and ')})${pinning ? '; once ready they are pinned to CPU 0, ghz and Node clients to CPU 1' : ''}`);
  // Start-up (module loading, PGlite's initdb: ~25 CPU-seconds for the four) runs on both cores;
  // each server is pinned to CPU 0 once ready, before anything is measured.
  const started = await Promise.all(
    names.map((n) => {
      const [kind, engine] = n.split('-') as [Kind, Engine];
      return startChild<Ready>(serverScript, [kind, ...(engine === 'pg' ? [dbUrl] : [])]);
    }),
  );
  names.forEach((n, i) => servers.set(n, started[i]!));
  for (const s of started) pinProcess(s.child.pid!, 0);
  // This process runs the Node clients (Read, Tail): CPU 1, with ghz. Pinned only now, so neither
  // the servers nor the postmaster inherited it.
  pinProcess(process.pid, 1);
  const server = (kind: Kind, engine: Engine) => servers.get(`${kind}-${engine}`)!;

  const load = async (kind: Kind, engine: Engine, method: Method, c: number, partition: string, total: number) => {
    const s = server(kind, engine);
    const { dataDir, token, port } = s.ready;
    const pgPids = engine === 'pg' ? await backendPids() : [];
    const r = await ghz(bin, {
      pgPids,
      ...(profiling() ? { offServerCore: pgPids } : {}),
      address: `127.0.0.1:${port}`,
      protoset,
      call: `gantry.log.v1.LogService/${method}`,
      binaryFile: requestFile(method, partition),
      concurrency: c,
      total,
      serverPid: s.child.pid!,
      ...(kind === 'stack'
        ? {
            tlsArgs: ['--cacert', join(dataDir, 'pki/ca.crt'), '--cert', join(dataDir, 'pki/client.crt'), '--key', join(dataDir, 'pki/client.key'), '--cname', 'localhost'],
            metadata: { authorization: `Bearer ${token}` },
          }
        : {}),
    });
    if (kind === 'stack') expect(expected, `${engine}:${partition}`, r.calls, r.errors, method === 'Append' ? 1 : batchSize);
    return r;
  };

  // --- Append / AppendBatch: calibrate each configuration, then measured rounds ------------------
  const configs: { engine: Engine; method: Method; c: number }[] = [];
  for (const engine of engines) for (const method of ['Append', 'AppendBatch'] as const) for (const c of concurrencies) configs.push({ engine, method, c });
  const totals = new Map<string, number>();
  step(`warm-up and calibration: ${configs.length * 2} configurations, each sized to ~${runSeconds} s per measured run`);
  for (const { engine, method, c } of configs) {
    for (const kind of ['stack', 'naive'] as const) {
      const partition = `${method === 'Append' ? 'append' : 'batch'}-c${c}`;
      // Small on purpose: PGlite's AppendBatch at 64 clients runs at a few dozen calls/s.
      const warm = c === 1 ? (method === 'Append' ? 50 : 10) : method === 'Append' ? 4 * c : c;
      const r = await load(kind, engine, method, c, partition, warm);
      if (r.errors > 0) throw new Error(`${kind}-${engine} ${method} c${c}: ${r.errors} failed calls in warm-up: ${JSON.stringify(r.failures)}`);
      totals.set(key(engine, kind, method, c), Math.max(quick ? c : 4 * c, 20, Math.round(r.callsPerSec * runSeconds)));
    }
  }
  for (let round = 1; round <= rounds; round++) {
    for (const { engine, method, c } of configs) {
      // Service and baseline back to back, so both see the same machine state.
      for (const kind of ['stack', 'naive'] as const) {
        const k = key(engine, kind, method, c);
        const total = totals.get(k)!;
        step(`round ${round}/${rounds}: ${kind}-${engine} ${method} c=${c} (${total} calls)`);
        const r = await load(kind, engine, method, c, `${method === 'Append' ? 'append' : 'batch'}-c${c}`, total);
        results.set(k, [...(results.get(k) ?? []), r]);
      }
    }
  }

  // --- Read and Tail on the PostgreSQL-backed service through Node clients ------------------------
  const stack = server('stack', 'pg');
  const clientOf = (engine: Engine) => {
    const { dataDir, token, port } = server('stack', engine).ready;
    const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
    const newClient = () => new LogServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls, { 'grpc.max_receive_message_length': 16 * 1024 * 1024 }));
    return { newClient, md: bearerMetadata(token) };
  };
  const { newClient, md } = clientOf('pg');
  const client = newClient();

  step('checking every partition the appends went to: acknowledged entries present, chain verifies, proofs verify');
  for (const engine of engines) {
    const { newClient: checkClient, md: checkMd } = clientOf(engine);
    const c = checkClient();
    for (const [k, e] of expected) if (k.startsWith(`${engine}:`)) await checkPartition(c, checkMd, k.slice(engine.length + 1), e);
    c.close();
  }

  step(`Read: filling partition "read" with ${readEntries} entries (AppendBatch of 1,000)`);
  {
    const batch = Array.from({ length: 1000 }, () => payload);
    let next = 0;
    const worker = async () => {
      while (next < readEntries / 1000) {
        next++;
        await unary(client.appendBatch, client, { partition: 'read', data: batch, idempotencyKeys: [] }, md);
        expect(expected, 'pg:read', 1, 0, batch.length);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await checkPartition(client, md, 'read', expected.get('pg:read')!);
  }
  const serviceRead = async (limit = 0n) => {
    const pgPids = await backendPids();
    const window = await profileWindow(stack.child.pid!, profiling() ? pgPids : []);
    const cpu0 = cpuSeconds(stack.child.pid!);
    const stages = stageCpu(pgPids);
    const t0 = performance.now();
    let n = 0;
    for await (const msg of streamOf(client.read({ partition: 'read', startSeq: 0n, limit }, md))) n += msg.entries.length;
    const secs = (performance.now() - t0) / 1000;
    const serverCpuUsPerEntry = ((cpuSeconds(stack.child.pid!) - cpu0) * 1e6) / n;
    const profile = await window.stop(n, serverCpuUsPerEntry);
    return { entries: n, entriesPerSec: n / secs, serverCpuUsPerEntry, ...stages.perEntry(n), ...(profile ? { profile } : {}) };
  };
  const pool = new pg.Pool({ connectionString: dbUrl, max: 1 });
  // Statistics as autovacuum leaves them, so that neither read depends on whether its minute has
  // come yet: without them the planner takes the partition for nearly empty, and the raw read's
  // keyset query sorts every remaining row for each page.
  await pool.query('ANALYZE log.entries');
  const rawRead = async () => {
    const stages = stageCpu(await backendPids());
    const t0 = performance.now();
    let n = 0;
    let from = 0;
    for (;;) {
      // The columns the service returns, read the way an application would (pg's defaults, object rows).
      const { rows } = await pool.query<{ seq: string }>('SELECT partition, seq, ts_ms, data, prev_hash, hash, author FROM log.entries WHERE partition = $1 AND seq >= $2 ORDER BY seq LIMIT $3', ['read', from, 2000]);
      if (rows.length === 0) break;
      n += rows.length;
      from = Number(rows[rows.length - 1]!.seq) + 1;
    }
    return { entries: n, entriesPerSec: n / ((performance.now() - t0) / 1000), ...stages.perEntry(n) };
  };
  await serviceRead(5000n);
  await rawRead();
  const reads: Awaited<ReturnType<typeof serviceRead>>[] = [];
  const raws: Awaited<ReturnType<typeof rawRead>>[] = [];
  for (let i = 1; i <= readRepeats; i++) {
    step(`Read ${i}/${readRepeats}: service stream, then raw pg baseline`);
    reads.push(await serviceRead());
    raws.push(await rawRead());
  }
  await pool.end();
  check(reads.every((r) => r.entries === readEntries) && raws.every((r) => r.entries === readEntries), `Read returned ${reads.map((r) => r.entries).join(', ')} entries and raw pg ${raws.map((r) => r.entries).join(', ')}, expected ${readEntries}`);
  readFigures = summariseRead(reads, raws);

  step(`Tail: follower on partition "tail", ${tailWarmup} warm-up + ${tailAppends} measured appends, one at a time`);
  {
    const follower = newClient();
    const appender = newClient();
    const total = tailWarmup + tailAppends;
    const e2e: number[] = [];
    const acks: number[] = [];
    /** Per measured append: when its ack arrived and when the follower got it. */
    const ackedAt: number[] = [];
    const receivedAt: number[] = [];
    let received = 0;
    let allReceived: () => void = () => {};
    const done = new Promise<void>((resolve) => (allReceived = resolve));
    const stream = follower.tail({ partition: 'tail', startSeq: 0n, last: 0, follow: true }, md);
    stream.on('data', (msg: logv1.TailResponse) => {
      const now = performance.now();
      for (const e of msg.entries) {
        const index = e.data.readUInt32LE(8);
        if (index >= tailWarmup) {
          e2e.push(now - e.data.readDoubleLE(0));
          receivedAt[index - tailWarmup] = now;
        }
        if (++received === total) allReceived();
      }
    });
    stream.on('error', () => {});
    for (let i = 0; i < total; i++) {
      const data = Buffer.alloc(payloadBytes);
      const t0 = performance.now();
      data.writeDoubleLE(t0, 0);
      data.writeUInt32LE(i, 8);
      await unary(appender.append, appender, { partition: 'tail', data, idempotencyKey: '' }, md);
      if (i >= tailWarmup) {
        ackedAt[i - tailWarmup] = performance.now();
        acks.push(ackedAt[i - tailWarmup]! - t0);
      }
    }
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    stream.cancel();
    follower.close();
    appender.close();
    check(received === total, `Tail follower received ${received} of ${total} entries`);
    expect(expected, 'pg:tail', total, 0, 1);
    await checkPartition(client, md, 'tail', expected.get('pg:tail')!);
    tailFigures = summariseTail(e2e, acks, receivedAt.map((r, i) => r - ackedAt[i]!));
  }
  client.close();
} finally {
  await cleanup();
}

// --- Summary ------------------------------------------------------------------------------------
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
/**
 * CPU of the Read's other two stages from now on: this process (the Node client, pinned to CPU 1)
 * and the run's PostgreSQL backends, per entry once `perEntry` is called.
 */
function stageCpu(pgPids: readonly number[]) {
  const client0 = process.cpuUsage();
  const pg0 = cpuOf(pgPids);
  return {
    perEntry(n: number) {
      const client = process.cpuUsage(client0);
      return { clientCpuUsPerEntry: (client.user + client.system) / n, pgCpuUsPerEntry: ((cpuOf(pgPids) - pg0) * 1e6) / n };
    },
  };
}

type ReadStages = { entriesPerSec: number; clientCpuUsPerEntry: number; pgCpuUsPerEntry: number };
function summariseRead(reads: (ReadStages & { serverCpuUsPerEntry: number; profile?: ProfileSummary })[], raws: ReadStages[]) {
  const service = Math.round(median(reads.map((r) => r.entriesPerSec)));
  const raw = Math.round(median(raws.map((r) => r.entriesPerSec)));
  const cpuUs = median(reads.map((r) => r.serverCpuUsPerEntry));
  const stages = (rs: ReadStages[]) => ({ clientCpuUsPerEntry: median(rs.map((r) => r.clientCpuUsPerEntry)), pgCpuUsPerEntry: median(rs.map((r) => r.pgCpuUsPerEntry)) });
  return {
    entries: readEntries,
    serviceEntriesPerSec: service,
    rawPgEntriesPerSec: raw,
    ratio: service / raw,
    serverCpuUsPerEntry: cpuUs,
    serverCapacityPerCore: Math.round(1e6 / cpuUs),
    service: stages(reads),
    rawPg: stages(raws),
    raw: { reads, raws },
  };
}
/** afterAck: follower receive time minus the appender's ack time (negative when the entry arrived first). */
function summariseTail(e2e: number[], acks: number[], afterAck: number[]) {
  return {
    appends: e2e.length, p50Ms: percentile(e2e, 50), p99Ms: percentile(e2e, 99), maxMs: Math.max(...e2e),
    ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99),
    afterAckP50Ms: percentile(afterAck, 50), afterAckP99Ms: percentile(afterAck, 99),
  };
}

const summary = (k: string, method: Method) => {
  const rs = results.get(k)!;
  const perCall = method === 'AppendBatch' ? batchSize : 1;
  return {
    callsPerSec: Math.round(median(rs.map((r) => r.callsPerSec))),
    entriesPerSec: Math.round(median(rs.map((r) => r.callsPerSec)) * perCall),
    p50Ms: median(rs.map((r) => r.p50Ms)),
    p99Ms: median(rs.map((r) => r.p99Ms)),
    serverCpuUsPerCall: Math.round(median(rs.map((r) => r.serverCpuUsPerCall))),
    /** The server process's own CPU (not PostgreSQL's) per durable entry. */
    serverCpuUsPerEntry: median(rs.map((r) => r.serverCpuUsPerCall)) / perCall,
    /** PostgreSQL's backends' CPU (this run's database) and ghz's, per entry. */
    pgCpuUsPerEntry: median(rs.map((r) => r.pgCpuUsPerCall)) / perCall,
    loadCpuUsPerEntry: median(rs.map((r) => r.loadCpuUsPerCall)) / perCall,
    errors: rs.reduce((n, r) => n + r.errors, 0),
  };
};
type Summary = ReturnType<typeof summary>;
const appendFigures: Record<string, Summary & { vsNaive?: number }> = {};
for (const engine of engines) {
  for (const method of ['Append', 'AppendBatch'] as const) {
    for (const c of concurrencies) {
      const st = summary(key(engine, 'stack', method, c), method);
      const nv = summary(key(engine, 'naive', method, c), method);
      appendFigures[key(engine, 'stack', method, c)] = { ...st, vsNaive: st.entriesPerSec / nv.entriesPerSec };
      appendFigures[key(engine, 'naive', method, c)] = nv;
    }
  }
}
const read = readFigures!;
const tail = tailFigures!;
const pgUnary64 = appendFigures[key('pg', 'stack', 'Append', 64)]!;
const pgBatch64 = appendFigures[key('pg', 'stack', 'AppendBatch', 64)]!;
const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
const targets = {
  unaryAppendsPg64: { figure: pgUnary64.entriesPerSec, target: TARGET.appendsPerSec, met: pgUnary64.entriesPerSec >= TARGET.appendsPerSec },
  batchedEntriesPg64: { figure: pgBatch64.entriesPerSec, target: TARGET.appendsPerSec, met: pgBatch64.entriesPerSec >= TARGET.appendsPerSec },
  readEntriesPerSec: { figure: read.serviceEntriesPerSec, target: TARGET.readEntriesPerSec, met: read.serviceEntriesPerSec >= TARGET.readEntriesPerSec },
  tailP99Ms: { figure: tail.p99Ms, target: TARGET.tailP99Ms, met: tail.p99Ms < TARGET.tailP99Ms },
};
const errorsTotal = Object.values(appendFigures).reduce((n, f) => n + f.errors, 0);
const out = writeResult('log', {
  benchmark: 'log', quick, rounds, runSeconds, pinning, payloadBytes, batchSize, sharedPartition: true, connections: 1,
  append: appendFigures, read, tail, targets, errors: errorsTotal,
  raw: Object.fromEntries(results),
});

const num = (x: number, w = 8) => Math.round(x).toLocaleString('en-US').padStart(w);
const ms = (x: number) => x.toFixed(2).padStart(7);
const lines = [
  '',
  `log benchmark${quick ? ' (--quick)' : ''}: median of ${rounds} round(s) of ~${runSeconds} s per configuration; ${payloadBytes}-byte entries;`,
  `all clients of a configuration append to ONE shared partition; c = concurrent calls on one HTTP/2 connection.`,
  `service = log service, full stack (mTLS + JWT + rate limit + tracing), group commit, hash chain + Merkle tree;`,
  `naive   = bare grpc-js, no TLS/JWT, one autocommit INSERT per call (AppendBatch: one multi-row INSERT) into a plain table.`,
  `CPU µs/entry = the server process's CPU time per entry (PostgreSQL's own CPU not included).`,
  '',
  '  engine  method              c   service entries/s   p50 ms   p99 ms  CPU µs/entry   naive entries/s   p50 ms   p99 ms  CPU µs/entry   service/naive  errors',
];
for (const engine of engines) {
  for (const method of ['Append', 'AppendBatch'] as const) {
    for (const c of concurrencies) {
      const st = appendFigures[key(engine, 'stack', method, c)]!;
      const nv = appendFigures[key(engine, 'naive', method, c)]!;
      const label = method === 'Append' ? 'Append (unary)' : `AppendBatch x${batchSize}`;
      lines.push(
        `  ${engine.padEnd(7)} ${label.padEnd(17)} ${String(c).padStart(3)}   ${num(st.entriesPerSec, 17)}  ${ms(st.p50Ms)}  ${ms(st.p99Ms)}  ${num(st.serverCpuUsPerEntry, 12)}   ${num(nv.entriesPerSec, 15)}  ${ms(nv.p50Ms)}  ${ms(nv.p99Ms)}  ${num(nv.serverCpuUsPerEntry, 12)}   ${(st.vsNaive! * 100).toFixed(0).padStart(12)}%  ${String(st.errors + nv.errors).padStart(6)}`,
      );
    }
  }
}
// The whole machine's CPU per entry: on two cores, a configuration that keeps both busy is bound by this sum, not by its server alone.
const machine = (f: Summary) => f.serverCpuUsPerEntry + f.pgCpuUsPerEntry + f.loadCpuUsPerEntry;
const cores = (f: Summary) => (machine(f) * f.entriesPerSec) / 1e6;
const machineLine = (label: string, st: Summary, nv: Summary) =>
  `  ${label}: service ${st.serverCpuUsPerEntry.toFixed(1)} + ${st.pgCpuUsPerEntry.toFixed(1)} + ${st.loadCpuUsPerEntry.toFixed(1)} = ${machine(st).toFixed(1)} µs (${cores(st).toFixed(2)} cores busy); naive ${nv.serverCpuUsPerEntry.toFixed(1)} + ${nv.pgCpuUsPerEntry.toFixed(1)} + ${nv.loadCpuUsPerEntry.toFixed(1)} = ${machine(nv).toFixed(1)} µs (${cores(nv).toFixed(2)} cores busy)`;
if (engines.includes('pg')) {
  lines.push(
    '',
    '  CPU per entry on the whole machine, PostgreSQL, 64 clients (server + its PostgreSQL backends + ghz):',
    machineLine('unary Append', appendFigures[key('pg', 'stack', 'Append', 64)]!, appendFigures[key('pg', 'naive', 'Append', 64)]!),
    machineLine(`AppendBatch x${batchSize}`, appendFigures[key('pg', 'stack', 'AppendBatch', 64)]!, appendFigures[key('pg', 'naive', 'AppendBatch', 64)]!),
  );
}
lines.push(
  '',
  `  Read (PostgreSQL): ${num(read.serviceEntriesPerSec, 0)} entries/s streaming ${read.entries.toLocaleString('en-US')} entries to a Node client over mTLS+JWT; raw pg baseline ${num(read.rawPgEntriesPerSec, 0)} entries/s (service/raw ${(read.ratio * 100).toFixed(0)}%); server ${read.serverCpuUsPerEntry.toFixed(2)} µs CPU/entry = ${num(read.serverCapacityPerCore, 0)} entries/s per core`,
  `    CPU µs/entry by stage: service: PostgreSQL ${read.service.pgCpuUsPerEntry.toFixed(2)}, server ${read.serverCpuUsPerEntry.toFixed(2)}, Node client ${read.service.clientCpuUsPerEntry.toFixed(2)}; raw pg: PostgreSQL ${read.rawPg.pgCpuUsPerEntry.toFixed(2)}, Node client ${read.rawPg.clientCpuUsPerEntry.toFixed(2)}`,
  `  Tail (PostgreSQL): append -> follower receive p50 ${tail.p50Ms.toFixed(2)} ms, p99 ${tail.p99Ms.toFixed(2)} ms, max ${tail.maxMs.toFixed(2)} ms over ${tail.appends} appends; baseline append send -> ack p50 ${tail.ackP50Ms.toFixed(2)} ms, p99 ${tail.ackP99Ms.toFixed(2)} ms; follower receive - ack p50 ${tail.afterAckP50Ms.toFixed(2)} ms, p99 ${tail.afterAckP99Ms.toFixed(2)} ms`,
  '',
  '  goals (issue #18; ratios to the baselines measured in this run, PostgreSQL, 64 clients):',
  ratioLine('AppendBatch x100 entries/s, service vs naive multi-row INSERT', pgBatch64.entriesPerSec, appendFigures[key('pg', 'naive', 'AppendBatch', 64)]!.entriesPerSec, 'entries/s', { min: GOAL.batchVsNaive }),
  ratioLine('Read entries/s, service vs raw pg read of the same rows', read.serviceEntriesPerSec, read.rawPgEntriesPerSec, 'entries/s', { min: GOAL.readVsRawPg }),
  ratioLine('unary Append/s, service vs naive autocommit INSERT', pgUnary64.entriesPerSec, appendFigures[key('pg', 'naive', 'Append', 64)]!.entriesPerSec, 'appends/s', { min: GOAL.unaryVsNaive }),
  `  Tail p99 ${tail.p99Ms.toFixed(2)} ms vs the append's commit (send -> ack) p99 ${tail.ackP99Ms.toFixed(2)} ms: ${(tail.p99Ms - tail.ackP99Ms).toFixed(2)} ms more, goal <= ${GOAL.tailP99OverCommitP99Ms} ms (${tail.p99Ms - tail.ackP99Ms <= GOAL.tailP99OverCommitP99Ms ? 'goal met' : 'goal NOT met'})`,
  '',
  '  targets (PostgreSQL):',
  `    durable appends/s at 64 clients, unary Append (1 entry/call)  ${num(targets.unaryAppendsPg64.figure, 0)} >= ${num(TARGET.appendsPerSec, 0)}: ${verdict(targets.unaryAppendsPg64.met)}`,
  `    durable entries/s at 64 clients, AppendBatch x${batchSize}         ${num(targets.batchedEntriesPg64.figure, 0)} >= ${num(TARGET.appendsPerSec, 0)}: ${verdict(targets.batchedEntriesPg64.met)}`,
  `    Read entries/s                                              ${num(targets.readEntriesPerSec.figure, 0)} >= ${num(TARGET.readEntriesPerSec, 0)}: ${verdict(targets.readEntriesPerSec.met)}`,
  `    Tail p99                                                    ${tail.p99Ms.toFixed(2)} ms < ${TARGET.tailP99Ms} ms: ${verdict(targets.tailP99Ms.met)}`,
  ...(errorsTotal > 0 ? [`  WARNING: ${errorsTotal} calls failed; see ${out}`] : []),
  ...(quick ? ['  (--quick: short runs on a possibly busy machine; judge targets on a full run)'] : []),
  `  figures: ${out}`,
  ...profileReport([
    ['service, unary Append, 64 clients (PostgreSQL)', 'call', results.get(key('pg', 'stack', 'Append', 64))?.at(-1)?.profile],
    ['naive, unary Append, 64 clients', 'call', results.get(key('pg', 'naive', 'Append', 64))?.at(-1)?.profile],
    [`service, AppendBatch x${batchSize}, 64 clients (PostgreSQL)`, `call of ${batchSize} entries`, results.get(key('pg', 'stack', 'AppendBatch', 64))?.at(-1)?.profile],
    [`naive, AppendBatch x${batchSize}, 64 clients`, `call of ${batchSize} entries`, results.get(key('pg', 'naive', 'AppendBatch', 64))?.at(-1)?.profile],
    ['service, Read (PostgreSQL)', 'entry', readFigures?.raw.reads.at(-1)?.profile],
  ]),
  '',
);
process.stdout.write(lines.join('\n'));
