import { GantryError, Status } from '@gantry/kit';
import type { LogStore, NewEntry, StoredEntry } from './log-store.js';

export interface GroupCommitLimits {
  /** Most entries one transaction writes (a single request above this still goes alone). */
  maxBatchEntries: number;
  /** Most payload bytes one transaction writes. */
  maxBatchBytes: number;
  /** Most entries waiting per partition; beyond it appends get RESOURCE_EXHAUSTED. */
  maxQueuedEntries: number;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitLimits = { maxBatchEntries: 2000, maxBatchBytes: 8 * 1024 * 1024, maxQueuedEntries: 20_000 };

/**
 * What a client is told when an append's transaction failed. Almost always it rolled back and none
 * of its entries exist. Only a connection lost during COMMIT leaves the outcome unknown, so the
 * message says how to check (or, with idempotency keys, simply to retry).
 */
export function appendFailure(err: unknown): GantryError {
  if (err instanceof GantryError) return err;
  return new GantryError(Status.UNAVAILABLE, 'the append was not acknowledged (database error); retry, or check GetLastEntry if the database connection dropped', { cause: err });
}

interface Pending {
  /** One request's payloads, each with its author: a shared transaction holds several callers' entries. */
  payloads: readonly NewEntry[];
  bytes: number;
  resolve: (entries: StoredEntry[]) => void;
  reject: (err: unknown) => void;
}

interface PartitionQueue {
  items: Pending[];
  queuedEntries: number;
  /** Append statements of this partition in flight, at most MAX_IN_FLIGHT. */
  inFlight: number;
}

/**
 * Append statements in flight per partition. Each is planned on the head the ones before it will
 * leave and sent on the database's ordered connection (LogStore.appendPipelined), so PostgreSQL
 * runs them in the order they were planned: while one executes and commits, the next is already
 * hashed, sent and waiting, and the partition's appends no longer stop for a round trip and the
 * event loop between transactions. (Pool connections cannot do this: two of them reach PostgreSQL
 * in either order, and a statement that overtakes the one it was planned on misses.) Two keep
 * PostgreSQL busy; more would only split the queue into more, smaller transactions.
 */
const MAX_IN_FLIGHT = 2;

/**
 * Group commit: while transactions for a partition are in flight, later appends to it queue; the
 * next transaction takes everything queued (within limits). Each request is acknowledged only
 * after the transaction holding it commits, and a request is never split across two.
 */
export class GroupCommitter {
  private readonly queues = new Map<string, PartitionQueue>();

  constructor(
    private readonly store: LogStore,
    private readonly limits: GroupCommitLimits = DEFAULT_GROUP_COMMIT,
    private readonly nowMs: () => bigint = () => BigInt(Date.now()),
  ) {}

  /** Appends `payloads` as `author`; resolves with the stored entries once their transaction commits. */
  append(partition: string, author: string, data: readonly Buffer[]): Promise<StoredEntry[]> {
    const payloads = data.map((d) => ({ data: d, author }));
    let queue = this.queues.get(partition);
    if (!queue) this.queues.set(partition, (queue = { items: [], queuedEntries: 0, inFlight: 0 }));
    if (queue.queuedEntries + payloads.length > this.limits.maxQueuedEntries) {
      return Promise.reject(
        new GantryError(Status.RESOURCE_EXHAUSTED, `append queue for partition ${partition} is full (${this.limits.maxQueuedEntries} entries); retry shortly`, {
          trailers: { 'grpc-retry-pushback-ms': '100' },
        }),
      );
    }
    const bytes = data.reduce((n, p) => n + p.length, 0);
    const done = new Promise<StoredEntry[]>((resolve, reject) => queue.items.push({ payloads, bytes, resolve, reject }));
    queue.queuedEntries += payloads.length;
    this.pump(partition, queue);
    return done;
  }

  private takeBatch(queue: PartitionQueue): Pending[] {
    const batch: Pending[] = [];
    let entries = 0;
    let bytes = 0;
    while (queue.items.length > 0) {
      const next = queue.items[0]!;
      const fits = entries + next.payloads.length <= this.limits.maxBatchEntries && bytes + next.bytes <= this.limits.maxBatchBytes;
      if (batch.length > 0 && !fits) break;
      batch.push(queue.items.shift()!);
      entries += next.payloads.length;
      bytes += next.bytes;
    }
    queue.queuedEntries -= entries;
    return batch;
  }

  /** Starts transactions for what is queued, up to MAX_IN_FLIGHT; each finishing one starts the next. */
  private pump(partition: string, queue: PartitionQueue): void {
    while (queue.inFlight < MAX_IN_FLIGHT && queue.items.length > 0) {
      // Without a known head, the next append waits for the one in flight to land and leave its head.
      if (queue.inFlight > 0 && !this.store.knowsHead(partition)) break;
      const batch = this.takeBatch(queue);
      queue.inFlight++;
      void this.commit(partition, batch).finally(() => {
        queue.inFlight--;
        if (queue.items.length > 0) this.pump(partition, queue);
        else if (queue.inFlight === 0) this.queues.delete(partition);
      });
    }
  }

  private async commit(partition: string, batch: Pending[]): Promise<void> {
    try {
      const payloads = batch.flatMap((p) => p.payloads);
      // Sent synchronously, in the order pump() took the batches; a miss or an unknown head takes the safe path.
      const entries = (await this.store.appendPipelined(partition, payloads, this.nowMs())) ?? (await this.store.appendBatch(partition, payloads, this.nowMs()));
      let offset = 0;
      for (const p of batch) {
        p.resolve(entries.slice(offset, offset + p.payloads.length));
        offset += p.payloads.length;
      }
    } catch (err) {
      const failure = appendFailure(err);
      for (const p of batch) p.reject(failure);
    }
  }
}
