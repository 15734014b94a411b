// The delivery queue (webhooks.deliveries, webhooks.attempts): claims under leases, outcomes
// recorded while the lease holds, replays of dead letters, and what the history and statistics
// read. Fan-out into the queue is publishing's (events.ts).
import { one, oneOrNone, type Database, type Sql } from '@gantry/kit';
import type { AttemptRecord, DeliveryRecord, DeliveryState, WebhookRecord } from '../domain/webhook.js';
import type { SealedSecret } from '../domain/secret-box.js';
import { endpointDisabledEvent, EventsTx } from './events.js';
import { RegistryTx } from './registry.js';
import { DELIVERY_CHANNEL, QUEUED_CHANNEL, big, date, json, optDate, type Row } from './sql.js';

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

/** A delivery claimed for one attempt: what the dispatcher needs to send it. */
export interface ClaimedAttempt {
  deliveryId: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  attemptNumber: number;
  attemptsInRound: number;
  leaseToken: string;
  url: string;
  headers: Record<string, string>;
  payload: Buffer;
  contentType: string;
  /** W3C trace context of what caused the event (traceparent, tracestate), or {}. */
  traceContext: Record<string, string>;
  secrets: { current: SealedSecret; previous: (SealedSecret & { expiresAt: Date }) | null };
}

