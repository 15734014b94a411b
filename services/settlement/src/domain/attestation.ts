// The house's attestation of a session's final state: the message an L2 operator key signs and its
// signature. Pure (node:crypto only); the server and the client library share this file, so both
// sides build the very same bytes. The rules the service applies to an attested settlement are in
// credit-line.ts (checkAttestedState, checkSettlementBounds).
//
// Why: the wallet's own signature proves only that the wallet wants to close its session with
// these numbers. The wallet gains from naming a large final balance, so on its word alone the
// house would pay whatever it claimed. The numbers come from the L2 game server, which ran the
// bets; a key registered for it (RegisterOperatorKey) signs them, and the service settles only
// what both the wallet and a registered operator signed.
//
// Attestation message (version 1): the UTF-8 bytes of a JSON array of strings, no whitespace,
//
//   ["gantry.settlement.v1", "CreditSettleAttestation", wallet_address, session_id,
//    "<drawn_minor>", "<draw_count>", "<final_l2_balance_minor>", "<locked_in_bets_minor>"]
//
// The session id (a server-made UUID, settled once) stops an attestation from settling any other
// session; drawn_minor and draw_count (the session's state sequence) stop one made before a later
// draw from settling the session as it is now. The operation name keeps it apart from every wallet
// message, which names its own operation in the same position.
import { SIGNATURE_DOMAIN, signBytes, type WalletKeys } from './signing.js';

export const ATTESTATION_OPERATION = 'CreditSettleAttestation';

/** What an operator attests: the session, its state when it closed, and how it ended. */
export interface AttestedSettlement {
  walletAddress: string;
  sessionId: string;
  drawnMinor: bigint;
  drawCount: number;
  finalL2BalanceMinor: bigint;
  lockedInBetsMinor: bigint;
}

/** An attestation as it travels: the operator's public key and its signature, both raw bytes. */
export interface AttestationParts {
  publicKey: Buffer;
  signature: Buffer;
}

/** The exact bytes an operator key signs for a settlement. */
export function attestationMessage(a: AttestedSettlement): Buffer {
  const fields = [a.walletAddress, a.sessionId, a.drawnMinor.toString(), String(a.drawCount), a.finalL2BalanceMinor.toString(), a.lockedInBetsMinor.toString()];
  return Buffer.from(JSON.stringify([SIGNATURE_DOMAIN, ATTESTATION_OPERATION, ...fields]), 'utf8');
}

/** Signs a settlement as an operator key (an Ed25519 key pair of the same shape as a wallet's). */
export function signAttestation(operator: WalletKeys, a: AttestedSettlement): AttestationParts {
  return { publicKey: operator.publicKey, signature: signBytes(operator, attestationMessage(a)) };
}
