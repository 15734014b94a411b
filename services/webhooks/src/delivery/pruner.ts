// The retention loop every replica runs (store/retention.ts): every `intervalMs` it deletes what
// is past retention in batches of `batch` rows, one short transaction each, never one giant DELETE
// that would hold locks and bloat the WAL at once. A pass stops after `maxBatchesPerPass` batches of
// each kind, so one pass is bounded too; the next pass goes on. Horizons follow the service clock
// (completion and publish times are written on it), so tests move a fake clock instead of waiting.
import { realClock, type Clock, type Logger } from '@gantry/kit';
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
  private readonly clock: Clock;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;

  constructor(
    private readonly retention: Retention,
    private readonly opts: PrunerOptions,
    private readonly log: Logger,
  ) {
    this.clock = opts.clock ?? realClock;
  }

  start(): void {
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      try {
        const n = await this.pruneOnce();
        if (n.deliveries + n.events > 0) this.log.info(n, 'webhooks retention: deleted deliveries, attempts and events past retention');
      } catch (err) {
        this.log.warn({ err }, 'webhooks retention: pruning failed; retrying at the next interval');
      }
      await this.clock.sleep(this.opts.intervalMs, this.stopping.signal);
    }
  }

  /** One pass: deliveries first (their events can go only after them), then events. */
  async pruneOnce(): Promise<PruneCounts> {
    const counts: PruneCounts = { deliveries: 0, attempts: 0, events: 0 };
    const { batch, maxBatchesPerPass } = this.opts;
    if (this.opts.retainDeliveriesMs > 0) {
      const before = new Date(this.opts.now() - this.opts.retainDeliveriesMs);
      for (let i = 0; i < maxBatchesPerPass && !this.stopping.signal.aborted; i++) {
        const n = await this.retention.pruneDeliveries(before, batch);
        counts.deliveries += n.deliveries;
        counts.attempts += n.attempts;
        if (n.deliveries < batch) break;
      }
    }
    if (this.opts.retainEventsMs > 0) {
      const before = new Date(this.opts.now() - this.opts.retainEventsMs);
      for (let i = 0; i < maxBatchesPerPass && !this.stopping.signal.aborted; i++) {
        const n = await this.retention.pruneEvents(before, batch);
        counts.events += n;
        if (n < batch) break;
      }
    }
    return counts;
  }
}
