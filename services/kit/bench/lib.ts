// Shared pieces of `npm run bench -- <name>`: argument parsing, child server processes, the ghz
// load generator, and the result file. Figures are only ever compared within one run.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { benchBundle } from './bundle.js';
import { childrenCpuSeconds, cpuOf, cpuSeconds, pinning } from './proc.js';
import { enableProfiling, profileWindow, profilerNodeArgs, profiling, type ProfileSummary } from './profile.js';

const exec = promisify(execFile);
export { cpuOf, cpuSeconds, pinning, pinProcess } from './proc.js';

export const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));

export interface BenchArgs {
  /** A smoke run (well under a minute): checks correctness, publishes nothing. */
  quick: boolean;
  /** The cost-as-data-grows run (figures at 10^4 and 10^6 rows), where a benchmark has one. */
  growth: boolean;
  /** Profiles the servers per configuration and prints where each operation's CPU goes (profile.ts). */
  profile: boolean;
}

const OPTIONS = ['--quick', '--growth', '--profile'];

export function parseBenchArgs(argv: string[]): BenchArgs {
  const unknown = argv.filter((a) => !OPTIONS.includes(a));
  if (unknown.length > 0) throw new Error(`unknown benchmark option ${unknown[0]}; options: --quick (a smoke run), --growth (figures as the data grows), --profile (where each call's server CPU goes)`);
  const profile = argv.includes('--profile');
  if (profile) progress(`profiling the servers (profiles in ${enableProfiling()}); sampling costs CPU, so this run's figures go to bench-results/profile/`);
  return { quick: argv.includes('--quick'), growth: argv.includes('--growth'), profile };
}

/**
 * Fails the benchmark (exit 1) when a correctness check does not hold: every benchmark checks what
 * its load did (every delivery once, every draw booked) even in --quick runs, and never a time.
 */
export function check(condition: boolean, message: string): void {
  if (condition) return;
  process.stderr.write(`[bench] CHECK FAILED: ${message}\n`);
  process.exitCode = 1;
  throw new Error(`benchmark check failed: ${message}`);
}

export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/**
 * Starts a TypeScript script as a child process, bundled as the image bundles the program
 * (bundle.ts; GANTRY_BENCH_TSX=1 runs the sources with tsx instead), and resolves with the JSON
 * line it prints when ready.
 */
