// Every replica's in-memory copy of its flags, kept current by the process's change feed (one
// reader, woken by NOTIFY from any replica, polling as a fallback). Evaluation reads only this copy.
import type { flagsv1 } from '@gantry/proto';
import type { Logger } from '../logger.js';
import { ChangeFeed, type Subscription } from '../streams/change-feed.js';
import type { FlagChange, FlagsStore } from './store.js';
import type { FlagsLimits } from './limits.js';

export type FlagsFeed = ChangeFeed<FlagChange>;

/** The process's follower of the flags history. */
export function flagsFeed(store: FlagsStore, limits: FlagsLimits, log: Logger): FlagsFeed {
  return new ChangeFeed<FlagChange>(
    store.db,
    store.channel,
    { head: () => store.headVersion(), read: async (after) => (await store.changesAfter(after, limits.readChanges)).changes },
    { queueEvents: limits.queueEvents, queueBytes: limits.queueBytes, maxSubscriptions: limits.maxWatches + 1, pollMs: limits.pollMs },
    log,
    `flags ${store.schema}`,
  );
}

/**
 * Reads the history after `after` until it reaches what the feed has offered, handing each change
 * to `apply`, then subscribes (synchronously after the last check, so nothing falls in between).
 * Returns undefined when the history no longer reaches back to `after` (pruned).
 */
export async function catchUpAndSubscribe(
  store: FlagsStore,
  feed: FlagsFeed,
  after: bigint,
  readChanges: number,
  apply: (c: FlagChange) => void | Promise<void>,
): Promise<{ sub: Subscription<FlagChange>; after: bigint } | undefined> {
  for (;;) {
    const page = await store.changesAfter(after, readChanges);
    if (after < page.oldestRetained - 1n) return undefined;
    for (const c of page.changes) {
      await apply(c);
      after = c.version;
    }
    if (page.changes.length < readChanges && after >= feed.offeredThrough) return { sub: feed.subscribe(after, () => true), after };
  }
}

/** The flags as of `version`, updated from the feed; `onChange` runs after each batch of changes. */
export class FlagsSnapshot {
  private flags = new Map<string, flagsv1.Flag>();
  private current = 0n;
  private sub: Subscription<FlagChange> | undefined;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private waiters: { version: bigint; resolve: () => void }[] = [];

  constructor(
    private readonly store: FlagsStore,
    private readonly feed: FlagsFeed,
    private readonly limits: FlagsLimits,
    private readonly log: Logger,
    private readonly onChange: (flags: readonly flagsv1.Flag[]) => void,
  ) {}

  /** Loads every flag and follows the feed (which must be started). */
  async start(): Promise<void> {
    await this.load();
    this.running = this.follow();
  }

  /** Stops following the feed; pending `reached` calls resolve. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
    if (this.sub) this.feed.unsubscribe(this.sub);
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }

  /** The store version the snapshot reflects. */
  get version(): bigint {
    return this.current;
  }

  /** The flags now, in no particular order. */
  values(): flagsv1.Flag[] {
    return [...this.flags.values()];
  }

  /** Resolves once the snapshot reflects `version` or after `timeoutMs`, whichever is first (true when it does). */
  async reached(version: bigint, timeoutMs: number): Promise<boolean> {
    if (this.current >= version) return true;
    this.feed.wake();
    let timer: NodeJS.Timeout | undefined;
    const reached = new Promise<boolean>((resolve) => {
      const waiter = { version, resolve: () => resolve(this.current >= version) };
      this.waiters.push(waiter);
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
    });
    try {
      return await reached;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The whole store, then the history up to the feed's position, then a subscription. */
  private async load(): Promise<void> {
    for (;;) {
      const { flags, version } = await this.store.list();
      const next = new Map(flags.map((f) => [f.key, f]));
      const followed = await catchUpAndSubscribe(this.store, this.feed, version, this.limits.readChanges, (c) => void apply(next, c));
      // Pruned between the two reads (thousands of changes in between): read everything again.
      if (!followed) continue;
      this.flags = next;
      this.sub = followed.sub;
      this.advance(followed.after);
      return;
    }
  }

  private async follow(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      const sub = this.sub!;
      let last: bigint | undefined;
      for (let c = sub.take(); c; c = sub.take()) {
        apply(this.flags, c);
        last = c.version;
      }
      if (last !== undefined) this.advance(last);
      if (sub.overflowed) {
        this.log.warn({ schema: this.store.schema }, 'flags snapshot fell behind its feed; reloading every flag');
        this.feed.unsubscribe(sub);
        try {
          await this.load();
        } catch (err) {
          this.log.warn({ err, schema: this.store.schema }, 'flags snapshot: reloading failed; retrying');
          await new Promise((r) => setTimeout(r, this.limits.pollMs));
        }
        continue;
      }
      await sub.wait(this.limits.pollMs, signal);
    }
  }

  private advance(version: bigint): void {
    this.current = version;
    try {
      this.onChange(this.values());
    } catch (err) {
      this.log.error({ err, schema: this.store.schema }, 'flags snapshot: applying the flags to evaluation failed');
    }
    const ready = this.waiters.filter((w) => w.version <= version);
    this.waiters = this.waiters.filter((w) => w.version > version);
    for (const w of ready) w.resolve();
  }
}

function apply(flags: Map<string, flagsv1.Flag>, c: FlagChange): void {
  if (c.type === 'DELETED') flags.delete(c.key);
  else if (c.flag) flags.set(c.key, c.flag);
}
