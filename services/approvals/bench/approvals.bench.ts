// `npm run bench -- approvals [--quick]`: durable votes/s at 32 concurrent validators, and watch
// fan-out latency (a vote → its event at 100 watchers), beside a baseline measured in the same run.
//
// Server: services/gantry/bench/target-server.ts (the approvals target, full kit stack: mTLS, JWT,
// rate limit far above the load, tracing) on a fresh PostgreSQL database (fsync on); pinned to
// CPU 0 once ready. This process (CPU 1) is the load generator and the watchers.
//
// Figures:
//   status   baseline: GetApprovalStatus (a read of one request with its votes), 32 clients.
//   votes    SubmitValidatorResponse APPROVE, 32 clients, each the validator v<i> with a token of
//            its own, on requests of 32 validators needing all 32 approvals; client i walks the
//            requests starting at its own offset, so concurrent votes rarely wait on the same
//            request's row lock. Each vote commits before it is acknowledged; the last vote on a
//            request finalizes it (APPROVED).
//   fan-out  100 WatchApprovalUpdates streams (10 HTTP/2 connections) follow every change; votes
//            are cast one at a time, and for each vote the time from sending it to each watcher
//            receiving its event is recorded: p50/p99 over votes × watchers.
//   baseline a bare grpc-js unary Echo (kit/bench/baseline.ts), one run after each vote round (its
//            figure moves with the machine: 29-53 µs between runs on one day), as settlement's
//            benchmark measures it: the vote's server and PostgreSQL CPU per call (medians over
//            rounds) are printed as multiples of its median server CPU per call.
// The status rounds run first, then the vote rounds: a configuration's rounds back to back, so each
// pays for collecting its own garbage and not the other's.
// After the runs (--quick too) `check()` asserts that every acknowledged vote is recorded and that
// every watcher received every change of the fan-out exactly once, in version order; never a time.
//
// --growth: votes and status reads on fresh requests while the tables hold 10^4, then 10^5 (then
// 10^6, when seeding 10^5 was quick) seeded requests with their votes and history (generate_series
// in the benchmark database), written to bench-results/approvals-growth.json.
import { createHash } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { bareEchoBaseline, ratioLine } from '../../kit/bench/baseline.js';
import { profileReport } from '../../kit/bench/profile.js';
import { check, median, parseBenchArgs, pinning, progress, writeResult } from '../../kit/bench/lib.js';
import { startBenchTarget, drive, percentile, type RunResult } from '../../kit/bench/load.js';
import { tokenFor } from '@gantry/test-support/clients';

const args = parseBenchArgs(process.argv.slice(2));
const quick = args.quick;
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
/** Five: a vote round is a few seconds, and whether a major collection falls inside one moves it by a fifth. */
const rounds = quick ? 1 : 5;
const runSeconds = quick ? 2 : 6;
const CLIENTS = 32;
const WATCHERS = 100;
const WATCH_CONNECTIONS = 10;
const fanoutVotes = quick ? 30 : 200;
const warmupPerClient = quick ? 5 : 20;
/** Echo calls per client in each round's baseline run (about 6 s at this machine's Echo rate). */
const echoPerClient = quick ? 200 : 1200;
const TARGET = { votesPerSec: 3_000, fanoutP99Ms: 20, seedEventMs: 5 };
const { ApprovalType, ApprovalPriority, VoteDecision } = approvalsv1;

// --growth keeps every history row it seeds (no version bound), so no prune runs under the measurement.
const bench = await startBenchTarget('approvals', ['approvals.submit', 'approvals.read'], { step, ...(args.growth ? { config: { approvals: { historyMaxVersions: 0 } } } : {}) });
const { db } = bench;

const validators = Array.from({ length: CLIENTS }, (_, i) => `v${i}`);
const results = new Map<'status' | 'votes' | 'echo', RunResult[]>();
let fanout: { events: number; p50Ms: number; p99Ms: number; maxMs: number; voteAckP50Ms: number; voteAckP99Ms: number } | undefined;
let ledger: { acknowledgedVotes: number; recordedVotes: number } | undefined;
/** Changes each watcher received exactly once, in order (checked). */
let fanoutChanges = 0;
/** Seeded table sizes of --growth, and rows one seeding statement inserts. */
const GROWTH_SIZES = [10_000, 100_000, 1_000_000];
const SEED_CHUNK = 100_000;
interface GrowthPoint {
  requests: number;
  seedSeconds: number;
  status: RunResult;
  votes: RunResult;
}
let growth: GrowthPoint[] | undefined;

