import type { Clock } from './clock.js';

/** A clock that moves only when a test says so; due timers fire synchronously, in order, inside advance(). */
export class FakeClock implements Clock {
  private timers: { atMs: number; fn: () => void; id: number }[] = [];
  private nextId = 0;

  /** Starts at startMs (tests whose times reach a database start at Date.now()). */
  constructor(private nowMs = 1_000_000) {}

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
      const onAbort = () => (cancel(), resolve());
      // The listener goes when the timer fires: a long-lived signal must not collect one per sleep.
      const cancel = this.setTimeout(() => (signal?.removeEventListener('abort', onAbort), resolve()), ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Moves time forward, firing due timers in order. A timer set by code that runs after a fired
   * timer's promise settles is set after advance() returns, so tests step one timer at a time.
   */
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

  /** Delays of the timers still pending, from now, shortest first. */
  pending(): number[] {
    return this.timers.map((t) => t.atMs - this.nowMs).sort((a, b) => a - b);
  }
}
