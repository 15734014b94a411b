// Per-operation CPU profiles of a benchmark server (`npm run bench -- <name> --profile`): where each
// call's server CPU goes, by part of the stack (Node's HTTP/2 and TLS, grpc-js, the kit, the pg
// driver, OpenTelemetry, the service's own code, garbage collection...). A profile window covers one
// configuration's measured load (profiler-preload.mjs in the server); the sampled time of each part is
// divided by the operations the benchmark counted in that window.
//
// Sampling costs the server CPU, so a profiled run's figures are not published (writeResult sends
// them to bench-results/profile/); the breakdown is what such a run is for.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { pinProcess, threadCpu } from './proc.js';

const PRELOAD = fileURLToPath(new URL('./profiler-preload.mjs', import.meta.url));

/** Turns profiling on for this run's servers (the --profile option); call before starting them. */
export function enableProfiling(): string {
  const dir = process.env.GANTRY_BENCH_PROFILE_DIR ?? mkdtempSync(join(tmpdir(), 'gantry-bench-profile-'));
  process.env.GANTRY_BENCH_PROFILE_DIR = dir;
  return dir;
}

export const profiling = (): boolean => Boolean(process.env.GANTRY_BENCH_PROFILE_DIR);

/** The Node flags a benchmark server needs to be profiled (none when profiling is off). */
export const profilerNodeArgs = (): string[] => (profiling() ? ['--import', PRELOAD] : []);

export interface ProfilePart {
  part: string;
  usPerOp: number;
  share: number;
}

export interface ProfileSummary {
  ops: number;
  /** /proc's CPU per operation of the process's main thread and of its other threads (V8's GC and compiler helpers, libuv's pool, the profiler's sampler). */
  threads?: { mainUsPerOp: number; othersUsPerOp: number };
  /** The server's CPU per operation from /proc over the same window, when the benchmark measured it. */
  procCpuUsPerOp?: number;
  /** The main thread's sampled busy time per operation (the /proc figure adds libuv's and V8's helper threads). */
  busyUsPerOp: number;
  parts: ProfilePart[];
  /** The functions with the most self time, with the part each belongs to. */
  top: { fn: string; part: string; usPerOp: number }[];
  /** Bytes allocated per operation (sampled), and the functions that allocated most. */
  allocations?: { bytesPerOp: number; top: { fn: string; part: string; bytesPerOp: number }[] };
  file: string;
}

export interface ProfileWindow {
  /**
   * Ends the window; `ops` = the operations done in it, `procCpuUsPerOp` the server's CPU per
   * operation as the benchmark measured it (printed beside the sampled figure). Undefined when
   * profiling is off.
   */
  stop(ops: number, procCpuUsPerOp?: number): Promise<ProfileSummary | undefined>;
}

const written = new Map<number, number>();

const pinAll = (pids: readonly number[], cpus: string) => pids.forEach((pid) => pinProcess(pid, cpus));

/**
 * Opens a profile window on a server process (a no-op unless the run is profiled). V8 samples by
 * wall time: when another process takes the server's core, the wait is counted to whatever function
 * the server was in (a socket write that woke a PostgreSQL backend on the same core, most often). So
 * for the window the processes in `offServerCore` (its PostgreSQL backends) are kept off CPU 0, where
 * the benchmarks pin the server, and allowed on every CPU again after.
 */
export async function profileWindow(pid: number, offServerCore: number[] = []): Promise<ProfileWindow> {
  const dir = process.env.GANTRY_BENCH_PROFILE_DIR;
  if (!dir) return { stop: async () => undefined };
  const cores = cpus().length;
  if (cores > 1) pinAll(offServerCore, `1-${cores - 1}`);
  process.kill(pid, 'SIGUSR2');
  const threads0 = threadCpu(pid);
  // The profiler starts a few milliseconds after the signal; the load must not start before it.
  await sleep(50);
  return {
    async stop(ops, procCpuUsPerOp) {
      const threads1 = threadCpu(pid);
      const threads = { mainUsPerOp: ((threads1.main - threads0.main) * 1e6) / Math.max(ops, 1), othersUsPerOp: ((threads1.others - threads0.others) * 1e6) / Math.max(ops, 1) };
      process.kill(pid, 'SIGUSR2');
      if (cores > 1) pinAll(offServerCore, `0-${cores - 1}`);
      const n = (written.get(pid) ?? 0) + 1;
      written.set(pid, n);
      const file = join(dir, `${pid}-${n}.cpuprofile`);
      for (let waited = 0; !existsSync(file); waited += 50) {
        if (waited > 30_000) throw new Error(`the server (pid ${pid}) wrote no profile to ${file} within 30 s`);
        await sleep(50);
      }
      // The file may still be being written: retry until it parses.
      for (let attempt = 0; ; attempt++) {
        try {
          const heapFile = file.replace(/\.cpuprofile$/, '.heapprofile');
          const allocations = existsSync(heapFile) ? summarizeAllocations(JSON.parse(readFileSync(heapFile, 'utf8')) as HeapProfile, ops) : undefined;
          const summary = { ...summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, ops, file), threads, ...(allocations ? { allocations } : {}) };
          return procCpuUsPerOp === undefined ? summary : { ...summary, procCpuUsPerOp };
        } catch (err) {
          if (attempt > 100) throw err;
          await sleep(50);
        }
      }
    },
  };
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

