// Shared parts of the Node-driven benchmarks (settlement, approvals): a fresh PostgreSQL database
// per run, and a closed-loop load driver that measures latency and the CPU of the server, its
// PostgreSQL backends and the load generator per call.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { repoRoot, startChild } from './lib.js';
import { cpuOf, cpuSeconds, pinProcess, pinning } from './proc.js';
import { profileWindow, type ProfileSummary } from './profile.js';

/** The value at percentile `p` (0-100) of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface BenchDatabase {
  /** URL of the fresh database. */
  url: string;
  /** The PostgreSQL backends connected to it (the server's pool); only one service's with `applicationName` (e.g. gantry-log+webhooks). */
  backendPids(applicationName?: string): Promise<number[]>;
  /** One statement in the benchmark database (checks after the runs). */
  query(text: string): Promise<{ rows: Record<string, unknown>[] }>;
  drop(): Promise<void>;
}

/**
 * Starts scripts/test-env/postgres.sh's server (fsync and synchronous_commit on) and creates a
 * database for this run, named after `label`; `drop()` removes it.
 */
export async function benchDatabase(label: string): Promise<BenchDatabase> {
  const adminUrl = execFileSync('bash', [join(repoRoot, 'scripts/test-env/postgres.sh'), 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const name = `gantry_bench_${label}_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let own: pg.Client | undefined;
  return {
    url: url.toString(),
    async query(text) {
      if (!own) {
        own = new pg.Client({ connectionString: url.toString() });
        await own.connect();
      }
      return own.query(text);
    },
    async backendPids(applicationName?: string) {
      const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND ($2::text IS NULL OR application_name = $2)', [name, applicationName ?? null]);
      return rows.map((r) => r.pid);
    },
    async drop() {
      await own?.end().catch(() => {});
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end().catch(() => {});
    },
  };
}

export { cpuOf } from './proc.js';

export interface RunResult {
  calls: number;
  errors: number;
  failures: Record<string, number>;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Server process CPU (user + system) per call. */
  serverCpuUsPerCall: number;
  /** CPU of the PostgreSQL backends serving this run's database, per call. */
  pgCpuUsPerCall: number;
  /** This process's CPU (the load generator) per call. */
  loadCpuUsPerCall: number;
  /** Where the server's CPU went per call, when the run is profiled (--profile). */
  profile?: ProfileSummary;
}

/** Runs one worker per element of `perClient`, each sending its own requests one at a time; `db` (if any) adds its backends' CPU. */
export async function drive<Req>(perClient: Req[][], call: (req: Req) => Promise<unknown>, where: { serverPid: number; db?: BenchDatabase }): Promise<RunResult> {
  const total = perClient.reduce((n, reqs) => n + reqs.length, 0);
  const latencies = new Float64Array(total);
  const failures: Record<string, number> = {};
  let done = 0;
  let errors = 0;
  const pgPids = where.db ? await where.db.backendPids() : [];
  const window = await profileWindow(where.serverPid, pgPids);
  const pgCpu0 = cpuOf(pgPids);
  const load0 = process.cpuUsage();
  const cpu0 = cpuSeconds(where.serverPid);
  const t0 = performance.now();
  await Promise.all(
    perClient.map(async (reqs) => {
      for (const req of reqs) {
        const start = performance.now();
        try {
          await call(req);
        } catch (err) {
          errors++;
          const e = err as { code?: number; details?: string };
          const key = `${e.code ?? '?'} ${(e.details ?? String(err)).slice(0, 120)}`;
          failures[key] = (failures[key] ?? 0) + 1;
        }
        latencies[done++] = performance.now() - start;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpuUsed = cpuSeconds(where.serverPid) - cpu0;
  const load = process.cpuUsage(load0);
  const pgCpuUsed = cpuOf(pgPids) - pgCpu0;
  const profile = await window.stop(total - errors, (cpuUsed * 1e6) / total);
  latencies.sort();
  return {
    calls: total - errors,
    errors,
    failures,
    callsPerSec: total / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    serverCpuUsPerCall: (cpuUsed * 1e6) / total,
    pgCpuUsPerCall: (pgCpuUsed * 1e6) / total,
    loadCpuUsPerCall: (load.user + load.system) / total,
    ...(profile ? { profile } : {}),
  };
}

/** What services/gantry/bench/target-server.ts prints when it serves. */
export interface TargetReady {
  port: number;
  dataDir: string;
  /** A token with the scopes the benchmark asked for. */
  token: string;
  poolSize: number;
}

export interface BenchTarget {
  db: BenchDatabase;
  ready: TargetReady;
  serverPid: number;
  /** Stops the server and drops the database; safe to call twice (it also runs on Ctrl-C). */
  stop(): Promise<void>;
}

/**
 * A fresh PostgreSQL database and one `gantry` target serving on it (target-server.ts, full kit
 * stack, `config` merged into its settings), pinned to CPU 0 once ready and this process to CPU 1.
 */
export interface BenchServer {
  ready: TargetReady;
  pid: number;
  stop(): Promise<void>;
}

/**
 * One more `gantry` target on an existing benchmark database (target-server.ts; `target` may join
 * several with "+", e.g. "log+webhooks"), `config` merged into its settings; pinned to `cpu` if given
 * ("0,1" for both cores: a child would otherwise inherit this process's pinning to CPU 1).
 */
export async function startBenchServer(target: string, dbUrl: string, scopes: string[], opts: { config?: object; cpu?: number | string } = {}): Promise<BenchServer> {
  const previous = process.env.GANTRY_BENCH_CONFIG;
  process.env.GANTRY_BENCH_CONFIG = JSON.stringify(opts.config ?? {});
  try {
    const server = await startChild<TargetReady>(join(repoRoot, 'services/gantry/bench/target-server.ts'), [target, dbUrl, ...scopes]);
    if (opts.cpu !== undefined) pinProcess(server.child.pid!, opts.cpu);
    return { ready: server.ready, pid: server.child.pid!, stop: server.stop };
  } finally {
    if (previous === undefined) delete process.env.GANTRY_BENCH_CONFIG;
    else process.env.GANTRY_BENCH_CONFIG = previous;
  }
}

export async function startBenchTarget(target: string, scopes: string[], opts: { step: (message: string) => void; config?: object }): Promise<BenchTarget> {
  opts.step('starting PostgreSQL (scripts/test-env/postgres.sh start) and creating a database for this run');
  const db = await benchDatabase(target);
  let server: Awaited<ReturnType<typeof startChild<TargetReady>>> | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    opts.step('stopping the server, dropping the database');
    await server?.stop();
    await db.drop().catch((err: unknown) => opts.step(`could not drop the benchmark database: ${(err as Error).message}`));
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  try {
    opts.step(`starting the ${target} server on PostgreSQL${pinning ? '; once ready it is pinned to CPU 0, this process to CPU 1' : ''}`);
    if (opts.config) process.env.GANTRY_BENCH_CONFIG = JSON.stringify(opts.config);
    server = await startChild<TargetReady>(join(repoRoot, 'services/gantry/bench/target-server.ts'), [target, db.url, ...scopes]);
  } catch (err) {
    await stop();
    throw err;
  }
  const serverPid = server.child.pid!;
  pinProcess(serverPid, 0);
  pinProcess(process.pid, 1);
  return { db, ready: server.ready, serverPid, stop };
}
