// The booking rules the handlers apply, as pure functions: what Deposit and Withdraw book, when a
// credit line may open, what a draw books and shows, when the house covers winnings, and the
// ledger's pair assertion (each booking's balance changes sum to zero) checked before any SQL.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GantryError, Outbox, Status, type Sql } from '@gantry/kit';
import { checkApprove, checkAttestedState, checkHouseCovers, checkSettlementBounds, openLine, planDraw, remainingCredit, reserveTransfer, type CreditLineRow } from '../src/domain/credit-line.js';
import { MAX_ACTIVE_OPERATOR_KEYS, checkAttestingKey, checkRegister, checkRevoke, type OperatorKeyRow } from '../src/domain/operator-keys.js';
import { planFunds } from '../src/domain/funds.js';
import {
  FUNDING_ACCOUNT,
  HOUSE_ACCOUNT,
  HOUSE_ADDRESS,
  MAX_AMOUNT_MINOR,
  assertBalanced,
  balanceDeltas,
  settlementPlan,
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

describe('CreditSettle: the bounds an attested settlement stays within', () => {
  const small = fc.bigInt({ min: 0n, max: 10_000n });

  test('a settlement passes exactly when locked ≤ drawn and winnings ≤ the cap; refusals are FAILED_PRECONDITION', () => {
    fc.assert(
      fc.property(small, small, small, small, (drawnMinor, finalL2BalanceMinor, lockedInBetsMinor, capMinor) => {
        const expectOk = lockedInBetsMinor <= drawnMinor && finalL2BalanceMinor + lockedInBetsMinor - drawnMinor <= capMinor;
        const got = statusOf(() => checkSettlementBounds({ sessionId: SESSION, drawnMinor, finalL2BalanceMinor, lockedInBetsMinor }, capMinor));
        assert.equal(got, expectOk ? Status.OK : Status.FAILED_PRECONDITION);
      }),
      { numRuns: 2000 },
    );
  });

  test('whatever an operator attests within the bounds, the house pays at most the cap and locked bets return at most what was drawn', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: MAX_AMOUNT_MINOR }), fc.double({ min: 0, max: 1, noNaN: true }), balance, balance, fc.bigInt({ min: 0n, max: MAX_AMOUNT_MINOR }), (limit, share, final, locked, cap) => {
        const drawnMinor = (limit * BigInt(Math.floor(share * 1000))) / 1000n;
        const s = { sessionId: SESSION, drawnMinor, finalL2BalanceMinor: final, lockedInBetsMinor: locked };
        if (statusOf(() => checkSettlementBounds(s, cap)) !== Status.OK) return;
        const plan = settlementPlan({ ...s, walletAddress: WALLET, creditLimitMinor: limit });
        const houseLoss = -(balanceDeltas(plan.transfers).get(HOUSE_ACCOUNT) ?? 0n);
        assert.ok(houseLoss <= cap, `the house lost ${houseLoss} > cap ${cap}`);
        assert.ok(locked <= drawnMinor);
      }),
      { numRuns: 1000 },
    );
  });

  test("the issue's attack: drew 10, claims 900,000 locked: refused at any cap, and a cap refuses a huge final balance", () => {
    const attack = { sessionId: SESSION, drawnMinor: 10n, finalL2BalanceMinor: 0n, lockedInBetsMinor: 900_000n };
    assert.throws(() => checkSettlementBounds(attack, MAX_AMOUNT_MINOR), { code: Status.FAILED_PRECONDITION, message: /locked-in bets of 900000 exceed the 10 drawn into session/ });
    assert.throws(() => checkSettlementBounds({ ...attack, finalL2BalanceMinor: 900_000n, lockedInBetsMinor: 0n }, 100_000n), {
      code: Status.FAILED_PRECONDITION,
      message: /winnings of 899990 exceed the per-session payout cap of 100000 \(settlement\.maxSessionWinningsMinor\)/,
    });
  });

  test('an attestation settles only the state it was made for: the same drawn amount and draw count', () => {
    fc.assert(
      fc.property(small, fc.nat(20), small, fc.nat(20), (drawnMinor, drawCount, attestedDrawn, attestedCount) => {
        const got = statusOf(() => checkAttestedState({ sessionId: SESSION, drawnMinor, drawCount }, { drawnMinor: attestedDrawn, drawCount: attestedCount }));
        assert.equal(got, drawnMinor === attestedDrawn && drawCount === attestedCount ? Status.OK : Status.FAILED_PRECONDITION);
      }),
    );
  });
});

describe('operator keys', () => {
  const key = (over: Partial<OperatorKeyRow> = {}): OperatorKeyRow => ({
    publicKey: Buffer.alloc(32, 7),
    name: 'casino-1',
    registeredAt: NOW,
    registeredBy: 'treasury',
    revokedAt: null,
    revokedBy: null,
    revokeReason: null,
    ...over,
  });
  const revoked = key({ revokedAt: NOW, revokedBy: 'sre', revokeReason: 'leaked' });

  test('registration: new below the active limit, a retry under the same name is unchanged, another name or a revoked key is refused', () => {
    assert.equal(checkRegister(undefined, 'casino-1', MAX_ACTIVE_OPERATOR_KEYS - 1), 'new');
    assert.throws(() => checkRegister(undefined, 'casino-1', MAX_ACTIVE_OPERATOR_KEYS), { code: Status.FAILED_PRECONDITION, message: /64 operator keys are active/ });
    assert.deepEqual(checkRegister(key(), 'casino-1', MAX_ACTIVE_OPERATOR_KEYS), { unchanged: key() });
    assert.throws(() => checkRegister(key(), 'casino-2', 1), { code: Status.ALREADY_EXISTS, message: /already registered as "casino-1"/ });
    assert.throws(() => checkRegister(revoked, 'casino-1', 0), { code: Status.FAILED_PRECONDITION, message: /a revoked key never comes back/ });
  });

  test('revocation: of a registered key, once; only an active registered key attests', () => {
    assert.equal(checkRevoke(key(), key().publicKey), 'revoke');
    assert.deepEqual(checkRevoke(revoked, revoked.publicKey), { unchanged: revoked });
    assert.throws(() => checkRevoke(undefined, key().publicKey), { code: Status.NOT_FOUND, message: `operator key ${'07'.repeat(32)} was never registered` });
    const active = key();
    assert.equal(checkAttestingKey(active, active.publicKey), active);
    assert.throws(() => checkAttestingKey(undefined, key().publicKey), { code: Status.PERMISSION_DENIED, message: /is not a registered operator key/ });
    assert.throws(() => checkAttestingKey(revoked, revoked.publicKey), { code: Status.PERMISSION_DENIED, message: /\("casino-1"\) was revoked at/ });
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
