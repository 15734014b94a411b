// The credit line's rules: when a line may open, when a draw or a settlement is allowed, and what
// each books. Pure; the handlers call these with the line and balances their transaction has
// locked, so the decision and the booking see the same state.
import { GantryError, Status, failedPrecondition, permissionDenied } from '@gantry/kit';
import { HOUSE_ADDRESS, creditAccount, escrowAccount, lineState, walletAccount, type PlannedTransfer, type SettlementPlan } from './ledger.js';

export interface CreditLineRow {
  sessionId: string;
  walletAddress: string;
  creditLimitMinor: bigint;
  drawnMinor: bigint;
  drawCount: number;
  createdAt: Date;
  expiresAt: Date;
  settledAt: Date | null;
  outcome: 'WINNINGS' | 'LOSSES' | 'BREAKEVEN' | null;
  netPnlMinor: bigint | null;
}

export const remainingCredit = (line: CreditLineRow) => line.creditLimitMinor - line.drawnMinor;

/** The session's own wallet only: a signature from any other wallet proves nothing about it. */
function requireOwner(line: CreditLineRow, walletAddress: string): void {
  if (line.walletAddress !== walletAddress) throw permissionDenied(`session ${line.sessionId} belongs to another wallet; only the wallet that opened it may use it`);
}

/** A draw must come from the line's wallet, while the line is open, within the undrawn credit. */
export function checkDraw(line: CreditLineRow, walletAddress: string, amountMinor: bigint, now: Date): void {
  requireOwner(line, walletAddress);
  const state = lineState(line, now);
  if (state === 'SETTLED') throw failedPrecondition(`session ${line.sessionId} is settled; approve a new credit line to draw again`);
  if (state === 'EXPIRED') throw failedPrecondition(`session ${line.sessionId} expired at ${line.expiresAt.toISOString()}; settle it, then approve a new credit line`);
  const remaining = remainingCredit(line);
  if (amountMinor > remaining) throw failedPrecondition(`draw of ${amountMinor} exceeds the remaining credit of ${remaining} (limit ${line.creditLimitMinor}, drawn ${line.drawnMinor})`);
}

/** A settlement must come from the line's wallet, once; an expired line may still settle. */
export function checkSettle(line: CreditLineRow, walletAddress: string): void {
  requireOwner(line, walletAddress);
  if (line.settledAt) throw failedPrecondition(`session ${line.sessionId} was already settled at ${line.settledAt.toISOString()}; a session settles once`);
}

/**
 * A line reserves its whole limit from the wallet's available balance, and a wallet has at most one
 * unsettled line (open or expired) at a time.
 */
export function checkApprove(creditLimitMinor: bigint, availableMinor: bigint, unsettled: CreditLineRow | undefined): void {
  if (creditLimitMinor > availableMinor) {
    throw new GantryError(Status.FAILED_PRECONDITION, `credit limit ${creditLimitMinor} exceeds the available L1 balance of ${availableMinor}`);
  }
  if (unsettled) throw new GantryError(Status.FAILED_PRECONDITION, `wallet already has an unsettled credit line (session ${unsettled.sessionId}); settle it first`);
}

/** The line ApproveCreditLine opens: nothing drawn yet, expiring `expiresInMs` after `now`. */
export function openLine(sessionId: string, walletAddress: string, creditLimitMinor: bigint, now: Date, expiresInMs: bigint): CreditLineRow {
  return {
    sessionId,
    walletAddress,
    creditLimitMinor,
    drawnMinor: 0n,
    drawCount: 0,
    createdAt: now,
    expiresAt: new Date(now.getTime() + Number(expiresInMs)),
    settledAt: null,
    outcome: null,
    netPnlMinor: null,
  };
}

/** ApproveCreditLine's booking: the limit moves from the wallet's available balance into the line's credit. */
export const reserveTransfer = (line: CreditLineRow): PlannedTransfer => ({
  debit: walletAccount(line.walletAddress),
  credit: creditAccount(line.sessionId),
  amountMinor: line.creditLimitMinor,
  kind: 'reserve',
});

