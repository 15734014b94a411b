// The endpoint registry: webhooks.endpoints, its change history (webhooks.registry_changes) and the
// service-wide version counter (webhooks.head). Every registry change takes the next version inside
// its transaction and appends itself to the history, so watches can resume from any version.
import { one, oneOrNone, type Database, type Sql } from '@gantry/kit';
import { headerNamesOnly, webhookToJson, type EndpointState, type RegistryChangeType, type Spec, type WebhookRecord } from '../domain/webhook.js';
import type { SealedSecret } from '../domain/secret-box.js';
import { QUEUED_CHANNEL, REGISTRY_CHANNEL, big, date, first, json, optDate, type Row } from './sql.js';

const ENDPOINT_COLUMNS = `webhook_id, created_version, version, owner, external_id, url, event_types, headers, description, paused,
  rate_limit_per_second, max_concurrency, labels, state, disabled_reason, consecutive_failures, secret_rotated_at,
  previous_expires_at, created_at, updated_at, families, internal_approved`;

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
    families: r.families as string[],
    internalApproved: r.internal_approved === true,
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

export interface NewWebhook {
  id: string;
  owner: string;
  externalId: string;
  /** With the header values, which are stored only in `headers`. */
  spec: Spec;
  families: string[];
  internalApproved: boolean;
  secret: SealedSecret;
  /** The header values, sealed; null without headers. */
  headers: SealedSecret | null;
  at: Date;
}

/** What an update writes besides the spec: the entitlements it decided, and the sealed headers unless they stay as they are. */
export interface SpecChange {
  /** With the header values when `headers` is set; the names are taken from it then. */
  spec: Spec;
  families: string[];
  internalApproved: boolean;
  headers: { sealed: SealedSecret | null } | 'unchanged';
}

export interface ListQuery {
  owner: string;
  /** Wire status filter: '' = every status but DELETED. */
  status: '' | 'ACTIVE' | 'PAUSED' | 'DISABLED' | 'DELETED';
  externalId: string;
}

/** One change of the registry history, the webhook still as the JSON it was stored as. */
export interface RegistryChange {
  version: bigint;
  type: RegistryChangeType;
  owner: string;
  webhook: unknown;
}

/** What the failure rule reads of an endpoint when an attempt's outcome is recorded. */
export interface EndpointHealth {
  state: EndpointState;
  consecutiveFailures: number;
  /** When the current streak of failed attempts began; null without one. */
  failingSince: Date | null;
}

/** Reads of the registry outside any transaction. */
export class EndpointRegistry {
  constructor(private readonly db: Database) {}

  async headVersion(): Promise<bigint> {
    const { rows } = await this.db.query(`SELECT version FROM webhooks.head`);
    return big(one(rows, 'webhooks.head').version);
  }

