// `npm run bench -- kit`: unary calls/s and server CPU per call through the kit's stack (mTLS, JWT,
// admission, rate limit, tracing) against a bare grpc-js server with the same handler, in
// alternating rounds of one run, driven by ghz. The servers between the two show where the cost
// goes: bare grpc-js behind mTLS only; the whole stack with no collector configured (the default
// install: no span is recorded); with a collector recording 10% of new traces; recording every call.
//
// Two figures per server, because on a 2-core machine the load generator is a bottleneck too:
// - observed calls/s: what ghz got, on its own core;
// - server CPU per call (its inverse: calls/s one fully busy server core would answer): the
//   server's cost free of the load generator's limits.
// Goals (issue #18): the stack keeps >= 85% of the bare server's calls/s and >= 75% of its
// capacity per core; judged on the default install (no collector) and printed for every variant.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ratioLine } from './baseline.js';
import { profileReport } from './profile.js';
import { check, ghz, ghzPath, median, parseBenchArgs, pinning, progress, repoRoot, startChild, writeResult, type LoadResult } from './lib.js';

const args = parseBenchArgs(process.argv.slice(2));
const rounds = args.quick ? 1 : 3;
const callsPerRound = args.quick ? 4_000 : 40_000;
const concurrency = 32;
const proto = join(repoRoot, 'services/kit/test-support/echo.proto');
const serverScript = join(repoRoot, 'services/kit/bench/echo-server.ts');
const call = 'gantry.test.v1.EchoService/Echo';
// EchoRequest{message: "hello gantry"}, protobuf-encoded: field 1, length 12.
const binaryFile = join(tmpdir(), 'gantry-bench-echo.bin');
writeFileSync(binaryFile, Buffer.concat([Buffer.from([0x0a, 12]), Buffer.from('hello gantry')]));

const VARIANTS = ['bare', 'bareTls', 'stackUntraced', 'stackSampled', 'stack'] as const;
type Variant = (typeof VARIANTS)[number];
const label: Record<Variant, string> = {
  bare: 'bare grpc-js',
  bareTls: 'bare grpc-js + mTLS',
  stackUntraced: 'stack, no collector',
  stackSampled: 'stack, 10% traced',
  stack: 'stack, every call traced',
};
const mode: Record<Variant, string> = { bare: 'bare', bareTls: 'bare-tls', stackUntraced: 'stack-untraced', stackSampled: 'stack-sampled', stack: 'stack' };
const GOALS = { callsPerSec: 0.85, capacity: 0.75 };

const bin = await ghzPath();
progress(`ghz at ${bin}; ${rounds} round(s) of ${callsPerRound} calls per server, ${concurrency} concurrent on one connection${pinning ? '; servers pinned to CPU 0, ghz to CPU 1' : ''}`);
progress(`starting ${VARIANTS.length} servers: ${VARIANTS.map((v) => label[v]).join('; ')}`);
type Ready = { port: number; dataDir?: string; token?: string };
const servers = {} as Record<Variant, Awaited<ReturnType<typeof startChild<Ready>>>>;
for (const v of VARIANTS) servers[v] = await startChild<Ready>(serverScript, [mode[v]], { cpu: 0 });
const tlsArgs = (dataDir: string) => ['--cacert', join(dataDir, 'pki/ca.crt'), '--cert', join(dataDir, 'pki/client.crt'), '--key', join(dataDir, 'pki/client.key'), '--cname', 'localhost'];
const load = (v: Variant, total: number) => {
  const { ready } = servers[v];
  return ghz(bin, {
    address: `127.0.0.1:${ready.port}`,
    proto,
    call,
    binaryFile,
    concurrency,
    total,
    serverPid: servers[v].child.pid!,
    ...(ready.dataDir ? { tlsArgs: tlsArgs(ready.dataDir) } : {}),
    ...(ready.token ? { metadata: { authorization: `Bearer ${ready.token}` } } : {}),
  });
};

const results = Object.fromEntries(VARIANTS.map((v) => [v, [] as LoadResult[]])) as Record<Variant, LoadResult[]>;
try {
  progress('warming up (JIT, TLS sessions, token cache)');
  for (const v of VARIANTS) await load(v, args.quick ? 1500 : 3000);
  for (let round = 1; round <= rounds; round++) {
    for (const v of VARIANTS) {
      progress(`round ${round}/${rounds}: ${label[v]}`);
      results[v].push(await load(v, callsPerRound));
    }
  }
} finally {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
}

const summary = (rs: LoadResult[]) => ({
  callsPerSec: Math.round(median(rs.map((r) => r.callsPerSec))),
  p50Ms: median(rs.map((r) => r.p50Ms)),
  p99Ms: median(rs.map((r) => r.p99Ms)),
  serverCpuUsPerCall: Math.round(median(rs.map((r) => r.serverCpuUsPerCall))),
  serverCapacityPerCore: Math.round(median(rs.map((r) => r.serverCapacityPerCore))),
  calls: rs.reduce((n, r) => n + r.calls, 0),
  errors: rs.reduce((n, r) => n + r.errors, 0),
});
const s = Object.fromEntries(VARIANTS.map((v) => [v, summary(results[v])])) as Record<Variant, ReturnType<typeof summary>>;
const ratios = Object.fromEntries(
  VARIANTS.filter((v) => v !== 'bare').map((v) => [v, { callsPerSec: s[v].callsPerSec / s.bare.callsPerSec, capacity: s[v].serverCapacityPerCore / s.bare.serverCapacityPerCore }]),
) as Record<Exclude<Variant, 'bare'>, { callsPerSec: number; capacity: number }>;
const judged = ratios.stackUntraced;
const out = writeResult('kit', {
  benchmark: 'kit', quick: args.quick, concurrency, callsPerRound, rounds, pinning,
  ...s, ratios, goals: GOALS, meetsGoals: judged.callsPerSec >= GOALS.callsPerSec && judged.capacity >= GOALS.capacity, raw: results,
});

const row = (v: Variant) => {
  const r = s[v];
  return `  ${label[v].padEnd(26)} ${String(r.callsPerSec).padStart(6)} calls/s   p50 ${r.p50Ms.toFixed(2).padStart(5)} ms   p99 ${r.p99Ms.toFixed(2).padStart(6)} ms   server ${String(r.serverCpuUsPerCall).padStart(4)} µs CPU/call   errors ${r.errors}`;
};
process.stdout.write(
  [
    '',
    `kit benchmark: unary Echo, ${concurrency} concurrent, median of ${rounds} round(s) x ${callsPerRound} calls`,
    ...VARIANTS.map(row),
    'ratios to bare grpc-js in this run (goals judged on the default install, no collector):',
    ...VARIANTS.filter((v) => v !== 'bare').flatMap((v) => [
      ratioLine(`${label[v]}, calls/s`, s[v].callsPerSec, s.bare.callsPerSec, 'calls/s', v === 'stackUntraced' ? { min: GOALS.callsPerSec } : undefined),
      ratioLine(`${label[v]}, capacity per core`, s[v].serverCapacityPerCore, s.bare.serverCapacityPerCore, 'calls/s', v === 'stackUntraced' ? { min: GOALS.capacity } : undefined),
    ]),
    `  figures: ${out}`,
    ...profileReport(VARIANTS.map((v) => [label[v], 'call', results[v].at(-1)?.profile])),
    '',
  ].join('\n'),
);

// Correctness, never time: every call of every server was answered OK.
for (const v of VARIANTS) check(s[v].errors === 0 && s[v].calls === rounds * callsPerRound, `${label[v]}: ${s[v].calls} calls OK of ${rounds * callsPerRound}, ${s[v].errors} errors`);
