import { z } from 'zod';
import type { ConfigSlice } from '@gantry/kit';
import { MAX_AMOUNT_MINOR } from './domain/ledger.js';

/**
 * The default per-session payout cap, in minor units (1,000.00 in a currency of cents): small on
 * purpose, because it is what a leaked operator key can take per session. A house with larger
 * table limits raises it knowingly.
 */
export const DEFAULT_MAX_SESSION_WINNINGS_MINOR = 100_000;

/** The settlement target's settings (docs/settlement.md): config key `settlement`, environment variables GANTRY_SETTLEMENT_*. */
export const settlementConfigSchema = z.strictObject({
  /**
   * The most a session may win (returned − drawn), even with a registered operator's attestation;
   * a settlement above it is refused and books nothing. MAX_AMOUNT_MINOR (10^15) is exact as a
   * JavaScript number.
   */
  maxSessionWinningsMinor: z.coerce.number().int().min(0).max(Number(MAX_AMOUNT_MINOR)).default(DEFAULT_MAX_SESSION_WINNINGS_MINOR),
}).prefault({});

export type SettlementConfig = z.infer<typeof settlementConfigSchema>;
export type SettlementConfigInput = z.input<typeof settlementConfigSchema>;

/** The settlement module's slice of the program's config. */
export const settlementConfig = { key: 'settlement', schema: settlementConfigSchema } satisfies ConfigSlice;
