// The L2 operator's side of a settlement: the game server holds a registered operator key and
// co-signs the final state of each session it closes. Nothing here talks to the network.
import type { settlementv1 } from '@gantry/proto';
import { signAttestation } from '../domain/attestation.js';
import { generateWallet, walletFromPrivateKey, type WalletKeys } from '../domain/signing.js';

/** The session's state when the operator closed it: GetCreditStatus's credit line, or the last CreditDraw response. */
export interface SessionAtClose {
  drawnMinor: bigint;
  drawCount: number;
}

/** An L2 operator key: attests the final state of the sessions its game server closes. */
export class SettlementOperator {
  constructor(readonly keys: WalletKeys) {}

  /** An operator with a new random key (register its public key with RegisterOperatorKey). */
  static generate(): SettlementOperator {
    return new SettlementOperator(generateWallet());
  }

  /** The operator of a 32-byte Ed25519 private key (seed). */
  static fromPrivateKey(seed: Buffer): SettlementOperator {
    return new SettlementOperator(walletFromPrivateKey(seed));
  }

  get publicKey(): Buffer {
    return this.keys.publicKey;
  }

  /**
   * The attestation of a wallet's settle request, for the session as it was at close. Sign once
   * per session, when play has stopped: every attestation is a statement the house pays on.
   */
  attest(req: Pick<settlementv1.CreditSettleRequest, 'walletAddress' | 'sessionId' | 'finalL2BalanceMinor' | 'lockedInBetsMinor'>, state: SessionAtClose): settlementv1.OperatorAttestation {
    const { publicKey, signature } = signAttestation(this.keys, { ...pickSettle(req), drawnMinor: state.drawnMinor, drawCount: state.drawCount });
    return { publicKey, signature, drawnMinor: state.drawnMinor, drawCount: state.drawCount };
  }

  /** The wallet's settle request with this operator's attestation added: what the L2 side sends. */
  cosign(req: settlementv1.CreditSettleRequest, state: SessionAtClose): settlementv1.CreditSettleRequest {
    return { ...req, attestation: this.attest(req, state) };
  }
}

const pickSettle = (r: Pick<settlementv1.CreditSettleRequest, 'walletAddress' | 'sessionId' | 'finalL2BalanceMinor' | 'lockedInBetsMinor'>) => ({
  walletAddress: r.walletAddress,
  sessionId: r.sessionId,
  finalL2BalanceMinor: r.finalL2BalanceMinor,
  lockedInBetsMinor: r.lockedInBetsMinor,
});
