// The two watches. Registry watches are pull-based: each reads the change history from the
// database at its own pace (a slow reader holds no server memory; gRPC flow control paces it), and
// a NOTIFY, or a poll when none comes, says "look again". Delivery watches are live only: one
// listener per process reads each changed delivery once and offers it to every matching stream,
// through a bounded queue per stream; a stream that falls behind ends with RESOURCE_EXHAUSTED.
import { GantryError, Status, outOfRange, type CallContext, type Database, type Logger, type Unlisten } from '@gantry/kit';
import { webhooksv1 } from '@gantry/proto';
import type { AttemptRecord, DeliveryRecord } from '../domain/webhook.js';
import { webhookFromJson } from '../domain/webhook.js';
import { DELIVERY_CHANNEL, REGISTRY_CHANNEL, type WebhooksStore } from '../store/webhooks-store.js';
import { REGISTRY_EVENT, toAttempt, toDelivery, toWebhook } from './convert.js';

export interface StreamLimits {
  /** Registry changes one read takes at most. */
  readChanges: number;
  /** A registry watch re-reads at least this often even without a NOTIFY (one that is lost while reconnecting). */
  pollMs: number;
  /** A quiet registry watch gets a BOOKMARK at least this often. */
  bookmarkIntervalMs: number;
  /** Delivery changes queued for one stream before it is cut off. */
  queueEvents: number;
  /** Streams per process. */
  maxStreams: number;
}

interface DeliveryChange {
  delivery: DeliveryRecord;
  attempt: AttemptRecord | undefined;
}

class Waiters {
  private waiters = new Set<() => void>();
  wakeAll(): void {
    for (const w of this.waiters) w();
  }
  /** Resolves on the next wake, after `ms`, or when `signal` aborts. */
  wait(ms: number, ...signals: AbortSignal[]): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      for (const s of signals) s.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
      if (signals.some((s) => s.aborted)) done();
    });
  }
}

class DeliverySubscription {
  readonly queue: DeliveryChange[] = [];
  overflowed = false;
  readonly waiters = new Waiters();
  constructor(readonly webhookIds: Set<string>, readonly eventTypes: Set<string>, private readonly max: number) {}
  offer(c: DeliveryChange): void {
    if (this.overflowed || !this.webhookIds.has(c.delivery.webhookId)) return;
    if (this.eventTypes.size > 0 && !this.eventTypes.has(c.delivery.eventType)) return;
    if (this.queue.length >= this.max) {
      this.overflowed = true;
      this.queue.length = 0;
    } else {
      this.queue.push(c);
    }
    this.waiters.wakeAll();
  }
}

