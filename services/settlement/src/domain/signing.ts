// Wallet request signatures: the canonical message, wallet addresses, and Ed25519 sign/verify.
// Pure (node:crypto only); the server and the client library share this file, so both sides
// build the very same bytes.
//
// Canonical message (version 1): the UTF-8 bytes of a JSON array with no whitespace,
//
//   ["gantry.settlement.v1", <operation>, <field>..., "<timestamp_ms>", "<nonce>"]
//
// where every element is a JSON string (integers in decimal, so no float rounding and no
// bigint ambiguity) and the fields of each operation come in this fixed order:
//
//   ApproveCreditLine  wallet_address, credit_limit_minor, expires_in_ms
//   CreditDraw         wallet_address, session_id, amount_minor, reason
//   CreditSettle       wallet_address, session_id, final_l2_balance_minor, locked_in_bets_minor
//
// JSON string escaping makes the encoding injective: no two requests share a message, and a
// signature for one operation never verifies for another (the operation name is signed).
//
// Wallet address: "0x" + the first 20 bytes of SHA-256(Ed25519 public key), lowercase hex. The
// key is sent with each request; the server derives the address from it, so a signature that
// verifies proves the caller holds the wallet's private key.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export const SIGNATURE_DOMAIN = 'gantry.settlement.v1';
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Requests whose timestamp is further than this from the server clock are refused. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
export const NONCE_PATTERN = /^[A-Za-z0-9_-]{8,128}$/;
export const WALLET_ADDRESS_PATTERN = /^0x[0-9a-f]{40}$/;

export type SignedOperation = 'ApproveCreditLine' | 'CreditDraw' | 'CreditSettle';

/** The signed fields of each operation, in canonical order. */
export type SignedFields =
  | { operation: 'ApproveCreditLine'; walletAddress: string; creditLimitMinor: bigint; expiresInMs: bigint }
  | { operation: 'CreditDraw'; walletAddress: string; sessionId: string; amountMinor: bigint; reason: string }
  | { operation: 'CreditSettle'; walletAddress: string; sessionId: string; finalL2BalanceMinor: bigint; lockedInBetsMinor: bigint };

export interface SignatureParts {
  publicKey: Buffer;
  signature: Buffer;
  timestampMs: bigint;
  nonce: string;
}

function fieldValues(f: SignedFields): string[] {
  switch (f.operation) {
    case 'ApproveCreditLine':
      return [f.walletAddress, f.creditLimitMinor.toString(), f.expiresInMs.toString()];
    case 'CreditDraw':
      return [f.walletAddress, f.sessionId, f.amountMinor.toString(), f.reason];
    case 'CreditSettle':
      return [f.walletAddress, f.sessionId, f.finalL2BalanceMinor.toString(), f.lockedInBetsMinor.toString()];
  }
}

/** The exact bytes a wallet signs for a request. */
export function canonicalMessage(fields: SignedFields, timestampMs: bigint, nonce: string): Buffer {
  return Buffer.from(JSON.stringify([SIGNATURE_DOMAIN, fields.operation, ...fieldValues(fields), timestampMs.toString(), nonce]), 'utf8');
}

/** The wallet address an Ed25519 public key (32 raw bytes) owns. */
export function walletAddress(publicKey: Uint8Array): string {
  return '0x' + createHash('sha256').update(publicKey).digest('hex').slice(0, 40);
}

// DER prefixes that wrap a raw 32-byte Ed25519 key as SPKI (public) or PKCS#8 (private).
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Most public keys kept parsed: building a KeyObject costs about as much as a verify. */
const MAX_CACHED_KEYS = 10_000;
const keyCache = new Map<string, KeyObject>();

function publicKeyObject(raw: Buffer): KeyObject {
  const id = raw.toString('base64');
  let key = keyCache.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    if (keyCache.size >= MAX_CACHED_KEYS) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(id, key);
  }
  return key;
}

/** True when `signature` is a valid Ed25519 signature by `publicKey` (raw bytes) over `message`. */
export function verifySignature(publicKey: Buffer, message: Buffer, signature: Buffer): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    return verify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    // A 32-byte string that is not a point on the curve.
    return false;
  }
}

/** A wallet's key pair as raw bytes: 32-byte seed (private) and 32-byte public key. */
export interface WalletKeys {
  privateKey: Buffer;
  publicKey: Buffer;
  address: string;
}

/** A new random wallet. */
export function generateWallet(): WalletKeys {
  const { privateKey } = generateKeyPairSync('ed25519');
  return walletFromPrivateKey(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length));
}

/** The wallet of a 32-byte Ed25519 private key (seed). */
export function walletFromPrivateKey(seed: Buffer): WalletKeys {
  if (seed.length !== 32) throw new Error(`an Ed25519 private key is 32 bytes, got ${seed.length}`);
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
  return { privateKey: Buffer.from(seed), publicKey: Buffer.from(publicKey), address: walletAddress(publicKey) };
}

/** An Ed25519 signature (64 bytes) by `keys` over `message`. */
export function signBytes(keys: WalletKeys, message: Buffer): Buffer {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, keys.privateKey]), format: 'der', type: 'pkcs8' });
  return sign(null, message, key);
}

/** Signs `fields` as `wallet`: the Signature message of a request. */
export function signRequest(wallet: WalletKeys, fields: SignedFields, timestampMs: bigint, nonce: string): SignatureParts {
  return { publicKey: wallet.publicKey, signature: signBytes(wallet, canonicalMessage(fields, timestampMs, nonce)), timestampMs, nonce };
}

/** SHA-256 of the canonical message without the signature: what "the same body" means for a nonce retry. */
export function requestDigest(fields: SignedFields): Buffer {
  return createHash('sha256').update(canonicalMessage(fields, 0n, '')).digest();
}
