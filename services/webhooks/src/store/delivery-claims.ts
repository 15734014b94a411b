// The claim transaction of the delivery queue (DeliveryQueue.claim): one short transaction that
// never waits. Endpoints (FOR NO KEY UPDATE: a publish that is queueing deliveries holds a KEY SHARE
// lock on their endpoint through its foreign key, which FOR UPDATE would skip, so claims under load
// found every endpoint "locked") and deliveries are taken SKIP LOCKED, so replicas claiming
// at once split the work. Per endpoint it takes what the rate allowance (domain/rate-allowance.ts)
// allows. An endpoint's concurrency counts its live leases, less those the claiming replica names as
// answered: their HTTP requests are done and their outcomes wait for a group commit, and their
// leases still keep their deliveries from being claimed again. A delivery whose lease expired (its replica died mid-attempt) gets that attempt recorded
// as lost and is claimed again, or dead-lettered when it was its round's last.
import type { Sql } from '@gantry/kit';
import { allocateClaim, concurrencyLimit, type Allowance, type EndpointLoad } from '../domain/rate-allowance.js';
import { attemptsInRound, lostAttemptEndsRound } from '../domain/retry.js';
import type { SealedSecret } from '../domain/secret-box.js';
import { date, json, type Row } from './sql.js';

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
  /** The endpoint's owner and whether its internal target was approved: which allow-list entries apply. */
  owner: string;
  internalApproved: boolean;
  /** The extra request headers, sealed (null without any); `legacyHeaders` holds values stored before they were sealed. */
  sealedHeaders: SealedSecret | null;
  legacyHeaders: Record<string, string>;
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

/** A due delivery the claim holds, with its attempt counters. */
interface Picked {
  deliveryId: string;
  /** It still had a lease (expired): its last attempt was lost. */
  lost: boolean;
  attempts: number;
  roundStart: number;
  maxAttempts: number;
}

/**
 * Claims due deliveries for one attempt each; returns the claimed attempts and the deliveries
 * dead-lettered by a lost last attempt. `answered`: lease tokens of this replica's attempts that
 * have their HTTP answer but not yet a committed outcome, left out of their endpoints' concurrency.
 * Two statements in the common case (read the endpoints, then pick, lease and charge in one); a
 * lost attempt (rare: a replica died mid-attempt) costs statements of its own.
 */
export async function claimDue(sql: Sql, now: Date, limits: ClaimLimits, newToken: () => string, answered: readonly string[] = []): Promise<{ claimed: ClaimedAttempt[]; deadLettered: string[] }> {
  const loads = await claimableEndpoints(sql, now, limits.endpoints, limits.batch, answered);
  const allowances = allocateClaim(loads, limits);
  if (allowances.length === 0) return { claimed: [], deadLettered: [] };
  const concurrency = new Map(loads.map((l) => [l.webhookId, concurrencyLimit(l, limits)]));
  const { claimed, lost } = await pickAndLease(sql, allowances, (id) => concurrency.get(id)!, answered, now, newToken, limits.leaseMs);
  if (lost.length === 0) return { claimed, deadLettered: [] };
  const deadLettered = await settleLostAttempts(sql, lost, now);
  const dead = new Set(deadLettered);
  const retried = await lease(sql, lost.filter((p) => !dead.has(p.deliveryId)).map((p) => p.deliveryId), newToken, limits.leaseMs);
  await chargeRetried(sql, retried);
  return { claimed: [...claimed, ...retried], deadLettered };
}

/**
 * SQL counting the live leases of the endpoint `webhookId` (a column), less the answered tokens
 * (`answered`, a text[] parameter): what counts toward its max_concurrency. NOT IN a subquery: one
 * hash of the answered tokens (<> ALL of an array compares with each, per lease).
 */
const liveLeases = (webhookId: string, answered: string) => `(SELECT count(*) FROM webhooks.leases l
              WHERE l.webhook_id = ${webhookId} AND l.expires_at > clock_timestamp() AND l.lease_token NOT IN (SELECT unnest(${answered}::text[])))`;

