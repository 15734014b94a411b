// The server's Ed25519 check of wallet and operator signatures, through libsodium (sodium-native).
//
// Why not node:crypto, which the client library signs with (signing.ts):
// - Cost. One verification is the largest single part of a signed draw's server CPU: 106 µs through
//   node:crypto (OpenSSL, a KeyObject and an EVP context per call) against 50 µs through libsodium on
//   the benchmark machine (docs/benchmarks.md, settlement).
// - Strictness. libsodium refuses public keys and R points of small order and non-canonical
//   encodings, which RFC 8032 leaves open. OpenSSL accepts the identity point as a public key, and
//   with R = identity and S = 0 that key "signs" every message (test/verify.test.ts): a wallet
//   address derived from such a key could be drawn on by anyone.
// The client library keeps node:crypto, so signing needs no native addon; every signature an
// honest signer makes verifies the same way under both.
import sodium from 'sodium-native';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from './signing.js';

/** True when `signature` is a valid Ed25519 signature by `publicKey` (32 raw bytes) over `message`. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  return sodium.crypto_sign_verify_detached(signature, message, publicKey);
}
