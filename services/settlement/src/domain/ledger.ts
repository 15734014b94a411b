// The ledger's rules: accounts, the transfers each operation books, and the settlement rule.
// Pure: the store applies the transfers this module plans, inside one transaction, and the
// database's constraints re-check the floors as a second line of defence.
//
// Accounts (double entry; every transfer debits one account and credits another by the same
// positive amount, so the sum of all balances is always zero: money is conserved):
//
//   funding            the world outside the ledger; Deposit debits it, Withdraw credits it.
//                      The only account whose balance may go below zero.
//   wallet:<address>   a wallet's available L1 balance.
//   credit:<session>   the undrawn part of a credit line: L1 funds reserved for the session.
//                      The wallet's L1 balance is wallet + credit (available + reserved).
//   escrow:<session>   the session's L2 escrow: what has been drawn into the game.
//   house              the house's bankroll: it takes losses and pays winnings.
//
// balance(account) = credits_posted - debits_posted; every account but funding has a floor of 0.
//
// Operations:
//   Deposit            funding -> wallet
//   Withdraw           wallet -> funding                     (available balance only)
//   ApproveCreditLine  wallet -> credit:<s>   credit_limit    (reserve)
//   CreditDraw         credit:<s> -> escrow:<s>  amount       (within the undrawn credit)
//   CreditSettle       see settlementPlan below.

export const FUNDING_ACCOUNT = 'funding';
export const HOUSE_ACCOUNT = 'house';
/** The address Deposit and Withdraw accept in place of a wallet's to fund the house bankroll. */
export const HOUSE_ADDRESS = 'house';

export const walletAccount = (address: string) => `wallet:${address}`;
/** The account Deposit and Withdraw move funds in and out of for an address: a wallet's, or the house's. */
export const fundsAccount = (address: string) => (address === HOUSE_ADDRESS ? HOUSE_ACCOUNT : walletAccount(address));
export const creditAccount = (sessionId: string) => `credit:${sessionId}`;
export const escrowAccount = (sessionId: string) => `escrow:${sessionId}`;

/**
 * The largest amount any single request may name: 10^15 minor units. Far below int64, so sums
 * of a few amounts (final balance + locked bets, balance + deposit) cannot overflow.
 */
export const MAX_AMOUNT_MINOR = 1_000_000_000_000_000n;
export const MIN_EXPIRES_IN_MS = 60_000n;
export const MAX_EXPIRES_IN_MS = 7n * 24n * 3_600_000n;
export const DEFAULT_EXPIRES_IN_MS = 24n * 3_600_000n;
export const MAX_REASON_CHARS = 256;
export const MAX_MEMO_CHARS = 256;
export const TRANSFER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export type TransferKind = 'deposit' | 'withdraw' | 'reserve' | 'draw' | 'release' | 'return' | 'loss' | 'win';

export interface PlannedTransfer {
  debit: string;
  credit: string;
  amountMinor: bigint;
  kind: TransferKind;
}

export type Outcome = 'WINNINGS' | 'LOSSES' | 'BREAKEVEN';

export interface SettlementInput {
  sessionId: string;
  walletAddress: string;
  creditLimitMinor: bigint;
  drawnMinor: bigint;
  finalL2BalanceMinor: bigint;
  lockedInBetsMinor: bigint;
}

export interface SettlementPlan {
  outcome: Outcome;
  /** Credited to the wallet's L1 balance from the session: final balance + locked-in bets. */
  returnedToL1Minor: bigint;
  /** returned - drawn: what the player won (positive) or lost (negative) in the session. */
  netPnlMinor: bigint;
  /** Undrawn credit released back to the wallet's available balance. */
  releasedMinor: bigint;
  transfers: PlannedTransfer[];
}

/**
 * The settlement rule. The session drew `drawn` into escrow and reports `final` left in it plus
 * `locked` staked in bets that have not resolved.
 *
 * Locked-in bets are voided and refunded: a closed session can no longer resolve them, so neither
 * side wins them; they return to the player with the final balance (returned = final + locked).
 * The house is the counterparty of the net result: it keeps what the player lost and pays what
 * the player won, and a win it cannot cover is refused (the house account's floor).
 *
 * After the plan, the session's credit and escrow accounts are both exactly zero.
 */
export function settlementPlan(s: SettlementInput): SettlementPlan {
  if (s.drawnMinor < 0n || s.drawnMinor > s.creditLimitMinor) throw new Error(`invariant: drawn ${s.drawnMinor} outside [0, ${s.creditLimitMinor}]`);
  if (s.finalL2BalanceMinor < 0n || s.lockedInBetsMinor < 0n) throw new Error('invariant: negative settlement amounts');
  const wallet = walletAccount(s.walletAddress);
  const credit = creditAccount(s.sessionId);
  const escrow = escrowAccount(s.sessionId);
  const returned = s.finalL2BalanceMinor + s.lockedInBetsMinor;
  const pnl = returned - s.drawnMinor;
  const released = s.creditLimitMinor - s.drawnMinor;
  const transfers: PlannedTransfer[] = [];
  const add = (debit: string, creditTo: string, amountMinor: bigint, kind: TransferKind) => {
    if (amountMinor > 0n) transfers.push({ debit, credit: creditTo, amountMinor, kind });
  };
  add(credit, wallet, released, 'release');
  // Escrow goes back to the wallet up to what was returned; the rest is the house's.
  add(escrow, wallet, returned < s.drawnMinor ? returned : s.drawnMinor, 'return');
  add(escrow, HOUSE_ACCOUNT, pnl < 0n ? -pnl : 0n, 'loss');
  add(HOUSE_ACCOUNT, wallet, pnl > 0n ? pnl : 0n, 'win');
  return { outcome: pnl > 0n ? 'WINNINGS' : pnl < 0n ? 'LOSSES' : 'BREAKEVEN', returnedToL1Minor: returned, netPnlMinor: pnl, releasedMinor: released, transfers };
}

/** Balance changes of a set of transfers, per account (credits minus debits). */
export function balanceDeltas(transfers: readonly PlannedTransfer[]): Map<string, bigint> {
  const deltas = new Map<string, bigint>();
  for (const t of transfers) {
    if (t.amountMinor <= 0n) throw new Error(`invariant: transfer amounts are positive, got ${t.amountMinor}`);
    if (t.debit === t.credit) throw new Error(`invariant: transfer from ${t.debit} to itself`);
    deltas.set(t.debit, (deltas.get(t.debit) ?? 0n) - t.amountMinor);
    deltas.set(t.credit, (deltas.get(t.credit) ?? 0n) + t.amountMinor);
  }
  return deltas;
}

/**
 * The pair assertion every booking passes before it reaches SQL: each transfer moves a positive
 * amount between two different accounts, and the booking's balance changes sum to zero (double
 * entry: a booking neither creates nor destroys money). A failure is a bug in the rules, never a
 * refusal the caller can fix, so it throws a plain Error.
 */
export function assertBalanced(transfers: readonly PlannedTransfer[]): void {
  let sumMinor = 0n;
  for (const deltaMinor of balanceDeltas(transfers).values()) sumMinor += deltaMinor;
  if (sumMinor !== 0n) throw new Error(`invariant: a booking's balance changes sum to ${sumMinor}, not 0`);
}

/** A credit line's state as the clock sees it: an open line past its expiry is EXPIRED. */
export function lineState(line: { settledAt: Date | null; expiresAt: Date }, now: Date): 'OPEN' | 'SETTLED' | 'EXPIRED' {
  if (line.settledAt) return 'SETTLED';
  return now.getTime() >= line.expiresAt.getTime() ? 'EXPIRED' : 'OPEN';
}
