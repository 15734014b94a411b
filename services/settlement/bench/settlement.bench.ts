// `npm run bench -- settlement [--quick|--growth]`: signed CreditDraw throughput and latency at 32
// concurrent clients, beside a baseline measured in the same run on the same server, how much of a
// draw's server CPU is Ed25519 signature verification, and a draw's server and PostgreSQL CPU against
// a bare grpc-js Echo call's server CPU measured in the same run (bareEchoBaseline). --growth: the
// same draws with 10^4 and 10^5 wallets (10^5 and 10^6 transfers) already booked (./growth.ts).
//
// Server: services/gantry/bench/target-server.ts, its own process, the settlement service through the full kit stack
// (mTLS, JWT, rate limit far above the load, tracing into a counting exporter) on PostgreSQL
// (scripts/test-env/postgres.sh's server, fsync and synchronous_commit on; a fresh database created
// for this run and dropped at the end); started on both cores, pinned to CPU 0 once ready.
// Load generator: this process, pinned to CPU 1 once the server is up: 32 workers on one HTTP/2
// connection, each sending its pre-signed requests one at a time. PostgreSQL floats over both cores.
//
// Figures (each configuration: 32 clients, count-based runs sized to ~runSeconds):
//   status     baseline: GetCreditStatus (unsigned, read-only; the wallet's line, balances and
//              totals, three SELECTs), each client asking about its own wallet.
//   spread     CreditDraw of 1 minor unit, each client drawing on its own wallet's credit line
//              (32 wallets, 32 lines: no two draws wait for the same line lock).
//   contended  CreditDraw of 1 minor unit, all 32 clients drawing on ONE wallet's line (every draw
//              queues for the same row lock).
//   no-relay   `spread` again on a second settlement server started like the next one (same
//              database and lines, its own process pinned to CPU 0, peers configured) but with
//              events off: the baseline of the relay figure, measured in the same conditions.
//   relay      `spread` on a third settlement server, the same but with events on: each draw's
//              domain event goes to its outbox and is relayed to a log+webhooks server (a fourth
//              process, not pinned: it competes for both cores like PostgreSQL), by AppendBatch to
//              audit.settlement and PublishEvents. relay / no-relay is what the events cost.
//              After the runs the outbox must drain and the audit partition hold every relayed draw.
//   Every draw request is signed before the run (fresh timestamp, unique random nonce), so the
//   load generator spends no CPU on signing while measuring; each wallet was funded (Deposit) and
//   approved (ApproveCreditLine) in setup with a limit far above its draws.
//   verify     in this process: verifySignature over a CreditDraw canonical message, key cache warm,
//              and the server's whole signature check (checkSignature: address derivation,
//              canonical message, verify), µs per call; compared with the server's CPU µs per draw.
// CPU per call, from /proc/<pid>/stat: the server process, the PostgreSQL backends of its pool (found
// in pg_stat_activity by database), and this process; their sum against the two cores says whether
// the machine, rather than a lock or the pool, is the limit.
// After the runs, the booked draw counts of all lines must equal the draws acknowledged, and the
// relay's audit entries and events the draws it relayed (check(): a failed check fails the run, --quick too).
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { bearerMetadata, clientCredentials, clientOptions, one, unary } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { SettlementWallet, canonicalMessage, type SignedFields } from '../src/client/index.js';
import { verifySignature } from '../src/domain/verify.js';
import { checkSignature } from '../src/api/validation.js';
import { bareEchoBaseline, ratioLine } from '../../kit/bench/baseline.js';
import { check, median, parseBenchArgs, pinning, progress, writeResult } from '../../kit/bench/lib.js';
import { cpuOf, startBenchServer, startBenchTarget, drive, type BenchServer, type RunResult } from '../../kit/bench/load.js';
import { profileReport } from '../../kit/bench/profile.js';

