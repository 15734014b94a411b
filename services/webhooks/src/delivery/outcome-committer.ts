// Group commit for attempt outcomes, as approvals batches votes (services/approvals/src/store/
// vote-committer.ts). One transaction per attempt made every delivery wait for its own COMMIT (an
// fsync) and its own round trips. Instead, while outcome transactions are in flight (at most
// `maxTxInFlight`), outcomes of this process queue, and the next transaction takes all of them (up
// to `maxPerTx`), for any number of endpoints (store/delivery-outcomes.ts).
//
// The queue needs no bound of its own: the dispatcher counts each attempt from its claim until its
// outcome is committed, and claims nothing while maxQueuedOutcomes are held, so at most that many
// outcomes ever wait here. Each attempt is
// answered only after the commit that holds its outcome. If a batch transaction fails, its outcomes
// are retried one per transaction, so one outcome the database refuses cannot fail the others; one
// that still fails is not recorded, and its lease expires and the delivery is retried (as when a
// replica dies mid-attempt).
import type { EndpointAttemptResult, RecordedOutcome } from '../store/delivery-outcomes.js';
import type { WebhooksStore } from '../store/webhooks-store.js';

export interface OutcomeCommitLimits {
  /** Outcomes one transaction records at most. */
  maxPerTx: number;
  /** Outcome transactions one process runs at once (two overlap one's round trips with the other's COMMIT). */
  maxTxInFlight: number;
}

interface Queued {
  result: EndpointAttemptResult;
  resolve: (outcome: RecordedOutcome) => void;
  reject: (err: unknown) => void;
}

export class OutcomeCommitter {
  private readonly queue: Queued[] = [];
  /** Transactions in flight (each with its own drain loop). */
  private inFlight = 0;

  constructor(
    private readonly store: Pick<WebhooksStore, 'queue'>,
    /** The service clock (ms): the time the batch's disables and streaks are judged at. */
    private readonly now: () => number,
    private readonly limits: OutcomeCommitLimits,
  ) {}

  /** Records `result` in the next group transaction; resolves once that committed, rejects when its own transaction failed. */
  submit(result: EndpointAttemptResult): Promise<RecordedOutcome> {
    const done = new Promise<RecordedOutcome>((resolve, reject) => this.queue.push({ result, resolve, reject }));
    if (this.inFlight < this.limits.maxTxInFlight) void this.drain();
    return done;
  }

  private async drain(): Promise<void> {
    this.inFlight++;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.limits.maxPerTx);
        await this.commitOrIsolate(batch);
      }
    } finally {
      this.inFlight--;
    }
  }

  /** The batch in one transaction; if that fails, each outcome in a transaction of its own. */
  private async commitOrIsolate(batch: Queued[]): Promise<void> {
    try {
      const outcomes = await this.store.queue.recordAttempts(batch.map((q) => q.result), new Date(this.now()));
      batch.forEach((q, i) => q.resolve(outcomes[i]!));
      return;
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
    }
    for (const q of batch) {
      try {
        const [outcome] = await this.store.queue.recordAttempts([q.result], new Date(this.now()));
        q.resolve(outcome!);
      } catch (err) {
        q.reject(err);
      }
    }
  }
}
