import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { loadMigrations, type Database, type Sql } from '@gantry/kit';
import { webhookToJson, type AttemptRecord, type DeliveryRecord, type DeliveryState, type EndpointState, type RegistryChangeType, type Spec, type WebhookRecord } from '../domain/webhook.js';
import type { SealedSecret } from '../domain/secret-box.js';

export const WEBHOOKS_SCHEMA = 'webhooks';
export const webhooksMigrations = loadMigrations(fileURLToPath(new URL('./migrations', import.meta.url)));

/** NOTIFY channels: registry changes, and deliveries queued (dispatchers look again). Payloads are hints. */
export const REGISTRY_CHANNEL = 'webhooks_registry';
export const QUEUED_CHANNEL = 'webhooks_queued';
/** Payload: `<delivery_id> <attempt_number or 0>`: an attempt completed or a delivery changed state. */
export const DELIVERY_CHANNEL = 'webhooks_deliveries';

type Row = Record<string, unknown>;
const big = (v: unknown): bigint => BigInt(v as string | number | bigint);
const date = (v: unknown): Date => (v instanceof Date ? v : new Date(v as string));
const optDate = (v: unknown): Date | null => (v === null || v === undefined ? null : date(v));
const json = <T>(v: unknown): T => (typeof v === 'string' ? JSON.parse(v) : v) as T;

const ENDPOINT_COLUMNS = `webhook_id, created_version, version, owner, external_id, url, event_types, headers, description, paused,
  rate_limit_per_second, max_concurrency, labels, state, disabled_reason, consecutive_failures, secret_rotated_at,
  previous_expires_at, created_at, updated_at`;

function toWebhook(r: Row): WebhookRecord {
  return {
    id: r.webhook_id as string,
    owner: r.owner as string,
    externalId: (r.external_id as string | null) ?? '',
    spec: {
      url: r.url as string,
      eventTypes: r.event_types as string[],
      headers: json(r.headers),
      description: r.description as string,
      paused: r.paused as boolean,
      rateLimitPerSecond: Number(r.rate_limit_per_second),
      maxConcurrency: Number(r.max_concurrency),
      labels: json(r.labels),
    },
    state: r.state as EndpointState,
    disabledReason: r.disabled_reason as string,
    consecutiveFailures: Number(r.consecutive_failures),
    secretRotatedAt: date(r.secret_rotated_at),
    previousSecretExpiresAt: optDate(r.previous_expires_at),
    version: big(r.version),
    createdVersion: big(r.created_version),
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
  };
}

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

export interface NewWebhook {
  id: string;
  owner: string;
  externalId: string;
  spec: Spec;
  secret: SealedSecret;
  at: Date;
}

export interface ListQuery {
  owner: string;
  /** Wire status filter: '' = every status but DELETED. */
  status: '' | 'ACTIVE' | 'PAUSED' | 'DISABLED' | 'DELETED';
  externalId: string;
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

/** Published to the owner's endpoints (those subscribed to it) when the service disables one of theirs. */
export const ENDPOINT_DISABLED_EVENT = 'webhook.endpoint.disabled';

export interface EventRow {
  eventId: string;
  eventType: string;
  owner: string;
  payload: Buffer;
  contentType: string;
  digest: Buffer;
  occurredAt: Date | null;
  traceContext: Record<string, string>;
}

/** The webhooks service's SQL. Every statement names the `webhooks` schema. */
export class WebhooksStore {
  constructor(readonly db: Database) {}

  async transaction<T>(fn: (tx: WebhooksTx) => Promise<T>): Promise<T> {
    return this.db.transaction((sql) => fn(new WebhooksTx(sql)));
  }

  async headVersion(): Promise<bigint> {
    const { rows } = await this.db.query(`SELECT version FROM webhooks.head`);
    return big(rows[0]!.version);
  }

