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
// After the runs, every acknowledged vote must be recorded (the requests' tallies add up).
import { createHash } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Metadata } from '@grpc/grpc-js';
import { bearerMetadata, clientCredentials, clientOptions, unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { median, parseBenchArgs, pinning, progress, writeResult } from '../../kit/bench/lib.js';
import { startBenchTarget, drive, percentile, type RunResult } from '../../kit/bench/load.js';
import { tokenFor } from '@gantry/test-support/clients';

const args = parseBenchArgs(process.argv.slice(2));
const quick = args.quick;
const t0Run = performance.now();
const step = (message: string) => progress(`${((performance.now() - t0Run) / 1000).toFixed(1).padStart(5)} s  ${message}`);
const rounds = quick ? 1 : 3;
const runSeconds = quick ? 2 : 6;
const CLIENTS = 32;
const WATCHERS = 100;
const WATCH_CONNECTIONS = 10;
const fanoutVotes = quick ? 30 : 200;
const warmupPerClient = quick ? 5 : 20;
const TARGET = { votesPerSec: 3_000, fanoutP99Ms: 20, seedEventMs: 5 };
const { ApprovalType, ApprovalPriority, VoteDecision } = approvalsv1;

const bench = await startBenchTarget('approvals', ['approvals.submit', 'approvals.read'], { step });
const { db } = bench;

const validators = Array.from({ length: CLIENTS }, (_, i) => `v${i}`);
const results = new Map<'status' | 'votes', RunResult[]>();
let fanout: { events: number; p50Ms: number; p99Ms: number; maxMs: number; voteAckP50Ms: number; voteAckP99Ms: number } | undefined;
let ledger: { acknowledgedVotes: number; recordedVotes: number } | undefined;

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

  step(`warm-up and calibration: ${warmupPerClient} votes per validator, then as many reads`);
  const warmVotes = await voteRun(warmupPerClient);
  if (warmVotes.errors > 0) throw new Error(`votes failed in warm-up: ${JSON.stringify(warmVotes.failures)}`);
  const warmStatus = await statusRun(warmupPerClient);
  if (warmStatus.errors > 0) throw new Error(`reads failed in warm-up: ${JSON.stringify(warmStatus.failures)}`);
  const votesPerClient = Math.max(warmupPerClient, Math.round((warmVotes.callsPerSec * runSeconds) / CLIENTS));
  const statusPerClient = Math.max(warmupPerClient, Math.round((warmStatus.callsPerSec * runSeconds) / CLIENTS));
  for (let round = 1; round <= rounds; round++) {
    step(`round ${round}/${rounds}: GetApprovalStatus (${CLIENTS} x ${statusPerClient}), then votes (${CLIENTS} validators x ${votesPerClient})`);
    results.set('status', [...(results.get('status') ?? []), await statusRun(statusPerClient)]);
    results.set('votes', [...(results.get('votes') ?? []), await voteRun(votesPerClient)]);
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
    const watchers = Array.from({ length: WATCHERS }, (_, w) => {
      const call = connections[w % WATCH_CONNECTIONS]!.watchApprovalUpdates({ approvalId: '', fromVersion: 0n }, requesterMd);
      call.on('data', (ev: approvalsv1.WatchApprovalUpdatesResponse) => {
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
    for (const w of watchers) w.cancel();
    for (const c of connections) c.close();
    latencies.sort((a, b) => a - b);
    acks.sort((a, b) => a - b);
    allRequests.push(...fanIds);
    fanout = { events: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies.at(-1) ?? NaN, voteAckP50Ms: percentile(acks, 50), voteAckP99Ms: percentile(acks, 99) };
    if (latencies.length < fanoutVotes * WATCHERS * 0.99) throw new Error(`fan-out: ${latencies.length} of ${fanoutVotes * WATCHERS} events arrived within 2 s`);
  }

  step('checking that every acknowledged vote is recorded');
  let recordedVotes = 0;
  for (const id of allRequests) {
    const { approval } = await unary(client.getApprovalStatus, client, { approvalId: id }, requesterMd);
    recordedVotes += approval!.votes.length;
  }
  ledger = { acknowledgedVotes, recordedVotes };
  if (recordedVotes !== acknowledgedVotes) throw new Error(`${recordedVotes} votes are recorded but ${acknowledgedVotes} were acknowledged`);
  client.close();
} finally {
  await bench.stop();
}

const summary = (key: 'status' | 'votes') => {
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
const out = writeResult('approvals', { benchmark: 'approvals', quick, rounds, runSeconds, pinning, clients: CLIENTS, watchers: WATCHERS, status, votes, fanout: f, targets, ledger, cores: cpus().length, raw: Object.fromEntries(results) });

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
    `  recorded votes: ${ledger!.recordedVotes.toLocaleString('en-US')} = ${ledger!.acknowledgedVotes.toLocaleString('en-US')} acknowledged`,
    '',
    '  targets (PostgreSQL):',
    `    durable votes/s at ${CLIENTS} clients   ${num(votes.callsPerSec, 0)} >= ${num(TARGET.votesPerSec, 0)}: ${verdict(targets.votesPerSec32.met)}`,
    `    fan-out p99 at ${WATCHERS} watchers      ${f.p99Ms.toFixed(2)} ms < ${TARGET.fanoutP99Ms} ms: ${verdict(targets.fanoutP99Ms.met)}`,
    `    the seed's < ${TARGET.seedEventMs} ms per streamed event (p50)  ${f.p50Ms.toFixed(2)} ms: ${verdict(targets.seedPerEventMs.met)}`,
    ...(quick ? ['  (--quick: short runs on a possibly busy machine; judge targets on a full run)'] : []),
    `  figures: ${out}`,
    '',
  ].join('\n'),
);
