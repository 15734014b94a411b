import type { Database, Unlisten } from '@gantry/kit';
import { APPENDED_CHANNEL } from './log-store.js';

/**
 * Wakes followers when a partition grows, on any replica: one LISTEN per process, fanned out to
 * waiters in memory. It carries no entries, only "look again", so a slow follower buffers nothing.
 */
export class AppendNotifier {
  private readonly waiters = new Map<string, Set<() => void>>();
  private unlisten: Unlisten | undefined;
  /** Bumped on every wake-up; lets a follower detect an append it raced with (see `next`). */
  private wakes = 0;

  constructor(private readonly db: Database) {}

  async start(): Promise<void> {
    this.unlisten = await this.db.listen(APPENDED_CHANNEL, (partition) => this.wake(partition));
  }

  /** Local wake-up, for appends committed by this process (no round trip through the database). */
  wake(partition: string): void {
    this.wakes++;
    const set = this.waiters.get(partition);
    if (!set) return;
    this.waiters.delete(partition);
    for (const w of set) w();
  }

  /** A marker to take before reading, and to hand to `next` after finding nothing new. */
  mark(): number {
    return this.wakes;
  }

  /**
   * Resolves at the next append to `partition`, after `timeoutMs`, or when `signal` aborts, and at
   * once if any append landed since `mark` (it may have committed between the read and this call).
   */
  next(partition: string, mark: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted || this.wakes !== mark) return resolve();
      let set = this.waiters.get(partition);
      if (!set) this.waiters.set(partition, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        set.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
  }
}
