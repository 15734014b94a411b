// kill -9 of each service process under its own write load, ten times, on PostgreSQL (issue 20).
// Each process is restarted on the same port, data dir and database; a call whose answer the kill
// swallowed is sent again unchanged (same nonce, idempotency key or event id: the retries the API
// promises are idempotent), so at the end every request has exactly one acknowledged outcome, and
// the services' own read RPCs and SQL must show each booked once. The log's kill -9 is
// tests/log/crash.test.ts (one kill per engine, every acknowledged entry checked).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { openPostgres, unary } from '@gantry/kit';
import { approvalsv1 } from '@gantry/proto';
import { SettlementOperator, SettlementWallet } from '@gantry/settlement/client';
import { verifyWebhook } from '@gantry/webhooks/client';
import { eventually } from '@gantry/test-support/clients';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { PlatformClients } from '../platform/support.js';
import { KilledProcess, killCycles, spread, untilAnswered } from './support.js';

requirePostgresInCi('the kill -9 fault tests');

const KILLS = 10;
const WORKERS = 6;
const LOAD_TIMEOUT_MS = 180_000;

/** A fresh database and a process of `target` on it, both removed after the suite. */
async function killedTarget(target: string, env: NodeJS.ProcessEnv, cleanups: (() => Promise<unknown>)[]) {
  const database = await freshPostgresDatabase(`t_kill_${target}`);
  cleanups.push(() => database.drop());
  const proc = new KilledProcess(target, { GANTRY_DATABASE_URL: database.url, GANTRY_DATABASE_POOL_SIZE: '4', GANTRY_RATE_LIMIT_POINTS: '1000000', ...env });
  cleanups.push(() => proc.close());
  await proc.start();
  const at = `127.0.0.1:${proc.port}`;
  const pki = (f: string) => join(proc.dataDir, 'pki', f);
  const clients = new PlatformClients({ settlement: at, approvals: at, webhooks: at, log: at }, { caFile: pki('ca.crt'), certFile: pki('client.crt'), keyFile: pki('client.key'), serverName: 'localhost' }, proc.dataDir);
  cleanups.push(async () => clients.close());
  const sql = await openPostgres({ url: database.url, poolSize: 1, statementTimeoutMs: 30_000 });
  cleanups.push(() => sql.close());
  return { proc, clients, sql };
}

