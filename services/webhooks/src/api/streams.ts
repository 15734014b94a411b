// The two watches. A registry watch first reads the change history from the database (catch-up),
// then follows the process's registry feed (store/registry-feed.ts) through a bounded queue; one
// that falls behind ends with RESOURCE_EXHAUSTED and the version to resume from. Delivery watches
// are live only: one listener per process reads each changed delivery once and offers it to every
// matching stream, through a bounded queue per stream; one that falls behind ends likewise.
import { GantryError, Status, outOfRange, type CallContext, type Database, type Logger, type Unlisten } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import type { AttemptRecord, DeliveryRecord } from '../domain/webhook.js';
import { readRegistryEvents, type RegistryEvent, type RegistryFeed } from '../store/registry-feed.js';
import { DELIVERY_CHANNEL } from '../store/sql.js';
import type { WebhooksStore } from '../store/webhooks-store.js';
import { REGISTRY_EVENT, toAttempt, toDelivery, toWebhook } from './convert.js';

/** Trailer carrying the version a cut-off or interrupted registry watch resumes from (from_version). */
export const RESUME_VERSION_TRAILER = 'gantry-resume-version';

export interface StreamLimits {
  /** Registry changes one catch-up read takes at most. */
  readChanges: number;
  /** A quiet registry watch gets a BOOKMARK at most this often (when the registry version moved). */
  bookmarkIntervalMs: number;
  /** A delivery watch re-checks its signals at least this often. */
  pollMs: number;
  /** Changes queued for one stream before it is cut off (the registry feed has its own copy of this bound). */
  queueEvents: number;
  /** Delivery watches per process (registry watches are bounded by the feed). */
  maxStreams: number;
}

interface DeliveryChange {
  delivery: DeliveryRecord;
  owner: string;
  attempt: AttemptRecord | undefined;
}

/** Which deliveries a delivery watch wants: one webhook's, or every webhook's of one owner (those created later too). */
export type DeliveryScope = { webhookId: string } | { owner: string };

class DeliverySubscription {
  readonly queue: DeliveryChange[] = [];
  overflowed = false;
  private waiter: (() => void) | undefined;
  constructor(readonly scope: DeliveryScope, readonly eventTypes: Set<string>, private readonly max: number) {}

  offer(c: DeliveryChange): void {
    if (this.overflowed) return;
    if ('webhookId' in this.scope ? c.delivery.webhookId !== this.scope.webhookId : c.owner !== this.scope.owner) return;
    if (this.eventTypes.size > 0 && !this.eventTypes.has(c.delivery.eventType)) return;
    if (this.queue.length >= this.max) {
      this.overflowed = true;
      this.queue.length = 0;
    } else {
      this.queue.push(c);
    }
    this.waiter?.();
  }

  /** Resolves when something arrives, after `ms`, or when `signal` aborts. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.queue.length > 0 || this.overflowed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiter = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (signal.aborted) return done();
      signal.addEventListener('abort', done, { once: true });
      this.waiter = done;
    });
  }
}

export class WebhooksStreams {
  private readonly subscriptions = new Set<DeliverySubscription>();
  private unlisten: Unlisten | undefined;
  /** Delivery notifications are handled one at a time, in arrival order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly store: Pick<WebhooksStore, 'registry' | 'queue'>,
    private readonly feed: RegistryFeed,
    private readonly limits: StreamLimits,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.feed.start();
    this.unlisten = await this.db.listen(DELIVERY_CHANNEL, (payload) => {
      if (this.subscriptions.size === 0) return;
      this.chain = this.chain.then(() => this.deliveriesChanged(payload)).catch((err: unknown) => this.log.warn({ err }, 'webhooks delivery watch: reading a changed delivery failed'));
    });
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    await this.feed.stop();
    await this.chain;
  }

  /** Streams this process serves now: registry watches following the feed, and delivery watches (tests wait on these). */
  get active(): { registry: number; deliveries: number } {
    return { registry: this.feed.size, deliveries: this.subscriptions.size };
  }

  /** A notice names one or more changed deliveries, one `<delivery_id> <attempt_number or 0>` per line (an outcome batch sends few notices for many). */
  private async deliveriesChanged(payload: string): Promise<void> {
    for (const line of payload.split('\n')) await this.deliveryChanged(line);
  }

  private async deliveryChanged(line: string): Promise<void> {
    const [id, n] = line.split(' ');
    if (!id) return;
    const delivery = await this.store.queue.delivery(id);
    if (!delivery) return;
    const owner = (await this.store.registry.webhook(delivery.webhookId))?.owner ?? '';
    const attemptNumber = Number(n);
    const attempt = attemptNumber > 0 ? delivery.attempts.find((a) => a.attemptNumber === attemptNumber) : undefined;
    for (const s of this.subscriptions) s.offer({ delivery, owner, attempt });
  }