export interface ClaimLimits {
  /** Endpoints one claim considers at most. */
  endpoints: number;
  /** Deliveries one claim takes at most. */
  batch: number;
  defaultMaxConcurrency: number;
  defaultRateLimitPerSecond: number;
  /** How long the lease lasts, on the database clock. */
  leaseMs: number;
}

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
  disableRule: { failures: number; forMs: number };
  /** Attempts each delivery of the endpoint.disabled event gets. */
  maxAttempts: number;
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

  async delivery(id: string): Promise<DeliveryRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE delivery_id = $1`, [id]);
    const r = oneOrNone(rows, 'delivery by id');
    if (!r) return undefined;
    const [d] = await attachAttempts(this.db, [toDelivery(r)]);
    return d;
  }

  /**
   * Claims due deliveries for one attempt each, in one short transaction that never waits:
   * endpoints and deliveries are both taken FOR UPDATE SKIP LOCKED, so replicas claiming at once
   * split the work. Per endpoint it takes at most what its concurrency (leases live on any replica)
   * and rate (a one-second window on the database clock) allow. A delivery whose lease expired
   * (its replica died mid-attempt) gets that attempt recorded as lost and is claimed again, or
   * dead-lettered when it was its last attempt. Returns the claimed attempts and the dead letters.
   */
  async claim(now: Date, limits: ClaimLimits, newToken: () => string): Promise<{ claimed: ClaimedAttempt[]; deadLettered: string[] }> {
    return this.db.transaction(async (sql) => {
      const { rows: endpoints } = await sql.query(
        `SELECT e.webhook_id, e.max_concurrency, e.rate_limit_per_second, e.rate_window_start_ms, e.rate_window_count,
                (SELECT count(*) FROM webhooks.deliveries x WHERE x.webhook_id = e.webhook_id AND x.status = 'PENDING' AND x.lease_expires_at > clock_timestamp()) AS in_flight,
                floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS db_now_ms
           FROM webhooks.endpoints e
          WHERE e.state = 'ENABLED'
            AND EXISTS (SELECT 1 FROM webhooks.deliveries d
                         WHERE d.webhook_id = e.webhook_id AND d.status = 'PENDING' AND d.next_attempt_at <= $1
                           AND (NOT e.paused OR d.ignore_pause) AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp()))
          ORDER BY e.last_claimed_at NULLS FIRST, e.webhook_id
          LIMIT $2 FOR UPDATE OF e SKIP LOCKED`,
        [now, limits.endpoints],
      );
      if (endpoints.length === 0) return { claimed: [], deadLettered: [] };
      const ids: string[] = [];
      const allowances: number[] = [];
      const windows: number[] = [];
      const counts: number[] = [];
      let budget = limits.batch;
      for (const e of endpoints) {
        if (budget === 0) break;
        const dbNowMs = Number(e.db_now_ms);
        const windowStart = Math.floor(dbNowMs / 1000) * 1000;
        const used = Number(e.rate_window_start_ms) === windowStart ? Number(e.rate_window_count) : 0;
        const rate = Number(e.rate_limit_per_second) || limits.defaultRateLimitPerSecond;
        const concurrency = Number(e.max_concurrency) || limits.defaultMaxConcurrency;
        const n = Math.min(budget, concurrency - Number(e.in_flight), rate - used);
        if (n <= 0) continue;
        ids.push(e.webhook_id as string);
        allowances.push(n);
        windows.push(windowStart);
        counts.push(used);
        budget -= n;
      }
      if (ids.length === 0) return { claimed: [], deadLettered: [] };
      const { rows: picked } = await sql.query(
        `SELECT d.delivery_id, d.lease_token IS NOT NULL AS lost, d.attempts, d.round_start, d.max_attempts, d.lease_expires_at
           FROM unnest($1::text[], $2::int[]) AS a(webhook_id, n)
           JOIN webhooks.endpoints e ON e.webhook_id = a.webhook_id
           CROSS JOIN LATERAL (
             SELECT delivery_id, lease_token, attempts, round_start, max_attempts, lease_expires_at FROM webhooks.deliveries d
              WHERE d.webhook_id = a.webhook_id AND d.status = 'PENDING' AND d.next_attempt_at <= $3
                AND (NOT e.paused OR d.ignore_pause) AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
              ORDER BY d.next_attempt_at LIMIT a.n FOR UPDATE OF d SKIP LOCKED) d`,
        [ids, allowances, now],
      );
      // Attempts whose replica died: recorded as lost, so the history shows them.
      const lost = picked.filter((p) => p.lost === true);
      if (lost.length > 0) {
        await sql.query(
          `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt)
           SELECT id, n, at, 0, 0, 'the replica making this attempt stopped before recording its outcome (lease expired); retried', '' FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS l(id, n, at)
           ON CONFLICT DO NOTHING`,
          [lost.map((p) => p.delivery_id), lost.map((p) => Number(p.attempts)), lost.map(() => now)],
        );
      }
      const exhausted = lost.filter((p) => Number(p.attempts) - Number(p.round_start) >= Number(p.max_attempts)).map((p) => p.delivery_id as string);
      if (exhausted.length > 0) {
        await sql.query(
          `UPDATE webhooks.deliveries SET status = 'DEAD_LETTERED', completed_at = $2, next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL
            WHERE delivery_id = ANY($1::text[])`,
          [exhausted, now],
        );
      }
      const exhaustedSet = new Set(exhausted);
      const toSend = picked.filter((p) => !exhaustedSet.has(p.delivery_id as string)).map((p) => p.delivery_id as string);
      const tokens = toSend.map(() => newToken());
      const { rows: claimed } = await sql.query(
        `WITH c AS (SELECT * FROM unnest($1::text[], $2::text[]) AS c(id, token)),
         upd AS (UPDATE webhooks.deliveries d SET attempts = d.attempts + 1, lease_token = c.token,
                        lease_expires_at = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
                   FROM c WHERE d.delivery_id = c.id
                 RETURNING d.delivery_id, d.webhook_id, d.event_id, d.event_type, d.attempts, d.round_start, d.lease_token)
         SELECT upd.*, e.url, e.headers, e.secret_key_id, e.secret_ciphertext, e.previous_key_id, e.previous_ciphertext, e.previous_expires_at,
                ev.payload, ev.content_type, ev.trace_context
           FROM upd JOIN webhooks.endpoints e ON e.webhook_id = upd.webhook_id JOIN webhooks.events ev ON ev.event_id = upd.event_id`,
        [toSend, tokens, limits.leaseMs],
      );
      // Each endpoint's rate window counts what was taken from it now.
      const taken = new Map<string, number>();
      for (const c of claimed) taken.set(c.webhook_id as string, (taken.get(c.webhook_id as string) ?? 0) + 1);
      await sql.query(
        `UPDATE webhooks.endpoints e SET rate_window_start_ms = w.start_ms, rate_window_count = w.used + w.taken, last_claimed_at = $5
           FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[]) AS w(id, start_ms, used, taken) WHERE e.webhook_id = w.id`,
        [ids, windows.map(String), counts, ids.map((id) => taken.get(id) ?? 0), now],
      );
      return {
        deadLettered: exhausted,
        claimed: claimed.map((c) => ({
          deliveryId: c.delivery_id as string,
          webhookId: c.webhook_id as string,
          eventId: c.event_id as string,
          eventType: c.event_type as string,
          attemptNumber: Number(c.attempts),
          attemptsInRound: Number(c.attempts) - Number(c.round_start),
          leaseToken: c.lease_token as string,
          url: c.url as string,
          headers: json(c.headers),
          payload: Buffer.from(c.payload as Uint8Array),
          contentType: c.content_type as string,
          traceContext: json(c.trace_context),
          secrets: {
            current: { keyId: c.secret_key_id as string, ciphertext: Buffer.from(c.secret_ciphertext as Uint8Array) },
            previous: c.previous_ciphertext
              ? { keyId: c.previous_key_id as string, ciphertext: Buffer.from(c.previous_ciphertext as Uint8Array), expiresAt: date(c.previous_expires_at) }
              : null,
          },
        })),
      };
    });
  }

  /**
   * Records an attempt's outcome while its lease holds (false when it no longer does: the delivery
   * was cancelled, or the lease expired and another replica took it). Updates the endpoint's
   * failure streak and disables it on a 410 or when the streak meets the rule; returns the endpoint
   * after the change when its registry state changed.
   */
  async recordAttempt(r: AttemptResult, webhookId: string, now: Date): Promise<{ recorded: boolean; disabled?: WebhookRecord }> {
    return this.db.transaction(async (sql) => {
      const registry = new RegistryTx(sql);
      // Endpoint first, then delivery: every writer locks in this order, so none deadlock. A success
      // on an endpoint with no failure streak changes nothing on the endpoint, so it reads the row
      // without locking it: otherwise every outcome to one endpoint would queue on that lock through
      // its COMMIT. (A failure recorded meanwhile keeps its streak until the next success resets it.)
      const peek = r.succeeded ? await registry.health(webhookId, false) : undefined;
      const ep = peek !== undefined && peek.consecutiveFailures === 0 ? peek : await registry.health(webhookId, true);
      if (!(await recordOutcome(sql, r))) return { recorded: false };
      if (!ep || ep.state !== 'ENABLED') return { recorded: true };
      if (r.succeeded) {
        if (ep.consecutiveFailures > 0) await registry.resetFailureStreak(webhookId);
        return { recorded: true };
      }
      const failures = ep.consecutiveFailures + 1;
      const since = ep.failingSince ?? r.attempt.startedAt;
      const rule = r.disableRule;
      const reason =
        r.disableReason ??
        (rule.failures > 0 && failures >= rule.failures && now.getTime() - since.getTime() >= rule.forMs
          ? `${failures} attempts in a row failed over ${Math.round((now.getTime() - since.getTime()) / 60_000)} minutes`
          : undefined);
      if (!reason) {
        await registry.setFailureStreak(webhookId, failures, since);
        return { recorded: true };
      }
      const disabled = await registry.disable(webhookId, reason, failures, since, now);
      // The owner hears of it through its other endpoints, in this same transaction: no disable
      // goes unannounced, and none is announced that did not commit. One event per disable.
      const events = new EventsTx(sql);
      const event = endpointDisabledEvent(disabled, reason, now);
      await events.insertEvents([event], now);
      await events.fanOut([event], r.maxAttempts, now);
      return { recorded: true, disabled };
    });
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

/**
 * Ends the attempt under its lease: the delivery's next state and the attempt in its history.
 * False, and nothing written, when the lease no longer holds.
 */
async function recordOutcome(sql: Sql, r: AttemptResult): Promise<boolean> {
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

/** The queue statements of a transaction the registry began (a delete). */
export class QueueTx {
  constructor(private readonly sql: Sql) {}

  /** Cancels the webhook's pending deliveries (it was deleted); returns their ids. */
  async cancelPending(webhookId: string, at: Date): Promise<string[]> {
    const { rows } = await this.sql.query(
      `UPDATE webhooks.deliveries SET status = 'CANCELLED', next_attempt_at = NULL, completed_at = $2, lease_token = NULL, lease_expires_at = NULL
        WHERE webhook_id = $1 AND status = 'PENDING' RETURNING delivery_id`,
      [webhookId, at],
    );
    return rows.map((r) => r.delivery_id as string);
  }
}
