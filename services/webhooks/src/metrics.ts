// Webhooks' metrics on the process's meter (scraped at /metrics on the probe port): deliveries by
// what happened to them, and how many wait. Taken when the module is created: a meter taken
// before the telemetry SDK starts is a no-op for good.
import { metrics } from '@opentelemetry/api';
import { observeCount } from '@gantry/kit';
import type { DeliveryQueue } from './store/delivery-queue.js';

/** What a delivery's attempt, or its queueing, came to. */
export type DeliveryOutcome = 'queued' | 'succeeded' | 'failed' | 'dead_lettered';

/**
 * `gantry.webhooks.deliveries` by `outcome`: `queued` when a publish created it, then per attempt
 * `succeeded`, `failed` (a retry is scheduled) or `dead_lettered` (no attempt left, or its retry
 * window passed). Counted by the process that did it, after the commit.
 */
export function deliveryCounter(): (outcome: DeliveryOutcome, n?: number) => void {
  const deliveries = metrics.getMeter('gantry').createCounter('gantry.webhooks.deliveries', { description: 'Webhook deliveries queued by publishes, and attempts by outcome: succeeded, failed (retry scheduled), dead_lettered' });
  const attributes = { queued: { outcome: 'queued' }, succeeded: { outcome: 'succeeded' }, failed: { outcome: 'failed' }, dead_lettered: { outcome: 'dead_lettered' } } as const;
  return (outcome, n = 1) => {
    if (n > 0) deliveries.add(n, attributes[outcome]);
  };
}

/**
 * Registers `gantry.webhooks.queue_depth`: deliveries still PENDING (due or waiting for a retry),
 * counted in the database at scrape time since every replica's are there (kit observeCount).
 * stop() unregisters it.
 */
export function observeQueueDepth(queue: Pick<DeliveryQueue, 'countPending'>, nowMs: () => number = Date.now): { stop(): void } {
  return observeCount('gantry.webhooks.queue_depth', 'Webhook deliveries PENDING, due now or waiting for a retry (all replicas: counted in the database)', () => queue.countPending(), nowMs);
}
