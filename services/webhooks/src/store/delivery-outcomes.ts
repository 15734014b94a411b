// The outcome transaction of the delivery queue (DeliveryQueue.recordAttempt): the attempt and the
// delivery's next state, written only while the attempt's lease holds, and the endpoint's failure
// streak, which may disable it (domain/disable-rule.ts). A disable is a registry change and
// publishes a webhook.endpoint.disabled event to the owner, all in the same transaction.
import type { Sql } from '@gantry/kit';
import { afterFailure } from '../domain/disable-rule.js';
import type { DisableRule } from '../domain/limits.js';
import type { AttemptRecord, WebhookRecord } from '../domain/webhook.js';
import { endpointDisabledEvent, EventsTx } from './events.js';
import { RegistryTx, type EndpointHealth } from './registry.js';

/** How an attempt ended, as the dispatcher records it. */
export interface AttemptResult {
  deliveryId: string;
  leaseToken: string;
  attempt: AttemptRecord;
  /** Where the delivery goes: again at `nextAttemptAt`, or final. */
  next: { status: 'PENDING'; at: Date } | { status: 'SUCCEEDED' | 'DEAD_LETTERED'; at: Date };
  succeeded: boolean;
  /** Disable the endpoint with this reason now (410). */
  disableReason?: string;
  /** Disable after `failures` failed attempts in a row spanning `forMs` (0 = never). */
  disableRule: DisableRule;
  /** Attempts each delivery of the endpoint.disabled event gets. */
  maxAttempts: number;
}

export interface RecordedOutcome {
  /** False when the lease no longer held: the delivery was cancelled, or another replica took it. */
  recorded: boolean;
  /** The endpoint after this outcome disabled it. */
  disabled?: WebhookRecord;
}

/** Records the outcome in the transaction `sql`; see DeliveryQueue.recordAttempt. */
export async function recordOutcome(sql: Sql, r: AttemptResult, webhookId: string, now: Date): Promise<RecordedOutcome> {
  const registry = new RegistryTx(sql);
  // Endpoint first, then delivery: every writer locks in this order, so none deadlock. A success
  // on an endpoint with no failure streak changes nothing on the endpoint, so it reads the row
  // without locking it: otherwise every outcome to one endpoint would queue on that lock through
  // its COMMIT. (A failure recorded meanwhile keeps its streak until the next success resets it.)
  const peek = r.succeeded ? await registry.health(webhookId, false) : undefined;
  const ep = peek !== undefined && peek.consecutiveFailures === 0 ? peek : await registry.health(webhookId, true);
  if (!(await finishUnderLease(sql, r))) return { recorded: false };
  if (!ep || ep.state !== 'ENABLED') return { recorded: true };
  if (r.succeeded) {
    if (ep.consecutiveFailures > 0) await registry.resetFailureStreak(webhookId);
    return { recorded: true };
  }
  return recordFailure(sql, registry, r, webhookId, ep, now);
}

/**
 * Ends the attempt under its lease: the delivery's next state and the attempt in its history.
 * False, and nothing written, when the lease no longer holds.
 */
async function finishUnderLease(sql: Sql, r: AttemptResult): Promise<boolean> {
  const { rowCount } = await sql.query(
    `UPDATE webhooks.deliveries SET status = $3, next_attempt_at = $4, completed_at = $5, lease_token = NULL, lease_expires_at = NULL
      WHERE delivery_id = $1 AND lease_token = $2 AND status = 'PENDING'`,
    [r.deliveryId, r.leaseToken, r.next.status, r.next.status === 'PENDING' ? r.next.at : null, r.next.status === 'PENDING' ? null : r.next.at],
  );
  if (rowCount === 0) return false;
  const a = r.attempt;
  await sql.query(
    `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [r.deliveryId, a.attemptNumber, a.startedAt, a.latencyMs, a.responseStatus, a.error, a.responseBodyExcerpt],
  );
  return true;
}

/** A failed attempt of an enabled endpoint, whose row this transaction holds: a longer streak, or a disable. */
async function recordFailure(sql: Sql, registry: RegistryTx, r: AttemptResult, webhookId: string, ep: EndpointHealth, now: Date): Promise<RecordedOutcome> {
  const streak = { failures: ep.consecutiveFailures, sinceMs: ep.failingSince?.getTime() ?? null };
  const next = afterFailure(r.disableRule, streak, r.attempt.startedAt.getTime(), now.getTime(), r.disableReason);
  const since = new Date(next.sinceMs);
  if (!next.disableReason) {
    await registry.setFailureStreak(webhookId, next.failures, since);
    return { recorded: true };
  }
  const disabled = await registry.disable(webhookId, next.disableReason, next.failures, since, now);
  // The owner hears of it through its other endpoints, in this same transaction: no disable
  // goes unannounced, and none is announced that did not commit. One event per disable.
  const events = new EventsTx(sql);
  const event = endpointDisabledEvent(disabled, next.disableReason, now);
  await events.insertEvents([event], now);
  await events.fanOut([event], r.maxAttempts, now);
  return { recorded: true, disabled };
}
