// How the kit batches finished spans for export: the OTLP exporter (telemetry/setup.ts) and the
// benchmarks' counting exporter (kit/bench/tracing.ts) both use it, so benchmark figures carry
// production's batching. A module of its own so the benchmarks import the numbers and nothing else.

/**
 * A span waits in memory until its batch leaves. Batches of 512 at a few thousand calls a second
 * held each span about 200 ms, long enough to survive two young-generation collections and be
 * promoted, so the old generation filled with spans awaiting export. Batches of 128 leave every
 * ~50 ms at that rate (issue #18, approvals benchmark: scavenge time -30%, heap peaks 240 -> 100 MB,
 * fewer major collections). One export is in flight at a time; 4,096 queued spans at most, then
 * spans are dropped (and counted by the SDK) rather than memory growing.
 */
export const SPAN_EXPORT = { maxQueueSize: 4096, maxExportBatchSize: 128, scheduledDelayMillis: 1000 } as const;
