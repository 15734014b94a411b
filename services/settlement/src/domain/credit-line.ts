// The credit line's rules: when a draw or a settlement is allowed. Pure; the store calls these
// with the line it has locked, so the decision and the booking see the same state.
import { failedPrecondition, permissionDenied } from '@gantry/kit';
import { lineState } from './ledger.js';

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
