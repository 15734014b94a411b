import { inBatches, PeriodicTask, realClock, type Clock, type Database } from '@gantry/kit';

/** How the background task deletes expired idempotency keys (migration 005). */
export interface KeyRetention {
  /** Keys recorded longer ago than this are deleted; their entries stay. */
  retentionMs: number;
  /** Time between pruning runs. */
  intervalMs: number;
  /** Keys one statement deletes at most (one short transaction each). */
  batchKeys: number;
  /** Statements one run issues at most; the rest waits for the next run. */
  maxBatchesPerRun: number;
}

export const DEFAULT_KEY_RETENTION: Omit<KeyRetention, 'retentionMs'> = { intervalMs: 10 * 60_000, batchKeys: 1000, maxBatchesPerRun: 100 };

/** Where a failed run is reported; the next run retries. */
export type PruneErrorSink = (err: unknown) => void;

/**
 * Deletes idempotency keys older than the retention horizon, oldest first, in bounded batches.
 * Every replica runs one: batches lock the rows they delete with SKIP LOCKED, so two replicas
 * pruning at once share the work instead of waiting on each other. An append looking a key up
 * under its partition's lock either sees the key (and answers the re-send as a duplicate) or
 * does not (and appends again): both are what a key past its horizon may do.
 */
export class IdempotencyKeyPruner {
  private readonly task: PeriodicTask;

  constructor(
    private readonly db: Database,
    private readonly limits: KeyRetention,
    onError: PruneErrorSink,
    private readonly clock: Clock = realClock,
  ) {
    this.task = new PeriodicTask({ intervalMs: limits.intervalMs, run: (signal) => this.pruneOnce(signal), onError, clock });
  }

  /** One run: deletes up to batchKeys x maxBatchesPerRun expired keys; returns how many. */
  pruneOnce(signal?: AbortSignal): Promise<number> {
    const cutoffMs = this.clock.now() - this.limits.retentionMs;
    const { batchKeys, maxBatchesPerRun } = this.limits;
    return inBatches(async () => (await this.db.query(PRUNE_SQL, [cutoffMs, batchKeys])).rowCount, batchKeys, maxBatchesPerRun, signal);
  }

  /** Runs pruneOnce every intervalMs (the first after one interval) until stop(). */
  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }
}

const PRUNE_SQL = `DELETE FROM log.idempotency_keys WHERE (partition, owner, key) IN (
  SELECT partition, owner, key FROM log.idempotency_keys WHERE created_ms < $1 ORDER BY created_ms LIMIT $2 FOR UPDATE SKIP LOCKED)`;
