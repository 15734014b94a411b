// The PostgreSQL outage tests' platform, load and checks (postgres-outage.test.ts,
// postgres-partition.test.ts): `gantry serve --target=all` with a settlement and approvals load and
// a receiver subscribed to every domain event, taken through a fault of the database and checked.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { openPostgres, unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { SettlementWallet } from '@gantry/settlement/client';
import { checkHealth, eventually } from '@gantry/test-support/clients';
import { startGantry, type GantryServer } from '../support/gantry-process.js';
import { assertUnique, PlatformClients, Receiver, SUBSCRIBER, twoOfThreeRequest } from '../platform/support.js';
import { spread } from './support.js';

/** Deadline of every call of the load: a call still waiting for the database this long has hung. */
const CALL_DEADLINE_MS = 5_000;
/** Calls acknowledged before the fault, and again after recovery. */
const ACKS_PER_PHASE = 60;
const WORKERS = 3;
const WAIT_MS = 60_000;
/** How long a claimed delivery stays leased: its attempt timeout plus the lease margin (startPlatform). */
const DELIVERY_LEASE_MS = 15_000 + 10_000;

/** What one load saw: acknowledged results, and every failed try with its code and time to fail. */
class Load {
  /** Draws acknowledged per wallet address. */
  draws = new Map<string, number>();
  readonly sessions = new Set<string>();
  approvals: string[] = [];
  acked = 0;
  /** performance.now() of each acknowledgement. */
  readonly ackedAt: number[] = [];
  readonly failures: { code: number; ms: number; at: number; startedAt: number; details: string }[] = [];
  private stopping = false;
  private running: Promise<unknown> | undefined;

  constructor(private readonly clients: PlatformClients) {}

