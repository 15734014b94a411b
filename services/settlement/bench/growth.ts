// `npm run bench -- settlement --growth`: does a draw cost more as the ledger grows? The spread
// configuration of settlement.bench.ts (32 clients, a wallet and line each, events off) on a fresh
// database already holding 10^4 wallets with 10^5 transfers, then on one holding 10^5 wallets with
// 10^6 transfers, each wallet with a deposit, a reserved line and draws on it, and one stored nonce
// per transfer (within the retention window, as on a busy day). Seeded with generate_series in
// chunks, then VACUUM (ANALYZE) and CHECKPOINT (a long-lived database is vacuumed, analysed and
// checkpointed; see seed()). Goal (issue #18): the larger ledger's
// figures within 1.5x of the smaller's. Every acknowledged draw must be booked (check()).
import { join } from 'node:path';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';
import { SettlementWallet } from '../src/client/index.js';
import { ratioLine } from '../../kit/bench/baseline.js';
import { check, median, writeResult } from '../../kit/bench/lib.js';
import { drive, startBenchTarget, type BenchDatabase, type RunResult } from '../../kit/bench/load.js';

const CLIENTS = 32;
const SCOPES = ['settlement.admin', 'settlement.credit', 'settlement.read'];
const SIZES = [
  { wallets: 10_000, transfers: 100_000 },
  { wallets: 100_000, transfers: 1_000_000 },
] as const;
/** Seed wallets per INSERT statement (each with transfers / wallets transfers and nonces). */
const SEED_CHUNK_WALLETS = 10_000;
const ROUNDS = 3;
const RUN_SECONDS = 6;
const WARMUP_PER_CLIENT = 25;
/** Goal: the larger ledger's draw within this factor of the smaller's. */
const GOAL_RATIO = 1.5;
const LINE_MINOR = 1_000_000_000_000n;

type Size = (typeof SIZES)[number];

/** Seeds `size` into the benchmark database: wallet, credit and escrow accounts, an unsettled line per wallet, its transfers and nonces. */
async function seed(db: BenchDatabase, size: Size, step: (m: string) => void): Promise<void> {
  const perWallet = size.transfers / size.wallets;
  const draws = perWallet - 2;
  const address = (i: string) => `'0x' || lpad(to_hex(${i}), 40, '0')`;
  for (let from = 1; from <= size.wallets; from += SEED_CHUNK_WALLETS) {
    const to = Math.min(size.wallets, from + SEED_CHUNK_WALLETS - 1);
    step(`seeding wallets ${from.toLocaleString('en-US')}-${to.toLocaleString('en-US')} of ${size.wallets.toLocaleString('en-US')} (${perWallet} transfers and nonces each)`);
    const range = `generate_series(${from}, ${to}) i`;
    await db.query(
      `INSERT INTO settlement.accounts (id) SELECT a FROM ${range}, LATERAL (VALUES ('wallet:' || ${address('i')}), ('credit:seed-' || i), ('escrow:seed-' || i)) v (a)`,
    );
    await db.query(
      `INSERT INTO settlement.credit_lines (session_id, wallet_address, credit_limit_minor, drawn_minor, draw_count, created_at, expires_at)
       SELECT 'seed-' || i, ${address('i')}, 1000000, ${draws}, ${draws}, now(), now() + interval '1 day' FROM ${range}`,
    );
    // Deposit, reserve, then draws of 1: the posting trigger leaves every balance as the ledger's own bookings would.
    await db.query(
      `INSERT INTO settlement.transfers (id, debit_account, credit_account, amount_minor, kind, session_id, memo, created_at)
       SELECT 'seed-' || i || '-' || j,
              CASE j WHEN 1 THEN 'funding' WHEN 2 THEN 'wallet:' || w ELSE 'credit:seed-' || i END,
              CASE j WHEN 1 THEN 'wallet:' || w WHEN 2 THEN 'credit:seed-' || i ELSE 'escrow:seed-' || i END,
              CASE WHEN j <= 2 THEN 1000000 ELSE 1 END,
              CASE j WHEN 1 THEN 'deposit' WHEN 2 THEN 'reserve' ELSE 'draw' END,
              CASE WHEN j = 1 THEN NULL ELSE 'seed-' || i END, '', now()
         FROM ${range}, LATERAL (SELECT ${address('i')} AS w) x, generate_series(1, ${perWallet}) j`,
    );
    await db.query(
      `INSERT INTO settlement.requests (owner, key, operation, digest, created_at, response)
       SELECT ${address('i')}, 'seed-nonce-' || j, 'CreditDraw', '\\x00', now(), '{}' FROM ${range}, generate_series(1, ${perWallet}) j`,
    );
  }
  // A long-lived ledger is vacuumed and checkpointed; a freshly bulk-loaded one is not. Measured
  // straight after the seed, the larger ledger's draws would share the disk and the cores with the
  // checkpoint of the seed's WAL (about ten times the smaller seed's), autovacuum's first pass
  // over the new tables and the hint bits each first read of a seeded row sets: costs of the
  // seeding, not of the ledger's size.
  step('VACUUM (ANALYZE), then CHECKPOINT: the seed left as a long-lived ledger would be');
  await db.query('VACUUM (ANALYZE)');
  await db.query('CHECKPOINT');
}

