// Every bound of the flags store, its watches and its evaluation snapshot, in one place.

/** Bounds of one process's flags store (tests shrink some of them). */
export interface FlagsLimits {
  /** Flags one store holds (proto: 1,000). */
  maxFlags: number;
  /** Sum of the flags' JSON sizes one store holds: keeps ListFlags and the in-memory snapshot small. */
  maxStoreBytes: number;
  /** Changes kept for WatchFlags to resume from; older ones are pruned as new ones commit. */
  retainedChanges: number;
  /** Changes one database read takes (catch-up and the feed). */
  readChanges: number;
  /** Changes queued for one watch before it is cut off with RESOURCE_EXHAUSTED. */
  queueEvents: number;
  /** About this many bytes queued for one watch before it is cut off. */
  queueBytes: number;
  /** Watches one process follows at once. */
  maxWatches: number;
  /** The feed reads at least this often without a NOTIFY, so a missed one still converges. */
  pollMs: number;
  /** How long a write waits for this replica's evaluation snapshot to include it before answering. */
  settleMs: number;
}

export const FLAGS_LIMITS: FlagsLimits = {
  maxFlags: 1000,
  maxStoreBytes: 4 * 1024 * 1024,
  retainedChanges: 10_000,
  readChanges: 500,
  queueEvents: 1000,
  queueBytes: 8 * 1024 * 1024,
  maxWatches: 256,
  pollMs: 1000,
  settleMs: 2000,
};

/** Flag keys: 1-128 characters of [A-Za-z0-9._-] (proto). */
export const FLAG_KEY_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
/** Variants of one flag (proto). */
export const MAX_VARIANTS = 64;
/** Characters of a variant name. */
export const MAX_VARIANT_NAME_CHARS = 128;
/** Bytes of a flag's targeting rule as JSON (proto: 64 KiB). */
export const MAX_TARGETING_BYTES = 64 * 1024;
/** Bytes of a whole flag as JSON (variants, targeting and metadata together). */
export const MAX_FLAG_BYTES = 128 * 1024;
/** Metadata entries of one flag. */
export const MAX_METADATA_ENTRIES = 64;
/** Characters of a metadata key, and of a string metadata value. */
export const MAX_METADATA_KEY_CHARS = 128;
export const MAX_METADATA_VALUE_CHARS = 1024;
/** Characters of `source` (who wrote the flag last). */
export const MAX_SOURCE_CHARS = 256;
