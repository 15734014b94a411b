// The booking rules the handlers apply, as pure functions: what Deposit and Withdraw book, when a
// credit line may open, what a draw books and shows, when the house covers winnings, and the
// ledger's pair assertion (each booking's balance changes sum to zero) checked before any SQL.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GantryError, Outbox, Status, type Sql } from '@gantry/kit';
import { checkApprove, checkHouseCovers, openLine, planDraw, remainingCredit, reserveTransfer, type CreditLineRow } from '../src/domain/credit-line.js';
import { planFunds } from '../src/domain/funds.js';
import {
  FUNDING_ACCOUNT,
  HOUSE_ACCOUNT,
  HOUSE_ADDRESS,
  MAX_AMOUNT_MINOR,
  assertBalanced,
  balanceDeltas,
  creditAccount,
  escrowAccount,
  fundsAccount,
  walletAccount,
  type PlannedTransfer,
  type TransferKind,
} from '../src/domain/ledger.js';
import { LedgerTx } from '../src/store/settlement-store.js';

const SESSION = '11111111-2222-4333-8444-555555555555';
const WALLET = '0x' + 'ab'.repeat(20);
const NOW = new Date('2026-11-23T12:00:00Z');
const amount = fc.bigInt({ min: 1n, max: MAX_AMOUNT_MINOR });
const balance = fc.bigInt({ min: 0n, max: MAX_AMOUNT_MINOR });

/** The status a rule refuses with, or OK. */
function statusOf(fn: () => unknown): Status {
  try {
    fn();
  } catch (err) {
    if (err instanceof GantryError) return err.code;
    throw err;
  }
  return Status.OK;
}

const line = (over: Partial<CreditLineRow> = {}): CreditLineRow => ({ ...openLine(SESSION, WALLET, 100n, new Date(NOW.getTime() - 1000), 60_000n), ...over });

describe('Deposit and Withdraw', () => {
  test('a withdrawal succeeds exactly up to the available balance, which it never takes below zero', () => {
    fc.assert(
      fc.property(amount, balance, (amountMinor, availableMinor) => {
        const account = walletAccount(WALLET);
        const refused = statusOf(() => planFunds('withdraw', account, amountMinor, availableMinor));
        assert.equal(refused, amountMinor > availableMinor ? Status.FAILED_PRECONDITION : Status.OK);
        if (refused !== Status.OK) return;
        const plan = planFunds('withdraw', account, amountMinor, availableMinor);
        assert.ok(plan.availableAfterMinor >= 0n);
        assert.equal(balanceDeltas([plan.transfer]).get(account), plan.availableAfterMinor - availableMinor);
        assert.equal(plan.transfer.credit, FUNDING_ACCOUNT);
      }),
    );
  });

  test('a deposit credits the account from funding, and withdrawing the same amount undoes it', () => {
    fc.assert(
      fc.property(amount, balance, (amountMinor, availableMinor) => {
        const deposit = planFunds('deposit', HOUSE_ACCOUNT, amountMinor, availableMinor);
        assert.deepEqual(deposit.transfer, { debit: FUNDING_ACCOUNT, credit: HOUSE_ACCOUNT, amountMinor, kind: 'deposit' });
        assert.equal(planFunds('withdraw', HOUSE_ACCOUNT, amountMinor, deposit.availableAfterMinor).availableAfterMinor, availableMinor);
      }),
    );
  });

  test('the house address books on the house account, any other on its wallet', () => {
    assert.equal(fundsAccount(HOUSE_ADDRESS), HOUSE_ACCOUNT);
    assert.equal(fundsAccount(WALLET), walletAccount(WALLET));
  });

  test('the refusal names the amount, the balance and why reserved funds stay', () => {
    assert.throws(() => planFunds('withdraw', walletAccount(WALLET), 11n, 10n), {
      message: 'withdrawal of 11 exceeds the available balance of 10 (funds reserved by a credit line cannot be withdrawn)',
    });
  });
});

describe('ApproveCreditLine', () => {
  test('a line opens up to the available balance, and only while the wallet has no unsettled line', () => {
    assert.equal(statusOf(() => checkApprove(100n, 100n, undefined)), Status.OK);
    assert.throws(() => checkApprove(101n, 100n, undefined), { code: Status.FAILED_PRECONDITION, message: 'credit limit 101 exceeds the available L1 balance of 100' });
    assert.throws(() => checkApprove(1n, 100n, line()), { code: Status.FAILED_PRECONDITION, message: `wallet already has an unsettled credit line (session ${SESSION}); settle it first` });
  });

  test('a new line has drawn nothing, expires after its lifetime, and reserves its whole limit', () => {
    const opened = openLine(SESSION, WALLET, 250n, NOW, 60_000n);
    assert.equal(opened.expiresAt.getTime(), NOW.getTime() + 60_000);
    assert.deepEqual([opened.drawnMinor, opened.drawCount, remainingCredit(opened), opened.settledAt], [0n, 0, 250n, null]);
    assert.deepEqual(reserveTransfer(opened), { debit: walletAccount(WALLET), credit: creditAccount(SESSION), amountMinor: 250n, kind: 'reserve' });
  });
});

