// Feature flags settlement evaluates (docs/flags.md). Each is read through the process's
// OpenFeature client; an unknown or DISABLED flag means the default given here.

/**
 * Kill switch: while it evaluates to true, CreditDraw is refused with FAILED_PRECONDITION and books
 * nothing. Evaluated per draw with the wallet as targeting key, so a rule can stop one wallet,
 * a list of them, or a fraction.
 */
export const DRAWS_DISABLED_FLAG = 'settlement.draws.disabled';
