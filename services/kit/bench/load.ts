// Shared parts of the Node-driven benchmarks (settlement, approvals): a fresh PostgreSQL database
// per run, and a closed-loop load driver that measures latency and the CPU of the server, its
// PostgreSQL backends and the load generator per call.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { cpuSeconds, repoRoot } from './lib.js';

/** The value at percentile `p` (0-100) of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface BenchDatabase {
  /** URL of the fresh database. */
  url: string;
  /** The PostgreSQL backends connected to it (the server's pool). */
  backendPids(): Promise<number[]>;
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
  return {
    url: url.toString(),
    async backendPids() {
      const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [name]);
      return rows.map((r) => r.pid);
    },
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end().catch(() => {});
    },
  };
}

/** CPU seconds of processes that may exit meanwhile (a backend the pool closed counts as 0). */
export const cpuOf = (pids: number[]) =>
  pids.reduce((sum, pid) => {
    try {
      return sum + cpuSeconds(pid);
    } catch {
      return sum;
    }
  }, 0);

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
}

/** Runs one worker per element of `perClient`, each sending its own requests one at a time. */
export async function drive<Req>(perClient: Req[][], call: (req: Req) => Promise<unknown>, where: { serverPid: number; db: BenchDatabase }): Promise<RunResult> {
  const total = perClient.reduce((n, reqs) => n + reqs.length, 0);
  const latencies = new Float64Array(total);
  const failures: Record<string, number> = {};
  let done = 0;
  let errors = 0;
  const pgPids = await where.db.backendPids();
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
  };
}
