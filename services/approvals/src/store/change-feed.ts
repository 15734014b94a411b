// One reader of the change history per process, fanned out to the streams of this process.
//
// A NOTIFY (from this replica or any other) only says "look again": the feed then reads the new
// changes from the database, once for every stream, and hands each stream the ones it wants. Each
// stream has a bounded queue (events and bytes); a stream whose consumer does not keep up is cut
// off (`overflowed`) and its queue dropped, so a stalled client costs a bounded amount of memory.
import type { Database, Logger, Unlisten } from '@gantry/kit';
import { asOf, type ApprovalRecord, type ChangeRecord } from '../domain/approval.js';
import { CHANGED_CHANNEL, type ApprovalsStore } from './approvals-store.js';

/** A change with the request as of that change, content included: what streams send. */
export interface FeedEvent extends ChangeRecord {
  approval: ApprovalRecord;
  /** Approximate size, for the queues' byte bounds. */
  bytes: number;
}

export interface FeedLimits {
  /** Changes one read takes from the database. */
  readChanges: number;
  /** Request content one read loads at most (content is up to 1 MiB per request). */
  readBytes: number;
  /** A stream's queue: at most this many events... */
  queueEvents: number;
  /** ...and about this many bytes before the stream is cut off. */
  queueBytes: number;
  /** Streams one process follows at once. */
  maxSubscriptions: number;
  /** The feed reads at least this often without a notification (e.g. while LISTEN reconnects). */
  pollMs: number;
}

/** Fixed cost counted per event on top of its content. */
const EVENT_OVERHEAD_BYTES = 1024;

/** What one stream receives: changes with version > `after` that `accepts` keeps. */
export class Subscription {
  private queue: FeedEvent[] = [];
  private queuedBytes = 0;
  private waiter: (() => void) | undefined;
  /** Set when the queue overflowed: the stream must end and the client resume. */
  overflowed = false;
  /** The newest version offered to this subscription (kept or not): a safe bookmark once the queue is empty. */
  seen: bigint;

  constructor(
    /** Changes up to this version were delivered another way (catch-up reads). */
    readonly after: bigint,
    private readonly accepts: (e: FeedEvent) => boolean,
    private readonly limits: Pick<FeedLimits, 'queueEvents' | 'queueBytes'>,
  ) {
    this.seen = after;
  }

  /** Called by the feed, in version order. Returns false when the subscription overflowed. */
  offer(e: FeedEvent): boolean {
    if (this.overflowed || e.version <= this.after) return !this.overflowed;
    if (this.accepts(e)) {
      if (this.queue.length >= this.limits.queueEvents || this.queuedBytes + e.bytes > this.limits.queueBytes) {
        this.overflowed = true;
        this.queue = [];
        this.queuedBytes = 0;
        this.notify();
        return false;
      }
      this.queue.push(e);
      this.queuedBytes += e.bytes;
    }
    this.seen = e.version;
    this.notify();
    return true;
  }

  /** The next queued event, if any. */
  take(): FeedEvent | undefined {
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
    return new Promise((resolve) => {
      const done = (arrived: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiter = undefined;
        resolve(arrived);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      if (signal.aborted) return done(false);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = () => done(true);
    });
  }

  private notify(): void {
    this.waiter?.();
  }
}

/** The per-process follower of the change history. */
export class ChangeFeed {
  private readonly subscriptions = new Set<Subscription>();
  /** Every change up to this version has been offered to every current subscription. */
  private position = 0n;
  private wakes = 0;
  private wakeUp: (() => void) | undefined;
  private unlisten: Unlisten | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly db: Database,
    private readonly store: ApprovalsStore,
    private readonly limits: FeedLimits,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.position = await this.store.headVersion();
    this.unlisten = await this.db.listen(CHANGED_CHANNEL, () => this.wake());
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
    this.wakes++;
    this.wakeUp?.();
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
  subscribe(after: bigint, accepts: (e: FeedEvent) => boolean): Subscription {
    const sub = new Subscription(after, accepts, this.limits);
    this.subscriptions.add(sub);
    return sub;
  }

  unsubscribe(sub: Subscription): void {
    this.subscriptions.delete(sub);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const mark = this.wakes;
      try {
        await this.pump();
      } catch (err) {
        this.log.warn({ err }, 'approvals change feed: reading changes failed; retrying');
      }
      if (this.wakes === mark && !this.stopped) await this.sleep(this.limits.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  /** Reads and offers every change past `position`. */
  private async pump(): Promise<void> {
    if (this.subscriptions.size === 0) {
      // Nobody listens: just keep up with the head, without reading (or loading) any change.
      const head = await this.store.headVersion();
      if (this.subscriptions.size === 0 && head > this.position) this.position = head;
      if (this.subscriptions.size === 0) return;
    }
    for (;;) {
      // Every subscription starts past its own `after`: nothing older needs reading.
      let from = this.position;
      let lowest: bigint | undefined;
      for (const s of this.subscriptions) if (lowest === undefined || s.after < lowest) lowest = s.after;
      if (lowest !== undefined && lowest > from) from = lowest;
      const events = await readEvents(this.store, from, this.limits, '');
      if (events.length === 0) return;
      for (const e of events) {
        for (const s of this.subscriptions) if (!s.offer(e)) this.subscriptions.delete(s);
        this.position = e.version;
      }
    }
  }
}

/**
 * Changes with version > `after`, with each request as of its change and its content, in one
 * read bounded by count and by content bytes (at least one change, whatever its size).
 */
export async function readEvents(store: ApprovalsStore, after: bigint, limits: Pick<FeedLimits, 'readChanges' | 'readBytes'>, approvalId: string): Promise<FeedEvent[]> {
  const { events } = await readEventsWithHead(store, after, limits, approvalId);
  return events;
}

/** `readEvents`, plus the head and the oldest retained version of the same snapshot, and whether it read to the head. */
export async function readEventsWithHead(
  store: ApprovalsStore,
  after: bigint,
  limits: Pick<FeedLimits, 'readChanges' | 'readBytes'>,
  approvalId: string,
): Promise<{ events: FeedEvent[]; head: bigint; oldestRetained: bigint; complete: boolean }> {
  const page = await store.changesAfter(after, limits.readChanges, approvalId);
  const taken: typeof page.changes = [];
  const counted = new Set<string>();
  let contentBytes = 0;
  for (const c of page.changes) {
    const extra = counted.has(c.approvalId) ? 0 : c.request.contentBytes;
    if (taken.length > 0 && contentBytes + extra > limits.readBytes) break;
    counted.add(c.approvalId);
    contentBytes += extra;
    taken.push(c);
  }
  const withContent = await store.withContent(taken.map((c) => c.request));
  const events = taken.map((c, i) => {
    const { request: _request, ...change } = c;
    const approval = asOf(withContent[i]!, change);
    return { ...change, approval, bytes: approval.content.length + EVENT_OVERHEAD_BYTES };
  });
  const complete = taken.length === page.changes.length && page.changes.length < limits.readChanges;
  return { events, head: page.head, oldestRetained: page.oldestRetained, complete };
}
