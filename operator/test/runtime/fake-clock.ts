import type { Clock } from '../../src/runtime/index.js';

/** A clock that moves only when the test says so. */
export class FakeClock implements Clock {
  private nowMs = 1_000_000;
  private timers: { atMs: number; fn: () => void; id: number }[] = [];
  private nextId = 0;

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): () => void {
    const id = this.nextId++;
    this.timers.push({ atMs: this.nowMs + Math.max(0, ms), fn, id });
    return () => {
      this.timers = this.timers.filter((t) => t.id !== id);
    };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const cancel = this.setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => (cancel(), resolve()), { once: true });
    });
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const until = this.nowMs + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.atMs <= until).sort((a, b) => a.atMs - b.atMs || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t.id !== due.id);
      this.nowMs = due.atMs;
      due.fn();
    }
    this.nowMs = until;
  }

  /** Delays of the timers still pending, from now. */
  pending(): number[] {
    return this.timers.map((t) => t.atMs - this.nowMs).sort((a, b) => a - b);
  }
}
