// The settlement client library's public surface, for the L2 side: wallet keys and addresses, the
// canonical message and Ed25519 signatures (the very code the server verifies with), signed
// request builders, the operator's attestation of a settlement, and key files.
export * from '../domain/signing.js';
export { ATTESTATION_OPERATION, attestationMessage, signAttestation, type AttestationParts, type AttestedSettlement } from '../domain/attestation.js';
export { DEFAULT_EXPIRES_IN_MS, HOUSE_ADDRESS, MAX_AMOUNT_MINOR, MAX_EXPIRES_IN_MS, MAX_REASON_CHARS, MIN_EXPIRES_IN_MS } from '../domain/ledger.js';
export * from './wallet.js';
export * from './operator.js';
export * from './key-file.js';
