// One reader of a versioned change history per process, fanned out to the streams of this
// process (Kubernetes-style watches on PostgreSQL).
//
// A NOTIFY (from this replica or any other) only says "look again": the feed then reads the new
// changes from the database, once for every stream, and hands each stream the ones it wants. A
// change committed by this process can be handed over at once instead (`publish`), without the
// NOTIFY round trip and the read back, when it follows the last change offered. Each
// stream has a bounded queue (events and bytes); a stream whose consumer does not keep up is cut
// off (`overflowed`) and its queue dropped, so a stalled client costs a bounded amount of memory.
// Versions must be gapless and committed in order, so "version > cursor" never misses a change.
import type { Database, Unlisten } from '../storage/database.js';
import type { Logger } from '../logger.js';
import { realClock, Wakeup, type Clock } from '../time/index.js';

/** What a feed carries: a change at a version, with its approximate size for the byte bounds. */
export interface FeedItem {
  version: bigint;
  bytes: number;
}

/** Where a feed reads from. */
export interface FeedSource<E extends FeedItem> {
  /** The newest committed version. */
  head(): Promise<bigint>;
  /** Changes with version > `after`, in version order, a bounded page (empty when there are none). */
  read(after: bigint): Promise<E[]>;
}

export interface FeedLimits {
  /** A stream's queue: at most this many events... */
  queueEvents: number;
  /** ...and about this many bytes before the stream is cut off. */
  queueBytes: number;
  /** Streams one process follows at once. */
  maxSubscriptions: number;
  /** The feed reads at least this often without a notification (e.g. while LISTEN reconnects). */
  pollMs: number;
}

/** What one stream receives: changes with version > `after` that `accepts` keeps. */
export class Subscription<E extends FeedItem> {
  private queue: E[] = [];
  private queuedBytes = 0;
  /** Ends a wait() when something arrives or the queue overflows. */
  private readonly arrivals: Wakeup;
  /** Set when the queue overflowed: the stream must end and the client resume. */
  overflowed = false;
  /** The newest version offered to this subscription (kept or not): a safe bookmark once the queue is empty. */
  seen: bigint;

  constructor(
    /** Changes up to this version were delivered another way (catch-up reads). */
    readonly after: bigint,
    private readonly accepts: (e: E) => boolean,
    private readonly limits: Pick<FeedLimits, 'queueEvents' | 'queueBytes'>,
    clock: Clock = realClock,
  ) {
    this.seen = after;
    this.arrivals = new Wakeup(clock);
  }

  /** Called by the feed, in version order. Returns false when the subscription overflowed. */
  offer(e: E): boolean {
    // `seen` starts at `after`: a change is offered once, whether read back or published.
    if (this.overflowed || e.version <= this.seen) return !this.overflowed;
    if (this.accepts(e)) {
      if (this.queue.length >= this.limits.queueEvents || this.queuedBytes + e.bytes > this.limits.queueBytes) {
        this.cutOff();
        return false;
      }
      this.queue.push(e);
      this.queuedBytes += e.bytes;
    }
    this.seen = e.version;
    this.notify();
    return true;
  }

  /** Ends the subscription as if it had overflowed: the changes it needs can no longer be offered. */
  cutOff(): void {
    this.overflowed = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.notify();
  }

  /** The next queued event, if any. */
  take(): E | undefined {
    const e = this.queue.shift();
    if (e) this.queuedBytes -= e.bytes;
    return e;
  }

  /** True when nothing is queued. */
  get idle(): boolean {
    return this.queue.length === 0;
  }

  /** Resolves when something arrives (true), after `timeoutMs` (false), or when `signal` aborts (false). */
  wait(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (this.queue.length > 0 || this.overflowed) return Promise.resolve(true);
    return this.arrivals.sleep(timeoutMs, { signal });
  }

  private notify(): void {
    this.arrivals.wake();
  }
}

