import { z } from 'zod';
import { splitList, type ConfigSlice } from '@gantry/kit';

/** The webhooks target's settings (docs/webhooks.md): config key `webhooks`, environment variables GANTRY_WEBHOOKS_*. */
export const webhooksConfigSchema = z.strictObject({
  /**
   * Keys that encrypt endpoint secrets at rest (AES-256-GCM): lines or comma-separated entries
   * `<keyId>=<base64 of 32 bytes>`; the first encrypts, every one decrypts (rotation). A file,
   * or the value itself; when both are unset a dev key is generated under dataDir/webhooks.
   */
  secretKeyFile: z.string().optional(),
  secretKeys: z.string().optional(),
  /**
   * Ranges deliveries may reach although they are loopback, private, link-local or metadata
   * addresses, over http too and on any port. `<owner>=<cidr>` opens a range to that owner's
   * endpoints only; a bare `<cidr>` only to endpoints whose target an administrator
   * (webhooks.admin) or a platform workload registered (docs/security.md, Webhooks).
   */
  allowedCidrs: z.preprocess(splitList, z.array(z.string().min(1).max(400)).max(100)).default([]),
  /** Ports a public (not allow-listed) target may use; it must use https as well. */
  allowedPorts: z.preprocess(splitList, z.array(z.coerce.number().int().min(1).max(65_535)).min(1).max(64)).default([443, 8443]),
  /** Delay before each attempt (the first is normally 0): Svix's schedule by default. */
  retryScheduleMs: z.preprocess(splitList, z.array(z.coerce.number().int().min(0).max(7 * 24 * 3600 * 1000)).min(1).max(50))
    .default([0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
  /** Each delay is spread uniformly over ±this fraction of itself, so retries of many deliveries do not arrive together. */
  retryJitterRatio: z.coerce.number().min(0).max(1).default(0.2),
  /** Attempts per delivery before it is dead-lettered; past the schedule's end the last delay repeats. */
  maxAttempts: z.coerce.number().int().min(1).max(50).default(8),
  /** One HTTP attempt, connect to last response byte read. */
  attemptTimeoutMs: z.coerce.number().int().min(100).max(120_000).default(15_000),
  /** Longest Retry-After (429/503) honoured; a longer one is cut to this. */
  maxRetryAfterMs: z.coerce.number().int().min(0).max(7 * 24 * 3600 * 1000).default(36_000_000),
  /** An endpoint is disabled after this many failed attempts in a row spanning at least `disableAfterMs` (0 = never). */
  disableAfterFailures: z.coerce.number().int().min(0).max(1_000_000).default(50),
  disableAfterMs: z.coerce.number().int().min(0).max(90 * 24 * 3600 * 1000).default(5 * 24 * 3600 * 1000),
  /** How often an idle dispatcher looks for due deliveries (a publish in any replica wakes it sooner). */
  pollIntervalMs: z.coerce.number().int().min(10).max(60_000).default(1000),
  /**
   * Least time between the starts of two claims when the first was not full: under load every
   * publish wakes the dispatcher, and this lets a few events gather into one claim. It adds at most
   * this much to a delivery's latency, and nothing when the dispatcher was idle. 0: claim at once.
   */
  claimLingerMs: z.coerce.number().int().min(0).max(1000).default(10),
  /** Deliveries one claim takes at most. */
  claimBatch: z.coerce.number().int().min(1).max(1000).default(100),
  /** HTTP requests of attempts one process has out at once, over every endpoint (an attempt holds its slot until its answer is in). */
  maxInFlight: z.coerce.number().int().min(1).max(10_000).default(256),
  /**
   * Attempts one process holds at most: in flight, or answered with their outcome waiting for its
   * group commit. At this bound the dispatcher claims nothing until outcomes commit (back-pressure
   * when the database records outcomes slower than endpoints answer).
   */
  maxQueuedOutcomes: z.coerce.number().int().min(1).max(100_000).default(1024),
  /**
   * PostgreSQL connections of the dispatcher's own (claims, outcomes, retention), apart from the
   * pool that serves calls, so a burst of PublishEvent calls queued on that pool cannot hold up
   * delivery. 0 shares the service's pool (always so on the embedded database).
   */
  dispatcherPoolSize: z.coerce.number().int().min(0).max(50).default(4),
  /** Attempt outcomes one transaction records at most (they are group-committed, many endpoints per transaction). */
  outcomeBatch: z.coerce.number().int().min(1).max(1000).default(256),
  /**
   * Keep-alive connections per origin in one connection pool: at most this many attempts in flight
   * to one origin (scheme, host, port) per pool; more wait in the pool's queue, within their
   * attempt timeout. Pools are per owner for allow-listed targets, one shared pool for public ones.
   */
  connectionsPerOrigin: z.coerce.number().int().min(1).max(1024).default(32),
  /** Connection pools kept at once; past it the least recently used one is closed (its attempts in flight finish first). */
  maxConnectionPools: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** Origins one pool has connections to at once; an attempt to one more fails and is retried later. */
  maxOriginsPerPool: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  /**
   * Retention: final deliveries (succeeded, dead-lettered, cancelled) and their attempts are deleted
   * this long after they completed; events this long after they were published, once none of
   * their deliveries is left. An event's id stops being an idempotency key when it is deleted.
   * 0 keeps them for ever.
   */
  retainDeliveriesMs: z.coerce.number().int().min(0).max(3650 * 24 * 3600 * 1000).default(7 * 24 * 3600 * 1000),
  retainEventsMs: z.coerce.number().int().min(0).max(3650 * 24 * 3600 * 1000).default(7 * 24 * 3600 * 1000),
  /** How often each replica's pruner looks for rows past retention, and rows one of its transactions deletes at most. */
  pruneIntervalMs: z.coerce.number().int().min(1000).max(24 * 3600 * 1000).default(60_000),
  pruneBatch: z.coerce.number().int().min(1).max(10_000).default(1000),
  /** A claimed attempt not finished this long after its timeout is presumed lost (crashed replica) and retried elsewhere. */
  leaseMarginMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** Per-endpoint defaults when its spec says 0. */
  defaultMaxConcurrency: z.coerce.number().int().min(1).max(1000).default(10),
  defaultRateLimitPerSecond: z.coerce.number().int().min(1).max(100_000).default(100),
  /** On shutdown, how long in-flight attempts get to finish before they are aborted (and retried by another replica). */
  drainTimeoutMs: z.coerce.number().int().min(0).max(300_000).default(10_000),
  /**
   * How long the registry's change history keeps a change for registry watches to resume from
   * (0 = no time bound); a watch from an older version gets OUT_OF_RANGE and lists again.
   */
  registryHistoryRetentionMs: z.coerce.number().int().min(0).max(365 * 24 * 3600 * 1000).default(7 * 24 * 3600 * 1000),
  /** Versions the registry history keeps at most, whatever their age (0 = no count bound). */
  registryHistoryMaxVersions: z.coerce.number().int().min(0).max(1_000_000_000).default(100_000),
  /** Registry history rows one prune statement deletes at most, and how often each replica prunes. */
  registryHistoryPruneBatch: z.coerce.number().int().min(1).max(100_000).default(1000),
  registryHistoryPruneIntervalMs: z.coerce.number().int().min(100).max(24 * 3600 * 1000).default(60_000),
}).prefault({});

export type WebhooksConfig = z.infer<typeof webhooksConfigSchema>;
export type WebhooksConfigInput = z.input<typeof webhooksConfigSchema>;

/** The webhooks module's slice of the program's config. */
export const webhooksConfig = { key: 'webhooks', schema: webhooksConfigSchema } satisfies ConfigSlice;