const PACKAGES: [RegExp, string][] = [
  [/^@grpc\//, 'grpc-js'],
  [/^@opentelemetry\//, 'OpenTelemetry'],
  [/^(pg|pg-protocol|pg-pool|pg-types|pg-cursor|pgpass|postgres-.*)$/, 'pg driver'],
  [/^(protobufjs|@bufbuild\/protobuf|long)$/, 'protobuf'],
  [/^rate-limiter-flexible$/, 'rate limiter'],
  [/^(jsonwebtoken|jws|jwa)$/, 'JWT'],
  [/^@openfeature\//, 'OpenFeature'],
  [/^undici$/, 'undici (HTTP client)'],
  [/^@electric-sql\/pglite$/, 'PGlite'],
];

const NODE: [RegExp, string][] = [
  [/^node:(internal\/)?http2/, 'Node HTTP/2'],
  [/^node:(_tls|tls|internal\/tls)/, 'Node TLS'],
  [/^node:(net|stream|internal\/stream_base_commons|internal\/streams|internal\/net)/, 'Node sockets and streams'],
  [/^node:internal\/crypto/, 'Node crypto (hashes, signatures, ciphers)'],
  [/^node:(internal\/process\/task_queues|internal\/async_hooks|internal\/async_local_storage|timers|internal\/timers)/, 'Node event loop (promises, timers)'],
  [/^node:(buffer|internal\/buffer)/, 'Node buffers'],
  [/^node:(http|_http|internal\/http)/, 'Node HTTP/1'],
];

/** The workspace module each line of a bench bundle comes from (esbuild writes `// <path>` before each). */
const bundleMaps = new Map<string, { line: number; module: string }[]>();
function moduleAt(url: string, line: number): string | undefined {
  let map = bundleMaps.get(url);
  if (!map) {
    map = [];
    try {
      const lines = readFileSync(fileURLToPath(url), 'utf8').split('\n');
      lines.forEach((text, i) => {
        const m = /^\/\/ ((?:services|proto|operator)\/\S+\.ts)$/.exec(text);
        if (m) map!.push({ line: i, module: m[1]! });
      });
    } catch {
      // not a readable file: parts fall back to the URL
    }
    bundleMaps.set(url, map);
  }
  let found: string | undefined;
  for (const entry of map) {
    if (entry.line > line) break;
    found = entry.module;
  }
  return found;
}

function partOfPath(path: string): string {
  if (path.startsWith('proto/')) return 'protobuf';
  const m = /^services\/([^/]+)\/(src|bench|test-support)\//.exec(path);
  if (!m) return path.split('/').slice(0, 2).join('/');
  if (m[2] !== 'src') return 'benchmark harness';
  return m[1] === 'kit' ? 'kit' : `${m[1]} (the service's own code)`;
}

/** The part of the stack a frame with a URL belongs to; undefined for V8 and native frames. */
function partOf(frame: CallFrame): string | undefined {
  const { url, functionName } = frame;
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (!url) return undefined;
  if (url.startsWith('node:')) return NODE.find(([re]) => re.test(url))?.[1] ?? 'Node, other';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return PACKAGES.find(([re]) => re.test(pkg))?.[1] ?? `npm ${pkg}`;
  const path = url.startsWith('file:') ? fileURLToPath(url) : url;
  const rel = /\/((?:services|proto|operator)\/.*)$/.exec(path)?.[1];
  if (rel && !rel.startsWith('services/kit/bench/') && /\.ts$/.test(rel)) return partOfPath(rel);
  if (path.endsWith('.mjs') || path.endsWith('.js')) {
    const module = moduleAt(url, frame.lineNumber);
    if (module) return partOfPath(module);
  }
  return 'other';
}

interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children?: HeapNode[];
}
interface HeapProfile {
  head: HeapNode;
}

const frameName = (f: CallFrame) => `${f.functionName || '(anonymous)'}${f.url ? ` ${(f.url.split('/').pop() ?? '').replace(/\.(m?js|ts)$/, '')}:${f.lineNumber + 1}` : ''}`;

/** Sampled allocations (collected objects included) per operation, by allocating function. */
export function summarizeAllocations(profile: HeapProfile, ops: number): NonNullable<ProfileSummary['allocations']> {
  const byFn = new Map<string, { part: string; bytes: number }>();
  let total = 0;
  const walk = (node: HeapNode, callerPart: string) => {
    const part = partOf(node.callFrame) ?? callerPart;
    if (node.selfSize > 0) {
      const fn = frameName(node.callFrame);
      const entry = byFn.get(fn) ?? { part, bytes: 0 };
      entry.bytes += node.selfSize;
      byFn.set(fn, entry);
      total += node.selfSize;
    }
    for (const child of node.children ?? []) walk(child, part);
  };
  walk(profile.head, 'V8 and native, no JavaScript caller');
  const perOp = (bytes: number) => bytes / Math.max(ops, 1);
  return {
    bytesPerOp: perOp(total),
    top: [...byFn].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 10).map(([fn, { part, bytes }]) => ({ fn, part, bytesPerOp: perOp(bytes) })),
  };
}

/** Self time by part: a native or V8 frame (no URL) counts for the nearest caller that has one. */
export function summarize(profile: CpuProfile, ops: number, file = ''): ProfileSummary {
  const parent = new Map<number, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const partById = new Map<number, string>();
  const resolve = (id: number): string => {
    const known = partById.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    let part: string;
    // The profiler's own work (stopping it serialises the profile on the main thread) is not the server's.
    if (name === '(idle)' || node.callFrame.url === 'node:inspector') part = 'idle';
    else if (name === '(program)' || name === '(root)') part = 'V8 and native, no JavaScript caller';
    else part = partOf(node.callFrame) ?? (parent.has(id) && byId.get(parent.get(id)!)!.callFrame.functionName !== '(root)' ? resolve(parent.get(id)!) : 'V8 and native, no JavaScript caller');
    partById.set(id, part);
    return part;
  };
  const byPart = new Map<string, number>();
  const byFn = new Map<string, { part: string; us: number }>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const us = profile.timeDeltas[i] ?? 0;
    const part = resolve(id);
    if (part === 'idle') continue;
    byPart.set(part, (byPart.get(part) ?? 0) + us);
    const fn = frameName(byId.get(id)!.callFrame);
    const entry = byFn.get(fn) ?? { part, us: 0 };
    entry.us += us;
    byFn.set(fn, entry);
  }
  const busy = [...byPart.values()].reduce((a, b) => a + b, 0);
  const perOp = (us: number) => us / Math.max(ops, 1);
  return {
    ops,
    busyUsPerOp: perOp(busy),
    parts: [...byPart].sort((a, b) => b[1] - a[1]).map(([part, us]) => ({ part, usPerOp: perOp(us), share: us / Math.max(busy, 1) })),
    top: [...byFn].sort((a, b) => b[1].us - a[1].us).slice(0, 12).map(([fn, { part, us }]) => ({ fn, part, usPerOp: perOp(us) })),
    file,
  };
}

