// Records EXPIRED for requests past their deadline, and prunes the change history to its retention
// (a time and a number of versions, config `approvals.history*`) one bounded batch a tick. Every replica
// runs one: the expiry statement takes its rows FOR UPDATE SKIP LOCKED, so replicas split the
// due requests between them instead of queueing on each other, and each request expires once.
import { inBatches, PeriodicTask, type Logger } from '@gantry/kit';
import type { ApprovalsStore, HistoryRetention } from './approvals-store.js';

export interface SweeperOptions {
  intervalMs: number;
  /** Requests one statement expires at most (one transaction, one lock on the version counter). */
  batch: number;
  /** How long the history keeps a change for watches to resume from (0: no time bound). */
  retentionMs: number;
  /** Versions the history keeps at most (0: no count bound). */
  maxVersions: number;
  /** History rows one prune deletes at most. */
  pruneBatch: number;
  now: () => number;
  /** Told after each batch that expired something, so local streams look at once. */
  onChange: () => void;
}

/** Rounds of a full batch one tick runs before yielding to the next tick, so a backlog cannot monopolise a connection. */
const MAX_BATCHES_PER_TICK = 20;

export class ExpirySweeper {
  private readonly task: PeriodicTask;

  constructor(
    private readonly store: ApprovalsStore,
    private readonly opts: SweeperOptions,
    log: Logger,
  ) {
    this.task = new PeriodicTask({
      intervalMs: opts.intervalMs,
      run: (signal) => this.sweep(signal),
      onError: (err) => log.warn({ err }, 'approvals expiry sweep failed; retrying at the next interval'),
    });
  }

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One sweep now: expires what is due (a bounded number of batches), then prunes history. Returns how many expired. */
  async sweep(signal?: AbortSignal): Promise<number> {
    const expired = await inBatches(
      async () => {
        const n = await this.store.expireDue(new Date(this.opts.now()), this.opts.batch);
        if (n > 0) this.opts.onChange();
        return n;
      },
      this.opts.batch,
      MAX_BATCHES_PER_TICK,
      signal,
    );
    await this.prune();
    return expired;
  }

  /** Deletes one bounded batch of history past the retention (the next sweep takes the next batch); returns how many rows. */
  prune(): Promise<number> {
    const { retentionMs, maxVersions, pruneBatch } = this.opts;
    const policy: HistoryRetention = { olderThan: retentionMs > 0 ? new Date(this.opts.now() - retentionMs) : null, maxVersions };
    return this.store.pruneHistory(policy, pruneBatch);
  }
}
