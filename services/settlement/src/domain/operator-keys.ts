// The registry of L2 operator keys, whose attestations settle sessions: when a key may be
// registered, revoked, and trusted to attest. Pure; the handlers call these with the rows their
// transaction has locked.
import { alreadyExists, failedPrecondition, notFound, permissionDenied } from '@gantry/kit';

/** Keys active at once: each is a party that can move house money, so the set stays reviewable. */
export const MAX_ACTIVE_OPERATOR_KEYS = 64;
/** Keys ListOperatorKeys returns at most (revoked keys are kept forever). */
export const MAX_LISTED_OPERATOR_KEYS = 1000;
/** A key's holder, e.g. "casino-eu-1". */
export const OPERATOR_KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface OperatorKeyRow {
  publicKey: Buffer;
  name: string;
  registeredAt: Date;
  registeredBy: string;
  revokedAt: Date | null;
  revokedBy: string | null;
  revokeReason: string | null;
}

/** How a key is named in messages: its public key in hex, as the CLI prints and takes it. */
export const keyHex = (publicKey: Buffer) => publicKey.toString('hex');

/**
 * Registration: a new key while fewer than MAX_ACTIVE_OPERATOR_KEYS are active; the same active
 * key under the same name again is a retry (`unchanged`, the stored key). A revoked key stays revoked: it was
 * revoked because it may be in someone else's hands, and nothing proves it no longer is.
 */
export function checkRegister(existing: OperatorKeyRow | undefined, name: string, activeCount: number): { unchanged: OperatorKeyRow } | 'new' {
  if (existing?.revokedAt) {
    throw failedPrecondition(`operator key ${keyHex(existing.publicKey)} was revoked at ${existing.revokedAt.toISOString()} (${existing.revokeReason}); a revoked key never comes back: generate a new key and register that`);
  }
  if (existing) {
    if (existing.name !== name) throw alreadyExists(`operator key ${keyHex(existing.publicKey)} is already registered as "${existing.name}"; register it under that name, or revoke it first`);
    return { unchanged: existing };
  }
  if (activeCount >= MAX_ACTIVE_OPERATOR_KEYS) {
    throw failedPrecondition(`${activeCount} operator keys are active, the most allowed (${MAX_ACTIVE_OPERATOR_KEYS}); revoke keys no longer in use, then register this one`);
  }
  return 'new';
}

/** Revocation: of a registered key; revoking a revoked key again is a retry (`unchanged`). */
export function checkRevoke(existing: OperatorKeyRow | undefined, publicKey: Buffer): { unchanged: OperatorKeyRow } | 'revoke' {
  if (!existing) throw notFound(`operator key ${keyHex(publicKey)} was never registered`);
  return existing.revokedAt ? { unchanged: existing } : 'revoke';
}

/** Only a registered key that is not revoked speaks for the house. */
export function checkAttestingKey(key: OperatorKeyRow | undefined, publicKey: Buffer): OperatorKeyRow {
  if (!key) {
    throw permissionDenied(`attestation.public_key ${keyHex(publicKey)} is not a registered operator key; the house registers its L2 operators' keys with RegisterOperatorKey (gantry settlement operator-key register)`);
  }
  if (key.revokedAt) {
    throw permissionDenied(`operator key ${keyHex(publicKey)} ("${key.name}") was revoked at ${key.revokedAt.toISOString()}; have a registered operator key attest the settlement`);
  }
  return key;
}
