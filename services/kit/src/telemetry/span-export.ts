// How the kit batches finished spans for export; shared with the benchmarks' span processor so
// their figures carry production's batching. A module of its own: nothing to import but the numbers.

/**
 * How finished spans are batched for export (the OTLP exporter, and the benchmarks' counting exporter too). A
 * span waits in memory until its batch leaves: batches of 512 at a few thousand calls a second held
 * each span about 200 ms, long enough to survive two young-generation collections and be promoted,
 * so the old generation filled with spans awaiting export. Batches of 128 leave every ~50 ms at
 * that rate (issue #18, approvals benchmark: scavenge time -30%, heap peaks 240 -> 100 MB, fewer
 * major collections). One export is in flight at a time; 4,096 queued spans at most, then spans
 * are dropped (and counted by the SDK) rather than memory growing.
 */
export const SPAN_EXPORT = { maxQueueSize: 4096, maxExportBatchSize: 128, scheduledDelayMillis: 1000 } as const;
