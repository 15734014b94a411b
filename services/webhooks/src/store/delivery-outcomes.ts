// The outcome transaction of the delivery queue (DeliveryQueue.recordAttempts): a batch of attempts,
// each with its delivery's next state, written only while its lease holds, and the failure streaks
// of their endpoints, which may disable one (domain/disable-rule.ts). A disable is a registry
// change and publishes a webhook.endpoint.disabled event to the owner, all in the same transaction.
//
// One transaction for many attempts (many endpoints), in a fixed number of statements whatever the
// batch: read the endpoints' health, lock those whose streak changes, finish the deliveries and
// insert the attempts (one statement, which also tells delivery watches), write the streaks. Only a
// disable (rare) costs statements of its own.
import type { Sql } from '@gantry/kit';
import { afterFailure, type FailureStreak } from '../domain/disable-rule.js';
import type { DisableRule } from '../domain/limits.js';
import type { AttemptRecord, WebhookRecord } from '../domain/webhook.js';
import { endpointDisabledEvent, EventsTx } from './events.js';
import { RegistryTx, type EndpointHealth } from './registry.js';
import { DELIVERY_CHANNEL } from './sql.js';

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

/** An attempt's result and the endpoint it went to. */
export interface EndpointAttemptResult extends AttemptResult {
  webhookId: string;
}

export interface RecordedOutcome {
  /** False when the lease no longer held: the delivery was cancelled, or another replica took it. */
  recorded: boolean;
  /** The endpoint after this outcome disabled it. */
  disabled?: WebhookRecord;
}

/**
 * Deliveries one NOTIFY names at most: a payload must stay under PostgreSQL's 8000 bytes, and an id
 * is at most 128 characters (LIMITS.maxIdChars) plus the attempt number.
 */
const DELIVERIES_PER_NOTICE = 50;

/** Records the outcomes in the transaction `sql`, one result per outcome in order; see DeliveryQueue.recordAttempts. */
export async function recordOutcomes(sql: Sql, results: readonly EndpointAttemptResult[], now: Date): Promise<RecordedOutcome[]> {
  if (results.length === 0) return [];
  const registry = new RegistryTx(sql);
  // Endpoints first, then deliveries: every writer locks in this order (and endpoints in id order),
  // so none deadlock. An endpoint that only had successes and has no failure streak changes
  // nothing, so it is read without a lock: otherwise every outcome to one endpoint would queue on
  // that lock through its COMMIT. (A failure recorded meanwhile keeps its streak until the next
  // success resets it.)
  const ids = [...new Set(results.map((r) => r.webhookId))];
  const peek = await registry.healthOf(ids, false);
  const failing = new Set(results.filter((r) => !r.succeeded).map((r) => r.webhookId));
  const toLock = ids.filter((id) => failing.has(id) || (peek.get(id)?.consecutiveFailures ?? 0) > 0);
  const locked = toLock.length > 0 ? await registry.healthOf(toLock, true) : new Map<string, EndpointHealth>();
  const recorded = await finishUnderLease(sql, results);
  const outcomes: RecordedOutcome[] = results.map((r) => ({ recorded: recorded.has(r.deliveryId) }));
  const streaks: { id: string; failures: number; since: Date | null }[] = [];
  for (const [id, ep] of locked) {
    if (ep.state !== 'ENABLED') continue;
    const mine = results.flatMap((r, i) => (r.webhookId === id && recorded.has(r.deliveryId) ? [i] : []));
    const after = await foldStreak(sql, registry, results, mine, outcomes, id, ep, now);
    if (after) streaks.push(after);
  }
  await registry.setFailureStreaks(streaks);
  return outcomes;
}

/**
 * The endpoint's streak after its recorded outcomes in this batch, in the order they finished: a
 * success ends it, a failure lengthens it or disables the endpoint (then the rest of its outcomes
 * no longer count, as when they were recorded after the disable). Returns the streak to write, or
 * undefined when there is nothing to write (unchanged, or written by the disable).
 */
