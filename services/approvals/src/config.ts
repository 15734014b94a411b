import { z } from 'zod';
import type { ConfigSlice } from '@gantry/kit';

const DAY_MS = 24 * 3600 * 1000;

/** The approvals target's settings: config key `approvals`, environment variables GANTRY_APPROVALS_*. */
export const approvalsConfigSchema = z.strictObject({
  /**
   * How long the change history keeps a change for watches to resume from (0 = no time bound).
   * A watch from an older version gets OUT_OF_RANGE: list again and watch from the list's version.
   */
  historyRetentionMs: z.coerce.number().int().min(0).max(365 * DAY_MS).default(7 * DAY_MS),
  /** Versions the change history keeps at most, whatever their age (0 = no count bound). */
  historyMaxVersions: z.coerce.number().int().min(0).max(1_000_000_000).default(100_000),
  /** History rows one prune deletes at most (one statement per sweep, every sweep interval). */
  historyPruneBatch: z.coerce.number().int().min(1).max(100_000).default(10_000),
}).prefault({});

export type ApprovalsConfig = z.infer<typeof approvalsConfigSchema>;

/** The approvals module's slice of the program's config. */
export const approvalsConfig = { key: 'approvals', schema: approvalsConfigSchema } satisfies ConfigSlice;
