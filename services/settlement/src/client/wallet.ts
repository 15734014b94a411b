// Signed wallet requests for the L2 side: each method returns the proto request, signed over the
// canonical message (../domain/signing.ts) with a fresh timestamp and a random nonce, ready to
// pass to SettlementServiceClient. Nothing here talks to the network.
import { randomBytes } from 'node:crypto';
// The dependency-free subpath: a wallet client must not load the server kit.
import { durationFromMs } from '@gantry/kit/duration';
import type { settlementv1 } from '@gantry/proto';
import { DEFAULT_EXPIRES_IN_MS } from '../domain/ledger.js';
import { generateWallet, signRequest, walletFromPrivateKey, type SignedFields, type WalletKeys } from '../domain/signing.js';

/** Random bytes per nonce: 16 bytes are 22 base64url characters, far past any chance of a repeat. */
export const NONCE_BYTES = 16;

/** A fresh random nonce: NONCE_BYTES from the system CSPRNG as base64url. */
export function randomNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64url');
}

/** Where a wallet gets its time and nonces; tests pass a fixed clock and a counter. */
export interface WalletOptions {
  /** Milliseconds since the Unix epoch (default Date.now); the server accepts ±5 minutes of skew. */
  now?: () => number;
  /** A nonce never used before by this wallet (default randomNonce). */
  nonce?: () => string;
}

/** A wallet's key and the signed requests it makes: approve, draw and settle. */
export class SettlementWallet {
  /** The wallet address ("0x" + 40 hex digits) the key owns. */
  readonly address: string;
  private readonly now: () => number;
  private readonly nonce: () => string;

  constructor(
    readonly keys: WalletKeys,
    opts: WalletOptions = {},
  ) {
    this.address = keys.address;
    this.now = opts.now ?? Date.now;
    this.nonce = opts.nonce ?? randomNonce;
  }

  /** A wallet with a new random key. */
  static generate(opts: WalletOptions = {}): SettlementWallet {
    return new SettlementWallet(generateWallet(), opts);
  }

  /** The wallet of a 32-byte Ed25519 private key (seed). */
  static fromPrivateKey(seed: Buffer, opts: WalletOptions = {}): SettlementWallet {
    return new SettlementWallet(walletFromPrivateKey(seed), opts);
  }

  /**
   * ApproveCreditLine: reserve creditLimitMinor of the wallet's L1 balance for a new session.
   * The lifetime is always sent (24 hours unless given), so the signed value is the one the server uses.
   */
  approve(creditLimitMinor: bigint, expiresInMs: bigint = DEFAULT_EXPIRES_IN_MS): settlementv1.ApproveCreditLineRequest {
    const fields: SignedFields = { operation: 'ApproveCreditLine', walletAddress: this.address, creditLimitMinor, expiresInMs };
    return { walletAddress: this.address, creditLimitMinor, expiresIn: durationFromMs(expiresInMs), signature: this.sign(fields) };
  }

  /** CreditDraw: move amountMinor of the session's credit into its L2 escrow. */
  draw(sessionId: string, amountMinor: bigint, reason = ''): settlementv1.CreditDrawRequest {
    const fields: SignedFields = { operation: 'CreditDraw', walletAddress: this.address, sessionId, amountMinor, reason };
    return { walletAddress: this.address, sessionId, amountMinor, reason, signature: this.sign(fields) };
  }

  /**
   * CreditSettle: close the session with the L2 balance it ends with and the bets still open. The
   * server also needs the L2 operator's attestation of the same numbers: the L2 side adds it
   * (SettlementOperator.cosign) before sending.
   */
  settle(sessionId: string, finalL2BalanceMinor: bigint, lockedInBetsMinor = 0n): settlementv1.CreditSettleRequest {
    const fields: SignedFields = { operation: 'CreditSettle', walletAddress: this.address, sessionId, finalL2BalanceMinor, lockedInBetsMinor };
    return { walletAddress: this.address, sessionId, finalL2BalanceMinor, lockedInBetsMinor, signature: this.sign(fields), attestation: undefined };
  }

  private sign(fields: SignedFields): settlementv1.Signature {
    return signRequest(this.keys, fields, BigInt(Math.trunc(this.now())), this.nonce());
  }
}