/** Enabled endpoints with a due, unleased delivery, least recently claimed first, locked unless another claim holds them. */
async function claimableEndpoints(sql: Sql, now: Date, limit: number, batch: number, answered: readonly string[]): Promise<EndpointLoad[]> {
  const { rows } = await sql.query(
    `SELECT e.webhook_id, e.max_concurrency, e.rate_limit_per_second, e.rate_window_start_ms, e.rate_window_count,
            ${liveLeases('e.webhook_id', '$4')} AS in_flight,
            due.n AS due,
            floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS db_now_ms
       FROM webhooks.endpoints e
       -- Its due, unleased deliveries, counted up to the batch (an endpoint with few due leaves the rest of the batch to the next
       -- ones), oldest due first so that the plan walks deliveries_due from its start, however many retries wait later in it. A
       -- paused endpoint counts only its test deliveries (deliveries_due_ignoring_pause), without walking its backlog.
       CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
         (SELECT 1 FROM webhooks.deliveries d
           WHERE d.webhook_id = e.webhook_id AND NOT e.paused AND d.status = 'PENDING' AND d.next_attempt_at <= $1
             AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
           ORDER BY d.next_attempt_at LIMIT $3)
         UNION ALL
         (SELECT 1 FROM webhooks.deliveries d
           WHERE d.webhook_id = e.webhook_id AND e.paused AND d.status = 'PENDING' AND d.ignore_pause AND d.next_attempt_at <= $1
             AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
           ORDER BY d.next_attempt_at LIMIT $3)) due_rows) due
      WHERE e.state = 'ENABLED' AND due.n > 0
      ORDER BY e.last_claimed_at NULLS FIRST, e.webhook_id
      LIMIT $2 FOR NO KEY UPDATE OF e SKIP LOCKED`,
    [now, limit, batch, answered],
  );
  return rows.map((e) => ({
    webhookId: e.webhook_id as string,
    maxConcurrency: Number(e.max_concurrency),
    rateLimitPerSecond: Number(e.rate_limit_per_second),
    windowStartMs: Number(e.rate_window_start_ms),
    windowCount: Number(e.rate_window_count),
    inFlight: Number(e.in_flight),
    due: Number(e.due),
    dbNowMs: Number(e.db_now_ms),
  }));
}

/** The columns a claimed attempt needs, of the leased delivery (`upd`), its endpoint (`e`) and its event (`ev`). */
const ATTEMPT_COLUMNS = `upd.delivery_id, upd.webhook_id, upd.event_id, upd.event_type, upd.attempts, upd.round_start, upd.lease_token,
  e.url, e.owner, e.internal_approved, e.headers, e.headers_key_id, e.headers_ciphertext, e.secret_key_id, e.secret_ciphertext, e.previous_key_id, e.previous_ciphertext, e.previous_expires_at,
  ev.payload, ev.content_type, ev.trace_context`;

/**
 * The lease rows (webhooks.leases, what the claim counts in flight) of the leases a CTE `upd` took:
 * the delivery row's lease columns are in no index, so its update can be HOT (migration 004).
 */
const INSERT_LEASES = `INSERT INTO webhooks.leases (webhook_id, lease_token, delivery_id, expires_at)
       SELECT upd.webhook_id, upd.lease_token, upd.delivery_id, upd.lease_expires_at FROM upd`;

/**
 * In one statement: each endpoint's due deliveries, oldest due first, at most its allowance and at
 * most what its concurrency leaves (counted again here: see below), locked unless another claim
 * holds them; a lease on each that had none (the lost ones, whose lease
 * expired, are returned for settleLostAttempts instead); and each endpoint's rate window charged
 * with what it gave (windowAfterClaim) and moved to the back of the claim order.
 */
