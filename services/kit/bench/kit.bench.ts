// `npm run bench -- kit`: unary calls/s and p50/p99 through the full interceptor stack (mTLS, JWT,
// rate limit, tracing) against a bare grpc-js server with the same handler, in alternating rounds
// of one run, driven by ghz. A third server, bare grpc-js behind mTLS only, shows what TLS alone
// costs. Target: the stack keeps at least 80% of the bare server's throughput.
//
// Two throughput figures, because on a 2-core machine the load generator is a bottleneck too:
// - observed calls/s: what ghz got, on its own core; the target (>= 80% of bare) is
//   judged on this, side by side in one run.
// - server capacity: 1 / (server CPU seconds per call), i.e. calls/s a fully busy server core
//   would answer: the server's cost free of the load generator's limits. Reported beside it,
//   with the share mTLS alone takes, so nobody mistakes one for the other.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ghz, ghzPath, median, parseBenchArgs, pinning, progress, repoRoot, startChild, writeResult, type LoadResult } from './lib.js';

const args = parseBenchArgs(process.argv.slice(2));
const rounds = args.quick ? 1 : 3;
const callsPerRound = args.quick ? 5_000 : 40_000;
const concurrency = 32;
const proto = join(repoRoot, 'services/kit/test-support/echo.proto');
const serverScript = join(repoRoot, 'services/kit/bench/echo-server.ts');
const call = 'gantry.test.v1.EchoService/Echo';
// EchoRequest{message: "hello gantry"}, protobuf-encoded: field 1, length 12.
const binaryFile = join(tmpdir(), 'gantry-bench-echo.bin');
writeFileSync(binaryFile, Buffer.concat([Buffer.from([0x0a, 12]), Buffer.from('hello gantry')]));

type Variant = 'bare' | 'bareTls' | 'stack';
const label: Record<Variant, string> = { bare: 'bare grpc-js', bareTls: 'bare grpc-js + mTLS', stack: 'full stack' };

const bin = await ghzPath();
progress(`ghz at ${bin}; ${rounds} round(s) of ${callsPerRound} calls per server, ${concurrency} concurrent on one connection${pinning ? '; server pinned to CPU 0, ghz to CPU 1' : ''}`);
progress('starting three servers: bare, bare + mTLS, full stack (mTLS + JWT + rate limit + tracing)');
const servers = {
  bare: await startChild<{ port: number }>(serverScript, ['bare'], { cpu: 0 }),
  bareTls: await startChild<{ port: number; dataDir: string }>(serverScript, ['bare-tls'], { cpu: 0 }),
  stack: await startChild<{ port: number; dataDir: string; token: string }>(serverScript, ['stack'], { cpu: 0 }),
};
const tlsArgs = (dataDir: string) => ['--cacert', join(dataDir, 'pki/ca.crt'), '--cert', join(dataDir, 'pki/client.crt'), '--key', join(dataDir, 'pki/client.key'), '--cname', 'localhost'];
const load = (v: Variant, total: number) =>
  ghz(bin, {
    address: `127.0.0.1:${servers[v].ready.port}`,
    proto,
    call,
    binaryFile,
    concurrency,
    total,
    serverPid: servers[v].child.pid!,
    ...(v === 'bare' ? {} : { tlsArgs: tlsArgs(servers[v].ready.dataDir) }),
    ...(v === 'stack' ? { metadata: { authorization: `Bearer ${servers.stack.ready.token}` } } : {}),
  });

const results: Record<Variant, LoadResult[]> = { bare: [], bareTls: [], stack: [] };
try {
  progress('warming up (JIT, TLS sessions, token cache)');
  for (const v of ['bare', 'bareTls', 'stack'] as const) await load(v, args.quick ? 1500 : 3000);
  for (let round = 1; round <= rounds; round++) {
    for (const v of ['bare', 'bareTls', 'stack'] as const) {
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
  errors: rs.reduce((n, r) => n + r.errors, 0),
});
const s = { bare: summary(results.bare), bareTls: summary(results.bareTls), stack: summary(results.stack) };
const target = 0.8;
const capacityRatio = s.stack.serverCapacityPerCore / s.bare.serverCapacityPerCore;
const observedRatio = s.stack.callsPerSec / s.bare.callsPerSec;
const out = writeResult('kit', {
  benchmark: 'kit', quick: args.quick, concurrency, callsPerRound, rounds, pinning,
  ...s, observedRatio, capacityRatio, target, meetsTarget: observedRatio >= target, raw: results,
});

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const row = (v: Variant) => {
  const r = s[v];
  return `  ${label[v].padEnd(22)} ${String(r.callsPerSec).padStart(6)} calls/s   p50 ${r.p50Ms.toFixed(2).padStart(5)} ms   p99 ${r.p99Ms.toFixed(2).padStart(6)} ms   server ${String(r.serverCpuUsPerCall).padStart(4)} µs CPU/call = ${String(r.serverCapacityPerCore).padStart(6)} calls/s per core   errors ${r.errors}`;
};
process.stdout.write(
  [
    '',
    `kit benchmark: unary Echo, ${concurrency} concurrent, median of ${rounds} round(s) x ${callsPerRound} calls`,
    row('bare'),
    row('bareTls'),
    row('stack'),
    `  stack/bare calls/s          ${pct(observedRatio)} (target >= ${pct(target)}: ${observedRatio >= target ? 'met' : 'NOT met'})`,
    `  stack/bare server capacity  ${pct(capacityRatio)} (server CPU per call; mTLS alone keeps ${pct(s.bareTls.serverCapacityPerCore / s.bare.serverCapacityPerCore)})`,
    `  figures: ${out}`,
    '',
  ].join('\n'),
);