describe('CreditDraw', () => {
  test('a draw within the remaining credit moves exactly its amount from L1 to the escrow', () => {
    const drawn = fc.bigInt({ min: 0n, max: 1000n });
    fc.assert(
      fc.property(drawn, fc.bigInt({ min: 1n, max: 1000n }), balance, (drawnMinor, amountMinor, walletMinor) => {
        const l = line({ creditLimitMinor: 1000n, drawnMinor, drawCount: 3 });
        const balances = { walletMinor, creditMinor: 1000n - drawnMinor, escrowMinor: drawnMinor };
        const refused = statusOf(() => planDraw(l, balances, WALLET, amountMinor, NOW));
        assert.equal(refused, amountMinor > 1000n - drawnMinor ? Status.FAILED_PRECONDITION : Status.OK);
        if (refused !== Status.OK) return;
        const plan = planDraw(l, balances, WALLET, amountMinor, NOW);
        assert.equal(plan.l1BeforeMinor - plan.l1AfterMinor, amountMinor);
        assert.equal(plan.l2BalanceMinor, drawnMinor + amountMinor);
        assert.ok(plan.remainingCreditMinor >= 0n);
        assert.equal(plan.drawCount, 4);
        const deltas = balanceDeltas([plan.transfer]);
        assert.deepEqual([deltas.get(creditAccount(SESSION)), deltas.get(escrowAccount(SESSION))], [-amountMinor, amountMinor]);
      }),
    );
  });

  test('the draw rules of checkDraw apply: another wallet, an expired line', () => {
    const balances = { walletMinor: 0n, creditMinor: 100n, escrowMinor: 0n };
    assert.equal(statusOf(() => planDraw(line(), balances, '0x' + 'cd'.repeat(20), 1n, NOW)), Status.PERMISSION_DENIED);
    assert.equal(statusOf(() => planDraw(line({ expiresAt: NOW }), balances, WALLET, 1n, NOW)), Status.FAILED_PRECONDITION);
  });
});

describe('CreditSettle: the house covers winnings', () => {
  test('winnings are refused exactly when they exceed the house balance; losses never are', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -MAX_AMOUNT_MINOR, max: MAX_AMOUNT_MINOR }), balance, (netPnlMinor, houseMinor) => {
        assert.equal(statusOf(() => checkHouseCovers({ netPnlMinor }, houseMinor)), netPnlMinor > houseMinor ? Status.FAILED_PRECONDITION : Status.OK);
      }),
    );
    assert.throws(() => checkHouseCovers({ netPnlMinor: 5n }, 4n), { message: 'the house cannot cover winnings of 5 (its balance is 4); fund the house with Deposit to "house"' });
  });
});

describe('the pair assertion: a booking balances before it reaches SQL', () => {
  const accounts = fc.constantFrom(FUNDING_ACCOUNT, HOUSE_ACCOUNT, walletAccount(WALLET), creditAccount(SESSION), escrowAccount(SESSION));
  const kind = fc.constantFrom<TransferKind>('deposit', 'withdraw', 'reserve', 'draw', 'release', 'return', 'loss', 'win');
  const transfer: fc.Arbitrary<PlannedTransfer> = fc
    .record({ debit: accounts, credit: accounts, amountMinor: amount, kind })
    .filter((t) => t.debit !== t.credit);

  test('any booking of positive transfers between distinct accounts passes, and its changes sum to zero', () => {
    fc.assert(
      fc.property(fc.array(transfer, { maxLength: 8 }), (transfers) => {
        assertBalanced(transfers);
        assert.equal([...balanceDeltas(transfers).values()].reduce((a, b) => a + b, 0n), 0n);
      }),
    );
  });

  test('a zero or negative amount, or a transfer to the same account, is refused', () => {
    const ok: PlannedTransfer = { debit: FUNDING_ACCOUNT, credit: HOUSE_ACCOUNT, amountMinor: 5n, kind: 'deposit' };
    assert.throws(() => assertBalanced([ok, { ...ok, amountMinor: 0n }]), /invariant: transfer amounts are positive/);
    assert.throws(() => assertBalanced([{ ...ok, amountMinor: -5n }]), /invariant: transfer amounts are positive/);
    assert.throws(() => assertBalanced([{ ...ok, credit: FUNDING_ACCOUNT }]), /invariant: transfer from funding to itself/);
  });

  test('the store books nothing when a booking breaks the assertion: no statement is sent', async () => {
    const sent: string[] = [];
    const sql: Sql = {
      query: async (text) => (sent.push(text), { rows: [], rowCount: 0 }),
      queryArrays: async (text) => (sent.push(text), { rows: [], rowCount: 0 }),
      exec: async (script) => void sent.push(script),
    };
    const tx = new LedgerTx(sql, new Outbox('settlement', 'gantry.settlement', false));
    const request = { owner: 'admin', key: 't1', operation: 'deposit', digest: Buffer.alloc(0) };
    const broken = { id: 't1', debit: FUNDING_ACCOUNT, credit: HOUSE_ACCOUNT, amountMinor: 0n, kind: 'deposit' as const };
    await assert.rejects(tx.book([broken], { now: NOW }, request, {}), /invariant: transfer amounts are positive/);
    assert.deepEqual(sent, []);
    await tx.book([{ ...broken, amountMinor: 1n }], { now: NOW }, request, {});
    assert.equal(sent.length, 1, 'a balanced booking is one statement');
  });
});