async function pickAndLease(
  sql: Sql,
  allowances: readonly Allowance[],
  concurrencyOf: (webhookId: string) => number,
  answered: readonly string[],
  now: Date,
  newToken: () => string,
  leaseMs: number,
): Promise<{ claimed: ClaimedAttempt[]; lost: Picked[] }> {
  const tokens = Array.from({ length: allowances.reduce((n, a) => n + a.take, 0) }, () => newToken());
  // The endpoints' in-flight counts that sized the allowances were read in the statement that locked
  // the endpoints, on a snapshot taken before the lock: a claim of another replica that committed
  // in between (its lock released just before ours was taken) had leases that count missed. This
  // statement's snapshot is newer than our locks, and no claim adds leases to an endpoint we hold,
  // so counting here again is exact: the take is cut to what max_concurrency leaves.
  const { rows } = await sql.query(
    `WITH a AS (SELECT a.webhook_id, a.window_start_ms, a.used,
                       least(a.n, greatest(0, a.concurrency - ${liveLeases('a.webhook_id', '$9')})) AS n
                  FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $8::int[]) AS a(webhook_id, n, window_start_ms, used, concurrency)),
     p AS (SELECT d.delivery_id, d.lease_token IS NOT NULL AS lost, d.attempts, d.round_start, d.max_attempts
             FROM a JOIN webhooks.endpoints e ON e.webhook_id = a.webhook_id
             CROSS JOIN LATERAL (
               SELECT delivery_id, lease_token, attempts, round_start, max_attempts FROM webhooks.deliveries d
                WHERE d.webhook_id = a.webhook_id AND d.status = 'PENDING' AND d.next_attempt_at <= $5
                  AND (NOT e.paused OR d.ignore_pause) AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= clock_timestamp())
                ORDER BY d.next_attempt_at LIMIT a.n FOR UPDATE OF d SKIP LOCKED) d),
     fresh AS (SELECT p.delivery_id, ($6::text[])[row_number() OVER ()] AS token FROM p WHERE NOT p.lost),
     upd AS (UPDATE webhooks.deliveries d SET attempts = d.attempts + 1, lease_token = f.token,
                    lease_expires_at = clock_timestamp() + make_interval(secs => $7::double precision / 1000)
               FROM fresh f WHERE d.delivery_id = f.delivery_id
             RETURNING d.delivery_id, d.webhook_id, d.event_id, d.event_type, d.attempts, d.round_start, d.lease_token, d.lease_expires_at),
     counted AS (${INSERT_LEASES}),
     charged AS (UPDATE webhooks.endpoints e SET rate_window_start_ms = a.window_start_ms, last_claimed_at = $5,
                        rate_window_count = a.used + (SELECT count(*) FROM upd WHERE upd.webhook_id = a.webhook_id)
                   FROM a WHERE e.webhook_id = a.webhook_id)
     SELECT p.lost, p.attempts AS picked_attempts, p.max_attempts, p.round_start AS picked_round_start, p.delivery_id AS picked_id, ${ATTEMPT_COLUMNS}
       FROM p LEFT JOIN (SELECT upd.*, row_number() OVER (PARTITION BY upd.webhook_id) AS endpoint_row, row_number() OVER (PARTITION BY upd.event_id) AS event_row FROM upd) upd
              ON upd.delivery_id = p.delivery_id
       -- Each endpoint's columns, and each event's (the payload), come on one of its rows only: toClaimedAttempts shares them.
       LEFT JOIN webhooks.endpoints e ON e.webhook_id = upd.webhook_id AND upd.endpoint_row = 1
       LEFT JOIN webhooks.events ev ON ev.event_id = upd.event_id AND upd.event_row = 1`,
    [
      allowances.map((a) => a.webhookId),
      allowances.map((a) => a.take),
      allowances.map((a) => String(a.windowStartMs)),
      allowances.map((a) => a.used),
      now,
      tokens,
      leaseMs,
      allowances.map((a) => concurrencyOf(a.webhookId)),
      answered,
    ],
  );
  const lost: Picked[] = [];
  for (const r of rows) {
    if (r.lost === true) lost.push({ deliveryId: r.picked_id as string, lost: true, attempts: Number(r.picked_attempts), roundStart: Number(r.picked_round_start), maxAttempts: Number(r.max_attempts) });
  }
  return { claimed: toClaimedAttempts(rows.filter((r) => r.lost !== true)), lost };
}

/**
 * Records the lost attempts (so the history shows them), drops their expired lease rows, and
 * dead-letters the deliveries whose round they ended; returns those.
 */
async function settleLostAttempts(sql: Sql, picked: readonly Picked[], now: Date): Promise<string[]> {
  const lost = picked.filter((p) => p.lost);
  if (lost.length > 0) {
    // By delivery: rare (a replica died mid-attempt), and the table holds only the leases in flight.
    await sql.query(`DELETE FROM webhooks.leases WHERE delivery_id = ANY($1::text[])`, [lost.map((p) => p.deliveryId)]);
    await sql.query(
      `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt)
       SELECT id, n, at, 0, 0, 'the replica making this attempt stopped before recording its outcome (lease expired); retried', '' FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS l(id, n, at)
       ON CONFLICT DO NOTHING`,
      [lost.map((p) => p.deliveryId), lost.map((p) => p.attempts), lost.map(() => now)],
    );
  }
  const exhausted = lost.filter((p) => lostAttemptEndsRound(p.attempts, p.roundStart, p.maxAttempts)).map((p) => p.deliveryId);
  if (exhausted.length > 0) {
    await sql.query(
      `UPDATE webhooks.deliveries SET status = 'DEAD_LETTERED', completed_at = $2, next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL
        WHERE delivery_id = ANY($1::text[])`,
      [exhausted, now],
    );
  }
  return exhausted;
}