export async function startChild<T>(script: string, args: string[], opts: { cpu?: number } = {}): Promise<{ child: ChildProcess; ready: T; stop: () => Promise<void> }> {
  // The same Node flags as `gantry serve` (package.json scripts), so the figures are production's.
  // GANTRY_BENCH_NODE_ARGS adds Node flags to the servers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile one.
  const extra = process.env.GANTRY_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const program = process.env.GANTRY_BENCH_TSX === '1' ? ['--import', 'tsx', script] : [await benchBundle(repoRoot, script)];
  const nodeArgs = ['--experimental-async-context-frame', '--heap-growing-percent=100', ...profilerNodeArgs(), ...extra, ...program, ...args];
  const [cmd, cmdArgs] = opts.cpu !== undefined && pinning ? ['taskset', ['-c', String(opts.cpu), process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  const child = spawn(cmd, cmdArgs as string[], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within 60 s`)), 60_000);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line) as T);
    });
  });
  return {
    child,
    ready,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(killer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** The ghz binary, installing the Go tools if they are missing. */
export async function ghzPath(): Promise<string> {
  const { stdout } = await exec('bash', [join(repoRoot, 'scripts/test-env/go-tools.sh')], { maxBuffer: 1 << 20 });
  return join(stdout.trim(), 'ghz');
}


export interface LoadResult {
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Calls answered OK. */
  calls: number;
  /** Calls answered with any status other than OK. */
  errors: number;
  failures: Record<string, number>;
  /** Server CPU time (user + system) per call, in microseconds. */
  serverCpuUsPerCall: number;
  /** Calls per second one fully busy core of the server could answer at that cost. */
  serverCapacityPerCore: number;
  /** Where the server's CPU went per call, when the run is profiled (--profile). */
  profile?: ProfileSummary;
  /** ghz's own CPU per call (the load generator). */
  loadCpuUsPerCall: number;
  /** CPU per call of the PostgreSQL backends given as `pgPids` (NaN without them). */
  pgCpuUsPerCall: number;
}

export interface GhzOptions {
  address: string;
  /** A .proto file (imports resolved beside it); give this or `protoset`. */
  proto?: string;
  /** A compiled FileDescriptorSet with its imports (e.g. proto/src/gen/gantry.binpb), instead of `proto`. */
  protoset?: string;
  call: string;
  /** The request, already protobuf-encoded: ghz then spends no CPU on JSON-to-protobuf per call. */
  binaryFile: string;
  concurrency: number;
  /** Number of calls (count-based, so no call is cut off mid-flight at the end). */
  total: number;
  tlsArgs?: string[];
  metadata?: Record<string, string>;
  /** The server's pid: its CPU time over the run gives the CPU cost per call. */
  serverPid?: number;
  /** Processes kept off the server's core while it is profiled (its PostgreSQL backends; profile.ts). */
  offServerCore?: number[];
  /** The server's PostgreSQL backends: their CPU over the run, per call. */
  pgPids?: number[];
}

/** Runs ghz (a Go gRPC load generator no one here wrote) against one method. */
export async function ghz(bin: string, opts: GhzOptions): Promise<LoadResult> {
  if (!opts.proto === !opts.protoset) throw new Error('ghz: give exactly one of proto and protoset');
  const args = [
    ...(opts.proto ? ['--proto', opts.proto] : ['--protoset', opts.protoset!]),
    '--call', opts.call,
    '-B', opts.binaryFile,
    '-c', String(opts.concurrency),
    '-n', String(opts.total),
    '--connections', '1',
    '--format', 'json',
    ...(opts.tlsArgs ?? ['--insecure']),
    ...(opts.metadata ? ['-m', JSON.stringify(opts.metadata)] : []),
    opts.address,
  ];
  const [cmd, cmdArgs] = pinning ? ['taskset', ['-c', '1', bin, ...args]] : [bin, args];
  const window = opts.serverPid ? await profileWindow(opts.serverPid, opts.offServerCore) : undefined;
  const cpuBefore = opts.serverPid ? cpuSeconds(opts.serverPid) : 0;
  const pgBefore = opts.pgPids ? cpuOf(opts.pgPids) : 0;
  // ghz (and taskset, which execs it) is waited for by exec: its CPU lands in this process's children's times.
  const loadBefore = childrenCpuSeconds();
  const { stdout } = await exec(cmd, cmdArgs as string[], { maxBuffer: 64 << 20 });
  const cpuUsed = opts.serverPid ? cpuSeconds(opts.serverPid) - cpuBefore : NaN;
  const pgUsed = opts.pgPids ? cpuOf(opts.pgPids) - pgBefore : NaN;
  const loadUsed = childrenCpuSeconds() - loadBefore;
  const report = JSON.parse(stdout) as {
    count: number;
    rps: number;
    latencyDistribution: { percentage: number; latency: number }[] | null;
    statusCodeDistribution: Record<string, number>;
  };
  const pct = (p: number) => (report.latencyDistribution?.find((d) => d.percentage === p)?.latency ?? NaN) / 1e6;
  const { OK: ok = 0, ...failures } = report.statusCodeDistribution;
  const errors = Object.values(failures).reduce((n, c) => n + c, 0);
  const serverCpuUsPerCall = (cpuUsed * 1e6) / report.count;
  const profile = await window?.stop(report.count, serverCpuUsPerCall);
  const perCall = (seconds: number) => (seconds * 1e6) / report.count;
  return {
    callsPerSec: report.rps, p50Ms: pct(50), p99Ms: pct(99), calls: ok, errors, failures, serverCpuUsPerCall, serverCapacityPerCore: 1e6 / serverCpuUsPerCall,
    loadCpuUsPerCall: perCall(loadUsed), pgCpuUsPerCall: perCall(pgUsed),
    ...(profile ? { profile } : {}),
  };
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Where and when a run happened, recorded with its figures so a published table can be traced. */
export function runContext(): { date: string; commit: string; machine: { cpu: string; cores: number; memoryGiB: number; node: string } } {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout: the figures still stand, untraced
  }
  return {
    date: new Date().toISOString(),
    commit,
    // cpus(), not availableParallelism(): the load generator runs pinned to one CPU.
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  };
}

/**
 * Writes the figures as JSON beside the human summary. Full runs go to bench-results/<name>.json,
 * which is committed with the tables of docs/benchmarks.md that quote it; quick runs (smoke checks)
 * to bench-results/quick/ and profiled runs (whose sampling slows the servers) to bench-results/profile/,
 * which are not.
 */
export function writeResult(name: string, result: object, opts: { quick?: boolean } = {}): string {
  const quick = opts.quick ?? (result as { quick?: boolean }).quick ?? false;
  const dir = join(repoRoot, 'bench-results', ...(quick ? ['quick'] : profiling() ? ['profile'] : []));
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify({ ...runContext(), ...result }, null, 2) + '\n');
  return path;
}