const args = parseBenchArgs(process.argv.slice(2));
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
if (args.growth) {
  const { growthBench } = await import('./growth.js');
  await growthBench(step);
  process.exit();
}
const quick = args.quick;
const rounds = quick ? 1 : 3;
/** Target length of one measured run; the call count is calibrated from a warm-up run. */
const runSeconds = quick ? 2 : 6;
const CLIENTS = 32;
/** Warm-up calls per client before each configuration's calibration. */
const warmupPerClient = quick ? 10 : 25;
const verifyIterations = quick ? 3_000 : 20_000;
/** Calls per client of each bare Echo baseline run (a few seconds at ~4,000 calls/s). */
const echoPerClient = quick ? 200 : 600;
/** A draw's CPU against a bare grpc-js call's server CPU (issue #18): server at most 6x, PostgreSQL at most 4x. */
const GOAL = { serverVsEcho: 6, pgVsEcho: 4 };
const DRAW_MINOR = 1n;
/** Funds and credit limit of every wallet: far above the draws of any run (10^12 minor units). */
const LINE_MINOR = 1_000_000_000_000n;
const TARGET = { drawsPerSec: 3_000, p99Ms: 20 };

type Config = 'status' | 'spread' | 'norelay' | 'relay' | 'contended';
const CONFIGS: readonly Config[] = ['status', 'spread', 'norelay', 'relay', 'contended'];
const TARGET_RELAY_RATIO = 0.9;
/** The sinks' PostgreSQL connections: the kit names a process's connections after the modules it serves. */
const PEERS_APP_NAME = 'gantry-log+webhooks';
const SCOPES = ['settlement.admin', 'settlement.credit', 'settlement.read'];

const bench = await startBenchTarget('settlement', SCOPES, { step, config: { events: { enabled: false } } });
const { db } = bench;
let peers: BenchServer | undefined;
let relaying: BenchServer | undefined;
let notRelaying: BenchServer | undefined;

/** µs per call of `fn`: the median of 5 batches after a warm-up batch (JIT, key cache). */
function microbench(fn: () => unknown, iterations: number): number {
  const batch = Math.ceil(iterations / 5);
  for (let i = 0; i < Math.min(batch, 500); i++) fn();
  const perCall: number[] = [];
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) fn();
    perCall.push(((performance.now() - t0) * 1000) / batch);
  }
  return median(perCall);
}

const results = new Map<Config, RunResult[]>();
const echoRuns: RunResult[] = [];
let verifyFigures: { verifyUs: number; checkSignatureUs: number; signUs: number } | undefined;
let ledgerCheck: { acknowledgedDraws: number; bookedDraws: number } | undefined;
let relayCheck: { relayedDraws: number; auditEntries: number; publishedEvents: number; outboxLeft: number; drainMs: number; peerCpuUsPerDraw: number; peerPgCpuUsPerDraw: number } | undefined;
let poolSize = 0;