  async webhook(id: string): Promise<WebhookRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE webhook_id = $1`, [id]);
    return rows[0] ? toWebhook(rows[0]) : undefined;
  }

  /** A page of webhooks, oldest first, after `afterCreatedVersion`, with the head read in the same snapshot. */
  async list(q: ListQuery, afterCreatedVersion: bigint, limit: number): Promise<{ head: bigint; webhooks: WebhookRecord[] }> {
    const { rows } = await this.db.query(
      `WITH h AS (SELECT version AS head FROM webhooks.head)
       SELECT h.head, page.* FROM h LEFT JOIN LATERAL (
         SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints e
          WHERE ($1 = '' OR e.owner = $1)
            AND ($3 = '' OR e.external_id = $3)
            AND (CASE WHEN $2 = '' THEN e.state <> 'DELETED'
                      WHEN $2 = 'ACTIVE' THEN e.state = 'ENABLED' AND NOT e.paused
                      WHEN $2 = 'PAUSED' THEN e.state = 'ENABLED' AND e.paused
                      ELSE e.state = $2 END)
            AND e.created_version > $4
          ORDER BY e.created_version LIMIT $5) page ON true
        ORDER BY page.created_version`,
      [q.owner, q.status, q.externalId, afterCreatedVersion.toString(), limit],
    );
    return { head: big(rows[0]!.head), webhooks: rows.filter((r) => r.webhook_id !== null).map(toWebhook) };
  }

  /** Registry changes with version > `after` (of one owner unless ''), oldest first, with the head and oldest retained version. */
  async changesAfter(after: bigint, limit: number, owner: string): Promise<{ changes: { version: bigint; type: RegistryChangeType; owner: string; webhook: unknown }[]; head: bigint; oldestRetained: bigint }> {
    const { rows } = await this.db.query(
      `WITH h AS (SELECT version AS head, (SELECT min(version) FROM webhooks.registry_changes) AS oldest FROM webhooks.head)
       SELECT h.head, h.oldest, c.version, c.type, c.owner, c.webhook FROM h LEFT JOIN LATERAL (
         SELECT version, type, owner, webhook FROM webhooks.registry_changes WHERE version > $1 AND ($3 = '' OR owner = $3) ORDER BY version LIMIT $2) c ON true
        ORDER BY c.version`,
      [after.toString(), limit, owner],
    );
    const head = big(rows[0]!.head);
    const oldestRetained = rows[0]!.oldest === null ? head + 1n : big(rows[0]!.oldest);
    const changes = rows.filter((r) => r.version !== null).map((r) => ({ version: big(r.version), type: r.type as RegistryChangeType, owner: r.owner as string, webhook: json(r.webhook) }));
    return { changes, head, oldestRetained };
  }

  async event(eventId: string): Promise<EventRow | undefined> {
    const { rows } = await this.db.query(`SELECT event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context FROM webhooks.events WHERE event_id = $1`, [eventId]);
    const r = rows[0];
    if (!r) return undefined;
    return {
      eventId: r.event_id as string,
      eventType: r.event_type as string,
      owner: r.owner as string,
      payload: Buffer.from(r.payload as Uint8Array),
      contentType: r.content_type as string,
      digest: Buffer.from(r.digest as Uint8Array),
      occurredAt: optDate(r.occurred_at),
      traceContext: json(r.trace_context),
    };
  }

  async delivery(id: string): Promise<DeliveryRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE delivery_id = $1`, [id]);
    if (!rows[0]) return undefined;
    const [d] = await attachAttempts(this.db, [toDelivery(rows[0])]);
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
      // Endpoint first, then delivery: every writer locks in this order, so none deadlock. A success
      // on an endpoint with no failure streak changes nothing on the endpoint, so it reads the row
      // without locking it: otherwise every outcome to one endpoint would queue on that lock through
      // its COMMIT. (A failure recorded meanwhile keeps its streak until the next success resets it.)
      const { rows: peek } = r.succeeded ? await sql.query(`SELECT ${ENDPOINT_COLUMNS}, failing_since FROM webhooks.endpoints WHERE webhook_id = $1`, [webhookId]) : { rows: [] };
      const unlocked = r.succeeded && peek[0] !== undefined && Number(peek[0].consecutive_failures) === 0;
      const { rows: eps } = unlocked ? { rows: peek } : await sql.query(`SELECT ${ENDPOINT_COLUMNS}, failing_since FROM webhooks.endpoints WHERE webhook_id = $1 FOR UPDATE`, [webhookId]);
      const { rowCount } = await sql.query(
        `UPDATE webhooks.deliveries SET status = $3, next_attempt_at = $4, completed_at = $5, lease_token = NULL, lease_expires_at = NULL
          WHERE delivery_id = $1 AND lease_token = $2 AND status = 'PENDING'`,
        [r.deliveryId, r.leaseToken, r.next.status, r.next.status === 'PENDING' ? r.next.at : null, r.next.status === 'PENDING' ? null : r.next.at],
      );
      if (rowCount === 0) return { recorded: false };
      const a = r.attempt;
      await sql.query(
        `INSERT INTO webhooks.attempts (delivery_id, attempt_number, started_at, latency_ms, response_status, error, response_body_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [r.deliveryId, a.attemptNumber, a.startedAt, a.latencyMs, a.responseStatus, a.error, a.responseBodyExcerpt],
      );
      const ep = eps[0];
      if (!ep || ep.state !== 'ENABLED') return { recorded: true };
      if (r.succeeded) {
        if (Number(ep.consecutive_failures) > 0) await sql.query(`UPDATE webhooks.endpoints SET consecutive_failures = 0, failing_since = NULL WHERE webhook_id = $1`, [webhookId]);
        return { recorded: true };
      }
      const failures = Number(ep.consecutive_failures) + 1;
      const since = optDate(ep.failing_since) ?? a.startedAt;
      const rule = r.disableRule;
      const reason =
        r.disableReason ??
        (rule.failures > 0 && failures >= rule.failures && now.getTime() - since.getTime() >= rule.forMs
          ? `${failures} attempts in a row failed over ${Math.round((now.getTime() - since.getTime()) / 60_000)} minutes`
          : undefined);
      if (!reason) {
        await sql.query(`UPDATE webhooks.endpoints SET consecutive_failures = $2, failing_since = $3 WHERE webhook_id = $1`, [webhookId, failures, since]);
        return { recorded: true };
      }
      const tx = new WebhooksTx(sql);
      const version = await tx.nextVersion();
      const { rows } = await sql.query(
        `UPDATE webhooks.endpoints SET state = 'DISABLED', disabled_reason = $2, consecutive_failures = $3, failing_since = $4, version = $5, updated_at = $6
          WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
        [webhookId, reason, failures, since, version.toString(), now],
      );
      const disabled = toWebhook(rows[0]!);
      await tx.recordChange(disabled, 'UPDATED', now);
      // The owner hears of it through its other endpoints, in this same transaction: no disable
      // goes unannounced, and none is announced that did not commit. One event per disable.
      const eventId = `evt_disabled_${webhookId}_${version}`;
      const payload = Buffer.from(JSON.stringify({ type: ENDPOINT_DISABLED_EVENT, timestamp: now.toISOString(), data: { webhook_id: webhookId, url: disabled.spec.url, reason } }));
      const digest = createHash('sha256').update(payload).digest();
      const event = { eventId, eventType: ENDPOINT_DISABLED_EVENT, owner: disabled.owner, payload, contentType: 'application/json', digest, occurredAt: now, traceContext: {} };
      await tx.insertEvents([event], now);
      await tx.fanOut([event], r.maxAttempts, now);
      return { recorded: true, disabled };
    });
  }

  /** Statistics of one webhook's deliveries created since `since`. */
  async statistics(webhookId: string, since: Date): Promise<Row> {
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
    return rows[0]!;
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

  /** Ids of webhooks `owner` has (deleted ones too: their history stays readable), at most `limit`. */
  async webhookIdsOf(owner: string, limit: number): Promise<string[]> {
    const { rows } = await this.db.query(`SELECT webhook_id FROM webhooks.endpoints WHERE owner = $1 ORDER BY created_version LIMIT $2`, [owner, limit]);
    return rows.map((r) => r.webhook_id as string);
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

/** The statements of one registry or publish transaction. */
export class WebhooksTx {
  constructor(private readonly sql: Sql) {}

  /** Takes the next registry version (the head's row lock orders commits by version). */
  async nextVersion(): Promise<bigint> {
    const { rows } = await this.sql.query(`UPDATE webhooks.head SET version = version + 1 RETURNING version`);
    return big(rows[0]!.version);
  }

  /** Appends the change to the history and tells watchers (NOTIFY is sent at commit). */
  async recordChange(w: WebhookRecord, type: RegistryChangeType, at: Date): Promise<void> {
    await this.sql.query(
      `INSERT INTO webhooks.registry_changes (version, webhook_id, owner, type, webhook, at) VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
      [w.version.toString(), w.id, w.owner, type, JSON.stringify(webhookToJson(w)), at],
    );
    await this.sql.query(`SELECT pg_notify('${REGISTRY_CHANNEL}', $1)`, [w.version.toString()]);
  }

  async lock(id: string): Promise<WebhookRecord | undefined> {
    const { rows } = await this.sql.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE webhook_id = $1 FOR UPDATE`, [id]);
    return rows[0] ? toWebhook(rows[0]) : undefined;
  }

  async byExternalId(owner: string, externalId: string): Promise<WebhookRecord | undefined> {
    const { rows } = await this.sql.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE owner = $1 AND external_id = $2 AND state <> 'DELETED'`, [owner, externalId]);
    return rows[0] ? toWebhook(rows[0]) : undefined;
  }

  async countOwned(owner: string): Promise<number> {
    const { rows } = await this.sql.query(`SELECT count(*) AS n FROM webhooks.endpoints WHERE owner = $1 AND state <> 'DELETED'`, [owner]);
    return Number(rows[0]!.n);
  }

  async insert(w: NewWebhook): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const s = w.spec;
    const { rows } = await this.sql.query(
      `INSERT INTO webhooks.endpoints (webhook_id, created_version, version, owner, external_id, url, event_types, headers, description, paused,
         rate_limit_per_second, max_concurrency, labels, state, secret_key_id, secret_ciphertext, secret_rotated_at, created_at, updated_at)
       VALUES ($1, $2, $2, $3, $4, $5, $6::text[], $7::jsonb, $8, $9, $10, $11, $12::jsonb, 'ENABLED', $13, $14, $15, $15, $15)
       RETURNING ${ENDPOINT_COLUMNS}`,
      [w.id, version.toString(), w.owner, w.externalId === '' ? null : w.externalId, s.url, s.eventTypes, JSON.stringify(s.headers), s.description, s.paused,
        s.rateLimitPerSecond, s.maxConcurrency, JSON.stringify(s.labels), w.secret.keyId, w.secret.ciphertext, w.at],
    );
    const created = toWebhook(rows[0]!);
    await this.recordChange(created, 'CREATED', w.at);
    return created;
  }

  /** Writes a new spec (and, with `reenable`, ENABLED with a clean failure streak) as one change. */
  async update(id: string, spec: Spec, reenable: boolean, at: Date): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const { rows } = await this.sql.query(
      `UPDATE webhooks.endpoints SET url = $2, event_types = $3::text[], headers = $4::jsonb, description = $5, paused = $6, rate_limit_per_second = $7,
              max_concurrency = $8, labels = $9::jsonb, version = $10, updated_at = $11,
              state = CASE WHEN $12 THEN 'ENABLED' ELSE state END,
              disabled_reason = CASE WHEN $12 THEN '' ELSE disabled_reason END,
              consecutive_failures = CASE WHEN $12 THEN 0 ELSE consecutive_failures END,
              failing_since = CASE WHEN $12 THEN NULL ELSE failing_since END
        WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
      [id, spec.url, spec.eventTypes, JSON.stringify(spec.headers), spec.description, spec.paused, spec.rateLimitPerSecond, spec.maxConcurrency, JSON.stringify(spec.labels),
        version.toString(), at, reenable],
    );
    const updated = toWebhook(rows[0]!);
    await this.recordChange(updated, 'UPDATED', at);
    if (reenable || !spec.paused) await this.sql.query(`SELECT pg_notify('${QUEUED_CHANNEL}', '')`);
    return updated;
  }

  /** Marks the webhook DELETED and cancels its pending deliveries; returns it and the cancelled delivery ids. */
  async delete(id: string, at: Date): Promise<{ webhook: WebhookRecord; cancelled: string[] }> {
    const version = await this.nextVersion();
    const { rows } = await this.sql.query(`UPDATE webhooks.endpoints SET state = 'DELETED', version = $2, updated_at = $3 WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`, [id, version.toString(), at]);
    const webhook = toWebhook(rows[0]!);
    await this.recordChange(webhook, 'DELETED', at);
    const { rows: cancelled } = await this.sql.query(
      `UPDATE webhooks.deliveries SET status = 'CANCELLED', next_attempt_at = NULL, completed_at = $2, lease_token = NULL, lease_expires_at = NULL
        WHERE webhook_id = $1 AND status = 'PENDING' RETURNING delivery_id`,
      [id, at],
    );
    return { webhook, cancelled: cancelled.map((r) => r.delivery_id as string) };
  }

  /** Stores a new current secret; the old one becomes previous until `previousExpiresAt` (null: dropped now). */
  async rotate(id: string, secret: SealedSecret, previousExpiresAt: Date | null, at: Date): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const { rows } = await this.sql.query(
      `UPDATE webhooks.endpoints SET
              previous_key_id = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret_key_id END,
              previous_ciphertext = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret_ciphertext END,
              previous_expires_at = $4, secret_key_id = $2, secret_ciphertext = $3, secret_rotated_at = $5, version = $6, updated_at = $5
        WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
      [id, secret.keyId, secret.ciphertext, previousExpiresAt, at, version.toString()],
    );
    const rotated = toWebhook(rows[0]!);
    await this.recordChange(rotated, 'SECRET_ROTATED', at);
    return rotated;
  }

  /**
   * Stores the events whose ids are new, in one statement whatever their number (array parameters
   * keep its text, and so its prepared statement, the same); returns the ids it stored. Rows go in
   * event id order, so two batches sharing ids wait on each other in one order and never deadlock.
   */
  async insertEvents(events: readonly EventRow[], at: Date): Promise<Set<string>> {
    const { rows } = await this.sql.query(
      `INSERT INTO webhooks.events (event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, created_at)
       SELECT e.event_id, e.event_type, e.owner, e.payload, e.content_type, e.digest, e.occurred_at, e.trace_context::jsonb, $9
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bytea[], $7::timestamptz[], $8::text[])
              AS e(event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context)
        ORDER BY e.event_id
       ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
      [
        events.map((e) => e.eventId), events.map((e) => e.eventType), events.map((e) => e.owner), events.map((e) => e.payload),
        events.map((e) => e.contentType), events.map((e) => e.digest), events.map((e) => e.occurredAt), events.map((e) => JSON.stringify(e.traceContext)), at,
      ],
    );
    return new Set(rows.map((r) => r.event_id as string));
  }

  /** Events stored before: each one's digest and the delivery ids it was fanned out to, oldest first. */
  async publishedBefore(eventIds: readonly string[]): Promise<Map<string, { digest: Buffer; deliveryIds: string[] }>> {
    const { rows } = await this.sql.query(
      `SELECT ev.event_id, ev.digest,
              ARRAY(SELECT d.delivery_id FROM webhooks.deliveries d WHERE d.event_id = ev.event_id ORDER BY d.seq) AS delivery_ids
         FROM webhooks.events ev WHERE ev.event_id = ANY($1::text[])`,
      [eventIds],
    );
    return new Map(rows.map((r) => [r.event_id as string, { digest: Buffer.from(r.digest as Uint8Array), deliveryIds: r.delivery_ids as string[] }]));
  }

  /**
   * One PENDING delivery of each event per enabled endpoint (of the event's owner unless '')
   * subscribed to its type or to "*", due at `at`, in one statement whatever the number of events.
   * Returns each event's delivery ids, oldest endpoint first (events without any are absent).
   */
  async fanOut(events: readonly Pick<EventRow, 'eventId' | 'eventType' | 'owner'>[], maxAttempts: number, at: Date): Promise<Map<string, string[]>> {
    const { rows } = await this.sql.query(
      `WITH ev AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS ev(event_id, event_type, owner, ord)),
       ep AS (SELECT webhook_id, owner, event_types, created_version FROM webhooks.endpoints
               WHERE state = 'ENABLED' AND event_types && $6::text[]),
       ins AS (INSERT INTO webhooks.deliveries (delivery_id, webhook_id, event_id, event_type, status, max_attempts, next_attempt_at, created_at)
               SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), ep.webhook_id, ev.event_id, ev.event_type, 'PENDING', $4, $5, $5
                 FROM ev JOIN ep ON (ev.owner = '' OR ep.owner = ev.owner) AND (ev.event_type = ANY(ep.event_types) OR '*' = ANY(ep.event_types))
                ORDER BY ev.ord, ep.created_version
               RETURNING delivery_id, event_id, seq)
       SELECT event_id, array_agg(delivery_id ORDER BY seq) AS delivery_ids, pg_notify('${QUEUED_CHANNEL}', '') AS notified FROM ins GROUP BY event_id`,
      // The endpoints are narrowed first by the distinct types (an overlap test with a few elements, not hundreds).
      [events.map((e) => e.eventId), events.map((e) => e.eventType), events.map((e) => e.owner), maxAttempts, at, [...new Set(events.map((e) => e.eventType)), '*']],
    );
    return new Map(rows.map((r) => [r.event_id as string, r.delivery_ids as string[]]));
  }

  /** One test delivery to one endpoint, paused or not. */
  async insertTestDelivery(deliveryId: string, webhookId: string, eventId: string, eventType: string, maxAttempts: number, at: Date): Promise<void> {
    await this.sql.query(
      `INSERT INTO webhooks.deliveries (delivery_id, webhook_id, event_id, event_type, status, max_attempts, next_attempt_at, created_at, ignore_pause)
       VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $6, true)`,
      [deliveryId, webhookId, eventId, eventType, maxAttempts, at],
    );
    await this.sql.query(`SELECT pg_notify('${QUEUED_CHANNEL}', '')`);
  }
}
