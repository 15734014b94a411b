import { z } from 'zod';
import type { ConfigSlice } from '@gantry/kit';

/** The log target's settings: config key `log`, environment variables GANTRY_LOG_*. */
export const logConfigSchema = z.strictObject({
  /** Checkpoint origin prefix; a partition's origin is "<origin>/<partition>". */
  origin: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be printable ASCII without spaces').default('gantry.local/log'),
  /** Ed25519 private key (PKCS#8 PEM) that signs checkpoints; generated under dataDir/log when unset. */
  signingKeyFile: z.string().optional(),
  /** Largest payload of one entry. */
  maxPayloadBytes: z.coerce.number().int().min(1).max(4 * 1024 * 1024).default(1024 * 1024),
  /**
   * How long an idempotency key answers a re-send, in hours (default 7 days). Older keys are
   * deleted in the background (the entries stay, immutable), so a re-send with a key older than
   * this appends a NEW entry: keep it well above the longest time a producer may retry.
   */
  idempotencyKeyRetentionHours: z.coerce.number().int().min(1).max(10 * 365 * 24).default(7 * 24),
}).prefault({});

export type LogConfig = z.infer<typeof logConfigSchema>;

/** The log module's slice of the program's config. */
export const logConfig = { key: 'log', schema: logConfigSchema } satisfies ConfigSlice;
