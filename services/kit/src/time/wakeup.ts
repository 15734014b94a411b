import { realClock, type Clock } from './clock.js';

/**
 * A sleep that wake() cuts short, for loops that poll on a timer but are told when there is work
 * (a commit, a NOTIFY). A loop takes `mark` before it looks for work and passes it as `since`:
 * a wake-up that arrived while it was busy then skips the sleep, so none is lost.
 */
export class Wakeup {
  private wakes = 0;
  private readonly sleepers = new Set<() => void>();

  constructor(private readonly clock: Clock = realClock) {}

  /** Counts wake-ups so far; a later sleep given it as `since` returns at once if one came since. */
  get mark(): number {
    return this.wakes;
  }

  /** Ends every sleep in progress, and any later sleep whose `since` is older than now. */
  wake(): void {
    this.wakes++;
    for (const cut of [...this.sleepers]) cut();
  }

  /**
   * Sleeps ms on the clock. Resolves true when a wake-up ended it (or came after `since`), false
   * when the time passed or signal aborted. Never rejects.
   */
  async sleep(ms: number, opts: { since?: number; signal?: AbortSignal } = {}): Promise<boolean> {
    const { since, signal } = opts;
    if (since !== undefined && since !== this.wakes) return true;
    if (signal?.aborted) return false;
    // Whichever of wake and abort comes first decides the answer; the clock's sleep ends on either.
    let woken: boolean | undefined;
    const cut = new AbortController();
    const onWake = () => {
      woken ??= true;
      cut.abort();
    };
    const onAbort = () => {
      woken ??= false;
      cut.abort();
    };
    this.sleepers.add(onWake);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.clock.sleep(ms, cut.signal);
    } finally {
      this.sleepers.delete(onWake);
      signal?.removeEventListener('abort', onAbort);
    }
    return woken ?? false;
  }
}
