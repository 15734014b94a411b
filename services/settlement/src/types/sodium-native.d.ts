// The one function of sodium-native the settlement server calls (domain/verify.ts). The package ships
// no types, and @types/sodium-native describes a major version four releases old.
declare module 'sodium-native' {
  /** libsodium's crypto_sign_verify_detached: true when `signature` (64 bytes) is `publicKey`'s (32 bytes) Ed25519 signature of `message`. */
  export function crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
}
