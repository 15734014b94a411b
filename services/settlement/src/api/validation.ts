// Request checks for the settlement API: field shapes first (INVALID_ARGUMENT), then the wallet
// signature and the operator's attestation signature (PERMISSION_DENIED). Nothing here touches the
// database.
import { checkText, durationToMs, invalidArgument, permissionDenied } from '@gantry/kit';
import type { settlementv1 } from '@gantry/proto';
import { attestationMessage, type AttestedSettlement } from '../domain/attestation.js';
import { OPERATOR_KEY_NAME_PATTERN } from '../domain/operator-keys.js';
import { DEFAULT_EXPIRES_IN_MS, HOUSE_ADDRESS, MAX_AMOUNT_MINOR, MAX_EXPIRES_IN_MS, MAX_MEMO_CHARS, MIN_EXPIRES_IN_MS, TRANSFER_ID_PATTERN } from '../domain/ledger.js';
import {
  MAX_CLOCK_SKEW_MS,
  NONCE_PATTERN,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  WALLET_ADDRESS_PATTERN,
  canonicalMessage,
  walletAddress,
  type SignedFields,
} from '../domain/signing.js';
import { verifySignature } from '../domain/verify.js';

const SESSION_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function checkWallet(field: string, address: string, opts: { allowHouse?: boolean } = {}): string {
  if (opts.allowHouse && address === HOUSE_ADDRESS) return address;
  if (!WALLET_ADDRESS_PATTERN.test(address)) {
    throw invalidArgument(field, `must be a wallet address: "0x" and 40 lowercase hex digits${opts.allowHouse ? `, or "${HOUSE_ADDRESS}"` : ''} (got ${JSON.stringify(address.slice(0, 60))})`);
  }
  return address;
}

export function checkSessionId(id: string): string {
  if (!SESSION_ID_PATTERN.test(id)) throw invalidArgument('session_id', `must be a session id returned by ApproveCreditLine (a lowercase UUID), got ${JSON.stringify(id.slice(0, 60))}`);
  return id;
}

/** A positive amount (or, with `allowZero`, non-negative) no larger than MAX_AMOUNT_MINOR. */
export function checkAmount(field: string, amount: bigint, opts: { allowZero?: boolean } = {}): bigint {
  if (amount < 0n || (amount === 0n && !opts.allowZero)) throw invalidArgument(field, `must be ${opts.allowZero ? 'zero or more' : 'greater than zero'} (minor units), got ${amount}`);
  if (amount > MAX_AMOUNT_MINOR) throw invalidArgument(field, `must be at most ${MAX_AMOUNT_MINOR} minor units, got ${amount}`);
  return amount;
}

/** A memo or reason: bounded, and storable (no NUL). */
export const checkMemo = (field: string, text: string, maxChars = MAX_MEMO_CHARS): string => checkText(field, text, maxChars);

/** A credit line's lifetime: 1 minute to 7 days; unset means 24 hours. */
export function checkExpiresIn(d: { seconds: bigint; nanos: number } | undefined): bigint {
  if (!d) return DEFAULT_EXPIRES_IN_MS;
  const ms = BigInt(durationToMs(d));
  if (ms < MIN_EXPIRES_IN_MS || ms > MAX_EXPIRES_IN_MS) throw invalidArgument('expires_in', `must be between 1 minute and 7 days, got ${ms} ms`);
  return ms;
}

export function checkTransferId(id: string): string {
  if (!TRANSFER_ID_PATTERN.test(id)) throw invalidArgument('transfer_id', `must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-' (e.g. a UUID), got ${JSON.stringify(id.slice(0, 140))}`);
  return id;
}

/**
 * Checks a wallet request's signature: shapes, the clock window, that the key owns the named
 * wallet, and the Ed25519 signature over the canonical message. Returns the nonce.
 */