  /**
   * Registry changes after from_version (a BOOKMARK first when it is 0) of `owner`, unless
   * `everyOwner`: first from the history, then from the feed. Ends with OUT_OF_RANGE when the
   * history no longer reaches back to from_version, RESOURCE_EXHAUSTED when the client falls behind
   * the bounded queue, UNAVAILABLE when the server drains; the last two carry the version to
   * resume from in the `gantry-resume-version` trailer.
   */
  async *watchRegistry(req: webhooksv1.WatchWebhookRegistryRequest, ctx: CallContext, owner: string, everyOwner: boolean): AsyncGenerator<webhooksv1.WatchWebhookRegistryResponse> {
    const accepts = (e: RegistryEvent) => everyOwner || e.owner === owner;
    const filter = everyOwner ? '' : owner;
    let after = req.fromVersion;
    if (after === 0n) {
      after = await this.store.registry.headVersion();
      yield { type: webhooksv1.RegistryEventType.REGISTRY_EVENT_TYPE_BOOKMARK, webhook: undefined, version: after };
    }
    let delivered = after;
    const resumeFrom = () => ({ trailers: { [RESUME_VERSION_TRAILER]: delivered.toString() } });
    const interrupted = () => {
      if (ctx.draining.aborted) throw new GantryError(Status.UNAVAILABLE, `server is shutting down; watch again from version ${delivered} on another replica`, resumeFrom());
    };
    const event = (e: RegistryEvent): webhooksv1.WatchWebhookRegistryResponse => {
      delivered = e.version;
      return { type: REGISTRY_EVENT[e.type], webhook: toWebhook(e.webhook), version: e.version };
    };
    const checkRetained = req.fromVersion !== 0n;
    for (;;) {
      if (ctx.signal.aborted) return;
      interrupted();
      const page = await readRegistryEvents(this.store.registry, after, this.limits.readChanges, filter);
      if (checkRetained && after < page.oldestRetained - 1n) {
        throw outOfRange(`version ${after} is older than the retained history (which starts at ${page.oldestRetained}); list again and watch from the list's version`);
      }
      for (const e of page.events) {
        after = e.version;
        yield event(e);
      }
      if (page.complete) {
        // Changes of other owners moved the head: the cursor may follow it.
        if (page.head > after) after = page.head;
        // Synchronous from this check to the subscription: the feed cannot offer anything in between.
        if (after >= this.feed.offeredThrough) break;
      }
    }
    if (this.feed.full) throw new GantryError(Status.RESOURCE_EXHAUSTED, 'this replica follows as many registry watches as it may; retry later or on another replica', resumeFrom());
    const sub = this.feed.subscribe(after, accepts);
    const wakeOn = AbortSignal.any([ctx.signal, ctx.draining]);
    try {
      for (;;) {
        const e = sub.take();
        if (e) {
          yield event(e);
          continue;
        }
        if (sub.overflowed) {
          throw new GantryError(Status.RESOURCE_EXHAUSTED, `the watch fell behind by more than ${this.limits.queueEvents} changes; watch again from version ${delivered}`, resumeFrom());
        }
        if (ctx.signal.aborted) return;
        interrupted();
        const arrived = await sub.wait(this.limits.bookmarkIntervalMs, wakeOn);
        if (!arrived && sub.idle && !sub.overflowed && sub.seen > delivered) {
          delivered = sub.seen;
          yield { type: webhooksv1.RegistryEventType.REGISTRY_EVENT_TYPE_BOOKMARK, webhook: undefined, version: delivered };
        }
      }
    } finally {
      this.feed.unsubscribe(sub);
    }
  }

  /** Live delivery changes in `scope` (an owner's scope takes in webhooks created after the watch began). */
  async *watchDeliveries(req: webhooksv1.WatchDeliveriesRequest, ctx: CallContext, scope: DeliveryScope): AsyncGenerator<webhooksv1.WatchDeliveriesResponse> {
    if (this.subscriptions.size >= this.limits.maxStreams) {
      throw new GantryError(Status.RESOURCE_EXHAUSTED, `this replica serves ${this.limits.maxStreams} delivery watches already; retry later or on another replica`);
    }
    const sub = new DeliverySubscription(scope, new Set(req.eventTypes), this.limits.queueEvents);
    this.subscriptions.add(sub);
    const wakeOn = AbortSignal.any([ctx.signal, ctx.draining]);
    try {
      for (;;) {
        for (let c = sub.queue.shift(); c; c = sub.queue.shift()) {
          yield { delivery: toDelivery(c.delivery), attempt: c.attempt ? toAttempt(c.attempt) : undefined };
        }
        if (sub.overflowed) throw new GantryError(Status.RESOURCE_EXHAUSTED, `the stream fell behind by more than ${this.limits.queueEvents} delivery changes; watch again (and read what was missed with GetDeliveryHistory)`);
        if (ctx.signal.aborted) return;
        if (ctx.draining.aborted) throw new GantryError(Status.UNAVAILABLE, 'server is shutting down; watch again on another replica');
        await sub.wait(this.limits.pollMs, wakeOn);
      }
    } finally {
      this.subscriptions.delete(sub);
    }
  }
}
