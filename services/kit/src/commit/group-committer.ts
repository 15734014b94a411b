// Group commit: many callers' writes in one transaction. A write that must hold a row lock through
// COMMIT (an fsync), or that pays BEGIN, COMMIT and its round trips on its own, costs the same for
// one item as for a hundred; so while transactions are in flight (at most `maxTxInFlight`), later
// items queue, and the next transaction takes up to `maxBatch` of them. Under load batches form by
// themselves while the slots are busy; a lone item waits for nobody (unless `lingerMs` asks it to).
//
// Each caller gets its own outcome, and only after the commit that holds its item. The service's
// `commit` decides every item of a batch with its domain rules and returns one result per item: a
// refusal is a result, and writes nothing for that item. If the transaction itself fails (a
// deadlock with another replica, a constraint the rules did not foresee), its items are retried
// one per transaction, so one item the database refuses cannot fail the items batched with it.
//
// Used by approvals (votes), settlement (draws) and webhooks (attempt outcomes).
import { GantryError, Status } from '../errors.js';
import { realClock, type Clock } from '../time/clock.js';

export interface GroupCommitLimits {
  /** Items one transaction takes at most. */
  maxBatch: number;
  /** Items a process holds at once (queued, in a transaction, or being answered); beyond it submit refuses with RESOURCE_EXHAUSTED. */
  maxQueued: number;
  /** Transactions one process runs at once, each with its own drain loop. */
  maxTxInFlight: number;
  /** How long an item arriving while a transaction slot is free waits for others to join its batch; 0: not at all. */
  lingerMs: number;
}

export interface GroupCommitSteps<I, R, O = R> {
  /** Decides and writes `items` in one transaction; one result per item, in order. */
  commit(items: I[]): Promise<R[]>;
  /** One item in a transaction of its own, after its batch's transaction failed (default: commit([item])). */
  commitAlone?(item: I): Promise<R>;
  /** Whether a batch of one whose transaction failed with `err` is tried again alone (default: never; the error is the item's). */
  retryAlone?(err: unknown): boolean;
  /** Items with the same key never share a batch nor run in two transactions at once: the later waits and sees the earlier committed. */
  keyOf?(item: I): string;
  /**
   * Turns a committed batch's results into the callers' answers outside the transaction (reads
   * that need not hold locks); the next batch does not wait for it. Items are still held (they
   * count against maxQueued) until it resolves; if it rejects, each of its callers gets that error.
   */
  answer?(items: I[], results: R[]): Promise<O[]>;
  /** The RESOURCE_EXHAUSTED message when maxQueued items are held: what was not done, and what to do. */
  queueFull(limit: number): string;
}

/** How long a client told the queue is full should wait before retrying. */
export const QUEUE_FULL_PUSHBACK_MS = 100;

interface Pending<I, O> {
  item: I;
  key: string | undefined;
  resolve: (outcome: O) => void;
  reject: (err: unknown) => void;
}

type Settled<R> = { ok: true; result: R } | { ok: false; error: unknown };

export class GroupCommitter<I, R, O = R> {
  private queue: Pending<I, O>[] = [];
  /** Items submitted and not yet answered. */
  private heldCount = 0;
  private inFlight = 0;
  /** Keys of the items in transactions now. */
  private readonly busyKeys = new Set<string>();
  private cancelLinger: (() => void) | undefined;

  constructor(
    private readonly steps: GroupCommitSteps<I, R, O>,
    private readonly limits: GroupCommitLimits,
    private readonly clock: Clock = realClock,
  ) {
    for (const name of ['maxBatch', 'maxQueued', 'maxTxInFlight'] as const) {
      if (!(limits[name] >= 1)) throw new RangeError(`group commit ${name} must be at least 1, not ${limits[name]}`);
    }
    if (!(limits.lingerMs >= 0)) throw new RangeError(`group commit lingerMs must be 0 or more, not ${limits.lingerMs}`);
  }

  /** Items submitted and not yet answered. */
  get held(): number {
    return this.heldCount;
  }

