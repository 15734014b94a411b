// The background chores every replica runs on a timer (retention pruning, expiry sweeps): one loop
// per chore, an interval between runs, a failed run logged and retried at the next, and a stop that
// waits for the run in progress. Chores that delete do it in bounded batches (inBatches), never one
// large statement that would hold its locks and bloat the WAL at once.
import { realClock, type Clock } from './clock.js';

export interface PeriodicTaskOptions {
  intervalMs: number;
  /** One run; `signal` aborts when the task stops, so a long run can end early. */
  run: (signal: AbortSignal) => Promise<unknown>;
  /** Told of a failed run (a warning to log, saying it is retried at the next interval). */
  onError: (err: unknown) => void;
  /** Run once at start instead of after the first interval. */
  runAtStart?: boolean;
  /** The loop's sleeps (default the real clock; tests pass a FakeClock). */
  clock?: Clock;
}

export class PeriodicTask {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: PeriodicTaskOptions) {}

  start(): void {
    this.loop ??= this.runLoop();
  }

  /** Stops the loop; resolves once the run in progress, if any, has ended. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  private async runLoop(): Promise<void> {
    const { signal } = this.stopping;
    const clock = this.opts.clock ?? realClock;
    if (!this.opts.runAtStart) await clock.sleep(this.opts.intervalMs, signal);
    while (!signal.aborted) {
      try {
        await this.opts.run(signal);
      } catch (err) {
        this.opts.onError(err);
      }
      await clock.sleep(this.opts.intervalMs, signal);
    }
  }
}

/**
 * Runs `batch` (which deletes or changes at most `size` rows and returns how many it did) until
 * one does fewer than `size`, `maxBatches` have run, or `signal` aborts; returns the total.
 */
export async function inBatches(batch: () => Promise<number>, size: number, maxBatches: number, signal?: AbortSignal): Promise<number> {
  let total = 0;
  for (let i = 0; i < maxBatches && !signal?.aborted; i++) {
    const n = await batch();
    total += n;
    if (n < size) break;
  }
  return total;
}