/** One size: a fresh database and server, the seed, 32 wallets with lines, warm-up, then ROUNDS measured runs of spread draws. */
async function measure(size: Size, step: (m: string) => void): Promise<{ size: Size; rounds: RunResult[]; acknowledged: number; booked: number }> {
  const bench = await startBenchTarget('settlement', SCOPES, { step, config: { events: { enabled: false } } });
  try {
    await seed(bench.db, size, step);
    const { dataDir, token, port } = bench.ready;
    const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
    const client = new settlementv1.SettlementServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
    const md = bearerMetadata(token);
    const wallets = Array.from({ length: CLIENTS }, () => SettlementWallet.generate());
    step(`setup: ${CLIENTS} wallets, each a Deposit and an ApproveCreditLine`);
    const sessions = await Promise.all(
      wallets.map(async (w, i) => {
        await unary(client.deposit, client, { walletAddress: w.address, amountMinor: LINE_MINOR, transferId: `growth-funding-${i}`, memo: 'settlement growth bench' }, md);
        return (await unary(client.approveCreditLine, client, w.approve(LINE_MINOR, 3_600_000n), md)).sessionId;
      }),
    );
    const draws = (perClient: number) => wallets.map((w, i) => Array.from({ length: perClient }, () => w.draw(sessions[i]!, 1n, 'growth')));
    const call = (req: settlementv1.CreditDrawRequest) => unary(client.creditDraw, client, req, md);
    let acknowledged = 0;
    step(`warm-up and calibration: ${WARMUP_PER_CLIENT} draws per client`);
    const warm = await drive(draws(WARMUP_PER_CLIENT), call, { serverPid: bench.serverPid, db: bench.db });
    acknowledged += warm.calls;
    const perClient = Math.max(WARMUP_PER_CLIENT, Math.round((warm.callsPerSec * RUN_SECONDS) / CLIENTS));
    const rounds: RunResult[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      step(`round ${round}/${ROUNDS}: ${CLIENTS} clients x ${perClient} draws with ${size.wallets.toLocaleString('en-US')} wallets seeded`);
      const r = await drive(draws(perClient), call, { serverPid: bench.serverPid, db: bench.db });
      acknowledged += r.calls;
      rounds.push(r);
    }
    let booked = 0;
    for (const w of wallets) booked += (await unary(client.getCreditStatus, client, { walletAddress: w.address }, md)).creditLine!.drawCount;
    client.close();
    check(booked === acknowledged, `${size.wallets} wallets: the lines record ${booked} draws but ${acknowledged} were acknowledged`);
    return { size, rounds, acknowledged, booked };
  } finally {
    await bench.stop();
  }
}

