// The settlement service over real gRPC (mTLS, JWT, rate limits) on PGlite and PostgreSQL: the
// credit-line flow with exact balances, every invariant attacked and refused with nothing booked,
// and concurrent draws racing against one line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { unary } from '@gantry/kit';
import { eventsv1, flagsv1, settlementv1 } from '@gantry/proto';
import { assertStatus, eventually } from '@gantry/test-support/clients';
import { engines, requirePostgresInCi } from '@gantry/test-support/databases';
import { SettlementOperator, attestationMessage, verifySignature } from '../src/client/index.js';
import { HOUSE_ACCOUNT } from '../src/domain/ledger.js';
import { accountBalance, ledgerSnapshot, newNonce, rpc, startSettlementPlatform, TestWallet, type SettlementPlatform } from './support.js';

requirePostgresInCi('the settlement service tests');

const { SETTLEMENT_OUTCOME_WINNINGS: WINNINGS, SETTLEMENT_OUTCOME_LOSSES: LOSSES, SETTLEMENT_OUTCOME_BREAKEVEN: BREAKEVEN } = settlementv1.SettlementOutcome;
const { OPERATOR_KEY_STATE_ACTIVE: ACTIVE, OPERATOR_KEY_STATE_REVOKED: REVOKED } = settlementv1.OperatorKeyState;
/** The per-session payout cap these tests run with: above the house bankroll, so its own refusal stays reachable. */
const MAX_WINNINGS = 10_000_000n;