  /** Sends the same request until it is answered; every failure must be UNAVAILABLE (asserted later). */
  private async send<T>(call: (deadlineMs: number) => Promise<T>): Promise<T> {
    for (;;) {
      const t0 = performance.now();
      try {
        return await call(CALL_DEADLINE_MS);
      } catch (err) {
        const e = err as ServiceError;
        this.failures.push({ code: e.code, ms: performance.now() - t0, at: Date.now(), startedAt: t0, details: e.details });
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  start(): void {
    const c = this.clients;
    const credit = c.as('casino-l2', ['settlement.credit']);
    const admin = c.as('treasury', ['settlement.admin']);
    const drawer = async (n: number) => {
      const wallet = SettlementWallet.generate();
      await this.send((deadline) => unary(c.settlement.deposit, c.settlement, { walletAddress: wallet.address, amountMinor: 1_000_000n, transferId: `outage-${wallet.address}`, memo: '' }, admin, deadline));
      const approve = wallet.approve(1_000_000n);
      const { sessionId } = await this.send((deadline) => unary(c.settlement.approveCreditLine, c.settlement, approve, credit, deadline));
      this.draws.set(wallet.address, 0);
      for (let i = 0; !this.stopping; i++) {
        const draw = wallet.draw(sessionId, BigInt(1 + ((n + i) % 9)), 'outage');
        await this.send((deadline) => unary(c.settlement.creditDraw, c.settlement, draw, credit, deadline));
        this.draws.set(wallet.address, this.draws.get(wallet.address)! + 1);
        this.sessions.add(sessionId);
        this.ack();
      }
    };
    const approver = async (n: number) => {
      const submitter = c.as('ops', ['approvals.submit']);
      const APPROVE = approvalsv1.VoteDecision.VOTE_DECISION_APPROVE;
      for (let i = 0; !this.stopping; i++) {
        const req = twoOfThreeRequest({ requestId: `outage-${n}-${i}-${Date.now()}`, title: 'outage test' });
        const { approval } = await this.send((deadline) => unary(c.approvals.submitApprovalRequest, c.approvals, req, submitter, deadline));
        for (const v of ['val-a', 'val-b']) {
          const md = c.as(v, ['approvals.vote']);
          await this.send((deadline) => unary(c.approvals.submitValidatorResponse, c.approvals, { approvalId: approval!.approvalId, decision: APPROVE, reason: '' }, md, deadline));
        }
        this.approvals.push(approval!.approvalId);
        this.ack();
      }
    };
    this.running = Promise.all([...Array.from({ length: WORKERS }, (_, n) => drawer(n)), ...Array.from({ length: WORKERS }, (_, n) => approver(n))]);
  }

  private ack(): void {
    this.acked++;
    this.ackedAt.push(performance.now());
  }

  /** Resolves once `n` more calls are acknowledged. */
  async more(n: number): Promise<boolean> {
    const target = this.acked + n;
    return eventually(() => this.acked >= target, WAIT_MS);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }
}

/** The process under test, its clients, and a receiver subscribed to every domain event. */
async function startPlatform(databaseUrl: string, cleanups: (() => Promise<unknown>)[]) {
  const receiver = new Receiver();
  await receiver.start();
  cleanups.push(() => receiver.stop());
  const server = await startGantry('all', {
    GANTRY_DATABASE_URL: databaseUrl,
    GANTRY_DATABASE_POOL_SIZE: '4',
    GANTRY_RATE_LIMIT_POINTS: '1000000',
    GANTRY_WEBHOOKS_ALLOWED_CIDRS: `${SUBSCRIBER}=127.0.0.1/32`,
    GANTRY_WEBHOOKS_POLL_INTERVAL_MS: '100',
    GANTRY_EVENTS_MAX_BACKOFF_MS: '1000',
    // Events a relay could not mark sent during the outage go again 2 s later, not 30 s.
    GANTRY_EVENTS_LEASE_MS: '2000',
    // The defaults, stated because DELIVERY_LEASE_MS follows from them.
    GANTRY_WEBHOOKS_ATTEMPT_TIMEOUT_MS: '15000',
    GANTRY_WEBHOOKS_LEASE_MARGIN_MS: '10000',
  });
  cleanups.push(() => server.stop());
  const pki = (f: string) => join(server.dataDir, 'pki', f);
  const at = `127.0.0.1:${server.port}`;
  const clients = new PlatformClients({ settlement: at, approvals: at, webhooks: at, log: at }, { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' }, server.dataDir);
  cleanups.push(async () => clients.close());
  const secret = await clients.subscribe(receiver.url);
  return { server, clients, receiver, secret };
}

/** Readiness and liveness as the probes see them: grpc.health.v1 on the probe port, and its HTTP routes. */
async function probes(server: GantryServer) {
  const grpc = async (name: string) => (await checkHealth(`127.0.0.1:${server.healthPort}`, credentials.createInsecure(), name, 2000)).status;
  const http = async (path: string) => (await fetch(`http://127.0.0.1:${server.healthPort}${path}`, { signal: AbortSignal.timeout(2000) })).status;
  return { readiness: await grpc('readiness'), overall: await grpc(''), liveness: await grpc('liveness'), readyz: await http('/readyz'), livez: await http('/livez') };
}

export interface Fault {
  /** Starts the fault; resolves once the database is unreachable. */
  begin(): Promise<void>;
  /** How long the database stays unreachable. */
  downMs: number;
  /** Ends the fault; resolves once the database is back. */
  end(): Promise<void>;
  /**
   * True when the database refuses (connections reset or refused): every call must fail with
   * UNAVAILABLE within half its deadline. False for a partition, where nothing answers until the
   * reachability probe gives up (database.pingTimeoutMs): a call already waiting then may take up
   * to its deadline to fail, still with UNAVAILABLE; calls made after readiness turned NOT_SERVING
   * fail within half their deadline.
   */
  failFast: boolean;
}

/** Runs the load through `fault` on a fresh platform and checks everything the header promises. */
export async function throughFault(t: { diagnostic(msg: string): void }, databaseUrl: string, fault: Fault, cleanups: (() => Promise<unknown>)[]) {
  const { server, clients, receiver, secret } = await startPlatform(databaseUrl, cleanups);
  const load = new Load(clients);
  load.start();
  cleanups.push(() => load.stop());
  assert.ok(await load.more(ACKS_PER_PHASE), 'the load runs before the fault');
  assert.deepEqual(await probes(server), { readiness: 'SERVING', overall: 'SERVING', liveness: 'SERVING', readyz: 200, livez: 200 });

  const faultAt = performance.now();
  await fault.begin();
  let notReadyMs = 0;
  assert.ok(
    // Within a check interval (5 s) when the database refuses; a partition takes the probe's
    // timeout (database.pingTimeoutMs, 3 s) more.
    await eventually(async () => (await probes(server)).readiness === 'NOT_SERVING', 25_000),
    'readiness stays SERVING with the database unreachable',
  );
  const notReadyAt = performance.now();
  notReadyMs = notReadyAt - faultAt;
  const during = await probes(server);
  assert.deepEqual(during, { readiness: 'NOT_SERVING', overall: 'NOT_SERVING', liveness: 'SERVING', readyz: 503, livez: 200 }, 'the probes while the database is unreachable');
  await new Promise((r) => setTimeout(r, Math.max(0, fault.downMs - (performance.now() - faultAt))));
  assert.equal((await probes(server)).liveness, 'SERVING', 'liveness at the end of the outage');
  const failuresInFault = load.failures.filter((f) => f.at >= Date.now() - fault.downMs);
  const restoreAt = performance.now();
  await fault.end();
  assert.ok(await eventually(async () => (await probes(server)).readiness === 'SERVING', 30_000), 'readiness returns with the database, without a restart');
  const readyMs = performance.now() - restoreAt;
  assert.ok(await eventually(() => load.ackedAt.at(-1)! > restoreAt, 30_000), 'calls succeed again');
  const firstAckMs = load.ackedAt.find((at) => at > restoreAt)! - restoreAt;
  // Calls answered before the fault may be acknowledged a moment after it began; none later.
  const ackedInFault = load.ackedAt.filter((at) => at > faultAt + 1_000 && at < restoreAt).length;
  assert.equal(ackedInFault, 0, 'calls acknowledged while the database was unreachable');
  assert.ok(await load.more(ACKS_PER_PHASE), 'the load runs after the fault');
  await load.stop();
  assert.equal(server.child.exitCode, null, 'the process never exited');
  assert.equal(server.child.signalCode, null);

  // Every failed call said UNAVAILABLE, and said it well inside its deadline (a partition: once it
  // was noticed; a call already waiting for the silent database may take up to its deadline).
  const unexpected = load.failures.filter((f) => f.code !== status.UNAVAILABLE);
  assert.deepEqual(unexpected.map((f) => `${status[f.code]}: ${f.details}`).slice(0, 5), [], 'failures other than UNAVAILABLE');
  assert.ok(failuresInFault.length > 0, 'the load met the outage');
  const fast = fault.failFast ? load.failures : load.failures.filter((f) => f.startedAt > notReadyAt);
  const slowest = (failures: typeof load.failures) => Math.round(Math.max(0, ...failures.map((f) => f.ms)));
  assert.ok(fast.length > 0, 'calls were refused while readiness said NOT_SERVING');
  assert.ok(slowest(fast) < CALL_DEADLINE_MS / 2, `a call took ${slowest(fast)} ms to fail (deadline ${CALL_DEADLINE_MS} ms)`);
  assert.ok(slowest(load.failures) < CALL_DEADLINE_MS, `a call took ${slowest(load.failures)} ms to fail, past its deadline (${CALL_DEADLINE_MS} ms)`);

  // Nothing acknowledged was lost; each call resent after the fault booked once.
  const c = clients;
  const reader = c.as('auditor', ['settlement.read', 'approvals.read']);
  for (const [walletAddress, draws] of load.draws) {
    const s = await unary(c.settlement.getCreditStatus, c.settlement, { walletAddress }, reader);
    assert.equal(s.totalDraws, BigInt(draws), `${walletAddress}: draws booked vs acknowledged`);
  }
  for (const approvalId of load.approvals) {
    const { approval } = await unary(c.approvals.getApprovalStatus, c.approvals, { approvalId }, reader);
    assert.equal(approval!.state, approvalsv1.ApprovalState.APPROVAL_STATE_APPROVED);
    assert.deepEqual(approval!.votes.map((v) => v.validator), ['val-a', 'val-b']);
  }
  // The relays and the dispatcher caught up: each event of the acknowledged calls audited once and
  // delivered; twice only where the service recorded a second attempt, and never when the fault was
  // shorter than a delivery's lease (an outcome the database could not take waits for it).
  const draws = [...load.draws.values()].reduce((a, b) => a + b, 0);
  const ours = new Set([...load.sessions, ...load.approvals]);
  const expected = draws + load.sessions.size + 4 * load.approvals.length;
  const delivered = () => receiver.events(secret).filter((r) => ours.has(r.event.subject));
  const distinctDelivered = () => new Set(delivered().map((r) => r.event.id)).size;
  const caughtUpAt = performance.now();
  assert.ok(await eventually(() => distinctDelivered() >= expected, WAIT_MS), `delivered ${distinctDelivered()} of ${expected} events`);
  const audit = async () => [...(await c.audit('audit.settlement')), ...(await c.audit('audit.approvals'))].filter((e) => ours.has(e.subject));
  assert.ok(await eventually(async () => (await audit()).length >= expected, WAIT_MS), 'audit entries are missing');
  const catchUpMs = performance.now() - caughtUpAt;
  const audited = await audit();
  assertUnique(audited.map((e) => e.id), 'audit entries');
  assert.equal(audited.length, expected);
  assert.equal(distinctDelivered(), expected);
  assert.deepEqual([...new Set(delivered().map((r) => r.event.id))].sort(), audited.map((e) => e.id).sort(), 'the deliveries and the audit trail hold the same events');
  assert.equal(audited.filter((e) => e.type === 'settlement.credit.drawn').length, draws, 'one drawn event per acknowledged draw');
  for (const partition of ['audit.settlement', 'audit.approvals']) assert.equal((await c.verify(partition)).valid, true, partition);
  const arrivals = new Map<string, number>();
  for (const r of delivered()) arrivals.set(r.event.id, (arrivals.get(r.event.id) ?? 0) + 1);
  const repeated = [...arrivals].filter(([, n]) => n > 1);
  const sql = await openPostgres({ url: databaseUrl, poolSize: 1, statementTimeoutMs: 30_000 });
  try {
    const attempts = new Map((await sql.query<{ event_id: string; attempts: number }>(`SELECT event_id, attempts FROM webhooks.deliveries`)).rows.map((r) => [r.event_id, r.attempts]));
    for (const [id, n] of repeated) assert.ok(n <= (attempts.get(id) ?? 0), `${id} arrived ${n} times in ${attempts.get(id)} recorded attempts`);
  } finally {
    await sql.close();
  }
  if (fault.downMs < DELIVERY_LEASE_MS) assert.deepEqual(repeated, [], `events delivered twice although the fault (${fault.downMs} ms) was shorter than a delivery's lease`);

  const inFault = failuresInFault.map((f) => f.ms);
  t.diagnostic(
    `${load.acked} calls acknowledged (${draws} draws, ${load.approvals.length} approvals); ` +
      `readiness NOT_SERVING ${Math.round(notReadyMs)} ms after the fault; ${inFault.length} calls failed during it (${[...new Set(failuresInFault.map((f) => status[f.code]))].join(', ')}) in ${spread(inFault)}, ` +
      `the slowest in ${slowest(load.failures)} ms (${slowest(fast)} ms once NOT_SERVING); ` +
      `readiness SERVING ${Math.round(readyMs)} ms after the database returned, first call acknowledged after ${Math.round(firstAckMs)} ms; ` +
      `${expected} events audited once and delivered (${repeated.length} twice), caught up ${Math.round(catchUpMs)} ms after the load stopped`,
  );
}