/** The breakdown as the benchmarks print it. */
export function formatProfile(label: string, unit: string, s: ProfileSummary): string {
  const rows = s.parts.filter((p) => p.usPerOp >= 0.05 || p.share >= 0.005);
  const us = (x: number) => `${x.toFixed(1)} µs`;
  const lines = [
    `  profile: ${label}: ${s.ops.toLocaleString('en-US')} ${unit}s (${s.file})`,
    ...(s.threads
      ? [
          `    CPU per ${unit} from /proc: ${s.procCpuUsPerOp === undefined ? '' : `process ${us(s.procCpuUsPerOp)} = `}main thread ${us(s.threads.mainUsPerOp)} + other threads ${us(s.threads.othersUsPerOp)} (V8's GC and compiler helpers, libuv's pool, the sampler)`,
          `    main thread: ${us(s.busyUsPerOp)} sampled (JavaScript and what it calls, below); ${us(Math.max(0, s.threads.mainUsPerOp - s.busyUsPerOp))} not sampled: work between JavaScript callbacks, which V8 counts as idle (the event loop's native I/O: socket reads, TLS, HTTP/2 framing; V8's own tasks run from the loop: GC steps)`,
        ]
      : [`    ${us(s.busyUsPerOp)} sampled on the main thread per ${unit}${s.procCpuUsPerOp === undefined ? '' : ` (the process's CPU from /proc: ${us(s.procCpuUsPerOp)})`}`]),
    ...rows.map((p) => `    ${p.usPerOp.toFixed(p.usPerOp < 10 ? 2 : 1).padStart(8)} µs  ${(100 * p.share).toFixed(1).padStart(5)}%  ${p.part}`),
    `    top functions (self time per ${unit}):`,
    ...s.top.map((t) => `    ${t.usPerOp.toFixed(t.usPerOp < 10 ? 2 : 1).padStart(8)} µs  ${t.fn}  [${t.part}]`),
    ...(s.allocations
      ? [
          `    allocated (sampled, collected objects included): ${Math.round(s.allocations.bytesPerOp).toLocaleString('en-US')} bytes per ${unit}; most by:`,
          ...s.allocations.top.map((t) => `    ${Math.round(t.bytesPerOp).toLocaleString('en-US').padStart(8)} B   ${t.fn}  [${t.part}]`),
        ]
      : []),
  ];
  return lines.join('\n');
}

/** The profiles of a run's configurations (the last round of each), or nothing when not profiled. */
export function profileReport(entries: [label: string, unit: string, summary: ProfileSummary | undefined][]): string[] {
  const shown = entries.filter((e): e is [string, string, ProfileSummary] => e[2] !== undefined);
  if (shown.length === 0) return [];
  return [
    '',
    'where the server CPU goes (--profile; the last round of each configuration; sampling every 100 µs slows the server, so these',
    'runs\' figures are not published; a native or V8 frame counts for its nearest JavaScript caller):',
    ...shown.map(([label, unit, s]) => formatProfile(label, unit, s)),
  ];
}