try {
  const { serverPid } = bench;
  const { dataDir, token, port } = bench.ready;
  poolSize = bench.ready.poolSize;
  const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
  const client = new settlementv1.SettlementServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
  const md = bearerMetadata(token);

  // The relay's peers, then a settlement server with events on that relays to them. It shares the
  // peers' data dir: the same dev CA (mTLS between them) and JWT key (its service token).
  step('starting a log+webhooks server (not pinned), and two more settlement servers relaying to it (CPU 0): one with events off, one with events on');
  peers = await startBenchServer('log+webhooks', db.url, ['log.read'], { cpu: '0,1' });
  const peerConfig = { dataDir: peers.ready.dataDir, peers: { log: { address: `127.0.0.1:${peers.ready.port}` }, webhooks: { address: `127.0.0.1:${peers.ready.port}` } } };
  notRelaying = await startBenchServer('settlement', db.url, SCOPES, { cpu: 0, config: { ...peerConfig, events: { enabled: false } } });
  relaying = await startBenchServer('settlement', db.url, SCOPES, { cpu: 0, config: peerConfig });
  const peerDir = peers.ready.dataDir;
  const peerTls = { caFile: join(peerDir, 'pki/ca.crt'), certFile: join(peerDir, 'pki/client.crt'), keyFile: join(peerDir, 'pki/client.key'), serverName: 'localhost' };
  const relayClient = new settlementv1.SettlementServiceClient(`127.0.0.1:${relaying.ready.port}`, clientCredentials(peerTls), clientOptions(peerTls));
  const relayMd = bearerMetadata(relaying.ready.token);
  const plainClient = new settlementv1.SettlementServiceClient(`127.0.0.1:${notRelaying.ready.port}`, clientCredentials(peerTls), clientOptions(peerTls));
  const plainMd = bearerMetadata(notRelaying.ready.token);
  const peerCpu = new Map<string, number[]>();
  const peerPgCpu = new Map<string, number[]>();

  // --- Setup: 32 spread wallets and 1 contended wallet, each funded with an approved line --------
  const wallets = Array.from({ length: CLIENTS + 1 }, () => SettlementWallet.generate());
  const contendedWallet = wallets[CLIENTS]!;
  const sessions = new Map<SettlementWallet, string>();
  step(`setup: ${wallets.length} wallets, each a Deposit and an ApproveCreditLine of ${LINE_MINOR}`);
  await Promise.all(
    wallets.map(async (w, i) => {
      await unary(client.deposit, client, { walletAddress: w.address, amountMinor: LINE_MINOR, transferId: `bench-funding-${i}`, memo: 'settlement bench' }, md);
      const r = await unary(client.approveCreditLine, client, w.approve(LINE_MINOR, 3_600_000n), md);
      sessions.set(w, r.sessionId);
    }),
  );

  // --- Signature cost, in this process -------------------------------------------------------------
  step(`Ed25519: ${verifyIterations} verifications of a CreditDraw message (key cache warm), the server's whole signature check, and signing`);
  {
    const w = wallets[0]!;
    const sessionId = sessions.get(w)!;
    const req = w.draw(sessionId, DRAW_MINOR, 'bench');
    const sig = req.signature!;
    const fields: SignedFields = { operation: 'CreditDraw', walletAddress: w.address, sessionId, amountMinor: DRAW_MINOR, reason: 'bench' };
    const message = canonicalMessage(fields, sig.timestampMs, sig.nonce);
    if (!verifySignature(sig.publicKey, message, sig.signature)) throw new Error('a freshly signed draw does not verify');
    const verifyUs = microbench(() => verifySignature(sig.publicKey, message, sig.signature), verifyIterations);
    const nowMs = Number(sig.timestampMs);
    const checkSignatureUs = microbench(() => checkSignature(sig, fields, nowMs), verifyIterations);
    const signUs = microbench(() => w.draw(sessionId, DRAW_MINOR, 'bench'), Math.ceil(verifyIterations / 4));
    verifyFigures = { verifyUs, checkSignatureUs, signUs };
  }

  /** Pre-signed (draws) or plain (status) requests for one run of `perClient` calls per client. */
  const requestsFor = (config: Config, perClient: number) => {
    if (config === 'status') return wallets.slice(0, CLIENTS).map((w) => Array.from({ length: perClient }, () => ({ walletAddress: w.address })));
    return Array.from({ length: CLIENTS }, (_, i) => {
      const w = config === 'spread' ? wallets[i]! : contendedWallet;
      const sessionId = sessions.get(w)!;
      return Array.from({ length: perClient }, () => w.draw(sessionId, DRAW_MINOR, 'bench'));
    });
  };
  let acknowledgedDraws = 0;
  let relayedDraws = 0;
  const run = async (config: Config, perClient: number) => {
    const reqs = requestsFor(config, perClient);
    const peerCpuBefore = cpuOf([peers!.pid]);
    // The sinks' own PostgreSQL work (their connections carry their service's name), apart from settlement's.
    const peerPg = await db.backendPids(PEERS_APP_NAME);
    const peerPgBefore = cpuOf(peerPg);
    const r =
      config === 'status'
        ? await drive(reqs as settlementv1.GetCreditStatusRequest[][], (req) => unary(client.getCreditStatus, client, req, md), { serverPid, db })
        : config === 'relay'
          ? await drive(reqs as settlementv1.CreditDrawRequest[][], (req) => unary(relayClient.creditDraw, relayClient, req, relayMd), { serverPid: relaying!.pid, db })
          : config === 'norelay'
            ? await drive(reqs as settlementv1.CreditDrawRequest[][], (req) => unary(plainClient.creditDraw, plainClient, req, plainMd), { serverPid: notRelaying!.pid, db })
            : await drive(reqs as settlementv1.CreditDrawRequest[][], (req) => unary(client.creditDraw, client, req, md), { serverPid, db });
    if (config !== 'status') acknowledgedDraws += r.calls;
    if (config === 'relay') relayedDraws += r.calls;
    peerCpu.set(config, [...(peerCpu.get(config) ?? []), ((cpuOf([peers!.pid]) - peerCpuBefore) * 1e6) / Math.max(1, r.calls)]);
    peerPgCpu.set(config, [...(peerPgCpu.get(config) ?? []), ((cpuOf(peerPg) - peerPgBefore) * 1e6) / Math.max(1, r.calls)]);
    return r;
  };

  // --- Calibration, then measured rounds, configurations back to back -----------------------------
  const perClientOf = new Map<Config, number>();
  for (const config of CONFIGS) {
    step(`warm-up and calibration: ${config}, ${warmupPerClient} calls per client`);
    const r = await run(config, warmupPerClient);
    if (r.errors > 0) throw new Error(`${config}: ${r.errors} failed calls in warm-up: ${JSON.stringify(r.failures)}`);
    perClientOf.set(config, Math.max(warmupPerClient, Math.round((r.callsPerSec * runSeconds) / CLIENTS)));
  }
  for (let round = 1; round <= rounds; round++) {
    for (const config of CONFIGS) {
      const perClient = perClientOf.get(config)!;
      step(`round ${round}/${rounds}: ${config} (${CLIENTS} clients x ${perClient} calls)`);
      const r = await run(config, perClient);
      results.set(config, [...(results.get(config) ?? []), r]);
    }
    step(`round ${round}/${rounds}: bare grpc-js Echo baseline (${CLIENTS} clients x ${echoPerClient} calls, its own server on CPU 0)`);
    echoRuns.push(await bareEchoBaseline({ clients: CLIENTS, callsPerClient: echoPerClient }));
  }

  // --- The ledger booked exactly the draws it acknowledged ----------------------------------------
  step('checking the booked draw counts of every line against the acknowledged draws');
  let bookedDraws = 0;
  for (const w of wallets) {
    const s = await unary(client.getCreditStatus, client, { walletAddress: w.address }, md);
    bookedDraws += s.creditLine!.drawCount;
  }
  ledgerCheck = { acknowledgedDraws, bookedDraws };
  check(bookedDraws === acknowledgedDraws, `the lines record ${bookedDraws} draws but ${acknowledgedDraws} were acknowledged`);

  // --- The relay kept up: its outbox drains, the audit trail holds every relayed draw --------------
  step('waiting for the outbox to drain; counting audit entries');
  const drainStart = performance.now();
  const count = async (sql: string, what: string) => Number(one((await db.query(sql)).rows, what).n);
  const backlog = () => count(`SELECT count(*)::int AS n FROM settlement.outbox`, 'outbox backlog');
  while ((await backlog()) > 0 && performance.now() - drainStart < 120_000) await new Promise((r) => setTimeout(r, 100));
  const left = await backlog();
  const audited = await count(`SELECT coalesce((SELECT size FROM log.partitions WHERE name = 'audit.settlement'), 0)::bigint AS n`, 'audit entries');
  const published = await count(`SELECT count(*)::int AS n FROM webhooks.events WHERE event_type = 'settlement.credit.drawn'`, 'published events');
  relayCheck = { relayedDraws, auditEntries: audited, publishedEvents: published, outboxLeft: left, drainMs: Math.round(performance.now() - drainStart), peerCpuUsPerDraw: Math.round(median(peerCpu.get('relay') ?? [0])), peerPgCpuUsPerDraw: Math.round(median(peerPgCpu.get('relay') ?? [0])) };
  check(left === 0 && audited === relayedDraws && published === relayedDraws, `the relay lost events: ${JSON.stringify(relayCheck)}`);
  client.close();
  relayClient.close();
  plainClient.close();
} finally {
  await relaying?.stop();
  await notRelaying?.stop();
  await peers?.stop();
  await bench.stop();
}