/** The balances a draw reads with its locked line. */
export interface LineBalances {
  walletMinor: bigint;
  creditMinor: bigint;
  escrowMinor: bigint;
}

/** What a draw books, and the wallet's view after it: the amount leaves L1 (available + reserved) for the escrow. */
export interface DrawPlan {
  transfer: PlannedTransfer;
  l1BeforeMinor: bigint;
  l1AfterMinor: bigint;
  l2BalanceMinor: bigint;
  remainingCreditMinor: bigint;
  drawCount: number;
}

/** A draw of `amountMinor` on `line` by `walletAddress` at `now` (see checkDraw), and what it books. */
export function planDraw(line: CreditLineRow, balances: LineBalances, walletAddress: string, amountMinor: bigint, now: Date): DrawPlan {
  checkDraw(line, walletAddress, amountMinor, now);
  const l1BeforeMinor = balances.walletMinor + balances.creditMinor;
  return {
    transfer: { debit: creditAccount(line.sessionId), credit: escrowAccount(line.sessionId), amountMinor, kind: 'draw' },
    l1BeforeMinor,
    l1AfterMinor: l1BeforeMinor - amountMinor,
    l2BalanceMinor: balances.escrowMinor + amountMinor,
    remainingCreditMinor: remainingCredit(line) - amountMinor,
    drawCount: line.drawCount + 1,
  };
}

/** The house is the counterparty of a settlement: it pays winnings only up to its balance. */
export function checkHouseCovers(plan: Pick<SettlementPlan, 'netPnlMinor'>, houseMinor: bigint): void {
  if (plan.netPnlMinor > houseMinor) {
    throw new GantryError(
      Status.FAILED_PRECONDITION,
      `the house cannot cover winnings of ${plan.netPnlMinor} (its balance is ${houseMinor}); fund the house with Deposit to "${HOUSE_ADDRESS}"`,
    );
  }
}

/**
 * The attestation speaks of the session as it is: the same drawn amount and draw count. A mismatch
 * is a state problem (a draw landed after the operator closed, or it attested another session's
 * numbers), so the caller has the operator attest again from the current state.
 */
export function checkAttestedState(line: { sessionId: string; drawnMinor: bigint; drawCount: number }, attested: { drawnMinor: bigint; drawCount: number }): void {
  if (line.drawnMinor !== attested.drawnMinor || line.drawCount !== attested.drawCount) {
    throw failedPrecondition(
      `the attestation is for ${attested.drawnMinor} drawn in ${attested.drawCount} draws, but session ${line.sessionId} has drawn ${line.drawnMinor} in ${line.drawCount}; ` +
        'have the operator attest the session as it is now (GetCreditStatus shows it)',
    );
  }
}

/**
 * The bounds a settlement stays within even when a registered operator signed it, so a leaked
 * operator key (or a bug on the L2 side) cannot empty the house:
 *
 * - locked ≤ drawn: locked-in bets are voided and refunded (ledger.ts), and a refund never exceeds
 *   what the wallet put into the session; stakes placed from winnings must be resolved on L2 first.
 * - winnings (returned − drawn) ≤ the per-session payout cap (`settlement.maxSessionWinningsMinor`).
 */
export function checkSettlementBounds(s: { sessionId: string; drawnMinor: bigint; finalL2BalanceMinor: bigint; lockedInBetsMinor: bigint }, maxWinningsMinor: bigint): void {
  if (s.lockedInBetsMinor > s.drawnMinor) {
    throw failedPrecondition(
      `locked-in bets of ${s.lockedInBetsMinor} exceed the ${s.drawnMinor} drawn into session ${s.sessionId}; voided bets are refunded only up to what was drawn: resolve the open bets on L2, then settle with the resulting final balance`,
    );
  }
  const winningsMinor = s.finalL2BalanceMinor + s.lockedInBetsMinor - s.drawnMinor;
  if (winningsMinor > maxWinningsMinor) {
    throw failedPrecondition(
      `winnings of ${winningsMinor} exceed the per-session payout cap of ${maxWinningsMinor} (settlement.maxSessionWinningsMinor); nothing was booked: an operator must review the session and raise the cap before it can settle`,
    );
  }
}