try {
  const { serverPid } = bench;
  const { dataDir, port } = bench.ready;
  const tls = { caFile: join(dataDir, 'pki/ca.crt'), certFile: join(dataDir, 'pki/client.crt'), keyFile: join(dataDir, 'pki/client.key'), serverName: 'localhost' };
  const newClient = () => new approvalsv1.ApprovalsServiceClient(`127.0.0.1:${port}`, clientCredentials(tls), clientOptions(tls));
  const client = newClient();
  const requesterMd = bearerMetadata(bench.ready.token);
  const voterMd: Metadata[] = validators.map((v) => bearerMetadata(tokenFor(dataDir, v, ['approvals.vote', 'approvals.read'], { ttlSec: 3600 })));

  const content = Buffer.from('raise the daily limit to 5,000');
  const contentHash = createHash('sha256').update(content).digest();
  /** `n` requests that all 32 validators must approve. */
  const submit = async (n: number, label: string): Promise<string[]> => {
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < n) {
          next++;
          const r = await unary(
            client.submitApprovalRequest,
            client,
            {
              requestId: '', type: ApprovalType.APPROVAL_TYPE_PARAMETER_CHANGE, priority: ApprovalPriority.APPROVAL_PRIORITY_NORMAL, requester: '', title: label,
              content, contentHash, validators, requiredApprovals: CLIENTS, expiry: { $case: 'ttl', value: { seconds: 3600n, nanos: 0 } }, labels: {},
            },
            requesterMd,
          );
          ids.push(r.approval!.approvalId);
        }
      }),
    );
    return ids;
  };

  let acknowledgedVotes = 0;
  const allRequests: string[] = [];
  /** One run: `perClient` votes per validator over `perClient` fresh requests, each client starting at its own offset. */
  const voteRun = async (perClient: number) => {
    const ids = await submit(perClient, 'bench');
    allRequests.push(...ids);
    const perClientReqs = validators.map((_, i) => Array.from({ length: perClient }, (_, k) => ({ i, id: ids[(i + k) % perClient]! })));
    const r = await drive(perClientReqs, ({ i, id }) => unary(client.submitValidatorResponse, client, { approvalId: id, decision: VoteDecision.VOTE_DECISION_APPROVE, reason: '' }, voterMd[i]!), { serverPid, db });
    acknowledgedVotes += r.calls;
    return r;
  };
  const statusRun = async (perClient: number) => {
    const ids = allRequests.slice(0, CLIENTS);
    return drive(validators.map((_, i) => Array.from({ length: perClient }, () => ids[i % ids.length]!)), (id) => unary(client.getApprovalStatus, client, { approvalId: id }, requesterMd), { serverPid, db });
  };

  /**
   * Seeds requests [from, to) in one statement: 3 validators, 2 votes and 3 history rows each, at
   * consecutive versions taken from the head (the versions come from the head's own UPDATE: a
   * second reference to that row in the statement would not see it).
   */
  const seed = async (from: number, to: number) => {
    const n = to - from;
    await db.query(`WITH h AS (UPDATE approvals.head SET version = version + ${n * 3} RETURNING version - ${n * 3} AS base),
      req AS (INSERT INTO approvals.requests (approval_id, created_version, version, requester, request_id, request_digest, type, priority, title, content, content_hash,
                validators, required_approvals, state, labels, created_at, expires_at, finalized_at)
              SELECT 'seed-' || g, base + (g - ${from}) * 3 + 1, base + (g - ${from}) * 3 + 3, 'seeder', NULL, '\\x00'::bytea, 'OTHER', 1, 'seeded',
                     convert_to('seeded content ' || g, 'UTF8'), sha256(convert_to('seeded content ' || g, 'UTF8')), ARRAY['s1', 's2', 's3'], 3, 'PENDING', '{}'::jsonb,
                     now(), now() + interval '1 day', NULL
                FROM h, generate_series(${from}, ${to - 1}) g),
      vote AS (INSERT INTO approvals.votes (approval_id, validator, decision, reason, cast_at, version)
               SELECT 'seed-' || g, 's' || k, 'APPROVE', '', now(), base + (g - ${from}) * 3 + 1 + k FROM h, generate_series(${from}, ${to - 1}) g, generate_series(1, 2) k)
      INSERT INTO approvals.events (version, approval_id, type, state, at)
      SELECT base + (g - ${from}) * 3 + 1 + k, 'seed-' || g, CASE WHEN k = 0 THEN 'CREATED' ELSE 'VOTED' END, 'PENDING', now()
        FROM h, generate_series(${from}, ${to - 1}) g, generate_series(0, 2) k`);
    const { rows } = await db.query(`SELECT count(*) AS n FROM approvals.requests WHERE approval_id LIKE 'seed-%'`);
    check(Number(rows[0]!.n) === to, `seeding: ${String(rows[0]!.n)} seeded requests in the table, expected ${to}`);
  };

  /** Votes and reads at each table size; 10^6 only when seeding 10^5 took under 30 s (so 10^6 stays within minutes). */
  const growthRuns = async (per: { votesPerClient: number; statusPerClient: number }): Promise<GrowthPoint[]> => {
    const points: GrowthPoint[] = [];
    let seeded = 0;
    let lastSeedSeconds = 0;
    for (const size of GROWTH_SIZES) {
      if (size === 1_000_000 && lastSeedSeconds > 30) {
        step(`skipping 10^6 requests: seeding 10^5 took ${lastSeedSeconds.toFixed(0)} s`);
        break;
      }
      const t = performance.now();
      for (let from = seeded; from < size; from += SEED_CHUNK) {
        step(`seeding requests ${from.toLocaleString('en-US')}..${Math.min(size, from + SEED_CHUNK).toLocaleString('en-US')} of ${size.toLocaleString('en-US')}`);
        await seed(from, Math.min(size, from + SEED_CHUNK));
      }
      await db.query('VACUUM ANALYZE approvals.requests, approvals.votes, approvals.events');
      lastSeedSeconds = (performance.now() - t) / 1000;
      seeded = size;
      step(`${size.toLocaleString('en-US')} seeded requests: GetApprovalStatus (${CLIENTS} x ${per.statusPerClient}), then votes (${CLIENTS} x ${per.votesPerClient})`);
      const status = await statusRun(per.statusPerClient);
      const votes = await voteRun(per.votesPerClient);
      check(votes.errors === 0 && status.errors === 0, `calls failed at ${size} requests: ${JSON.stringify({ ...votes.failures, ...status.failures })}`);
      points.push({ requests: size, seedSeconds: lastSeedSeconds, status, votes });
    }
    return points;
  };

  step(`warm-up and calibration: ${warmupPerClient} votes per validator, then as many reads`);
  const warmVotes = await voteRun(warmupPerClient);
  if (warmVotes.errors > 0) throw new Error(`votes failed in warm-up: ${JSON.stringify(warmVotes.failures)}`);
  const warmStatus = await statusRun(warmupPerClient);
  if (warmStatus.errors > 0) throw new Error(`reads failed in warm-up: ${JSON.stringify(warmStatus.failures)}`);
  const votesPerClient = Math.max(warmupPerClient, Math.round((warmVotes.callsPerSec * runSeconds) / CLIENTS));
  const statusPerClient = Math.max(warmupPerClient, Math.round((warmStatus.callsPerSec * runSeconds) / CLIENTS));
  if (args.growth) {
    growth = await growthRuns({ votesPerClient, statusPerClient });
  } else {
    // Each configuration's rounds back to back: a round pays for the garbage it leaves, and a read
    // allocates about 85 KB, so a vote round right after a read round paid for collecting the reads'
    // garbage too (vote rounds after reads 172-199 µs, after votes 145-176 µs, same code).
    for (let round = 1; round <= rounds; round++) {
      step(`round ${round}/${rounds}: GetApprovalStatus (${CLIENTS} x ${statusPerClient})`);
      results.set('status', [...(results.get('status') ?? []), await statusRun(statusPerClient)]);
    }
    step(`votes again (${warmupPerClient} per validator), so the vote rounds start from the votes' own state`);
    await voteRun(warmupPerClient);
    for (let round = 1; round <= rounds; round++) {
      step(`round ${round}/${rounds}: votes (${CLIENTS} validators x ${votesPerClient})`);
      results.set('votes', [...(results.get('votes') ?? []), await voteRun(votesPerClient)]);
      step(`round ${round}/${rounds}: bare grpc-js Echo baseline (${CLIENTS} clients x ${echoPerClient} calls, its own server on CPU 0)`);
      results.set('echo', [...(results.get('echo') ?? []), await bareEchoBaseline({ clients: CLIENTS, callsPerClient: echoPerClient, cpu: 0 })]);
    }

    // --- Fan-out: 100 watchers, votes one at a time ---------------------------------------------------
    step(`fan-out: ${WATCHERS} watchers on ${WATCH_CONNECTIONS} connections; ${fanoutVotes} votes, one at a time`);
    {
      const fanIds = await submit(Math.ceil(fanoutVotes / CLIENTS) + 1, 'fan-out');
      const connections = Array.from({ length: WATCH_CONNECTIONS }, newClient);
      const latencies: number[] = [];
      const acks: number[] = [];
      /** The vote in flight: which watchers have seen it (a finalizing vote may come as two events). */
      let current: { id: string; validator: string; sentAt: number; seen: Set<number>; done: () => void } | undefined;
      /** Per watcher: the version of its first message (the bookmark), then the version of every change it received. */
      const received: bigint[][] = Array.from({ length: WATCHERS }, () => []);
      const watchers = Array.from({ length: WATCHERS }, (_, w) => {
        const call = connections[w % WATCH_CONNECTIONS]!.watchApprovalUpdates({ approvalId: '', fromVersion: 0n }, requesterMd);
        call.on('data', (ev: approvalsv1.WatchApprovalUpdatesResponse) => {
          if (received[w]!.length === 0 || ev.type !== approvalsv1.ApprovalEventType.APPROVAL_EVENT_TYPE_BOOKMARK) received[w]!.push(ev.version);
          const c = current;
          if (!c || !ev.approval || ev.approval.approvalId !== c.id || c.seen.has(w)) return;
          if (!ev.approval.votes.some((v) => v.validator === c.validator)) return;
          c.seen.add(w);
          latencies.push(performance.now() - c.sentAt);
          if (c.seen.size === WATCHERS) c.done();
        });
        call.on('error', () => {});
        return call;
      });
      // Every watcher has its first message (the bookmark) before the first vote.
      await new Promise((r) => setTimeout(r, 1000));
      for (let k = 0; k < fanoutVotes; k++) {
        const id = fanIds[Math.floor(k / CLIENTS)]!;
        const v = k % CLIENTS;
        const seenAll = new Promise<void>((done) => (current = { id, validator: validators[v]!, sentAt: performance.now(), seen: new Set(), done }));
        const t = performance.now();
        await unary(client.submitValidatorResponse, client, { approvalId: id, decision: VoteDecision.VOTE_DECISION_APPROVE, reason: '' }, voterMd[v]!);
        acks.push(performance.now() - t);
        acknowledgedVotes++;
        await Promise.race([seenAll, new Promise((r) => setTimeout(r, 2000))]);
        current = undefined;
      }
      // Every watcher received every change after its bookmark exactly once, in version order.
      const { rows: headRows } = await db.query('SELECT version FROM approvals.head');
      const head = BigInt(headRows[0]!.version as string);
      const caughtUp = () => received.every((r) => r.length > 0 && r.at(-1)! >= head);
      for (let waited = 0; !caughtUp() && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
      for (const w of watchers) w.cancel();
      for (const c of connections) c.close();
      const from = received.reduce((lo, r) => (r[0]! < lo ? r[0]! : lo), head);
      const { rows: history } = await db.query(`SELECT version FROM approvals.events WHERE version > ${from} AND version <= ${head} ORDER BY version`);
      const changes = history.map((r) => BigInt(r.version as string));
      received.forEach((r, w) => {
        const expected = changes.filter((v) => v > r[0]!).join(',');
        check(r.slice(1).join(',') === expected, `watcher ${w} received versions ${r.slice(1).join(',')} after its bookmark at ${r[0]}, expected each of ${expected} once, in order`);
      });
      fanoutChanges = changes.length;
      latencies.sort((a, b) => a - b);
      acks.sort((a, b) => a - b);
      allRequests.push(...fanIds);
      fanout = { events: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies.at(-1) ?? NaN, voteAckP50Ms: percentile(acks, 50), voteAckP99Ms: percentile(acks, 99) };
      if (latencies.length < fanoutVotes * WATCHERS * 0.99) throw new Error(`fan-out: ${latencies.length} of ${fanoutVotes * WATCHERS} events arrived within 2 s`);
    }

  }

  step('checking that every acknowledged vote is recorded');
  let recordedVotes = 0;
  for (const id of allRequests) {
    const { approval } = await unary(client.getApprovalStatus, client, { approvalId: id }, requesterMd);
    recordedVotes += approval!.votes.length;
  }
  ledger = { acknowledgedVotes, recordedVotes };
  check(recordedVotes === acknowledgedVotes, `${recordedVotes} votes are recorded but ${acknowledgedVotes} were acknowledged`);
  client.close();
} finally {
  await bench.stop();
}

