// kill -9 of `gantry serve --target=settlement` ten times under its write load (approve, draw,
// settle), on PostgreSQL (issue 20).
// Each restart is on the same port, data dir and database; a call whose answer the kill swallowed
// is sent again unchanged (support.ts, untilAnswered), as the API's idempotency allows.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unary } from '@gantry/kit';
import { SettlementOperator, SettlementWallet } from '@gantry/settlement/client';
import { postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { KILLS, killCycles, killedTarget, LOAD_TIMEOUT_MS, spread, untilAnswered, WORKERS } from './support.js';

requirePostgresInCi('the settlement kill -9 fault test');

describe('kill -9 of settlement under load, ten times, on PostgreSQL', { skip: postgresSkip() }, () => {
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

    const { downMs } = await killCycles(proc, { cycles: KILLS, acksPerCycle: 60, acked: () => acked, timeoutMs: LOAD_TIMEOUT_MS }, (stopping) => models.map((m) => worker(m, stopping)));
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
});