  /**
   * Commits `item` in the next group transaction; resolves with its answer once committed (a
   * refusal is an answer). Rejects with RESOURCE_EXHAUSTED when maxQueued items are held, and with
   * the error of its own transaction when that failed too.
   */
  submit(item: I): Promise<O> {
    if (this.heldCount >= this.limits.maxQueued) {
      return Promise.reject(
        new GantryError(Status.RESOURCE_EXHAUSTED, this.steps.queueFull(this.limits.maxQueued), {
          trailers: { 'grpc-retry-pushback-ms': String(QUEUE_FULL_PUSHBACK_MS) },
        }),
      );
    }
    this.heldCount++;
    return new Promise<O>((resolve, reject) => {
      this.queue.push({
        item,
        key: this.steps.keyOf?.(item),
        resolve: (outcome) => {
          this.heldCount--;
          resolve(outcome);
        },
        reject: (err) => {
          this.heldCount--;
          reject(err);
        },
      });
      this.kick();
    });
  }

  private kick(): void {
    if (this.inFlight >= this.limits.maxTxInFlight) return; // a running drain loop takes it
    if (this.limits.lingerMs > 0 && this.queue.length < this.limits.maxBatch) {
      this.cancelLinger ??= this.clock.setTimeout(() => {
        this.cancelLinger = undefined;
        if (this.inFlight < this.limits.maxTxInFlight && this.queue.length > 0) void this.drain();
      }, this.limits.lingerMs);
      return;
    }
    this.cancelLinger?.();
    this.cancelLinger = undefined;
    void this.drain();
  }

  private async drain(): Promise<void> {
    this.inFlight++;
    try {
      for (let batch = this.take(); batch.length > 0; batch = this.take()) {
        const settled = await this.commitOrIsolate(batch.map((p) => p.item));
        for (const p of batch) if (p.key !== undefined) this.busyKeys.delete(p.key);
        this.answer(batch, settled);
      }
    } finally {
      this.inFlight--;
    }
  }

  /**
   * The next batch, in arrival order: up to maxBatch items whose keys are in no other batch. One
   * pass that keeps the rest in order (a splice per taken item moved the queue's tail each time).
   */
  private take(): Pending<I, O>[] {
    if (!this.steps.keyOf) return this.queue.splice(0, this.limits.maxBatch);
    const batch: Pending<I, O>[] = [];
    const rest: Pending<I, O>[] = [];
    const keys = new Set<string>();
    for (const p of this.queue) {
      if (batch.length < this.limits.maxBatch && !this.busyKeys.has(p.key!) && !keys.has(p.key!)) {
        keys.add(p.key!);
        batch.push(p);
      } else {
        rest.push(p);
      }
    }
    if (batch.length > 0) this.queue = rest;
    for (const key of keys) this.busyKeys.add(key);
    return batch;
  }

  /** The batch in one transaction; if that fails, each item in a transaction of its own. */
  private async commitOrIsolate(items: I[]): Promise<Settled<R>[]> {
    try {
      const results = await this.steps.commit(items);
      if (results.length !== items.length) throw new Error(`group commit returned ${results.length} results for ${items.length} items`);
      return results.map((result) => ({ ok: true, result }));
    } catch (error) {
      if (items.length === 1 && !this.steps.retryAlone?.(error)) return [{ ok: false, error }];
    }
    const settled: Settled<R>[] = [];
    for (const item of items) {
      try {
        settled.push({ ok: true, result: await this.alone(item) });
      } catch (error) {
        settled.push({ ok: false, error });
      }
    }
    return settled;
  }

  private async alone(item: I): Promise<R> {
    if (this.steps.commitAlone) return this.steps.commitAlone(item);
    const [result] = await this.steps.commit([item]);
    return result!;
  }

  /** Rejects the failed items and answers the committed ones (through `answer` when given, without holding up the next batch). */
  private answer(batch: Pending<I, O>[], settled: Settled<R>[]): void {
    const committed: Pending<I, O>[] = [];
    const results: R[] = [];
    settled.forEach((s, i) => {
      if (!s.ok) return batch[i]!.reject(s.error);
      committed.push(batch[i]!);
      results.push(s.result);
    });
    if (committed.length === 0) return;
    if (!this.steps.answer) {
      committed.forEach((p, i) => p.resolve(results[i] as unknown as O));
      return;
    }
    this.steps.answer(
      committed.map((p) => p.item),
      results,
    ).then(
      (answers) => committed.forEach((p, i) => p.resolve(answers[i]!)),
      (err: unknown) => committed.forEach((p) => p.reject(err)),
    );
  }
}