/** The per-process follower of a versioned change history. */
export class ChangeFeed<E extends FeedItem> {
  private readonly subscriptions = new Set<Subscription<E>>();
  /** Every change up to this version has been offered to every current subscription. */
  private position = 0n;
  /** Cuts the poll sleep short on a NOTIFY or a local commit. */
  private readonly wakeup: Wakeup;
  private unlisten: Unlisten | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly db: Database,
    /** The NOTIFY channel writers signal after each commit. */
    private readonly channel: string,
    private readonly source: FeedSource<E>,
    private readonly limits: FeedLimits,
    private readonly log: Logger,
    /** Names the feed in log lines. */
    private readonly name: string,
    /** The feed's time (its polls and its subscriptions' waits); tests may pass a FakeClock. */
    private readonly clock: Clock = realClock,
  ) {
    this.wakeup = new Wakeup(clock);
  }

  async start(): Promise<void> {
    this.position = await this.source.head();
    this.unlisten = await this.db.listen(this.channel, () => this.wake());
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.unlisten?.();
    await this.running;
  }

  /** Something changed (locally committed, or notified): read again. */
  wake(): void {
    this.wakeup.wake();
  }

  /**
   * Offers the changes `first`..`last` this process has just committed, without reading them
   * back, when they are exactly the next ones (`first === offeredThrough + 1`); the streams then
   * see them right after the commit. `events` builds them (consecutive, `first` to `last`), and is
   * called only when a stream follows the feed. Otherwise (another transaction's or replica's
   * changes come first and are not read yet) it wakes the reader, which reads them all in order.
   * Returns whether they were offered.
   */
  publish(first: bigint, last: bigint, events: () => readonly E[]): boolean {
    if (first !== this.position + 1n || last < first) {
      this.wake();
      return false;
    }
    if (this.subscriptions.size === 0) {
      this.position = last;
      return true;
    }
    const built = events();
    if (built.length !== Number(last - first) + 1 || built.some((e, i) => e.version !== first + BigInt(i))) {
      throw new Error(`invariant: published changes must be versions ${first}..${last}, consecutive`);
    }
    this.offerAll(built);
    return true;
  }

  /** The version up to which every change has been offered to current subscriptions. */
  get offeredThrough(): bigint {
    return this.position;
  }

  /** Number of live subscriptions (streams following the feed in this process). */
  get size(): number {
    return this.subscriptions.size;
  }

  /** True when a new subscription would exceed the bound. */
  get full(): boolean {
    return this.subscriptions.size >= this.limits.maxSubscriptions;
  }

  /**
   * Follows changes with version > `after`. Synchronous on purpose: the caller has read every
   * change up to `after` from the database and checked `after >= offeredThrough`, and nothing can
   * be offered between that check and this registration.
   */
  subscribe(after: bigint, accepts: (e: E) => boolean): Subscription<E> {
    const sub = new Subscription<E>(after, accepts, this.limits, this.clock);
    this.subscriptions.add(sub);
    return sub;
  }

  unsubscribe(sub: Subscription<E>): void {
    this.subscriptions.delete(sub);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      // A wake-up during the pump (a change committed meanwhile) skips the sleep: read again at once.
      const mark = this.wakeup.mark;
      try {
        await this.pump();
      } catch (err) {
        this.log.warn({ err, feed: this.name }, 'change feed: reading changes failed; retrying');
      }
      if (!this.stopped) await this.wakeup.sleep(this.limits.pollMs, { since: mark });
    }
  }

  /** Reads and offers every change past `position`. */
  private async pump(): Promise<void> {
    if (this.subscriptions.size === 0) {
      // Nobody listens: just keep up with the head, without reading (or loading) any change.
      const head = await this.source.head();
      if (this.subscriptions.size === 0 && head > this.position) this.position = head;
      if (this.subscriptions.size === 0) return;
    }
    for (;;) {
      // Every subscription starts past its own `after`: nothing older needs reading.
      let from = this.position;
      let lowest: bigint | undefined;
      for (const s of this.subscriptions) if (lowest === undefined || s.after < lowest) lowest = s.after;
      if (lowest !== undefined && lowest > from) from = lowest;
      const events = await this.source.read(from);
      if (events.length === 0) return;
      // A change published meanwhile (`publish`) may be in this read too: offered once.
      const fresh = events.filter((e) => e.version > this.position);
      if (fresh.length === 0) continue;
      // Versions up to `from` needed no read; a first change past the next one means a pruned history.
      const next = (from > this.position ? from : this.position) + 1n;
      if (fresh[0]!.version > next) this.cutOffBefore(fresh[0]!.version);
      this.offerAll(fresh);
    }
  }

  private offerAll(events: readonly E[]): void {
    for (const e of events) {
      for (const s of this.subscriptions) if (!s.offer(e)) this.subscriptions.delete(s);
      this.position = e.version;
    }
  }

  /**
   * The history no longer holds the changes before `version` that the feed has not offered (pruned
   * past it: retention shorter than the feed's lag). Streams that need them end as if they had
   * fallen behind; resuming, they are told the history no longer reaches back (OUT_OF_RANGE).
   */
  private cutOffBefore(version: bigint): void {
    this.log.warn({ feed: this.name, offered_through: this.position.toString(), next: version.toString() }, 'change feed: history was pruned past what the feed had read; streams that needed it are cut off');
    for (const s of this.subscriptions) {
      if (s.seen < version - 1n) {
        s.cutOff();
        this.subscriptions.delete(s);
      }
    }
  }
}