  async webhook(id: string): Promise<WebhookRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE webhook_id = $1`, [id]);
    const r = oneOrNone(rows, 'webhook by id');
    return r ? toWebhook(r) : undefined;
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
    return { head: big(first(rows, 'webhook list with its head').head), webhooks: rows.filter((r) => r.webhook_id !== null).map(toWebhook) };
  }

  /** Registry changes with version > `after` (of one owner unless ''), oldest first, with the head and oldest retained version. */
  async changesAfter(after: bigint, limit: number, owner: string): Promise<{ changes: RegistryChange[]; head: bigint; oldestRetained: bigint }> {
    const { rows } = await this.db.query(
      `WITH h AS (SELECT version AS head, (SELECT min(version) FROM webhooks.registry_changes) AS oldest FROM webhooks.head)
       SELECT h.head, h.oldest, c.version, c.type, c.owner, c.webhook FROM h LEFT JOIN LATERAL (
         SELECT version, type, owner, webhook FROM webhooks.registry_changes WHERE version > $1 AND ($3 = '' OR owner = $3) ORDER BY version LIMIT $2) c ON true
        ORDER BY c.version`,
      [after.toString(), limit, owner],
    );
    const h = first(rows, 'registry changes with their head');
    const head = big(h.head);
    const oldestRetained = h.oldest === null ? head + 1n : big(h.oldest);
    const changes = rows.filter((r) => r.version !== null).map((r) => ({ version: big(r.version), type: r.type as RegistryChangeType, owner: r.owner as string, webhook: json(r.webhook) }));
    return { changes, head, oldestRetained };
  }

  /** Ids of webhooks `owner` has (deleted ones too: their history stays readable), at most `limit`. */
  async webhookIdsOf(owner: string, limit: number): Promise<string[]> {
    const { rows } = await this.db.query(`SELECT webhook_id FROM webhooks.endpoints WHERE owner = $1 ORDER BY created_version LIMIT $2`, [owner, limit]);
    return rows.map((r) => r.webhook_id as string);
  }
}

/** The registry statements of one transaction. */
export class RegistryTx {
  constructor(private readonly sql: Sql) {}

  /** Takes the next registry version (the head's row lock orders commits by version). */
  async nextVersion(): Promise<bigint> {
    const { rows } = await this.sql.query(`UPDATE webhooks.head SET version = version + 1 RETURNING version`);
    return big(one(rows, 'webhooks.head').version);
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
    const r = oneOrNone(rows, 'webhook locked by id');
    return r ? toWebhook(r) : undefined;
  }

  async byExternalId(owner: string, externalId: string): Promise<WebhookRecord | undefined> {
    const { rows } = await this.sql.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE owner = $1 AND external_id = $2 AND state <> 'DELETED'`, [owner, externalId]);
    const r = oneOrNone(rows, 'webhook by owner and external_id');
    return r ? toWebhook(r) : undefined;
  }

  async countOwned(owner: string): Promise<number> {
    const { rows } = await this.sql.query(`SELECT count(*) AS n FROM webhooks.endpoints WHERE owner = $1 AND state <> 'DELETED'`, [owner]);
    return Number(one(rows, 'count of owned webhooks').n);
  }

  async insert(w: NewWebhook): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const s = w.spec;
    const { rows } = await this.sql.query(
      `INSERT INTO webhooks.endpoints (webhook_id, created_version, version, owner, external_id, url, event_types, headers, description, paused,
         rate_limit_per_second, max_concurrency, labels, state, secret_key_id, secret_ciphertext, secret_rotated_at, created_at, updated_at,
         families, internal_approved, headers_key_id, headers_ciphertext)
       VALUES ($1, $2, $2, $3, $4, $5, $6::text[], $7::jsonb, $8, $9, $10, $11, $12::jsonb, 'ENABLED', $13, $14, $15, $15, $15, $16::text[], $17, $18, $19)
       RETURNING ${ENDPOINT_COLUMNS}`,
      [w.id, version.toString(), w.owner, w.externalId === '' ? null : w.externalId, s.url, s.eventTypes, JSON.stringify(headerNamesOnly(s.headers)), s.description, s.paused,
        s.rateLimitPerSecond, s.maxConcurrency, JSON.stringify(s.labels), w.secret.keyId, w.secret.ciphertext, w.at,
        w.families, w.internalApproved, w.headers?.keyId ?? null, w.headers?.ciphertext ?? null],
    );
    const created = toWebhook(one(rows, 'inserted webhook'));
    await this.recordChange(created, 'CREATED', w.at);
    return created;
  }

  /** Writes a new spec (and, with `reenable`, ENABLED with a clean failure streak) as one change. */
  async update(id: string, change: SpecChange, reenable: boolean, at: Date): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const spec = change.spec;
    const newHeaders = change.headers !== 'unchanged';
    const sealed = change.headers === 'unchanged' ? null : change.headers.sealed;
    const { rows } = await this.sql.query(
      `UPDATE webhooks.endpoints SET url = $2, event_types = $3::text[], description = $5, paused = $6, rate_limit_per_second = $7,
              max_concurrency = $8, labels = $9::jsonb, version = $10, updated_at = $11,
              state = CASE WHEN $12 THEN 'ENABLED' ELSE state END,
              disabled_reason = CASE WHEN $12 THEN '' ELSE disabled_reason END,
              consecutive_failures = CASE WHEN $12 THEN 0 ELSE consecutive_failures END,
              failing_since = CASE WHEN $12 THEN NULL ELSE failing_since END,
              families = $13::text[], internal_approved = $14,
              headers = CASE WHEN $15 THEN $4::jsonb ELSE headers END,
              headers_key_id = CASE WHEN $15 THEN $16 ELSE headers_key_id END,
              headers_ciphertext = CASE WHEN $15 THEN $17::bytea ELSE headers_ciphertext END
        WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
      [id, spec.url, spec.eventTypes, JSON.stringify(headerNamesOnly(spec.headers)), spec.description, spec.paused, spec.rateLimitPerSecond, spec.maxConcurrency, JSON.stringify(spec.labels),
        version.toString(), at, reenable, change.families, change.internalApproved, newHeaders, sealed?.keyId ?? null, sealed?.ciphertext ?? null],
    );
    const updated = toWebhook(one(rows, 'updated webhook'));
    await this.recordChange(updated, 'UPDATED', at);
    if (reenable || !spec.paused) await this.sql.query(`SELECT pg_notify('${QUEUED_CHANNEL}', '')`);
    return updated;
  }

  /** Marks the webhook DELETED (its pending deliveries are the queue's to cancel, in the same transaction). */
  async delete(id: string, at: Date): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const { rows } = await this.sql.query(`UPDATE webhooks.endpoints SET state = 'DELETED', version = $2, updated_at = $3 WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`, [id, version.toString(), at]);
    const webhook = toWebhook(one(rows, 'deleted webhook'));
    await this.recordChange(webhook, 'DELETED', at);
    return webhook;
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
    const rotated = toWebhook(one(rows, 'webhook with a rotated secret'));
    await this.recordChange(rotated, 'SECRET_ROTATED', at);
    return rotated;
  }

  /**
   * Up to `limit` endpoints whose header values are still stored in the clear (written before they
   * were sealed), locked unless another replica is sealing them: their id and headers.
   */
  async plaintextHeaders(limit: number): Promise<{ id: string; headers: Record<string, string> }[]> {
    const { rows } = await this.sql.query(
      `SELECT webhook_id, headers FROM webhooks.endpoints
        WHERE headers_ciphertext IS NULL AND EXISTS (SELECT 1 FROM jsonb_each_text(headers) h WHERE h.value <> '')
        ORDER BY webhook_id LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [limit],
    );
    return rows.map((r) => ({ id: r.webhook_id as string, headers: json(r.headers) }));
  }

  /** Stores an endpoint's sealed header values and keeps only the names in the clear (not a registry change). */
  async sealHeaders(id: string, names: Record<string, string>, sealed: SealedSecret): Promise<void> {
    await this.sql.query(`UPDATE webhooks.endpoints SET headers = $2::jsonb, headers_key_id = $3, headers_ciphertext = $4 WHERE webhook_id = $1`, [id, JSON.stringify(names), sealed.keyId, sealed.ciphertext]);
  }

  /**
   * The health of each endpoint in `ids`, locked or not; locks are taken in id order, so writers
   * never deadlock. FOR NO KEY UPDATE: it must not wait for publishes queueing deliveries to the
   * endpoint (their foreign key holds KEY SHARE), only for other writers of the row.
   */
  async healthOf(ids: readonly string[], lock: boolean): Promise<Map<string, EndpointHealth>> {
    const { rows } = await this.sql.query(
      `SELECT webhook_id, state, consecutive_failures, failing_since FROM webhooks.endpoints WHERE webhook_id = ANY($1::text[]) ORDER BY webhook_id${lock ? ' FOR NO KEY UPDATE' : ''}`,
      [[...ids].sort()],
    );
    return new Map(rows.map((r) => [r.webhook_id as string, { state: r.state as EndpointState, consecutiveFailures: Number(r.consecutive_failures), failingSince: optDate(r.failing_since) }]));
  }

  /** Sets the failure streaks of several endpoints in one statement (0 and null: no streak); bookkeeping, not a registry change: no version. */
  async setFailureStreaks(streaks: readonly { id: string; failures: number; since: Date | null }[]): Promise<void> {
    if (streaks.length === 0) return;
    await this.sql.query(
      `UPDATE webhooks.endpoints e SET consecutive_failures = s.failures, failing_since = s.since
         FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS s(id, failures, since) WHERE e.webhook_id = s.id`,
      [streaks.map((s) => s.id), streaks.map((s) => s.failures), streaks.map((s) => s.since)],
    );
  }

  /** Disables the endpoint with `reason` and the streak that led to it, as one registry change (UPDATED). */
  async disable(id: string, reason: string, failures: number, since: Date, at: Date): Promise<WebhookRecord> {
    const version = await this.nextVersion();
    const { rows } = await this.sql.query(
      `UPDATE webhooks.endpoints SET state = 'DISABLED', disabled_reason = $2, consecutive_failures = $3, failing_since = $4, version = $5, updated_at = $6
        WHERE webhook_id = $1 RETURNING ${ENDPOINT_COLUMNS}`,
      [id, reason, failures, since, version.toString(), at],
    );
    const disabled = toWebhook(one(rows, 'disabled webhook'));
    await this.recordChange(disabled, 'UPDATED', at);
    return disabled;
  }
}
