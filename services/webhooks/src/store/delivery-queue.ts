// The delivery queue (webhooks.deliveries, webhooks.attempts): claims under leases
// (delivery-claims.ts), outcomes recorded while the lease holds (delivery-outcomes.ts), replays of
// dead letters, and what the history and statistics read. Fan-out into the queue is publishing's
// (events.ts).
import { one, oneOrNone, type Database, type Sql } from '@gantry/kit';
import type { AttemptRecord, DeliveryRecord, DeliveryState } from '../domain/webhook.js';
import { claimDue, type ClaimedAttempt, type ClaimLimits } from './delivery-claims.js';
import { recordOutcomes, type AttemptResult, type EndpointAttemptResult, type RecordedOutcome } from './delivery-outcomes.js';
import { DELIVERY_CHANNEL, QUEUED_CHANNEL, big, date, optDate, type Row } from './sql.js';

const DELIVERY_COLUMNS = `delivery_id, seq, webhook_id, event_id, event_type, status, max_attempts, next_attempt_at, created_at, completed_at`;

function toDelivery(r: Row): DeliveryRecord {
  return {
    id: r.delivery_id as string,
    seq: big(r.seq),
    webhookId: r.webhook_id as string,
    eventId: r.event_id as string,
    eventType: r.event_type as string,
    status: r.status as DeliveryState,
    attempts: [],
    maxAttempts: Number(r.max_attempts),
    nextAttemptAt: optDate(r.next_attempt_at),
    createdAt: date(r.created_at),
    completedAt: optDate(r.completed_at),
  };
}

const toAttempt = (r: Row): AttemptRecord => ({
  attemptNumber: Number(r.attempt_number),
  startedAt: date(r.started_at),
  latencyMs: Number(r.latency_ms),
  responseStatus: Number(r.response_status),
  error: r.error as string,
  responseBodyExcerpt: r.response_body_excerpt as string,
});

/** Fills in each delivery's attempts, oldest first. */
async function attachAttempts(sql: Sql, deliveries: DeliveryRecord[]): Promise<DeliveryRecord[]> {
  if (deliveries.length === 0) return deliveries;
  const { rows } = await sql.query(
    `SELECT delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt
       FROM webhooks.attempts WHERE delivery_id = ANY($1::text[]) ORDER BY delivery_id, attempt_number`,
    [deliveries.map((d) => d.id)],
  );
  const byId = new Map(deliveries.map((d) => [d.id, d]));
  for (const r of rows) byId.get(r.delivery_id as string)!.attempts.push(toAttempt(r));
  return deliveries;
}

/** One webhook's deliveries created in a window, and their attempts: what GetWebhookStatistics reports. */
export interface DeliveryStatistics {
  total: bigint;
  succeeded: bigint;
  deadLettered: bigint;
  pending: bigint;
  attempts: bigint;
  /** Attempts without a 2xx answer (timeouts and refusals too). */
  failedAttempts: bigint;
  /** Attempt latency percentiles; 0 without attempts. */
  latencyP50Ms: number;
  latencyP99Ms: number;
  lastSuccessAt: Date | null;
  lastFailureAt: Date | null;
}

/** The statistics row as the store reads it (counts as bigint strings or numbers, an empty window's aggregates as null). */
function toStatistics(r: Row): DeliveryStatistics {
  const count = (v: unknown) => big(v ?? 0);
  return {
    total: count(r.total),
    succeeded: count(r.succeeded),
    deadLettered: count(r.dead),
    pending: count(r.pending),
    attempts: count(r.attempts),
    failedAttempts: count(r.failed),
    latencyP50Ms: Number(r.p50 ?? 0),
    latencyP99Ms: Number(r.p99 ?? 0),
    lastSuccessAt: optDate(r.last_success),
    lastFailureAt: optDate(r.last_failure),
  };
}

/** The queue's reads, its own transactions (claims, outcomes) and replays. */
export class DeliveryQueue {
  constructor(private readonly db: Database) {}

  /** Deliveries still PENDING (due, or waiting for a retry): what the `deliveries_due` partial index holds. */
  async countPending(): Promise<bigint> {
    const { rows } = await this.db.query<{ n: bigint }>(`SELECT count(*)::int8 AS n FROM webhooks.deliveries WHERE status = 'PENDING'`);
    return rows[0]!.n;
  }