/** Starts an attempt of each delivery (those whose attempt was lost) under a new lease token, expiring `leaseMs` from now on the database clock. */
async function lease(sql: Sql, deliveryIds: readonly string[], newToken: () => string, leaseMs: number): Promise<ClaimedAttempt[]> {
  const tokens = deliveryIds.map(() => newToken());
  const { rows } = await sql.query(
    `WITH c AS (SELECT * FROM unnest($1::text[], $2::text[]) AS c(id, token)),
     upd AS (UPDATE webhooks.deliveries d SET attempts = d.attempts + 1, lease_token = c.token,
                    lease_expires_at = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
               FROM c WHERE d.delivery_id = c.id
             RETURNING d.delivery_id, d.webhook_id, d.event_id, d.event_type, d.attempts, d.round_start, d.lease_token, d.lease_expires_at),
     counted AS (${INSERT_LEASES})
     SELECT ${ATTEMPT_COLUMNS}
       FROM upd JOIN webhooks.endpoints e ON e.webhook_id = upd.webhook_id JOIN webhooks.events ev ON ev.event_id = upd.event_id`,
    [deliveryIds, tokens, leaseMs],
  );
  return toClaimedAttempts(rows);
}

type EndpointPart = Pick<ClaimedAttempt, 'url' | 'owner' | 'internalApproved' | 'sealedHeaders' | 'legacyHeaders' | 'secrets'>;
type EventPart = Pick<ClaimedAttempt, 'payload' | 'contentType' | 'traceContext'>;

/**
 * The attempts of claimed rows; a row may carry its endpoint's and its event's columns or leave
 * them to another row of the same endpoint or event (one decoding, one payload buffer, for all of
 * them: attempts only read them).
 */
function toClaimedAttempts(rows: readonly Row[]): ClaimedAttempt[] {
  const endpoints = new Map<string, EndpointPart>();
  const events = new Map<string, EventPart>();
  for (const r of rows) {
    if (r.url !== null && r.url !== undefined && !endpoints.has(r.webhook_id as string)) endpoints.set(r.webhook_id as string, toEndpointPart(r));
    if (r.payload !== null && r.payload !== undefined && !events.has(r.event_id as string)) events.set(r.event_id as string, toEventPart(r));
  }
  return rows.map((c) => {
    const endpoint = endpoints.get(c.webhook_id as string);
    const event = events.get(c.event_id as string);
    if (!endpoint || !event) throw new Error(`invariant: the claim returned delivery ${String(c.delivery_id)} without its endpoint's or its event's columns on any row`);
    return {
      deliveryId: c.delivery_id as string,
      webhookId: c.webhook_id as string,
      eventId: c.event_id as string,
      eventType: c.event_type as string,
      attemptNumber: Number(c.attempts),
      attemptsInRound: attemptsInRound(Number(c.attempts), Number(c.round_start)),
      leaseToken: c.lease_token as string,
      ...endpoint,
      ...event,
    };
  });
}

function toEndpointPart(c: Row): EndpointPart {
  return {
    url: c.url as string,
    owner: c.owner as string,
    internalApproved: c.internal_approved === true,
    sealedHeaders: c.headers_ciphertext ? { keyId: c.headers_key_id as string, ciphertext: Buffer.from(c.headers_ciphertext as Uint8Array) } : null,
    legacyHeaders: json(c.headers),
    secrets: {
      current: { keyId: c.secret_key_id as string, ciphertext: Buffer.from(c.secret_ciphertext as Uint8Array) },
      previous: c.previous_ciphertext
        ? { keyId: c.previous_key_id as string, ciphertext: Buffer.from(c.previous_ciphertext as Uint8Array), expiresAt: date(c.previous_expires_at) }
        : null,
    },
  };
}

const toEventPart = (c: Row): EventPart => ({ payload: Buffer.from(c.payload as Uint8Array), contentType: c.content_type as string, traceContext: json(c.trace_context) });

/** Each endpoint's rate window also counts the lost deliveries claimed again (pickAndLease charged the others). */
async function chargeRetried(sql: Sql, retried: readonly ClaimedAttempt[]): Promise<void> {
  if (retried.length === 0) return;
  await sql.query(
    `UPDATE webhooks.endpoints e SET rate_window_count = e.rate_window_count + t.n
       FROM (SELECT id, count(*)::int AS n FROM unnest($1::text[]) AS id GROUP BY id) t WHERE e.webhook_id = t.id`,
    [retried.map((c) => c.webhookId)],
  );
}
