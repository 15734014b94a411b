// Retention of the registry's change history (webhooks.registry_changes), which registry watches
// resume from. Every replica runs one background task that deletes, once per interval, one bounded
// batch of the oldest changes: those made before the retention time, or older than the last
// `maxVersions` versions. Only a prefix goes (it stops at the first change still kept), so the
// history stays gapless from its oldest version; a watch from before it gets OUT_OF_RANGE and
// lists again. Endpoints themselves are never deleted here, only the history of their changes.
import { inBatches, PeriodicTask, pruneHistory, type Database, type HistoryRetention, type Logger } from '@gantry/kit';
import type { WebhooksConfig } from '../config.js';

/** What the registry history keeps. */
export type RegistryRetentionPolicy = HistoryRetention;

/** Deletes at most `limit` of the oldest registry changes past `policy`; returns how many. */
export function pruneRegistryHistory(db: Database, policy: RegistryRetentionPolicy, limit: number): Promise<number> {
  return pruneHistory(db, { changes: 'webhooks.registry_changes', head: 'webhooks.head' }, policy, limit);
}

export interface RegistryRetentionOptions {
  /** How long a change is kept (0: no time bound). */
  retentionMs: number;
  /** Versions kept at most (0: no count bound). */
  maxVersions: number;
  /** Rows one prune deletes at most. */
  batch: number;
  intervalMs: number;
  /** The service clock (the history's `at` is stamped with it); tests pass a fake one. */
  now: () => number;
}

/** Rounds of a full batch one tick runs, so a backlog (say, after retention was shortened) drains in bounded steps. */
const MAX_BATCHES_PER_TICK = 10;

/** The background task that prunes the registry history of one process. */
export class RegistryRetention {
  private readonly task: PeriodicTask;

  constructor(
    private readonly db: Database,
    private readonly opts: RegistryRetentionOptions,
    log: Logger,
  ) {
    this.task = new PeriodicTask({
      intervalMs: opts.intervalMs,
      run: (signal) => this.prune(signal),
      onError: (err) => log.warn({ err }, 'webhooks registry history pruning failed; retrying at the next interval'),
    });
  }

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One tick now: bounded batches until less than a full one was due; returns how many rows went. */
  async prune(signal?: AbortSignal): Promise<number> {
    const { retentionMs, maxVersions, batch } = this.opts;
    if (retentionMs === 0 && maxVersions === 0) return 0;
    const policy = { olderThan: retentionMs > 0 ? new Date(this.opts.now() - retentionMs) : null, maxVersions };
    return inBatches(() => pruneRegistryHistory(this.db, policy, batch), batch, MAX_BATCHES_PER_TICK, signal);
  }
}

/** Starts the process's registry retention from the module's settings; returns its stop. */
export function startRegistryRetention(db: Database, c: WebhooksConfig, now: () => number, log: Logger): () => Promise<void> {
  const retention = new RegistryRetention(
    db,
    { retentionMs: c.registryHistoryRetentionMs, maxVersions: c.registryHistoryMaxVersions, batch: c.registryHistoryPruneBatch, intervalMs: c.registryHistoryPruneIntervalMs, now },
    log,
  );
  retention.start();
  return () => retention.stop();
}