export class WebhooksStreams {
  private readonly registryWaiters = new Waiters();
  private readonly subscriptions = new Set<DeliverySubscription>();
  private streams = 0;
  private unlisten: Unlisten[] = [];
  /** Delivery notifications are handled one at a time, in arrival order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly store: WebhooksStore,
    private readonly limits: StreamLimits,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.unlisten.push(await this.db.listen(REGISTRY_CHANNEL, () => this.registryWaiters.wakeAll()));
    this.unlisten.push(await this.db.listen(DELIVERY_CHANNEL, (payload) => {
      if (this.subscriptions.size === 0) return;
      this.chain = this.chain.then(() => this.deliveryChanged(payload)).catch((err: unknown) => this.log.warn({ err }, 'webhooks delivery watch: reading a changed delivery failed'));
    }));
  }

  async stop(): Promise<void> {
    for (const u of this.unlisten) await u();
    this.registryWaiters.wakeAll();
    await this.chain;
  }

  private async deliveryChanged(payload: string): Promise<void> {
    const [id, n] = payload.split(' ');
    if (!id) return;
    const delivery = await this.store.delivery(id);
    if (!delivery) return;
    const attemptNumber = Number(n);
    const attempt = attemptNumber > 0 ? delivery.attempts.find((a) => a.attemptNumber === attemptNumber) : undefined;
    for (const s of this.subscriptions) s.offer({ delivery, attempt });
  }

  private enter(): void {
    if (this.streams >= this.limits.maxStreams) throw new GantryError(Status.RESOURCE_EXHAUSTED, `this replica serves ${this.limits.maxStreams} watches already; retry later or on another replica`);
    this.streams++;
  }

  /** Registry changes after from_version (a BOOKMARK first when it is 0), of `owner` unless every owner. */
  async *watchRegistry(req: webhooksv1.WatchWebhookRegistryRequest, ctx: CallContext, owner: string, everyOwner: boolean): AsyncGenerator<webhooksv1.WatchWebhookRegistryResponse> {
    this.enter();
    try {
      const filter = everyOwner ? '' : owner;
      let cursor = req.fromVersion;
      if (cursor === 0n) {
        cursor = await this.store.headVersion();
        yield { type: webhooksv1.RegistryEventType.REGISTRY_EVENT_TYPE_BOOKMARK, webhook: undefined, version: cursor };
      }
      let lastSent = Date.now();
      for (;;) {
        const page = await this.store.changesAfter(cursor, this.limits.readChanges, filter);
        if (req.fromVersion !== 0n && cursor === req.fromVersion && cursor + 1n < page.oldestRetained && cursor < page.head) {
          throw outOfRange(`version ${cursor} is older than the retained history (oldest ${page.oldestRetained}); list again and watch from the list's version`);
        }
        for (const c of page.changes) {
          yield { type: REGISTRY_EVENT[c.type], webhook: toWebhook(webhookFromJson(c.webhook)), version: c.version };
          cursor = c.version;
          lastSent = Date.now();
        }
        if (page.changes.length === this.limits.readChanges) continue;
        // Changes of other owners moved the head: the cursor may follow it.
        if (page.head > cursor) cursor = page.head;
        if (ctx.signal.aborted) return;
        if (ctx.draining.aborted) throw new GantryError(Status.UNAVAILABLE, `server is shutting down; watch again from version ${cursor}`);
        if (Date.now() - lastSent >= this.limits.bookmarkIntervalMs) {
          yield { type: webhooksv1.RegistryEventType.REGISTRY_EVENT_TYPE_BOOKMARK, webhook: undefined, version: cursor };
          lastSent = Date.now();
        }
        await this.registryWaiters.wait(Math.min(this.limits.pollMs, this.limits.bookmarkIntervalMs), ctx.signal, ctx.draining);
      }
    } finally {
      this.streams--;
    }
  }

  /** Live delivery changes of the webhooks `webhookIds` resolves to (resolved once, at the start). */
  async *watchDeliveries(req: webhooksv1.WatchDeliveriesRequest, ctx: CallContext, webhookIds: () => Promise<string[]>): AsyncGenerator<webhooksv1.WatchDeliveriesResponse> {
    const ids = await webhookIds();
    this.enter();
    const sub = new DeliverySubscription(new Set(ids), new Set(req.eventTypes), this.limits.queueEvents);
    this.subscriptions.add(sub);
    try {
      for (;;) {
        for (let c = sub.queue.shift(); c; c = sub.queue.shift()) {
          yield { delivery: toDelivery(c.delivery), attempt: c.attempt ? toAttempt(c.attempt) : undefined };
        }
        if (sub.overflowed) throw new GantryError(Status.RESOURCE_EXHAUSTED, `the stream fell behind by more than ${this.limits.queueEvents} delivery changes; watch again (and read what was missed with GetDeliveryHistory)`);
        if (ctx.signal.aborted) return;
        if (ctx.draining.aborted) throw new GantryError(Status.UNAVAILABLE, 'server is shutting down; watch again on another replica');
        await sub.waiters.wait(this.limits.pollMs, ctx.signal, ctx.draining);
      }
    } finally {
      this.subscriptions.delete(sub);
      this.streams--;
    }
  }
}
