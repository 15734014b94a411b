// The ledger's pure rules: the settlement plan over every small case and random large ones, the
// credit line checks, and the canonical message signatures are taken over.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Status } from '@gantry/kit';
import { checkDraw, checkSettle, type CreditLineRow } from '../src/domain/credit-line.js';
import { HOUSE_ACCOUNT, MAX_AMOUNT_MINOR, balanceDeltas, creditAccount, escrowAccount, lineState, settlementPlan, walletAccount } from '../src/domain/ledger.js';
import { canonicalMessage, generateWallet, signRequest, verifySignature, walletAddress, walletFromPrivateKey, type SignedFields } from '../src/domain/signing.js';

const SESSION = '11111111-2222-4333-8444-555555555555';
const WALLET = '0x' + 'ab'.repeat(20);

function checkPlan(limit: bigint, drawn: bigint, final: bigint, locked: bigint): void {
  const plan = settlementPlan({ sessionId: SESSION, walletAddress: WALLET, creditLimitMinor: limit, drawnMinor: drawn, finalL2BalanceMinor: final, lockedInBetsMinor: locked });
  const deltas = balanceDeltas(plan.transfers);
  const d = (account: string) => deltas.get(account) ?? 0n;
  // Before settling, credit holds limit - drawn and escrow holds drawn; both end at exactly zero.
  assert.equal(d(creditAccount(SESSION)), -(limit - drawn));
  assert.equal(d(escrowAccount(SESSION)), -drawn);
  // The wallet gets the undrawn credit back plus everything returned from the session.
  assert.equal(d(walletAccount(WALLET)), limit - drawn + final + locked);
  // The house is the counterparty of the net result.
  assert.equal(d(HOUSE_ACCOUNT), drawn - final - locked);
  assert.equal([...deltas.values()].reduce((a, b) => a + b, 0n), 0n, 'money is conserved');
  assert.equal(plan.netPnlMinor, final + locked - drawn);
  assert.equal(plan.outcome, plan.netPnlMinor > 0n ? 'WINNINGS' : plan.netPnlMinor < 0n ? 'LOSSES' : 'BREAKEVEN');
  for (const t of plan.transfers) assert.ok(t.amountMinor > 0n, 'no zero or negative transfers');
}

describe('settlementPlan', () => {
  test('every small case: escrow and credit end at zero, the house takes the net, money is conserved', () => {
    for (let limit = 1n; limit <= 6n; limit++)
      for (let drawn = 0n; drawn <= limit; drawn++)
        for (let final = 0n; final <= 8n; final++) for (let locked = 0n; locked <= 3n; locked++) checkPlan(limit, drawn, final, locked);
  });

  test('random large amounts keep the same invariants', () => {
    const amount = fc.bigInt({ min: 0n, max: MAX_AMOUNT_MINOR });
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: MAX_AMOUNT_MINOR }), fc.double({ min: 0, max: 1, noNaN: true }), amount, amount, (limit, share, final, locked) => {
        const drawn = (limit * BigInt(Math.floor(share * 1000))) / 1000n;
        checkPlan(limit, drawn, final, locked);
      }),
      { numRuns: 500 },
    );
  });

  test('locked-in bets are voided and refunded to the player', () => {
    const plan = settlementPlan({ sessionId: SESSION, walletAddress: WALLET, creditLimitMinor: 100n, drawnMinor: 100n, finalL2BalanceMinor: 60n, lockedInBetsMinor: 40n });
    assert.deepEqual([plan.outcome, plan.returnedToL1Minor, plan.netPnlMinor], ['BREAKEVEN', 100n, 0n]);
  });
});

