// The retention loop every replica runs (store/retention.ts): every `intervalMs` it deletes what
// is past retention in batches of `batch` rows, one short transaction each, never one giant DELETE
// that would hold locks and bloat the WAL at once. A pass stops after `maxBatchesPerPass` batches of
// each kind, so one pass is bounded too; the next pass goes on. Horizons follow the service clock
// (completion and publish times are written on it), so tests move a fake clock instead of waiting.
import { inBatches, PeriodicTask, type Clock, type Logger } from '@gantry/kit';
import type { Retention } from '../store/retention.js';

export interface PrunerOptions {
  /** The service clock (ms): horizons are measured back from it. */
  now: () => number;
  /** Final deliveries (and their attempts) are kept this long after they completed; 0: for ever. */
  retainDeliveriesMs: number;
  /** Events are kept this long after they were published, and while any delivery of them is; 0: for ever. */
  retainEventsMs: number;
  intervalMs: number;
  /** Rows one transaction deletes at most. */
  batch: number;
  /** Batches of each kind one pass runs at most. */
  maxBatchesPerPass: number;
  /** The loop's sleeps (default the real clock). */
  clock?: Clock;
}

export interface PruneCounts {
  deliveries: number;
  attempts: number;
  events: number;
}

export class Pruner {
  private readonly task: PeriodicTask;

  constructor(
    private readonly retention: Retention,
    private readonly opts: PrunerOptions,
    log: Logger,
  ) {
    this.task = new PeriodicTask({
      intervalMs: opts.intervalMs,
      runAtStart: true,
      run: async (signal) => {
        const n = await this.pruneOnce(signal);
        if (n.deliveries + n.events > 0) log.info(n, 'webhooks retention: deleted deliveries, attempts and events past retention');
      },
      onError: (err) => log.warn({ err }, 'webhooks retention: pruning failed; retrying at the next interval'),
      ...(opts.clock ? { clock: opts.clock } : {}),
    });
  }

  start(): void {
    this.task.start();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One pass: deliveries first (their events can go only after them), then events. */
  async pruneOnce(signal?: AbortSignal): Promise<PruneCounts> {
    const counts: PruneCounts = { deliveries: 0, attempts: 0, events: 0 };
    const { batch, maxBatchesPerPass } = this.opts;
    if (this.opts.retainDeliveriesMs > 0) {
      const before = new Date(this.opts.now() - this.opts.retainDeliveriesMs);
      const deleteDeliveries = async () => {
        const n = await this.retention.pruneDeliveries(before, batch);
        counts.attempts += n.attempts;
        return n.deliveries;
      };
      counts.deliveries = await inBatches(deleteDeliveries, batch, maxBatchesPerPass, signal);
    }
    if (this.opts.retainEventsMs > 0) {
      const before = new Date(this.opts.now() - this.opts.retainEventsMs);
      counts.events = await inBatches(() => this.retention.pruneEvents(before, batch), batch, maxBatchesPerPass, signal);
    }
    return counts;
  }
}
