// Tells the other replicas' dispatchers that deliveries were queued, after the publishing
// transaction committed instead of inside it. PostgreSQL (through 17) serializes every transaction
// that sends a NOTIFY on one lock held until its commit is flushed, so a NOTIFY in each publish made
// concurrent publishes commit one fsync after another (no group commit): 32 publishers of one event
// each waited on each other's flushes. The local dispatcher is woken directly by the handler; the
// others hear one NOTIFY per burst: while one is being sent, further signals collapse into one more
// sent after it. A NOTIFY lost to a crash right after a commit only delays the other replicas until
// their next poll (webhooks.pollIntervalMs): it is a hint, never the record of the work.
import type { Logger } from '@gantry/kit';

export class QueuedNotifier {
  /** The NOTIFY being sent, if any. */
  private sending: Promise<void> | undefined;
  /** A signal came while one was being sent: send once more after it. */
  private again = false;

  constructor(
    private readonly notify: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Deliveries were queued (and committed): the other replicas hear of it soon, at most two NOTIFYs per burst. */
  signal(): void {
    if (this.sending) {
      this.again = true;
      return;
    }
    this.again = false;
    this.sending = this.notify()
      .catch((err: unknown) => this.log.warn({ err }, 'webhooks: telling other replicas of queued deliveries failed; they find them at their next poll'))
      .finally(() => {
        this.sending = undefined;
        if (this.again) this.signal();
      });
  }

  /** Waits for the NOTIFYs under way (shutdown). */
  async drain(): Promise<void> {
    while (this.sending) await this.sending;
  }
}