  async delivery(id: string): Promise<DeliveryRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE delivery_id = $1`, [id]);
    const r = oneOrNone(rows, 'delivery by id');
    if (!r) return undefined;
    const [d] = await attachAttempts(this.db, [toDelivery(r)]);
    return d;
  }

  /**
   * Claims due deliveries for one attempt each, in one short transaction that never waits, each
   * under a lease on the database clock (delivery-claims.ts says how replicas split the work and
   * what each endpoint allows). Returns the claimed attempts and the deliveries dead-lettered by a
   * lost last attempt. `answered` names the leases of this replica's attempts that have their HTTP
   * answer but not yet a committed outcome: they no longer count toward their endpoints' concurrency.
   */
  async claim(now: Date, limits: ClaimLimits, newToken: () => string, answered: readonly string[] = []): Promise<{ claimed: ClaimedAttempt[]; deadLettered: string[] }> {
    return this.db.transaction((sql) => claimDue(sql, now, limits, newToken, answered));
  }

  /**
   * Records an attempt's outcome while its lease holds (recorded: false when it no longer does:
   * the delivery was cancelled, or the lease expired and another replica took it). Updates the
   * endpoint's failure streak and disables it on a 410 or when the streak meets the rule; returns
   * the endpoint after the change when its registry state changed.
   */
  async recordAttempt(r: AttemptResult, webhookId: string, now: Date): Promise<RecordedOutcome> {
    const [out] = await this.recordAttempts([{ ...r, webhookId }], now);
    return out!;
  }

  /** recordAttempt for many attempts (of any endpoints) in one transaction; one outcome per result, in order. */
  async recordAttempts(results: readonly EndpointAttemptResult[], now: Date): Promise<RecordedOutcome[]> {
    return this.db.transaction((sql) => recordOutcomes(sql, results, now));
  }

  /** Tells delivery watches on every replica that the delivery changed: attempt `attemptNumber` completed, or (0) its state changed without one. */
  async announce(deliveryId: string, attemptNumber: number): Promise<void> {
    await this.db.notify(DELIVERY_CHANNEL, `${deliveryId} ${attemptNumber}`);
  }

  /** Statistics of one webhook's deliveries created since `since`. */
  async statistics(webhookId: string, since: Date): Promise<DeliveryStatistics> {
    const { rows } = await this.db.query(
      `WITH d AS (SELECT delivery_id, status FROM webhooks.deliveries WHERE webhook_id = $1 AND created_at >= $2),
       a AS (SELECT a.response_status, a.latency_ms, a.started_at FROM webhooks.attempts a JOIN d USING (delivery_id))
       SELECT (SELECT count(*) FROM d) AS total,
              (SELECT count(*) FROM d WHERE status = 'SUCCEEDED') AS succeeded,
              (SELECT count(*) FROM d WHERE status = 'DEAD_LETTERED') AS dead,
              (SELECT count(*) FROM d WHERE status = 'PENDING') AS pending,
              (SELECT count(*) FROM a) AS attempts,
              (SELECT count(*) FROM a WHERE response_status NOT BETWEEN 200 AND 299) AS failed,
              (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM a) AS p50,
              (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) FROM a) AS p99,
              (SELECT max(started_at) FROM a WHERE response_status BETWEEN 200 AND 299) AS last_success,
              (SELECT max(started_at) FROM a WHERE response_status NOT BETWEEN 200 AND 299) AS last_failure`,
      [webhookId, since],
    );
    return toStatistics(one(rows, 'delivery statistics'));
  }

  /** A page of deliveries, newest first, with attempts. */
  async history(q: { webhookIds: string[]; eventId: string; status: string; since: Date | null }, beforeSeq: bigint | null, limit: number): Promise<DeliveryRecord[]> {
    const { rows } = await this.db.query(
      `SELECT ${DELIVERY_COLUMNS} FROM webhooks.deliveries
        WHERE webhook_id = ANY($1::text[]) AND ($2 = '' OR event_id = $2) AND ($3 = '' OR status = $3)
          AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::bigint IS NULL OR seq < $5)
        ORDER BY seq DESC LIMIT $6`,
      [q.webhookIds, q.eventId, q.status, q.since, beforeSeq?.toString() ?? null, limit],
    );
    return attachAttempts(this.db, rows.map(toDelivery));
  }

  /**
   * Puts dead letters back in the queue with a fresh round of attempts: one delivery, or a
   * webhook's dead letters completed at or after `since` (at most `limit`). Returns their ids.
   */
  async requeue(sel: { deliveryId: string } | { webhookId: string; since: Date }, now: Date, maxAttempts: number, limit: number): Promise<string[]> {
    const byOne = 'deliveryId' in sel;
    const { rows } = await this.db.query(
      `WITH t AS (SELECT delivery_id FROM webhooks.deliveries
                   WHERE status = 'DEAD_LETTERED' AND (CASE WHEN $1 THEN delivery_id = $2 ELSE webhook_id = $2 AND completed_at >= $3 END)
                   ORDER BY completed_at LIMIT $4 FOR UPDATE)
       UPDATE webhooks.deliveries d SET status = 'PENDING', round_start = d.attempts, max_attempts = $5, next_attempt_at = $6, completed_at = NULL
         FROM t WHERE d.delivery_id = t.delivery_id
       RETURNING d.delivery_id, pg_notify('${QUEUED_CHANNEL}', '') AS notified`,
      [byOne, byOne ? sel.deliveryId : sel.webhookId, byOne ? now : sel.since, limit, maxAttempts, now],
    );
    return rows.map((r) => r.delivery_id as string);
  }
}

/** The queue statements of a transaction across aggregates (WebhooksStore.transaction: a delete). */
export class QueueTx {
  constructor(private readonly sql: Sql) {}

  /** Cancels the webhook's pending deliveries (it was deleted); returns their ids. */
  async cancelPending(webhookId: string, at: Date): Promise<string[]> {
    const { rows } = await this.sql.query(
      `UPDATE webhooks.deliveries SET status = 'CANCELLED', next_attempt_at = NULL, completed_at = $2, lease_token = NULL, lease_expires_at = NULL
        WHERE webhook_id = $1 AND status = 'PENDING' RETURNING delivery_id`,
      [webhookId, at],
    );
    // After the deliveries, as every writer locks them: an outcome of the same delivery committing meanwhile takes them in that order too.
    await this.sql.query(`DELETE FROM webhooks.leases WHERE webhook_id = $1`, [webhookId]);
    return rows.map((r) => r.delivery_id as string);
  }
}
