// Group commit for attempt outcomes, on the kit's GroupCommitter as approvals' votes and
// settlement's draws. One transaction per attempt made every delivery wait for its own COMMIT (an
// fsync) and its own round trips. Instead, while outcome transactions are in flight (at most
// `maxTxInFlight`), outcomes of this process queue, and the next transaction takes all of them (up
// to `maxPerTx`), for any number of endpoints (store/delivery-outcomes.ts).
//
// The dispatcher counts each attempt from its claim until its outcome is committed, and claims
// nothing while maxQueuedOutcomes are held, so at most that many outcomes wait here (`maxQueued`
// is that same bound, a backstop). Each attempt is answered only after the commit that holds its
// outcome. If a batch transaction fails, its outcomes are retried one per transaction, so one
// outcome the database refuses cannot fail the others; one that still fails is not recorded, and
// its lease expires and the delivery is retried (as when a replica dies mid-attempt).
import { GroupCommitter } from '@gantry/kit';
import type { EndpointAttemptResult, RecordedOutcome } from '../store/delivery-outcomes.js';
import type { WebhooksStore } from '../store/webhooks-store.js';

export interface OutcomeCommitLimits {
  /** Outcomes one transaction records at most. */
  maxPerTx: number;
  /** Outcome transactions one process runs at once (two overlap one's round trips with the other's COMMIT). */
  maxTxInFlight: number;
  /** Outcomes held at most (the dispatcher's maxQueuedOutcomes); beyond it an outcome is refused and its lease left to expire. */
  maxQueued?: number;
}

/** Without a dispatcher's bound (tests): the most outcomes one process could have in flight. */
const DEFAULT_MAX_QUEUED = 65_536;

export class OutcomeCommitter {
  private readonly group: GroupCommitter<EndpointAttemptResult, RecordedOutcome>;

  constructor(
    store: Pick<WebhooksStore, 'queue'>,
    /** The service clock (ms): the time the batch's disables and streaks are judged at. */
    now: () => number,
    limits: OutcomeCommitLimits,
  ) {
    this.group = new GroupCommitter<EndpointAttemptResult, RecordedOutcome>(
      {
        commit: (results) => store.queue.recordAttempts(results, new Date(now())),
        queueFull: (limit) => `${limit} attempt outcomes are waiting to be recorded; this one is not, and its delivery is retried when its lease expires`,
      },
      { maxBatch: limits.maxPerTx, maxTxInFlight: limits.maxTxInFlight, maxQueued: limits.maxQueued ?? DEFAULT_MAX_QUEUED, lingerMs: 0 },
    );
  }

  /** Records `result` in the next group transaction; resolves once that committed, rejects when its own transaction failed. */
  submit(result: EndpointAttemptResult): Promise<RecordedOutcome> {
    return this.group.submit(result);
  }
}