/** The growth run: both sizes, one after the other, and their ratios. */
export async function growthBench(step: (m: string) => void): Promise<void> {
  const measured = [];
  for (const size of SIZES) measured.push(await measure(size, step));
  const summary = measured.map((m) => ({
    wallets: m.size.wallets,
    transfers: m.size.transfers,
    callsPerSec: Math.round(median(m.rounds.map((r) => r.callsPerSec))),
    p50Ms: median(m.rounds.map((r) => r.p50Ms)),
    p99Ms: median(m.rounds.map((r) => r.p99Ms)),
    serverCpuUsPerCall: Math.round(median(m.rounds.map((r) => r.serverCpuUsPerCall))),
    pgCpuUsPerCall: Math.round(median(m.rounds.map((r) => r.pgCpuUsPerCall))),
    errors: m.rounds.reduce((n, r) => n + r.errors, 0),
    acknowledged: m.acknowledged,
    booked: m.booked,
  }));
  const [small, large] = summary as [(typeof summary)[number], (typeof summary)[number]];
  const ratios = {
    serverCpu: large.serverCpuUsPerCall / small.serverCpuUsPerCall,
    pgCpu: large.pgCpuUsPerCall / small.pgCpuUsPerCall,
    p50: large.p50Ms / small.p50Ms,
    throughput: small.callsPerSec / large.callsPerSec,
  };
  const out = writeResult('settlement-growth', { benchmark: 'settlement-growth', rounds: ROUNDS, runSeconds: RUN_SECONDS, clients: CLIENTS, goalRatio: GOAL_RATIO, sizes: summary, ratios, raw: measured });
  const row = (s: typeof small) =>
    `  ${`${s.wallets.toLocaleString('en-US')} wallets, ${s.transfers.toLocaleString('en-US')} transfers`.padEnd(36)} ${String(s.callsPerSec).padStart(8)}  ${s.p50Ms.toFixed(2).padStart(7)}  ${s.p99Ms.toFixed(2).padStart(7)}  ${String(s.serverCpuUsPerCall).padStart(10)}  ${String(s.pgCpuUsPerCall).padStart(6)}  ${String(s.errors).padStart(6)}`;
  const lines = [
    '',
    `settlement growth benchmark: CreditDraw, ${CLIENTS} clients with a line each, events off, median of ${ROUNDS} rounds of ~${RUN_SECONDS} s, on a ledger seeded with`,
    `${small.wallets.toLocaleString('en-US')} then ${large.wallets.toLocaleString('en-US')} wallets (a line, a deposit, a reserve, draws and a nonce per transfer each); goal: the larger within ${GOAL_RATIO}x.`,
    '',
    `  ${'ledger'.padEnd(36)} ${'draws/s'.padStart(8)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'server µs'.padStart(10)}  ${'pg µs'.padStart(6)}  errors`,
    row(small),
    row(large),
    '',
    ratioLine('server CPU per draw, 10^5 vs 10^4 wallets', large.serverCpuUsPerCall, small.serverCpuUsPerCall, 'µs', { max: GOAL_RATIO }),
    ratioLine('PostgreSQL CPU per draw, 10^5 vs 10^4 wallets', large.pgCpuUsPerCall, small.pgCpuUsPerCall, 'µs', { max: GOAL_RATIO }),
    ratioLine('draw p50, 10^5 vs 10^4 wallets', large.p50Ms, small.p50Ms, 'ms', { max: GOAL_RATIO }),
    `  ledger: ${summary.map((s) => `${s.booked.toLocaleString('en-US')} draws booked = ${s.acknowledged.toLocaleString('en-US')} acknowledged`).join('; ')}`,
    `  figures: ${out}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}