describe('kill -9 under load, ten times, on PostgreSQL', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('settlement: every acknowledged draw and settlement is booked once, balances match the calls, the ledger audits clean', async (t) => {
    const { proc, clients, sql } = await killedTarget('settlement', { GANTRY_EVENTS_ENABLED: 'false' }, cleanups);
    const c = clients.settlement;
    const credit = clients.as('casino-l2', ['settlement.credit']);
    const admin = clients.as('treasury', ['settlement.admin', 'settlement.read']);
    const operator = SettlementOperator.generate();
    const counters = { retries: 0 };
    const send = <T>(call: () => Promise<T>) => untilAnswered(proc, call, counters);
    await unary(c.registerOperatorKey, c, { publicKey: operator.publicKey, name: 'kill-test-l2' }, admin);

    const FUNDS = 1_000_000n;
    interface WalletModel {
      wallet: SettlementWallet;
      draws: { transferId: string; amount: bigint }[];
      settles: number;
      /** L1 balance the acknowledged calls imply. */
      l1: bigint;
    }
    const models: WalletModel[] = await Promise.all(
      Array.from({ length: WORKERS }, async (_, i) => {
        const wallet = SettlementWallet.generate();
        await unary(c.deposit, c, { walletAddress: wallet.address, amountMinor: FUNDS, transferId: `kill-fund-${i}`, memo: '' }, admin);
        return { wallet, draws: [], settles: 0, l1: FUNDS };
      }),
    );
    let acked = 0;
    // Each worker: approve a line, draw 1..5 times, settle it at a loss or a small win; again.
    const worker = async (m: WalletModel, stopping: () => boolean) => {
      for (let round = 0; !stopping(); round++) {
        const approve = m.wallet.approve(10_000n);
        const { sessionId } = await send(() => unary(c.approveCreditLine, c, approve, credit));
        acked++;
        let drawn = 0n;
        let count = 0;
        for (let d = 0; d < 1 + (round % 5); d++) {
          const amount = BigInt(1 + ((round * 7 + d * 13) % 500));
          const draw = m.wallet.draw(sessionId, amount, 'kill');
          const r = await send(() => unary(c.creditDraw, c, draw, credit));
          m.draws.push({ transferId: r.transferId, amount });
          drawn += amount;
          count = r.drawCount;
          acked++;
        }
        const finalL2 = round % 3 === 0 ? drawn + 5n : drawn / 2n;
        const settle = operator.cosign(m.wallet.settle(sessionId, finalL2), { drawnMinor: drawn, drawCount: count });
        const s = await send(() => unary(c.creditSettle, c, settle, credit));
        assert.equal(s.returnedToL1Minor, finalL2);
        m.l1 += finalL2 - drawn;
        m.settles++;
        acked++;
      }
    };
    // The house covers the small wins.
    await unary(c.deposit, c, { walletAddress: 'house', amountMinor: FUNDS, transferId: 'kill-house', memo: '' }, admin);

    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 150, acked: () => acked, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => models.map((m) => worker(m, stopping)));
    assert.equal(proc.kills, KILLS);

    const draws = models.flatMap((m) => m.draws);
    assert.equal(new Set(draws.map((d) => d.transferId)).size, draws.length, 'no two acknowledged draws share a transfer');
    for (const m of models) {
      const s = await unary(c.getCreditStatus, c, { walletAddress: m.wallet.address }, admin);
      assert.equal(s.totalDraws, BigInt(m.draws.length), `${m.wallet.address}: draws booked vs acknowledged`);
      assert.equal(s.totalSettlements, BigInt(m.settles), `${m.wallet.address}: settlements booked vs acknowledged`);
      assert.equal(s.l1BalanceMinor, m.l1, `${m.wallet.address}: L1 balance`);
      assert.equal(s.hasActiveCredit, false);
    }
    const booked = await sql.query<{ id: string; amount_minor: bigint }>(`SELECT id, amount_minor FROM settlement.transfers WHERE kind = 'draw'`);
    assert.equal(booked.rows.length, draws.length, 'draw transfers in the ledger vs draws acknowledged');
    const bookedById = new Map(booked.rows.map((r) => [r.id, BigInt(r.amount_minor)]));
    for (const d of draws) assert.equal(bookedById.get(d.transferId), d.amount, `draw ${d.transferId} booked with its amount`);
    // The ledger's own audit, as SettlementStore.audit: posted totals equal the transfers, money is conserved, no floor broken.
    const drift = await sql.query(
      `SELECT a.id FROM settlement.accounts a
        WHERE a.debits_posted <> coalesce((SELECT sum(amount_minor) FROM settlement.transfers t WHERE t.debit_account = a.id), 0)
           OR a.credits_posted <> coalesce((SELECT sum(amount_minor) FROM settlement.transfers t WHERE t.credit_account = a.id), 0)`,
    );
    assert.deepEqual(drift.rows, [], 'accounts whose posted totals differ from their transfers');
    const total = await sql.query<{ total: string }>(`SELECT coalesce(sum(credits_posted - debits_posted), 0)::text AS total FROM settlement.accounts`);
    assert.equal(total.rows[0]?.total, '0', 'all balances add up to zero');
    const negative = await sql.query(`SELECT id FROM settlement.accounts WHERE floor_zero AND credits_posted < debits_posted`);
    assert.deepEqual(negative.rows, [], 'accounts below their floor');
    t.diagnostic(`${KILLS} kills; ${acked} calls acknowledged (${draws.length} draws, ${models.reduce((n, m) => n + m.settles, 0)} settlements); ${counters.retries} retries of calls cut by a kill; restart ${spread(downMs)}`);
  });

  test('approvals: every acknowledged submission and vote is recorded once, and each state follows from its votes', async (t) => {
    const { proc, clients } = await killedTarget('approvals', { GANTRY_EVENTS_ENABLED: 'false' }, cleanups);
    const c = clients.approvals;
    const counters = { retries: 0 };
    const send = <T>(call: () => Promise<T>) => untilAnswered(proc, call, counters);
    const { APPROVE, REJECT } = { APPROVE: approvalsv1.VoteDecision.VOTE_DECISION_APPROVE, REJECT: approvalsv1.VoteDecision.VOTE_DECISION_REJECT };
    const { APPROVED, REJECTED } = { APPROVED: approvalsv1.ApprovalState.APPROVAL_STATE_APPROVED, REJECTED: approvalsv1.ApprovalState.APPROVAL_STATE_REJECTED };
    // 2 of 3: two approvals; two rejections (approval out of reach); approve, reject, approve.
    const patterns = [
      { votes: [['val-a', APPROVE], ['val-b', APPROVE]], state: APPROVED },
      { votes: [['val-a', REJECT], ['val-b', REJECT]], state: REJECTED },
      { votes: [['val-a', APPROVE], ['val-b', REJECT], ['val-c', APPROVE]], state: APPROVED },
    ] as const;
    const submitter = clients.as('ops', ['approvals.submit', 'approvals.read']);
    const voters = new Map(['val-a', 'val-b', 'val-c'].map((v) => [v, clients.as(v, ['approvals.vote', 'approvals.read'])]));
    const done: { approvalId: string; pattern: (typeof patterns)[number]; votes: number }[] = [];
    let acked = 0;
    let duplicates = 0;
    const worker = async (n: number, stopping: () => boolean) => {
      for (let i = 0; !stopping(); i++) {
        const pattern = patterns[(n + i) % patterns.length]!;
        const content = Buffer.from(`kill test ${n}-${i}`);
        const req: approvalsv1.SubmitApprovalRequestRequest = {
          requestId: `kill-${n}-${i}`,
          type: approvalsv1.ApprovalType.APPROVAL_TYPE_PARAMETER_CHANGE,
          priority: approvalsv1.ApprovalPriority.APPROVAL_PRIORITY_HIGH,
          requester: '',
          title: 'kill test',
          content,
          contentHash: createHash('sha256').update(content).digest(),
          validators: ['val-a', 'val-b', 'val-c'],
          requiredApprovals: 2,
          expiry: { $case: 'ttl', value: { seconds: 3600n, nanos: 0 } },
          labels: {},
        };
        const { approval } = await send(() => unary(c.submitApprovalRequest, c, req, submitter));
        acked++;
        const record = { approvalId: approval!.approvalId, pattern, votes: 0 };
        done.push(record);
        for (const [validator, decision] of pattern.votes) {
          const r = await send(() => unary(c.submitValidatorResponse, c, { approvalId: record.approvalId, decision, reason: `${validator} ${i}` }, voters.get(validator)!));
          if (r.duplicate) duplicates++;
          record.votes++;
          acked++;
        }
      }
    };
    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 150, acked: () => acked, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => Array.from({ length: WORKERS }, (_, n) => worker(n, stopping)));
    assert.equal(proc.kills, KILLS);

    const reader = clients.as('auditor', ['approvals.read']);
    assert.equal(new Set(done.map((d) => d.approvalId)).size, done.length, 'each submission (retried with its request_id) made one approval');
    for (const d of done) {
      const { approval } = await unary(c.getApprovalStatus, c, { approvalId: d.approvalId }, reader);
      const expected = d.pattern.votes.slice(0, d.votes);
      assert.deepEqual(
        approval!.votes.map((v) => [v.validator, v.decision]),
        expected.map(([v, decision]) => [v, decision]),
        `${d.approvalId}: the votes recorded are the acknowledged ones, once each`,
      );
      const complete = d.votes === d.pattern.votes.length;
      assert.equal(approval!.state, complete ? d.pattern.state : approvalsv1.ApprovalState.APPROVAL_STATE_PENDING, `${d.approvalId}: state after ${d.votes} votes`);
      const approvals = expected.filter(([, x]) => x === APPROVE).length;
      assert.equal(approval!.tally!.approvals, approvals);
      assert.equal(approval!.tally!.rejections, expected.length - approvals);
    }
    t.diagnostic(`${KILLS} kills; ${acked} calls acknowledged (${done.length} approvals, ${acked - done.length} votes; ${duplicates} votes answered as duplicates of one the kill had cut); ${counters.retries} retries; restart ${spread(downMs)}`);
  });

  test('webhooks: every acknowledged event reaches each endpoint, signed; a second arrival only where the service recorded a second attempt', async (t) => {
    const OWNER = 'kill-test';
    const ENDPOINTS = 2;
    // A real HTTP receiver: every request by endpoint path and webhook-id.
    const arrivals = new Map<string, { headers: IncomingHttpHeaders; body: Buffer }[]>();
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const key = `${req.url} ${String(req.headers['webhook-id'])}`;
        arrivals.set(key, [...(arrivals.get(key) ?? []), { headers: req.headers, body: Buffer.concat(chunks) }]);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    cleanups.push(async () => (receiver.closeAllConnections(), await new Promise((r) => receiver.close(r))));
    const receiverPort = (receiver.address() as AddressInfo).port;

    const { proc, clients, sql } = await killedTarget(
      'webhooks',
      {
        GANTRY_WEBHOOKS_ALLOWED_CIDRS: `${OWNER}=127.0.0.1/32`,
        GANTRY_WEBHOOKS_POLL_INTERVAL_MS: '100',
        // A claimed attempt of a killed process is retried 1.5 s after its claim, not 25 s.
        GANTRY_WEBHOOKS_ATTEMPT_TIMEOUT_MS: '1000',
        GANTRY_WEBHOOKS_LEASE_MARGIN_MS: '500',
        GANTRY_WEBHOOKS_DEFAULT_RATE_LIMIT_PER_SECOND: '100000',
        GANTRY_WEBHOOKS_DEFAULT_MAX_CONCURRENCY: '64',
      },
      cleanups,
    );
    const c = clients.webhooks;
    const md = clients.as(OWNER, ['webhooks.manage', 'webhooks.publish', 'webhooks.read']);
    const secrets = new Map<string, string>();
    for (let e = 0; e < ENDPOINTS; e++) {
      const spec = { url: `http://127.0.0.1:${receiverPort}/hook/${e}`, eventTypes: ['kill.event'], headers: {}, description: 'kill test', paused: false, rateLimitPerSecond: 0, maxConcurrency: 0, labels: {} };
      const created = await unary(c.createWebhook, c, { owner: '', externalId: `kill-${e}`, secret: '', spec }, md);
      secrets.set(`/hook/${e}`, created.secret);
    }

    const counters = { retries: 0 };
    const published: string[] = [];
    let duplicatePublishes = 0;
    const worker = async (n: number, stopping: () => boolean) => {
      for (let i = 0; !stopping(); i++) {
        const eventId = `kill-${n}-${i}`;
        const req = { eventId, eventType: 'kill.event', payload: Buffer.from(JSON.stringify({ n, i })), contentType: 'application/json', owner: '', occurredAt: undefined, traceContext: {} };
        const r = await untilAnswered(proc, () => unary(c.publishEvent, c, req, md), counters);
        assert.equal(r.deliveryIds.length, ENDPOINTS, `${eventId}: one delivery per endpoint`);
        if (r.duplicate) duplicatePublishes++;
        published.push(eventId);
      }
    };
    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 100, acked: () => published.length, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => Array.from({ length: WORKERS }, (_, n) => worker(n, stopping)));
    assert.equal(proc.kills, KILLS);

    const missing = () => [...secrets.keys()].flatMap((path) => published.filter((id) => !arrivals.has(`${path} ${id}`)).map((id) => `${path} ${id}`));
    const t0 = Date.now();
    assert.ok(await eventually(() => missing().length === 0, 60_000), `deliveries never arrived: ${missing().slice(0, 10).join(', ')} (${missing().length} in all)`);
    const lastArrivalMs = Date.now() - t0;
    const expectedKeys = new Set(published.flatMap((id) => [...secrets.keys()].map((path) => `${path} ${id}`)));
    assert.deepEqual([...arrivals.keys()].filter((k) => !expectedKeys.has(k)), [], 'arrivals of events no one published');
    for (const [key, list] of arrivals) {
      const secret = secrets.get(key.split(' ')[0]!)!;
      for (const a of list) assert.equal(verifyWebhook(a.headers, a.body, secret).id, key.split(' ')[1], `${key}: signed with the endpoint's secret`);
    }
    // The service's own record: every delivery succeeded, and one arrived more than once only
    // when its attempt was cut by a kill and started again (at-least-once; receivers dedupe by webhook-id).
    assert.ok(await eventually(async () => (await sql.query(`SELECT 1 FROM webhooks.deliveries WHERE status <> 'SUCCEEDED' LIMIT 1`)).rows.length === 0, 30_000), 'deliveries left unfinished');
    const deliveries = await sql.query<{ event_id: string; url: string; attempts: number }>(
      `SELECT d.event_id, e.url, d.attempts FROM webhooks.deliveries d JOIN webhooks.endpoints e USING (webhook_id)`,
    );
    assert.equal(deliveries.rows.length, published.length * ENDPOINTS);
    let repeated = 0;
    for (const d of deliveries.rows) {
      const key = `${new URL(d.url).pathname} ${d.event_id}`;
      const times = arrivals.get(key)?.length ?? 0;
      assert.ok(times <= d.attempts, `${key} arrived ${times} times in ${d.attempts} recorded attempts`);
      repeated += times - 1;
    }
    t.diagnostic(`${KILLS} kills; ${published.length} events acknowledged (${duplicatePublishes} answered as duplicates of a publish the kill had cut), ${published.length * ENDPOINTS} deliveries, all arrived and signed; ${repeated} arrived twice (attempt cut by a kill); last arrival ${lastArrivalMs} ms after the load; ${counters.retries} retries; restart ${spread(downMs)}`);
  });
});