// --- Summary ------------------------------------------------------------------------------------
const summary = (config: Config) => {
  const rs = results.get(config)!;
  return {
    callsPerSec: Math.round(median(rs.map((r) => r.callsPerSec))),
    p50Ms: median(rs.map((r) => r.p50Ms)),
    p99Ms: median(rs.map((r) => r.p99Ms)),
    serverCpuUsPerCall: Math.round(median(rs.map((r) => r.serverCpuUsPerCall))),
    pgCpuUsPerCall: Math.round(median(rs.map((r) => r.pgCpuUsPerCall))),
    loadCpuUsPerCall: Math.round(median(rs.map((r) => r.loadCpuUsPerCall))),
    errors: rs.reduce((n, r) => n + r.errors, 0),
  };
};
const status = summary('status');
const spread = { ...summary('spread'), vsStatus: summary('spread').callsPerSec / status.callsPerSec };
const contended = { ...summary('contended'), vsStatus: summary('contended').callsPerSec / status.callsPerSec };
const noRelay = { ...summary('norelay'), vsStatus: summary('norelay').callsPerSec / status.callsPerSec };
const relay = { ...summary('relay'), vsStatus: summary('relay').callsPerSec / status.callsPerSec, vsNoRelay: summary('relay').callsPerSec / noRelay.callsPerSec };
const echo = {
  callsPerSec: Math.round(median(echoRuns.map((r) => r.callsPerSec))),
  serverCpuUsPerCall: median(echoRuns.map((r) => r.serverCpuUsPerCall)),
  errors: echoRuns.reduce((n, r) => n + r.errors, 0),
};
const vsEcho = (s: { serverCpuUsPerCall: number; pgCpuUsPerCall: number }) => ({
  server: { ratio: s.serverCpuUsPerCall / echo.serverCpuUsPerCall, goal: GOAL.serverVsEcho, met: s.serverCpuUsPerCall / echo.serverCpuUsPerCall <= GOAL.serverVsEcho },
  pg: { ratio: s.pgCpuUsPerCall / echo.serverCpuUsPerCall, goal: GOAL.pgVsEcho, met: s.pgCpuUsPerCall / echo.serverCpuUsPerCall <= GOAL.pgVsEcho },
});
const sig = verifyFigures!;
const signature = {
  ...sig,
  verifyShareOfServerCpu: { spread: sig.verifyUs / spread.serverCpuUsPerCall, contended: sig.verifyUs / contended.serverCpuUsPerCall },
  checkShareOfServerCpu: { spread: sig.checkSignatureUs / spread.serverCpuUsPerCall, contended: sig.checkSignatureUs / contended.serverCpuUsPerCall },
};
const targets = {
  drawsPerSec32: { figure: spread.callsPerSec, target: TARGET.drawsPerSec, met: spread.callsPerSec >= TARGET.drawsPerSec },
  drawP99Ms32: { figure: spread.p99Ms, target: TARGET.p99Ms, met: spread.p99Ms < TARGET.p99Ms },
  relayKeeps: { figure: relay.vsNoRelay, target: TARGET_RELAY_RATIO, met: relay.vsNoRelay >= TARGET_RELAY_RATIO },
};
/** Cores kept busy by the three processes measured, from their CPU per call and the call rate (cpus(): this process's own affinity is one core). */
const busy = (s: typeof status) => ((s.serverCpuUsPerCall + s.pgCpuUsPerCall + s.loadCpuUsPerCall) * s.callsPerSec) / 1e6;
const errorsTotal = status.errors + spread.errors + noRelay.errors + relay.errors + contended.errors;
const out = writeResult('settlement', {
  benchmark: 'settlement', quick, rounds, runSeconds, pinning, clients: CLIENTS, connections: 1, poolSize, drawAmountMinor: Number(DRAW_MINOR),
  status, drawsSpread: spread, drawsNoRelay: noRelay, drawsRelay: relay, drawsContended: contended, signature, targets, ledgerCheck, relayCheck, errors: errorsTotal,
  bareEcho: echo, vsBareEcho: { spread: vsEcho(spread), contended: vsEcho(contended) },
  coresBusy: { status: busy(status), spread: busy(spread), contended: busy(contended), cores: cpus().length },
  raw: Object.fromEntries(results),
});