async function foldStreak(
  sql: Sql,
  registry: RegistryTx,
  results: readonly EndpointAttemptResult[],
  mine: readonly number[],
  outcomes: RecordedOutcome[],
  webhookId: string,
  ep: EndpointHealth,
  now: Date,
): Promise<{ id: string; failures: number; since: Date | null } | undefined> {
  let streak: FailureStreak = { failures: ep.consecutiveFailures, sinceMs: ep.failingSince?.getTime() ?? null };
  for (const i of mine) {
    const r = results[i]!;
    if (r.succeeded) {
      streak = { failures: 0, sinceMs: null };
      continue;
    }
    const next = afterFailure(r.disableRule, streak, r.attempt.startedAt.getTime(), now.getTime(), r.disableReason);
    if (next.disableReason) {
      outcomes[i] = { recorded: true, disabled: await disable(sql, registry, r, webhookId, next.disableReason, next.failures, new Date(next.sinceMs), now) };
      return undefined;
    }
    streak = { failures: next.failures, sinceMs: next.sinceMs };
  }
  const unchanged = streak.failures === ep.consecutiveFailures && streak.sinceMs === (ep.failingSince?.getTime() ?? null);
  return unchanged ? undefined : { id: webhookId, failures: streak.failures, since: streak.sinceMs === null ? null : new Date(streak.sinceMs) };
}

/**
 * Ends each attempt under its lease, in one statement: the delivery's next state, the attempt in
 * its history, and a NOTIFY per DELIVERIES_PER_NOTICE deliveries for delivery watches (sent at
 * COMMIT, so no watch hears of an outcome that did not commit); every attempt's lease row goes.
 * Returns the deliveries whose lease still held; nothing else is written for the others.
 */
async function finishUnderLease(sql: Sql, results: readonly EndpointAttemptResult[]): Promise<Set<string>> {
  const final = (r: AttemptResult) => r.next.status !== 'PENDING';
  const { rows } = await sql.query(
    `WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::timestamptz[], $8::int[], $9::int[], $10::text[], $11::text[], $12::text[])
                  WITH ORDINALITY AS r(id, token, status, next_at, completed_at, n, started_at, latency_ms, response_status, error, excerpt, webhook_id, ord)),
     u AS (UPDATE webhooks.deliveries d SET status = r.status, next_attempt_at = r.next_at, completed_at = r.completed_at, lease_token = NULL, lease_expires_at = NULL
             FROM r WHERE d.delivery_id = r.id AND d.lease_token = r.token AND d.status = 'PENDING'
           RETURNING d.delivery_id),
     -- The attempt is over whether or not its lease still held: its lease row (if any is left) counts no longer.
     freed AS (DELETE FROM webhooks.leases l USING r WHERE l.webhook_id = r.webhook_id AND l.lease_token = r.token),
     a AS (INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt)
           SELECT r.id, r.n, r.started_at, r.latency_ms, r.response_status, r.error, r.excerpt FROM r JOIN u ON u.delivery_id = r.id),
     notices AS (SELECT pg_notify('${DELIVERY_CHANNEL}', string_agg(x.id || ' ' || x.n, E'\\n' ORDER BY x.ord))
                   FROM (SELECT r.id, r.n, r.ord, (row_number() OVER (ORDER BY r.ord) - 1) / ${DELIVERIES_PER_NOTICE} AS chunk FROM r JOIN u ON u.delivery_id = r.id) x
                  GROUP BY x.chunk)
     SELECT u.delivery_id, (SELECT count(*) FROM notices) AS notices FROM u`,
    [
      results.map((r) => r.deliveryId),
      results.map((r) => r.leaseToken),
      results.map((r) => r.next.status),
      results.map((r) => (final(r) ? null : r.next.at)),
      results.map((r) => (final(r) ? r.next.at : null)),
      results.map((r) => r.attempt.attemptNumber),
      results.map((r) => r.attempt.startedAt),
      results.map((r) => r.attempt.latencyMs),
      results.map((r) => r.attempt.responseStatus),
      results.map((r) => r.attempt.error),
      results.map((r) => r.attempt.responseBodyExcerpt),
      results.map((r) => r.webhookId),
    ],
    // The plan must probe deliveries by key. A generic plan made while the queue was empty walked
    // the whole deliveries_leased index (dropped by migration 004) for each batch instead (18-37 ms per batch in benchmarks on
    // a fresh database, until autovacuum's ANALYZE); one plan per batch costs about 0.1 ms.
    { planEachCall: true },
  );
  return new Set(rows.map((row) => row.delivery_id as string));
}

/** Disables an enabled endpoint whose row this transaction holds, and tells its owner. */
async function disable(sql: Sql, registry: RegistryTx, r: AttemptResult, webhookId: string, reason: string, failures: number, since: Date, now: Date): Promise<WebhookRecord> {
  const disabled = await registry.disable(webhookId, reason, failures, since, now);
  // The owner hears of it through its other endpoints, in this same transaction: no disable
  // goes unannounced, and none is announced that did not commit. One event per disable.
  const events = new EventsTx(sql);
  const event = endpointDisabledEvent(disabled, reason, now);
  await events.publish([event], r.maxAttempts, now);
  return disabled;
}
