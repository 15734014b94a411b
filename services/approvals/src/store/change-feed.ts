// The approvals history as the kit's change feed reads it (services/kit/src/streams/change-feed.ts:
// one reader per process, bounded per-stream queues): each change with its request as of that
// change, content included, read in pages bounded by count and content bytes.
import { ChangeFeed as KitChangeFeed, type Database, type FeedLimits as KitFeedLimits, type Logger } from '@gantry/kit';
import { asOf, type ApprovalRecord, type ChangeRecord, type RequestRecord } from '../domain/approval.js';
import { CHANGED_CHANNEL, type ApprovalsStore } from './approvals-store.js';

/** A change with the request as of that change, content included: what streams send. */
export interface FeedEvent extends ChangeRecord {
  approval: ApprovalRecord;
  /** Approximate size, for the queues' byte bounds. */
  bytes: number;
}

export interface FeedLimits extends KitFeedLimits {
  /** Changes one read takes from the database. */
  readChanges: number;
  /** Request content one read loads at most (content is up to 1 MiB per request). */
  readBytes: number;
}

export type ChangeFeed = KitChangeFeed<FeedEvent>;

/** The process's follower of the approvals history (the kit's change feed on this store). */
export function approvalsFeed(db: Database, store: ApprovalsStore, limits: FeedLimits, log: Logger): ChangeFeed {
  return new KitChangeFeed<FeedEvent>(db, CHANGED_CHANNEL, { head: () => store.headVersion(), read: (after) => readEvents(store, after, limits, '') }, limits, log, 'approvals');
}

/** Fixed cost counted per event on top of its content. */
const EVENT_OVERHEAD_BYTES = 1024;

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
  const events = taken.map((c, i) => feedEvent(c, withContent[i]!));
  const complete = taken.length === page.changes.length && page.changes.length < limits.readChanges;
  return { events, head: page.head, oldestRetained: page.oldestRetained, complete };
}

/** A change with `request` (as it is now, or later: its votes after the change are left out) as of that change. */
export function feedEvent(c: ChangeRecord, request: ApprovalRecord): FeedEvent {
  const change: ChangeRecord = { version: c.version, approvalId: c.approvalId, type: c.type, state: c.state };
  const approval = asOf(request, change);
  return { ...change, approval, bytes: approval.content.length + EVENT_OVERHEAD_BYTES };
}

/** A change this process committed, with its request as the transaction left it. */
export type CommittedChange = ChangeRecord & { request: RequestRecord };

/**
 * Hands changes this process just committed (consecutive versions) to its feed, so local streams
 * get them without a NOTIFY round trip and a read back; they are built only when a stream follows.
 * Needs each request's content in the cache (requests this process created or has read);
 * otherwise the feed reads them as usual.
 */
export function publishCommitted(feed: ChangeFeed, store: ApprovalsStore, changes: readonly CommittedChange[]): void {
  if (changes.length === 0) return;
  if (changes.some((c) => store.content.get(c.approvalId) === undefined)) return feed.wake();
  feed.publish(changes[0]!.version, changes.at(-1)!.version, () => changes.map((c) => feedEvent(c, { ...c.request, content: store.content.get(c.approvalId)! })));
}