if (growth) {
  const g = growth;
  const out = writeResult('approvals-growth', { benchmark: 'approvals-growth', quick, pinning, clients: CLIENTS, points: g, cores: cpus().length });
  const line = (p: GrowthPoint) =>
    `  ${p.requests.toLocaleString('en-US').padStart(10)} requests (seeded in ${p.seedSeconds.toFixed(0)} s): votes ${Math.round(p.votes.callsPerSec)}/s p50 ${p.votes.p50Ms.toFixed(2)} ms, server ${Math.round(p.votes.serverCpuUsPerCall)} µs, pg ${Math.round(p.votes.pgCpuUsPerCall)} µs; ` +
    `status ${Math.round(p.status.callsPerSec)}/s p50 ${p.status.p50Ms.toFixed(2)} ms, server ${Math.round(p.status.serverCpuUsPerCall)} µs, pg ${Math.round(p.status.pgCpuUsPerCall)} µs`;
  const [small, large] = [g[0]!, g.at(-1)!];
  const ratios = small === large ? [] : [
    ratioLine(`vote p50 at ${large.requests.toLocaleString('en-US')} vs ${small.requests.toLocaleString('en-US')} requests`, large.votes.p50Ms, small.votes.p50Ms, 'ms', { max: 1.5 }),
    ratioLine('vote server CPU per call', large.votes.serverCpuUsPerCall, small.votes.serverCpuUsPerCall, 'µs', { max: 1.5 }),
    ratioLine('vote PostgreSQL CPU per call', large.votes.pgCpuUsPerCall, small.votes.pgCpuUsPerCall, 'µs', { max: 1.5 }),
    ratioLine('status read p50', large.status.p50Ms, small.status.p50Ms, 'ms', { max: 1.5 }),
    ratioLine('status read PostgreSQL CPU per call', large.status.pgCpuUsPerCall, small.status.pgCpuUsPerCall, 'µs', { max: 1.5 }),
  ];
  process.stdout.write(['', `approvals growth: votes and status reads on fresh requests as the tables grow (${CLIENTS} clients, one round each)`, ...g.map(line), '', ...ratios, `  figures: ${out}`, ''].join('\n'));
  process.exit(process.exitCode ?? 0);
}

