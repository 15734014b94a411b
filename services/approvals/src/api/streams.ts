// The streaming side of the API: following changes from a version (catch-up from the database,
// then the process's change feed), a validator's to-do list, and merging two streams into one.
import { GantryError, Status, outOfRange } from '@gantry/kit';
import { hasVoted, type ApprovalKind, type ApprovalRecord, type PriorityRank, type RequestRecord } from '../domain/approval.js';
import type { ApprovalsStore, PendingCursor } from '../store/approvals-store.js';
import { readEventsWithHead, type ChangeFeed, type FeedEvent, type FeedLimits } from '../store/change-feed.js';

/** Trailer carrying the version a cut-off or interrupted watch resumes from (from_version). */
export const RESUME_VERSION_TRAILER = 'gantry-resume-version';

export interface StreamDeps {
  store: ApprovalsStore;
  feed: ChangeFeed;
  limits: FeedLimits & {
    /** A quiet watcher gets a BOOKMARK at least this often (when the service version moved). */
    bookmarkIntervalMs: number;
    /** Requests one validator session tracks at most (its to-do list). */
    maxPendingPerSession: number;
    /** Rows one read of a to-do list takes. */
    pendingPage: number;
  };
  now: () => number;
}

/** When a stream must stop: the client went away (`signal`), or the server is shutting down (`draining`). */
export interface StreamSignals {
  signal: AbortSignal;
  draining: AbortSignal;
}

export type Followed = { event: FeedEvent } | { bookmark: bigint };

/**
 * Every change with version > `after` that `accepts` keeps, in version order, forever: first read
 * from the database (the history), then from the change feed. Emits bookmarks when asked to and
 * quiet. Ends with OUT_OF_RANGE when the history no longer reaches back to `after`,
 * RESOURCE_EXHAUSTED when the consumer falls behind the feed's bounded queue, UNAVAILABLE when the
 * server drains; the last two carry the version to resume from.
 */
export async function* follow(deps: StreamDeps, after: bigint, approvalId: string, accepts: (e: FeedEvent) => boolean, s: StreamSignals, bookmarks: boolean): AsyncGenerator<Followed> {
  const { store, feed, limits } = deps;
  let delivered = after;
  const resumeFrom = () => ({ trailers: { [RESUME_VERSION_TRAILER]: delivered.toString() } });
  const interrupted = () => {
    if (s.draining.aborted) throw new GantryError(Status.UNAVAILABLE, `server is shutting down; watch again from version ${delivered} on another replica`, resumeFrom());
  };
  for (;;) {
    if (s.signal.aborted) return;
    interrupted();
    const page = await readEventsWithHead(store, after, limits, approvalId);
    if (after < page.oldestRetained - 1n) {
      throw outOfRange(`version ${after} is older than the retained history (which starts at ${page.oldestRetained}): list with ListApprovals and watch from its version`);
    }
    for (const event of page.events) {
      after = event.version;
      if (!accepts(event)) continue;
      delivered = event.version;
      yield { event };
    }
    if (page.complete) {
      if (page.head > after) after = page.head;
      // Synchronous from this check to the subscription: the feed cannot offer anything in between.
      if (after >= feed.offeredThrough) break;
    }
  }
  if (feed.full) throw new GantryError(Status.RESOURCE_EXHAUSTED, 'this replica follows as many streams as it may; retry later or on another replica', resumeFrom());
  const sub = feed.subscribe(after, accepts);
  const wakeOn = AbortSignal.any([s.signal, s.draining]);
  try {
    for (;;) {
      const event = sub.take();
      if (event) {
        delivered = event.version;
        yield { event };
        continue;
      }
      if (sub.overflowed) {
        throw new GantryError(Status.RESOURCE_EXHAUSTED, `the stream fell behind by more than ${limits.queueEvents} changes or ${Math.round(limits.queueBytes / 1024)} KiB; watch again from version ${delivered}`, resumeFrom());
      }
      if (s.signal.aborted) return;
      interrupted();
      const arrived = await sub.wait(limits.bookmarkIntervalMs, wakeOn);
      if (!arrived && bookmarks && sub.idle && !sub.overflowed && sub.seen > delivered) {
        delivered = sub.seen;
        yield { bookmark: delivered };
      }
    }
  } finally {
    feed.unsubscribe(sub);
  }
}

export interface PendingFilterSpec {
  types: ApprovalKind[];
  minPriority: PriorityRank;
}

export interface PendingChangeOut {
  change: 'ADDED' | 'REMOVED';
  approval: ApprovalRecord;
}