describe('credit line rules', () => {
  const now = new Date('2026-11-23T12:00:00Z');
  const line = (over: Partial<CreditLineRow> = {}): CreditLineRow => ({
    sessionId: SESSION,
    walletAddress: WALLET,
    creditLimitMinor: 100n,
    drawnMinor: 40n,
    drawCount: 1,
    createdAt: new Date(now.getTime() - 1000),
    expiresAt: new Date(now.getTime() + 1000),
    settledAt: null,
    outcome: null,
    netPnlMinor: null,
    ...over,
  });
  const code = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      return (err as { code: number }).code;
    }
    return Status.OK;
  };

  test('a draw is allowed up to exactly the remaining credit, by the owner, while open', () => {
    assert.equal(code(() => checkDraw(line(), WALLET, 60n, now)), Status.OK);
    assert.equal(code(() => checkDraw(line(), WALLET, 61n, now)), Status.FAILED_PRECONDITION);
    assert.equal(code(() => checkDraw(line(), '0x' + 'cd'.repeat(20), 1n, now)), Status.PERMISSION_DENIED);
    assert.equal(code(() => checkDraw(line({ expiresAt: now }), WALLET, 1n, now)), Status.FAILED_PRECONDITION);
    assert.equal(code(() => checkDraw(line({ settledAt: now, outcome: 'BREAKEVEN' }), WALLET, 1n, now)), Status.FAILED_PRECONDITION);
  });

  test('a settlement is allowed once, by the owner, even after expiry', () => {
    assert.equal(code(() => checkSettle(line({ expiresAt: new Date(0) }), WALLET)), Status.OK);
    assert.equal(code(() => checkSettle(line({ settledAt: now, outcome: 'LOSSES' }), WALLET)), Status.FAILED_PRECONDITION);
    assert.equal(code(() => checkSettle(line(), '0x' + 'cd'.repeat(20))), Status.PERMISSION_DENIED);
  });

  test('a line is EXPIRED from its expiry instant on, and SETTLED wins over EXPIRED', () => {
    assert.equal(lineState(line({ expiresAt: new Date(now.getTime() + 1) }), now), 'OPEN');
    assert.equal(lineState(line({ expiresAt: now }), now), 'EXPIRED');
    assert.equal(lineState(line({ expiresAt: new Date(0), settledAt: now }), now), 'SETTLED');
  });
});

describe('wallet signatures', () => {
  const draw = (over: Partial<Extract<SignedFields, { operation: 'CreditDraw' }>> = {}): SignedFields => ({ operation: 'CreditDraw', walletAddress: WALLET, sessionId: SESSION, amountMinor: 5n, reason: 'r', ...over });

  test('the canonical message is the documented JSON array', () => {
    assert.equal(canonicalMessage(draw(), 1700000000000n, 'nonce-123').toString(), `["gantry.settlement.v1","CreditDraw","${WALLET}","${SESSION}","5","r","1700000000000","nonce-123"]`);
  });

  test('different requests never share a message, even when text fields contain separators', () => {
    const a = canonicalMessage(draw({ reason: 'a","b' }), 1n, 'nonce-123');
    const b = canonicalMessage(draw({ reason: 'a' }), 1n, 'nonce-123');
    assert.notDeepEqual(a, b);
    const approve: SignedFields = { operation: 'ApproveCreditLine', walletAddress: WALLET, creditLimitMinor: 5n, expiresInMs: 1n };
    assert.notDeepEqual(canonicalMessage(approve, 1n, 'nonce-123'), canonicalMessage(draw(), 1n, 'nonce-123'));
  });

  test('a signature verifies only for its own message and key', () => {
    const w = generateWallet();
    const fields = draw({ walletAddress: w.address });
    const sig = signRequest(w, fields, 42n, 'nonce-123');
    assert.ok(verifySignature(sig.publicKey, canonicalMessage(fields, 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(sig.publicKey, canonicalMessage(draw({ walletAddress: w.address, amountMinor: 6n }), 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(sig.publicKey, canonicalMessage(fields, 43n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(generateWallet().publicKey, canonicalMessage(fields, 42n, 'nonce-123'), sig.signature));
    assert.ok(!verifySignature(Buffer.alloc(32, 0xff), canonicalMessage(fields, 42n, 'nonce-123'), sig.signature), 'a non-point key is just refused');
  });

  test('the address is the first 20 bytes of SHA-256 of the public key, and a seed gives the same wallet', () => {
    const w = generateWallet();
    assert.match(w.address, /^0x[0-9a-f]{40}$/);
    assert.equal(walletAddress(w.publicKey), w.address);
    assert.deepEqual(walletFromPrivateKey(w.privateKey), w);
  });
});