export function checkSignature(sig: settlementv1.Signature | undefined, fields: SignedFields, nowMs: number): { nonce: string } {
  if (!sig) throw invalidArgument('signature', 'is required: sign the request with the wallet key (see the settlement client library)');
  checkPublicKey('signature.public_key', sig.publicKey);
  if (sig.signature.length !== SIGNATURE_BYTES) throw invalidArgument('signature.signature', `must be ${SIGNATURE_BYTES} bytes (an Ed25519 signature), got ${sig.signature.length}`);
  if (!NONCE_PATTERN.test(sig.nonce)) throw invalidArgument('signature.nonce', 'must be 8 to 128 characters of A-Z, a-z, 0-9, _ or -');
  const skewMs = Number(sig.timestampMs) - nowMs;
  if (Math.abs(skewMs) > MAX_CLOCK_SKEW_MS) {
    throw invalidArgument('signature.timestamp_ms', `is ${Math.round(Math.abs(skewMs) / 1000)} s ${skewMs < 0 ? 'behind' : 'ahead of'} the server clock; the window is ±${MAX_CLOCK_SKEW_MS / 60_000} minutes: sign again with the current time`);
  }
  const owner = walletAddress(sig.publicKey);
  if (owner !== fields.walletAddress) throw permissionDenied(`signature.public_key belongs to wallet ${owner}, not ${fields.walletAddress}`);
  if (!verifySignature(sig.publicKey, canonicalMessage(fields, sig.timestampMs, sig.nonce), sig.signature)) {
    throw permissionDenied('signature does not verify for this request: sign the canonical message of exactly these fields');
  }
  return { nonce: sig.nonce };
}

/** An Ed25519 public key field: 32 raw bytes. */
export function checkPublicKey(field: string, key: Buffer): Buffer {
  if (key.length !== PUBLIC_KEY_BYTES) throw invalidArgument(field, `must be ${PUBLIC_KEY_BYTES} bytes (a raw Ed25519 public key), got ${key.length}`);
  return key;
}

export function checkOperatorKeyName(name: string): string {
  if (!OPERATOR_KEY_NAME_PATTERN.test(name)) {
    throw invalidArgument('name', `must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit, naming who holds the key (e.g. casino-eu-1); got ${JSON.stringify(name.slice(0, 70))}`);
  }
  return name;
}

/**
 * Checks a settlement's operator attestation: shapes (INVALID_ARGUMENT), then its Ed25519
 * signature over the attestation message of exactly this settlement (PERMISSION_DENIED). Whether
 * the key is registered, and whether the attested state is the session's, the transaction decides.
 */
export function checkAttestation(
  att: settlementv1.OperatorAttestation | undefined,
  settle: Omit<AttestedSettlement, 'drawnMinor' | 'drawCount'>,
): AttestedSettlement & { publicKey: Buffer; signature: Buffer } {
  if (!att) {
    throw invalidArgument('attestation', "is required: the L2 operator signs the session's final state with its registered key (OperatorAttestation; docs/settlement.md, \"Trust model\")");
  }
  const publicKey = checkPublicKey('attestation.public_key', att.publicKey);
  if (att.signature.length !== SIGNATURE_BYTES) throw invalidArgument('attestation.signature', `must be ${SIGNATURE_BYTES} bytes (an Ed25519 signature), got ${att.signature.length}`);
  if (att.drawnMinor < 0n || att.drawnMinor > MAX_AMOUNT_MINOR) throw invalidArgument('attestation.drawn_minor', `must be between 0 and ${MAX_AMOUNT_MINOR} minor units, got ${att.drawnMinor}`);
  const { walletAddress, sessionId, finalL2BalanceMinor, lockedInBetsMinor } = settle;
  const attested: AttestedSettlement = { walletAddress, sessionId, drawnMinor: att.drawnMinor, drawCount: att.drawCount, finalL2BalanceMinor, lockedInBetsMinor };
  if (!verifySignature(publicKey, attestationMessage(attested), att.signature)) {
    throw permissionDenied('attestation.signature does not verify: the operator must sign the attestation message of exactly this wallet, session, drawn amount, draw count, final balance and locked bets');
  }
  return { ...attested, publicKey, signature: att.signature };
}