/** Loads content for `rows` in chunks of bounded size, yielding each row with its content. */
export async function* withContentChunks<R extends RequestRecord>(store: ApprovalsStore, rows: R[], maxBytes: number): AsyncGenerator<R & ApprovalRecord> {
  let i = 0;
  while (i < rows.length) {
    const chunk: R[] = [];
    let bytes = 0;
    while (i < rows.length && (chunk.length === 0 || bytes + rows[i]!.contentBytes <= maxBytes)) {
      bytes += rows[i]!.contentBytes;
      chunk.push(rows[i++]!);
    }
    yield* await store.withContent(chunk);
  }
}

/**
 * What `validator` still has to decide: every such request now (ADDED), then ADDED when one
 * arrives and REMOVED when the validator votes on it or it is finalized or expired.
 */
export async function* pendingFor(deps: StreamDeps, validator: string, filter: PendingFilterSpec, s: StreamSignals): AsyncGenerator<PendingChangeOut> {
  const { store, limits } = deps;
  const matches = (r: RequestRecord) =>
    r.requester !== validator && r.validators.includes(validator) && (filter.types.length === 0 || filter.types.includes(r.type)) && r.priority >= filter.minPriority;
  /** Requests sent as ADDED and not yet REMOVED, with the version they were sent at. */
  const open = new Map<string, bigint>();
  const add = (r: ApprovalRecord): PendingChangeOut => {
    if (open.size >= limits.maxPendingPerSession) {
      throw new GantryError(Status.RESOURCE_EXHAUSTED, `more than ${limits.maxPendingPerSession} requests await ${validator}; narrow the filter (types, min_priority)`);
    }
    open.set(r.id, r.version);
    return { change: 'ADDED', approval: r };
  };

  // Changes after this version are followed; the list read afterwards may already include some,
  // which `open` recognises by version.
  const from = await store.headVersion();
  let cursor: PendingCursor | undefined;
  for (;;) {
    const rows = await store.pending({ validator, ...filter }, cursor, limits.pendingPage, new Date(deps.now()));
    for await (const r of withContentChunks(store, rows, limits.readBytes)) yield add(r);
    if (rows.length < limits.pendingPage) break;
    const last = rows[rows.length - 1]!;
    cursor = { priority: last.priority, createdVersion: last.createdVersion };
  }

  // The to-do list is not resumed from a version: a new stream starts with a fresh list.
  const followed = restartHint(follow(deps, from, '', (e) => matches(e.approval), s, false));
  for await (const item of followed) {
    if (!('event' in item)) continue;
    const { event } = item;
    const sentAt = open.get(event.approvalId);
    if (sentAt !== undefined && event.version <= sentAt) continue;
    const stillOpen = event.state === 'PENDING' && !hasVoted(event.approval, validator);
    if (sentAt === undefined) {
      if (event.type === 'CREATED' && stillOpen) yield add(event.approval);
    } else if (stillOpen) {
      open.set(event.approvalId, event.version);
    } else {
      open.delete(event.approvalId);
      yield { change: 'REMOVED', approval: event.approval };
    }
  }
}

/** `follow`'s stream, with its cut-off and shutdown errors told in to-do-list terms (no version to resume from). */
async function* restartHint(followed: AsyncGenerator<Followed>): AsyncGenerator<Followed> {
  try {
    yield* followed;
  } catch (err) {
    if (err instanceof GantryError && err.code === Status.RESOURCE_EXHAUSTED && err.message.includes('fell behind')) throw new GantryError(err.code, 'the stream fell too far behind; open it again (it starts with the current to-do list)');
    if (err instanceof GantryError && err.code === Status.UNAVAILABLE) throw new GantryError(err.code, 'server is shutting down; open the stream again on another replica (it starts with the current to-do list)');
    throw err;
  }
}

/**
 * Both streams' messages as they come, until `driver` ends (then the merged stream ends too). The
 * caller stops `other` through its signals; its pending read is abandoned, not awaited.
 */
export async function* mergeUntil<T>(driver: AsyncIterator<T>, other: AsyncIterator<T>): AsyncGenerator<T> {
  type Tagged = { fromDriver: boolean; r: IteratorResult<T> };
  const nextOf = (it: AsyncIterator<T>, fromDriver: boolean): Promise<Tagged> => it.next().then((r) => ({ fromDriver, r }));
  let d = nextOf(driver, true);
  let o: Promise<Tagged> | undefined = nextOf(other, false);
  for (;;) {
    const { fromDriver, r } = await Promise.race(o ? [d, o] : [d]);
    if (fromDriver) {
      if (r.done) return;
      yield r.value;
      d = nextOf(driver, true);
    } else if (r.done) {
      o = undefined;
    } else {
      yield r.value;
      o = nextOf(other, false);
    }
  }
}