const summary = (key: 'status' | 'votes' | 'echo') => {
  const rs = results.get(key)!;
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
const votes = { ...summary('votes'), vsStatus: summary('votes').callsPerSec / status.callsPerSec };
const f = fanout!;
const targets = {
  votesPerSec32: { figure: votes.callsPerSec, target: TARGET.votesPerSec, met: votes.callsPerSec >= TARGET.votesPerSec },
  fanoutP99Ms: { figure: f.p99Ms, target: TARGET.fanoutP99Ms, met: f.p99Ms < TARGET.fanoutP99Ms },
  seedPerEventMs: { figure: f.p50Ms, target: TARGET.seedEventMs, met: f.p50Ms < TARGET.seedEventMs },
};
const echoRuns = results.get('echo')!;
const bare = { ...summary('echo'), serverCpuUsPerCall: median(echoRuns.map((r) => r.serverCpuUsPerCall)), profile: echoRuns.at(-1)?.profile };
/** Issue #18's goals against the bare call of this run: CPU as multiples of its server CPU, fan-out beside the vote's own commit. */
const GOALS = { serverCpuX: 6, pgCpuX: 4, fanoutOverCommitMs: 5 };
const fanoutOverCommitMs = f.p99Ms - f.voteAckP99Ms;
const vsBare = {
  bareServerCpuUsPerCall: Math.round(bare.serverCpuUsPerCall),
  serverCpuX: votes.serverCpuUsPerCall / bare.serverCpuUsPerCall,
  pgCpuX: votes.pgCpuUsPerCall / bare.serverCpuUsPerCall,
  fanoutOverCommitMs,
  met: { serverCpu: votes.serverCpuUsPerCall / bare.serverCpuUsPerCall <= GOALS.serverCpuX, pgCpu: votes.pgCpuUsPerCall / bare.serverCpuUsPerCall <= GOALS.pgCpuX, fanout: fanoutOverCommitMs <= GOALS.fanoutOverCommitMs },
};
const out = writeResult('approvals', { benchmark: 'approvals', quick, rounds, runSeconds, pinning, clients: CLIENTS, watchers: WATCHERS, status, votes, fanout: { ...f, changesCheckedPerWatcher: fanoutChanges }, bareEcho: bare, vsBare, goals: GOALS, targets, ledger, cores: cpus().length, raw: Object.fromEntries(results) });

const num = (x: number, w = 8) => Math.round(x).toLocaleString('en-US').padStart(w);
const ms = (x: number) => x.toFixed(2).padStart(7);
const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
const row = (label: string, s: typeof status, ratio?: number) =>
  `  ${label.padEnd(40)} ${num(s.callsPerSec)}  ${ms(s.p50Ms)}  ${ms(s.p99Ms)}  ${num(s.serverCpuUsPerCall, 10)}  ${num(s.pgCpuUsPerCall, 6)}  ${num(s.loadCpuUsPerCall, 8)}  ${(ratio === undefined ? '-' : `${(ratio * 100).toFixed(0)}%`).padStart(9)}  ${String(s.errors).padStart(6)}`;
process.stdout.write(
  [
    '',
    `approvals benchmark${quick ? ' (--quick)' : ''}: median of ${rounds} round(s) of ~${runSeconds} s; ${CLIENTS} concurrent validators on one HTTP/2 connection;`,
    'the approvals service, full stack (mTLS + JWT + rate limit + tracing) on PostgreSQL (fsync on). CPU µs per call: server (CPU 0), its PostgreSQL backends, this load generator (CPU 1).',
    '',
    `  ${'configuration'.padEnd(40)} ${'calls/s'.padStart(8)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'server µs'.padStart(10)}  ${'pg µs'.padStart(6)}  ${'load µs'.padStart(8)}  ${'vs status'.padStart(9)}  errors`,
    row('GetApprovalStatus (baseline: a read)', status),
    row(`SubmitValidatorResponse (durable vote)`, votes, votes.vsStatus),
    '',
    `  fan-out: vote sent -> event at each of ${WATCHERS} watchers: p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms, max ${f.maxMs.toFixed(2)} ms over ${f.events.toLocaleString('en-US')} events; the vote's own ack p50 ${f.voteAckP50Ms.toFixed(2)} ms, p99 ${f.voteAckP99Ms.toFixed(2)} ms`,
    `  recorded votes: ${ledger!.recordedVotes.toLocaleString('en-US')} = ${ledger!.acknowledgedVotes.toLocaleString('en-US')} acknowledged; each of ${WATCHERS} watchers received each of the ${fanoutChanges} changes once, in order`,
    '',
    `  against a bare grpc-js unary Echo in this run (${num(bare.callsPerSec, 0)} calls/s, server ${num(bare.serverCpuUsPerCall, 0)} µs per call), issue #18:`,
    ratioLine('vote server CPU per call', votes.serverCpuUsPerCall, bare.serverCpuUsPerCall, 'µs', { max: GOALS.serverCpuX }),
    ratioLine('vote PostgreSQL CPU per call', votes.pgCpuUsPerCall, bare.serverCpuUsPerCall, 'µs', { max: GOALS.pgCpuX }),
    `  fan-out p99 ${f.p99Ms.toFixed(2)} ms vs the vote's commit (ack) p99 ${f.voteAckP99Ms.toFixed(2)} ms: ${fanoutOverCommitMs >= 0 ? '+' : ''}${fanoutOverCommitMs.toFixed(2)} ms, goal <= ${GOALS.fanoutOverCommitMs} ms (goal ${vsBare.met.fanout ? 'met' : 'NOT met'})`,
    '',
    '  targets (PostgreSQL):',
    `    durable votes/s at ${CLIENTS} clients   ${num(votes.callsPerSec, 0)} >= ${num(TARGET.votesPerSec, 0)}: ${verdict(targets.votesPerSec32.met)}`,
    `    fan-out p99 at ${WATCHERS} watchers      ${f.p99Ms.toFixed(2)} ms < ${TARGET.fanoutP99Ms} ms: ${verdict(targets.fanoutP99Ms.met)}`,
    `    the seed's < ${TARGET.seedEventMs} ms per streamed event (p50)  ${f.p50Ms.toFixed(2)} ms: ${verdict(targets.seedPerEventMs.met)}`,
    ...(quick ? ['  (--quick: short runs on a possibly busy machine; judge targets on a full run)'] : []),
    `  figures: ${out}`,
    ...profileReport([
      ['bare grpc-js Echo', 'call', bare.profile],
      ['GetApprovalStatus', 'call', results.get('status')?.at(-1)?.profile],
      ['SubmitValidatorResponse', 'vote', results.get('votes')?.at(-1)?.profile],
    ]),
    '',
  ].join('\n'),
);
