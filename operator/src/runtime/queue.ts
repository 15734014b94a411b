import { realClock, type Clock } from '@gantry/kit';
import { runtimeMetrics } from './metrics.js';

export const DEFAULT_BASE_DELAY_MS = 5;
export const DEFAULT_MAX_DELAY_MS = 300_000;
export const DEFAULT_RATE_PER_SECOND = 10;
export const DEFAULT_BURST = 100;
/** Distinct keys a queue holds (ready, processing or waiting); more are refused until a resync. */
export const DEFAULT_MAX_LENGTH = 100_000;

export interface WorkQueueOptions {
  /** First retry delay; doubles per failure of the same key. */
  baseDelayMs?: number;
  /** Cap on one key's retry delay. */
  maxDelayMs?: number;
  /** Overall retry rate (token bucket), so a storm of failures cannot hammer the API server. */
  ratePerSecond?: number;
  burst?: number;
  maxLength?: number;
  /** Names the queue in metrics. */
  name?: string;
  clock?: Clock;
}

/**
 * client-go's rate-limited work queue: a key is never queued twice, never processed by two workers at
 * once, and a key added while it is processed runs once more after done(). Failed keys come back
 * after max(per-key exponential backoff, overall token-bucket delay).
 */
export class WorkQueue {
  private readonly ready: string[] = [];
  /** Keys that need processing (ready, or added again while processing). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiting = new Map<string, { readyAtMs: number; cancel: () => void }>();
  private readonly failures = new Map<string, number>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private readonly clock: Clock;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly ratePerSecond: number;
  private readonly burst: number;
  private readonly maxLength: number;
  private readonly metrics = runtimeMetrics();
  private readonly attrs: { queue: string };
  private tokens: number;
  private tokensAtMs: number;
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.baseDelayMs = opts.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.maxDelayMs = opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    this.ratePerSecond = opts.ratePerSecond ?? DEFAULT_RATE_PER_SECOND;
    this.burst = opts.burst ?? DEFAULT_BURST;
    this.maxLength = opts.maxLength ?? DEFAULT_MAX_LENGTH;
    this.attrs = { queue: opts.name ?? 'default' };
    this.tokens = this.burst;
    this.tokensAtMs = this.clock.now();
  }

  /** Queues key unless it is already queued; a key being processed is queued again after done(). */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    if (!this.processing.has(key) && !this.waiting.has(key) && this.size() >= this.maxLength) {
      this.metrics.queueDropped.add(1, this.attrs);
      return;
    }
    this.dirty.add(key);
    this.metrics.queueAdds.add(1, this.attrs);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queues key after delayMs; of several pending delays for one key the earliest wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const readyAtMs = this.clock.now() + delayMs;
    const pending = this.waiting.get(key);
    if (pending && pending.readyAtMs <= readyAtMs) return;
    if (!pending && this.size() >= this.maxLength) {
      this.metrics.queueDropped.add(1, this.attrs);
      return;
    }
    pending?.cancel();
    const cancel = this.clock.setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { readyAtMs, cancel });
  }

  /** Queues key after its backoff: max(base·2^failures capped at maxDelayMs, the overall rate limit). */
  addRateLimited(key: string): void {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const perKeyMs = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(failures, 40));
    this.metrics.queueRetries.add(1, this.attrs);
    this.addAfter(key, Math.max(perKeyMs, this.reserveToken()));
  }

  /** Forgets key's failures: its next addRateLimited starts at baseDelayMs. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process (mark it done() afterwards); undefined once the queue shuts down. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.ready.shift();
    if (key === undefined) return new Promise((resolve) => this.getters.push(resolve));
    this.metrics.queueDepth.add(-1, this.attrs);
    return Promise.resolve(this.take(key));
  }

  /** Ends processing of key; if it was added meanwhile it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
  }

  /** Keys ready to be processed. */
  get length(): number {
    return this.ready.length;
  }

  /** Refuses new keys, drops waiting ones and releases every get() with undefined. */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const w of this.waiting.values()) w.cancel();
    this.waiting.clear();
    this.metrics.queueDepth.add(-this.ready.length, this.attrs);
    this.ready.length = 0;
    for (const resolve of this.getters.splice(0)) resolve(undefined);
  }

  get isShutDown(): boolean {
    return this.shuttingDown;
  }

  private size(): number {
    return this.dirty.size + this.processing.size + this.waiting.size;
  }

  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter) return getter(this.take(key));
    this.ready.push(key);
    this.metrics.queueDepth.add(1, this.attrs);
  }

  private take(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    return key;
  }

  /** Takes one token, going into debt like golang.org/x/time/rate's Reserve; returns the wait. */
  private reserveToken(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.tokensAtMs) / 1000) * this.ratePerSecond);
    this.tokensAtMs = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.ratePerSecond) * 1000;
  }
}
