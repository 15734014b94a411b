// Deposit and Withdraw: funds between the world outside the ledger (the funding account) and a
// wallet or the house. Pure; the handler applies the plan in the transaction that locked both
// balances, so the check and the booking see the same state.
import { GantryError, Status } from '@gantry/kit';
import { FUNDING_ACCOUNT, type PlannedTransfer } from './ledger.js';

export type FundsKind = 'deposit' | 'withdraw';

export interface FundsPlan {
  transfer: PlannedTransfer;
  /** The account's available balance once the transfer is booked. */
  availableAfterMinor: bigint;
}

/**
 * Deposit credits `account` from funding; Withdraw debits it back, never by more than its available
 * balance: funds a credit line has reserved sit in the line's credit account and cannot be withdrawn.
 */
export function planFunds(kind: FundsKind, account: string, amountMinor: bigint, availableMinor: bigint): FundsPlan {
  if (kind === 'withdraw' && amountMinor > availableMinor) {
    throw new GantryError(Status.FAILED_PRECONDITION, `withdrawal of ${amountMinor} exceeds the available balance of ${availableMinor} (funds reserved by a credit line cannot be withdrawn)`);
  }
  const [debit, credit] = kind === 'deposit' ? [FUNDING_ACCOUNT, account] : [account, FUNDING_ACCOUNT];
  return {
    transfer: { debit, credit, amountMinor, kind },
    availableAfterMinor: kind === 'deposit' ? availableMinor + amountMinor : availableMinor - amountMinor,
  };
}