for (const engine of engines()) {
  describe(`settlement service over gRPC on ${engine.name}`, { skip: engine.skip }, () => {
    let p: SettlementPlatform;
    let api: ReturnType<typeof rpc>;
    before(async () => {
      p = await startSettlementPlatform(engine.name, { maxSessionWinningsMinor: Number(MAX_WINNINGS) });
      api = rpc(p);
      await api.deposit('house', 1_000_000n, 'house-bankroll');
    });
    after(async () => p?.close());

    /** A wallet funded with `balance` and, when `limit` is given, an approved credit line. */
    async function fundedWallet(balance: bigint, limit?: bigint): Promise<{ w: TestWallet; sessionId: string }> {
      const w = new TestWallet(p);
      await api.deposit(w.address, balance);
      const sessionId = limit ? (await api.approve(w.approveRequest(limit))).sessionId : '';
      return { w, sessionId };
    }

    /** Runs `attempt`, expects `code`, and proves the ledger is byte-for-byte unchanged. */
    async function refusedWithNothingBooked(attempt: () => Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
      const before = await ledgerSnapshot(p);
      await assertStatus(attempt(), code, pattern);
      assert.equal(await ledgerSnapshot(p), before, 'a refused request changed the ledger');
    }

    test('approve, draw and settle each write their domain event, once, in the booking transaction', async () => {
      const { w, sessionId } = await fundedWallet(2_000n, 1_000n);
      const draw = w.drawRequest(sessionId, 400n, { reason: 'spin' });
      const drawn = await api.draw(draw);
      await api.draw(draw); // a retried draw returns the booked answer and announces nothing new
      const settled = await api.settle(await w.settleRequest(sessionId, 900n));
      const { rows } = await p.runtime.db.query<{ event_type: string; payload: Buffer }>('SELECT event_type, payload FROM settlement.outbox ORDER BY seq');
      const events = rows.map((r) => eventsv1.Event.decode(r.payload)).filter((e) => e.subject === sessionId);
      assert.deepEqual(events.map((e) => e.type), ['settlement.credit_line.approved', 'settlement.credit.drawn', 'settlement.credit_line.settled']);
      assert.ok(events.every((e) => e.source === 'gantry.settlement' && /^evt_[0-9a-f]{32}$/.test(e.id)));
      assert.deepEqual(events[0]!.data, { $case: 'creditLineApproved', value: { sessionId, walletAddress: w.address, creditLimitMinor: 1_000n, expiresAt: events[0]!.data?.$case === 'creditLineApproved' ? events[0]!.data.value.expiresAt : undefined } });
      assert.deepEqual(events[1]!.data, { $case: 'creditDrawn', value: { sessionId, walletAddress: w.address, transferId: drawn.transferId, amountMinor: 400n, reason: 'spin' } });
      assert.deepEqual(events[2]!.data, {
        $case: 'creditLineSettled',
        value: { sessionId, walletAddress: w.address, settlementId: settled.settlementId, outcome: settled.outcome, netPnlMinor: 500n, totalDrawnMinor: 400n, returnedToL1Minor: settled.returnedToL1Minor, drawCount: 1 },
      });
    });

    test('approve → draw → draw → settle books exact balances on L1, L2 and the house', async () => {
      const w = new TestWallet(p);
      const houseBefore = await accountBalance(p, HOUSE_ACCOUNT);
      const dep = await api.deposit(w.address, 10_000n);
      assert.deepEqual([dep.l1BalanceMinor, dep.l1AvailableMinor], [10_000n, 10_000n]);

      const approved = await api.approve(w.approveRequest(1_000n));
      assert.equal(approved.l1AvailableMinor, 9_000n);
      assert.equal(approved.creditLine?.state, settlementv1.CreditLineState.CREDIT_LINE_STATE_OPEN);
      assert.equal(approved.creditLine?.remainingCreditMinor, 1_000n);
      const s = approved.sessionId;

      const d1 = await api.draw(w.drawRequest(s, 300n));
      assert.deepEqual(
        [d1.amountDrawnMinor, d1.l1BalanceBeforeMinor, d1.l1BalanceAfterMinor, d1.l2BalanceMinor, d1.remainingCreditMinor, d1.drawCount],
        [300n, 10_000n, 9_700n, 300n, 700n, 1],
      );
      const d2 = await api.draw(w.drawRequest(s, 200n));
      assert.deepEqual([d2.l1BalanceBeforeMinor, d2.l1BalanceAfterMinor, d2.l2BalanceMinor, d2.remainingCreditMinor, d2.drawCount], [9_700n, 9_500n, 500n, 500n, 2]);

      const mid = await api.status(w.address);
      assert.deepEqual([mid.l1BalanceMinor, mid.l1AvailableMinor, mid.l1ReservedMinor, mid.hasActiveCredit], [9_500n, 9_000n, 500n, true]);
      assert.equal(mid.creditLine?.l2BalanceMinor, 500n);

      // The player ends with 650 on L2 and 50 in unresolved bets: 700 returned, 200 won.
      const settled = await api.settle(await w.settleRequest(s, 650n, 50n));
      assert.equal(settled.outcome, WINNINGS);
      assert.deepEqual(
        [settled.netPnlMinor, settled.totalDrawnMinor, settled.returnedToL1Minor, settled.drawCount, settled.l1BalanceBeforeMinor, settled.l1BalanceAfterMinor],
        [200n, 500n, 700n, 2, 9_500n, 10_200n],
      );

      const end = await api.status(w.address);
      assert.deepEqual(
        [end.l1BalanceMinor, end.l1AvailableMinor, end.l1ReservedMinor, end.hasActiveCredit, end.creditLine, end.totalCreditExtendedMinor, end.totalDraws, end.totalSettlements],
        [10_200n, 10_200n, 0n, false, undefined, 1_000n, 2n, 1n],
      );
      assert.equal(await accountBalance(p, HOUSE_ACCOUNT), houseBefore - 200n);
      assert.deepEqual(await p.store.audit(), []);
    });

    test('a losing session pays the house and releases the undrawn credit', async () => {
      const { w, sessionId } = await fundedWallet(5_000n, 2_000n);
      const houseBefore = await accountBalance(p, HOUSE_ACCOUNT);
      await api.draw(w.drawRequest(sessionId, 800n));
      const settled = await api.settle(await w.settleRequest(sessionId, 300n));
      assert.equal(settled.outcome, LOSSES);
      assert.deepEqual([settled.netPnlMinor, settled.returnedToL1Minor, settled.l1BalanceAfterMinor], [-500n, 300n, 4_500n]);
      assert.equal((await api.status(w.address)).l1AvailableMinor, 4_500n);
      assert.equal(await accountBalance(p, HOUSE_ACCOUNT), houseBefore + 500n);
    });

    test('a retried request with the same nonce and body returns the original result and books once', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const req = w.drawRequest(sessionId, 100n);
      const first = await api.draw(req);
      const snapshot = await ledgerSnapshot(p);
      const again = await api.draw(req);
      assert.deepEqual(again, first);
      assert.equal(await ledgerSnapshot(p), snapshot);
      // Deposits are idempotent on transfer_id the same way.
      const dep = await api.deposit(w.address, 10n, 'dep-retry-1');
      assert.deepEqual(await api.deposit(w.address, 10n, 'dep-retry-1'), dep);
      await assertStatus(api.deposit(w.address, 11n, 'dep-retry-1'), status.ALREADY_EXISTS, /transfer_id dep-retry-1 was already used/);
      // Caller-chosen transfer ids live apart from the server's own: reusing a draw's id is fine.
      assert.equal((await api.deposit(w.address, 5n, first.transferId)).transferId, first.transferId);
    });

    test('a replayed nonce with a different body is refused and books nothing', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const nonce = newNonce();
      await api.draw(w.drawRequest(sessionId, 100n, { nonce }));
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 101n, { nonce })), status.ALREADY_EXISTS, /nonce .* already used/);
    });

    test('a bad signature is refused and books nothing', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const req = w.drawRequest(sessionId, 100n);
      req.signature!.signature[7]! ^= 0x01;
      await refusedWithNothingBooked(() => api.draw(req), status.PERMISSION_DENIED, /signature does not verify/);
      // A field changed after signing breaks the signature just the same.
      const tampered = { ...w.drawRequest(sessionId, 100n), amountMinor: 400n };
      await refusedWithNothingBooked(() => api.draw(tampered), status.PERMISSION_DENIED, /signature does not verify/);
    });

    test("another wallet's key cannot sign for a wallet", async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const mallory = new TestWallet(p);
      const req = { ...w.drawRequest(sessionId, 100n), signature: mallory.drawRequest(sessionId, 100n).signature };
      await refusedWithNothingBooked(() => api.draw(req), status.PERMISSION_DENIED, /belongs to wallet 0x[0-9a-f]{40}, not/);
    });

    test('a stale or future timestamp is refused and books nothing', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 100n, { timestampMs: p.clock.nowMs - 6 * 60_000 })), status.INVALID_ARGUMENT, /behind the server clock; the window is ±5 minutes/);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 100n, { timestampMs: p.clock.nowMs + 6 * 60_000 })), status.INVALID_ARGUMENT, /ahead of the server clock/);
    });

    test('only the wallet that opened a session can settle it', async () => {
      const { sessionId } = await fundedWallet(1_000n, 500n);
      const { w: other } = await fundedWallet(1_000n);
      await refusedWithNothingBooked(async () => api.settle(await other.settleRequest(sessionId, 0n)), status.PERMISSION_DENIED, /belongs to another wallet/);
      await refusedWithNothingBooked(() => api.draw(other.drawRequest(sessionId, 10n)), status.PERMISSION_DENIED, /belongs to another wallet/);
    });

    test('a draw over the remaining credit is refused and books nothing', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      await api.draw(w.drawRequest(sessionId, 400n));
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 101n)), status.FAILED_PRECONDITION, /exceeds the remaining credit of 100/);
    });

    test('the kill switch settlement.draws.disabled refuses draws with FAILED_PRECONDITION and books nothing; a targeting rule stops one wallet only; turning it off restores draws', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const other = await fundedWallet(1_000n, 500n);
      const flag = (defaultVariant: 'on' | 'off', targeting?: object) =>
        p.flags.put({ key: 'settlement.draws.disabled', state: flagsv1.FlagState.FLAG_STATE_ENABLED, variants: { on: true, off: false }, defaultVariant, targeting, metadata: {}, source: '', version: 0n, updatedAt: undefined });
      await flag('on');
      // The store notifies this process's snapshot; evaluation follows within moments.
      await eventually(() => p.runtime.flags.getBooleanValue('settlement.draws.disabled', false), 2000);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 10n)), status.FAILED_PRECONDITION, /switched off by the feature flag settlement\.draws\.disabled/);

      // Only the wallet the rule names is stopped.
      await flag('off', { if: [{ '===': [{ var: 'targetingKey' }, w.address] }, 'on', 'off'] });
      await eventually(async () => !(await p.runtime.flags.getBooleanValue('settlement.draws.disabled', false, { targetingKey: other.w.address })), 2000);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 10n)), status.FAILED_PRECONDITION, /switched off/);
      assert.equal((await api.draw(other.w.drawRequest(other.sessionId, 10n))).amountDrawnMinor, 10n);

      await p.flags.delete('settlement.draws.disabled');
      await eventually(async () => !(await p.runtime.flags.getBooleanValue('settlement.draws.disabled', false, { targetingKey: w.address })), 2000);
      assert.equal((await api.draw(w.drawRequest(sessionId, 10n))).amountDrawnMinor, 10n);
    });

    test('a session settles once', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      await api.settle(await w.settleRequest(sessionId, 0n));
      await refusedWithNothingBooked(async () => api.settle(await w.settleRequest(sessionId, 0n)), status.FAILED_PRECONDITION, /already settled/);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 1n)), status.FAILED_PRECONDITION, /is settled/);
    });

    test('an expired line refuses draws but can still settle, returning the undrawn reserve', async () => {
      const w = new TestWallet(p);
      await api.deposit(w.address, 1_000n);
      const { sessionId } = await api.approve(w.approveRequest(600n, { expiresInSec: 60 }));
      await api.draw(w.drawRequest(sessionId, 100n));
      p.clock.nowMs += 61_000;
      try {
        await refusedWithNothingBooked(() => api.draw(w.drawRequest(sessionId, 100n)), status.FAILED_PRECONDITION, /expired at/);
        const st = await api.status(w.address);
        assert.equal(st.creditLine?.state, settlementv1.CreditLineState.CREDIT_LINE_STATE_EXPIRED);
        assert.equal(st.hasActiveCredit, false);
        const settled = await api.settle(await w.settleRequest(sessionId, 100n));
        assert.equal(settled.l1BalanceAfterMinor, 1_000n);
      } finally {
        p.clock.nowMs -= 61_000;
      }
    });

    test('credit beyond the available balance, a second open line and over-withdrawal are refused', async () => {
      const { w } = await fundedWallet(1_000n);
      await refusedWithNothingBooked(() => api.approve(w.approveRequest(1_001n)), status.FAILED_PRECONDITION, /exceeds the available L1 balance of 1000/);
      await api.approve(w.approveRequest(700n));
      await refusedWithNothingBooked(() => api.approve(w.approveRequest(100n)), status.FAILED_PRECONDITION, /already has an unsettled credit line/);
      await refusedWithNothingBooked(() => api.withdraw(w.address, 301n), status.FAILED_PRECONDITION, /exceeds the available balance of 300/);
      assert.equal((await api.withdraw(w.address, 300n)).l1AvailableMinor, 0n);
    });

    test('winnings the house cannot cover are refused and book nothing', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const house = await accountBalance(p, HOUSE_ACCOUNT);
      await refusedWithNothingBooked(async () => api.settle(await w.settleRequest(sessionId, house + 1n)), status.FAILED_PRECONDITION, /house cannot cover winnings/);
    });

    test('malformed requests are refused with INVALID_ARGUMENT naming the field', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const cases: [() => Promise<unknown>, RegExp][] = [
        [() => api.draw(w.drawRequest(sessionId, 0n)), /^amount_minor: must be greater than zero/],
        [() => api.draw(w.drawRequest(sessionId, -5n)), /^amount_minor: must be greater than zero/],
        [() => api.draw({ ...w.drawRequest(sessionId, 1n), walletAddress: 'alice' }), /^wallet_address: must be a wallet address/],
        [() => api.draw(w.drawRequest('not-a-session', 1n)), /^session_id: must be a session id/],
        [() => api.draw({ ...w.drawRequest(sessionId, 1n), signature: undefined }), /^signature: is required/],
        [() => api.draw(w.drawRequest(sessionId, 1n, { nonce: 'short' })), /^signature.nonce: must be 8 to 128/],
        [() => api.approve({ ...w.approveRequest(10n), expiresIn: { seconds: 10n, nanos: 0 } }), /^expires_in: must be between 1 minute and 7 days/],
        [() => api.deposit(w.address, 10n, 'bad id with spaces'), /^transfer_id: must be 1 to 128 characters/],
        [() => api.deposit(w.address, 10n ** 16n), /^amount_minor: must be at most/],
        [async () => api.settle(await w.settleRequest(sessionId, -1n)), /^final_l2_balance_minor: must be zero or more/],
        [async () => api.settle(await w.settleRequest(sessionId, 1n, 0n, { operator: null })), /^attestation: is required/],
        [async () => api.settle({ ...(await w.settleRequest(sessionId, 1n)), attestation: { publicKey: Buffer.alloc(32), signature: Buffer.alloc(10), drawnMinor: 0n, drawCount: 0 } }), /^attestation\.signature: must be 64 bytes/],
        [() => api.registerKey(Buffer.alloc(31), 'casino-x'), /^public_key: must be 32 bytes/],
        [() => api.registerKey(SettlementOperator.generate().publicKey, 'no spaces please'), /^name: must be 1 to 64 characters/],
        [() => api.draw(w.drawRequest(sessionId, 1n, { reason: 'a\0b' })), /^reason: must not contain NUL characters/],
      ];
      for (const [attempt, pattern] of cases) await refusedWithNothingBooked(attempt, status.INVALID_ARGUMENT, pattern);
      await refusedWithNothingBooked(() => api.draw(w.drawRequest('00000000-0000-4000-8000-000000000000', 1n)), status.NOT_FOUND, /session .* does not exist/);
      await assertStatus(api.status(new TestWallet(p).address), status.NOT_FOUND, /has never held funds/);
    });

    test('scopes: a credit token cannot fund wallets and a read token cannot draw', async () => {
      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      const c = p.client;
      await refusedWithNothingBooked(() => unary(c.deposit, c, { walletAddress: w.address, amountMinor: 5n, transferId: 'scope-1', memo: '' }, p.credit), status.PERMISSION_DENIED, /settlement\.admin/);
      await refusedWithNothingBooked(() => unary(c.creditDraw, c, w.drawRequest(sessionId, 5n), p.read), status.PERMISSION_DENIED, /settlement\.credit/);
      await assertStatus(unary(c.executeSettlement, c, { sessionId, walletAddress: w.address, signature: undefined }, p.admin), status.UNIMPLEMENTED, /CreditSettle/);
    });

    test('issue 17: the wallet cannot name its own winnings: unattested, self-attested and out-of-bounds settlements are refused and book nothing', async () => {
      // Deposit 1,000; approve a line of 100; draw 10; settle with final 0 and locked 900,000:
      // on the wallet's word alone this paid 899,990 from the house.
      const { w, sessionId } = await fundedWallet(1_000n, 100n);
      await api.draw(w.drawRequest(sessionId, 10n));
      const houseBefore = await accountBalance(p, HOUSE_ACCOUNT);
      const attack = (operator: SettlementOperator | null) => async () => api.settle(await w.settleRequest(sessionId, 0n, 900_000n, { operator }));
      await refusedWithNothingBooked(attack(null), status.INVALID_ARGUMENT, /^attestation: is required/);
      // The wallet attesting for itself, with its own key or any key the house never registered.
      await refusedWithNothingBooked(attack(new SettlementOperator(w.keys)), status.PERMISSION_DENIED, /is not a registered operator key/);
      await refusedWithNothingBooked(attack(SettlementOperator.generate()), status.PERMISSION_DENIED, /is not a registered operator key/);
      // Even a registered operator's word (a leaked operator key) cannot refund more bets than were
      // drawn, nor pay past the per-session cap.
      await refusedWithNothingBooked(attack(p.operator), status.FAILED_PRECONDITION, /locked-in bets of 900000 exceed the 10 drawn/);
      await refusedWithNothingBooked(async () => api.settle(await w.settleRequest(sessionId, MAX_WINNINGS + 11n)), status.FAILED_PRECONDITION, /winnings of 10000001 exceed the per-session payout cap of 10000000/);
      assert.equal(await accountBalance(p, HOUSE_ACCOUNT), houseBefore);
      // What the session really ended with, attested, settles.
      const settled = await api.settle(await w.settleRequest(sessionId, 4n, 6n));
      assert.deepEqual([settled.outcome, settled.netPnlMinor, settled.l1BalanceAfterMinor], [BREAKEVEN, 0n, 1_000n]);
      assert.equal(await accountBalance(p, HOUSE_ACCOUNT), houseBefore);
    });

    test('a co-signed settlement books, and keeps its attestation, which re-verifies from the ledger alone', async () => {
      const { w, sessionId } = await fundedWallet(2_000n, 1_000n);
      await api.draw(w.drawRequest(sessionId, 300n));
      await api.draw(w.drawRequest(sessionId, 200n));
      const settled = await api.settle(await w.settleRequest(sessionId, 600n, 20n));
      assert.deepEqual([settled.outcome, settled.netPnlMinor, settled.returnedToL1Minor, settled.l1BalanceAfterMinor], [WINNINGS, 120n, 620n, 2_120n]);
      const { rows } = await p.runtime.db.query<{ attested_by: Buffer; attestation: Buffer; drawn_minor: bigint; draw_count: number; final_l2_balance_minor: bigint; locked_in_bets_minor: bigint }>(
        'SELECT attested_by, attestation, drawn_minor, draw_count, final_l2_balance_minor, locked_in_bets_minor FROM settlement.credit_lines WHERE session_id = $1',
        [sessionId],
      );
      const line = rows[0];
      assert.ok(line);
      assert.deepEqual(line.attested_by, p.operator.publicKey);
      const attested = { walletAddress: w.address, sessionId, drawnMinor: line.drawn_minor, drawCount: line.draw_count, finalL2BalanceMinor: line.final_l2_balance_minor, lockedInBetsMinor: line.locked_in_bets_minor };
      assert.ok(verifySignature(line.attested_by, attestationMessage(attested), line.attestation));
      assert.deepEqual(await p.store.audit(), []);
    });

    test('a forged, tampered, transplanted, stale or replayed attestation is refused and books nothing', async () => {
      const { w, sessionId } = await fundedWallet(2_000n, 1_000n);
      const { w: other, sessionId: otherSession } = await fundedWallet(2_000n, 1_000n);
      await api.draw(w.drawRequest(sessionId, 100n));
      await api.draw(other.drawRequest(otherSession, 100n));
      const forged = await w.settleRequest(sessionId, 150n);
      forged.attestation!.signature[5]! ^= 0x01;
      await refusedWithNothingBooked(() => api.settle(forged), status.PERMISSION_DENIED, /^attestation\.signature does not verify/);
      // The wallet raises its final balance after the operator signed, and signs its own part again.
      const attested = await w.settleRequest(sessionId, 150n);
      const raised = { ...(await w.settleRequest(sessionId, 900n, 0n, { operator: null })), attestation: attested.attestation };
      await refusedWithNothingBooked(() => api.settle(raised), status.PERMISSION_DENIED, /^attestation\.signature does not verify/);
      // Another session's attestation, same numbers.
      const transplanted = { ...(await w.settleRequest(sessionId, 150n, 0n, { operator: null })), attestation: (await other.settleRequest(otherSession, 150n)).attestation };
      await refusedWithNothingBooked(() => api.settle(transplanted), status.PERMISSION_DENIED, /^attestation\.signature does not verify/);
      // Attested before a later draw: it speaks of a session that no longer is.
      await api.draw(w.drawRequest(sessionId, 50n));
      await refusedWithNothingBooked(() => api.settle(attested), status.FAILED_PRECONDITION, /the attestation is for 100 drawn in 1 draws, but session .* has drawn 150 in 2/);
      const final = await w.settleRequest(sessionId, 150n);
      const settled = await api.settle(final);
      // The same request again is a retry: the original answer, nothing booked. Its attestation
      // under a new wallet nonce is a second settlement: refused.
      const snapshot = await ledgerSnapshot(p);
      assert.deepEqual(await api.settle(final), settled);
      assert.equal(await ledgerSnapshot(p), snapshot);
      const replayed = { ...(await w.settleRequest(sessionId, 150n, 0n, { operator: null })), attestation: final.attestation };
      await refusedWithNothingBooked(() => api.settle(replayed), status.FAILED_PRECONDITION, /already settled/);
    });

    test('operator keys: registered under one name, revoked for good with who and why, listed with their history; a revoked key attests nothing', async () => {
      const op = SettlementOperator.generate();
      const registered = await api.registerKey(op.publicKey, 'casino-eu-1');
      assert.deepEqual([registered.key?.state, registered.key?.name, registered.key?.registeredBy, registered.key?.revokedAt], [ACTIVE, 'casino-eu-1', 'treasury', undefined]);
      assert.deepEqual(await api.registerKey(op.publicKey, 'casino-eu-1'), registered, 'a retry');
      await refusedWithNothingBooked(() => api.registerKey(op.publicKey, 'casino-eu-2'), status.ALREADY_EXISTS, /already registered as "casino-eu-1"/);

      const { w, sessionId } = await fundedWallet(1_000n, 500n);
      await api.draw(w.drawRequest(sessionId, 100n));
      const attested = await w.settleRequest(sessionId, 100n, 0n, { operator: op });
      const revoked = await api.revokeKey(op.publicKey, 'laptop stolen');
      assert.deepEqual([revoked.key?.state, revoked.key?.revokedBy, revoked.key?.revokeReason], [REVOKED, 'treasury', 'laptop stolen']);
      assert.ok(revoked.key?.revokedAt);
      assert.deepEqual(await api.revokeKey(op.publicKey, 'again'), revoked, 'a retry keeps the first revocation');
      await refusedWithNothingBooked(() => api.settle(attested), status.PERMISSION_DENIED, /\("casino-eu-1"\) was revoked at/);
      await refusedWithNothingBooked(() => api.registerKey(op.publicKey, 'casino-eu-1'), status.FAILED_PRECONDITION, /a revoked key never comes back/);
      await refusedWithNothingBooked(() => api.revokeKey(SettlementOperator.generate().publicKey, 'unknown'), status.NOT_FOUND, /was never registered/);

      const { keys, truncated } = await api.listKeys();
      assert.equal(truncated, false);
      assert.deepEqual(keys.find((k) => k.publicKey.equals(op.publicKey)), revoked.key);
      assert.ok(keys.some((k) => k.publicKey.equals(p.operator.publicKey) && k.state === ACTIVE));
      // Another registered key still settles the session.
      assert.equal((await api.settle(await w.settleRequest(sessionId, 100n))).outcome, BREAKEVEN);
    });

    test('scopes: only settlement.admin registers or revokes operator keys', async () => {
      const c = p.client;
      const publicKey = SettlementOperator.generate().publicKey;
      await refusedWithNothingBooked(() => unary(c.registerOperatorKey, c, { publicKey, name: 'rogue' }, p.credit), status.PERMISSION_DENIED, /settlement\.admin/);
      await refusedWithNothingBooked(() => unary(c.revokeOperatorKey, c, { publicKey: p.operator.publicKey, reason: 'mischief' }, p.read), status.PERMISSION_DENIED, /settlement\.admin/);
    });

    test('50 concurrent draws racing against one credit line never exceed it', async () => {
      const { w, sessionId } = await fundedWallet(10_000n, 1_000n);
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => api.draw(w.drawRequest(sessionId, 30n))));
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(ok.length, 33, '33 × 30 = 990 fits in 1,000; a 34th would not');
      for (const r of refused) assert.equal((r.reason as { code: number }).code, status.FAILED_PRECONDITION, String(r.reason));
      const st = await api.status(w.address);
      assert.deepEqual([st.creditLine?.drawnMinor, st.creditLine?.l2BalanceMinor, st.creditLine?.drawCount, st.l1BalanceMinor], [990n, 990n, 33, 9_010n]);
      assert.deepEqual(await p.store.audit(), []);
    });
  });
}