const num = (x: number, w = 8) => Math.round(x).toLocaleString('en-US').padStart(w);
const ms = (x: number) => x.toFixed(2).padStart(7);
const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
const row = (label: string, s: typeof status, ratio?: number) =>
  `  ${label.padEnd(50)} ${num(s.callsPerSec, 8)}  ${ms(s.p50Ms)}  ${ms(s.p99Ms)}  ${num(s.serverCpuUsPerCall, 10)}  ${num(s.pgCpuUsPerCall, 6)}  ${num(s.loadCpuUsPerCall, 8)}  ${(ratio === undefined ? '-' : pct(ratio)).padStart(9)}  ${String(s.errors).padStart(6)}`;
const lines = [
  '',
  `settlement benchmark${quick ? ' (--quick)' : ''}: median of ${rounds} round(s) of ~${runSeconds} s per configuration; ${CLIENTS} concurrent clients on one HTTP/2 connection;`,
  `the settlement service, full stack (mTLS + JWT + rate limit + tracing) on PostgreSQL (fsync on), pool of ${poolSize} connections.`,
  `draws are signed CreditDraw requests of ${DRAW_MINOR} minor unit, signed before the run.`,
  `CPU µs per call: server = the service process (CPU 0); pg = the PostgreSQL backends of its pool (either core); load = this load generator (CPU 1).`,
  '',
  `  ${'configuration'.padEnd(50)} ${'calls/s'.padStart(8)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'server µs'.padStart(10)}  ${'pg µs'.padStart(6)}  ${'load µs'.padStart(8)}  ${'vs status'.padStart(9)}  errors`,
  row('GetCreditStatus (baseline: unsigned, reads)', status),
  row(`CreditDraw, ${CLIENTS} wallets, a line each`, spread, spread.vsStatus),
  row(`CreditDraw, a line each, events off (2nd server)`, noRelay, noRelay.vsStatus),
  row(`CreditDraw, a line each, events relayed (3rd)`, relay, relay.vsStatus),
  row(`CreditDraw, ${CLIENTS} clients on ONE line (contended)`, contended, contended.vsStatus),
  '',
  `  Ed25519 verify (the server's verifySignature, libsodium): ${sig.verifyUs.toFixed(1)} µs; the server's whole signature check (checkSignature): ${sig.checkSignatureUs.toFixed(1)} µs; signing a draw (client side): ${sig.signUs.toFixed(1)} µs`,
  `  verify / server CPU per draw: ${pct(signature.verifyShareOfServerCpu.spread)} (spread), ${pct(signature.verifyShareOfServerCpu.contended)} (contended); whole check: ${pct(signature.checkShareOfServerCpu.spread)} / ${pct(signature.checkShareOfServerCpu.contended)}`,
  `  bare grpc-js Echo (same run, same load driver, its own server on CPU 0): ${num(echo.callsPerSec, 0)} calls/s, server CPU ${echo.serverCpuUsPerCall.toFixed(1)} µs per call`,
  ratioLine(`server CPU per draw, ${CLIENTS} wallets vs bare Echo`, spread.serverCpuUsPerCall, echo.serverCpuUsPerCall, 'µs', { max: GOAL.serverVsEcho }),
  ratioLine(`server CPU per draw, ONE line vs bare Echo`, contended.serverCpuUsPerCall, echo.serverCpuUsPerCall, 'µs', { max: GOAL.serverVsEcho }),
  ratioLine(`PostgreSQL CPU per draw, ${CLIENTS} wallets vs bare Echo server`, spread.pgCpuUsPerCall, echo.serverCpuUsPerCall, 'µs', { max: GOAL.pgVsEcho }),
  ratioLine(`PostgreSQL CPU per draw, ONE line vs bare Echo server`, contended.pgCpuUsPerCall, echo.serverCpuUsPerCall, 'µs', { max: GOAL.pgVsEcho }),
  `  CPU busy during the runs (server + pg + load, per call x calls/s): status ${busy(status).toFixed(2)}, spread ${busy(spread).toFixed(2)}, contended ${busy(contended).toFixed(2)} of ${cpus().length} cores`,
  `  ledger: ${ledgerCheck!.bookedDraws.toLocaleString('en-US')} draws booked = ${ledgerCheck!.acknowledgedDraws.toLocaleString('en-US')} acknowledged`,
  `  relay: ${relayCheck!.relayedDraws.toLocaleString('en-US')} draws relayed = ${relayCheck!.auditEntries.toLocaleString('en-US')} audit entries = ${relayCheck!.publishedEvents.toLocaleString('en-US')} events published; outbox drained ${relayCheck!.drainMs} ms after the last run; the sinks (log+webhooks) per draw: their server ${relayCheck!.peerCpuUsPerDraw} µs, their PostgreSQL backends ${relayCheck!.peerPgCpuUsPerDraw} µs (within the relayed row's pg µs)`,
  '',
  `  targets (PostgreSQL, ${CLIENTS} clients, a line each):`,
  `    signed draws/s   ${num(targets.drawsPerSec32.figure, 0)} >= ${num(TARGET.drawsPerSec, 0)}: ${verdict(targets.drawsPerSec32.met)}`,
  `    draw p99         ${spread.p99Ms.toFixed(2)} ms < ${TARGET.p99Ms} ms: ${verdict(targets.drawP99Ms32.met)}`,
  `    with the relay   ${pct(relay.vsNoRelay)} of the draws/s without it >= ${pct(TARGET_RELAY_RATIO)}: ${verdict(targets.relayKeeps.met)}`,
  ...(errorsTotal > 0 ? [`  WARNING: ${errorsTotal} calls failed; see ${out}`] : []),
  ...(quick ? ['  (--quick: short runs on a possibly busy machine; judge targets on a full run)'] : []),
  `  figures: ${out}`,
  ...profileReport([
    ['bare grpc-js Echo', 'call', echoRuns.at(-1)?.profile],
    ['GetCreditStatus', 'call', results.get('status')?.at(-1)?.profile],
    [`CreditDraw, ${CLIENTS} wallets, a line each`, 'draw', results.get('spread')?.at(-1)?.profile],
    ['CreditDraw, events off', 'draw', results.get('norelay')?.at(-1)?.profile],
    ['CreditDraw, events relayed', 'draw', results.get('relay')?.at(-1)?.profile],
    ['CreditDraw, ONE line', 'draw', results.get('contended')?.at(-1)?.profile],
  ]),
  '',
];
process.stdout.write(lines.join('\n'));
