// Published events (webhooks.events): stored once per event id (the idempotency key), read back
// when an id repeats, and fanned out into the delivery queue, one PENDING delivery per subscribed
// endpoint. Publishing is always part of a larger transaction (a publish call, a trigger, a disable).
import { createHash } from 'node:crypto';
import type { Sql } from '@gantry/kit';
import type { WebhookRecord } from '../domain/webhook.js';
import { QUEUED_CHANNEL } from './sql.js';

export interface EventRow {
  eventId: string;
  eventType: string;
  /** The owner whose endpoints receive it; '' for a platform family's event. */
  owner: string;
  /** The platform family whose entitled endpoints receive it; '' for an owner's event (domain/families.ts). */
  family: string;
  payload: Buffer;
  contentType: string;
  digest: Buffer;
  occurredAt: Date | null;
  traceContext: Record<string, string>;
}

/** Published to the owner's endpoints (those subscribed to it) when the service disables one of theirs. */
export const ENDPOINT_DISABLED_EVENT = 'webhook.endpoint.disabled';

/** The event announcing that `disabled` was disabled for `reason`: one per disable, its id named by the registry version. */
export function endpointDisabledEvent(disabled: WebhookRecord, reason: string, at: Date): EventRow {
  const eventId = `evt_disabled_${disabled.id}_${disabled.version}`;
  const payload = Buffer.from(JSON.stringify({ type: ENDPOINT_DISABLED_EVENT, timestamp: at.toISOString(), data: { webhook_id: disabled.id, url: disabled.spec.url, reason } }));
  const digest = createHash('sha256').update(payload).digest();
  return { eventId, eventType: ENDPOINT_DISABLED_EVENT, owner: disabled.owner, family: '', payload, contentType: 'application/json', digest, occurredAt: at, traceContext: {} };
}

/** The insert of new events from rows `e`, to be followed by `FROM <rows> AS e`; `createdAt` is the parameter of the time stored. */
const insertEventsFrom = (createdAt: string) => `INSERT INTO webhooks.events (event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, created_at, family)
       SELECT e.event_id, e.event_type, e.owner, e.payload, e.content_type, e.digest, e.occurred_at, e.trace_context::jsonb, ${createdAt}, e.family`;

/**
 * The fan-out of the events in a CTE `ev` (event_id, event_type, owner, family, ord) into `ins`
 * (delivery_id, event_id, seq); `$4` is max_attempts, `$5` the due time, `$6` the events' distinct types and '*'.
 */
const FAN_OUT_CTES = `ep AS (SELECT webhook_id, owner, event_types, families, created_version FROM webhooks.endpoints
               WHERE state = 'ENABLED' AND event_types && $6::text[]),
       ins AS (INSERT INTO webhooks.deliveries (delivery_id, webhook_id, event_id, event_type, status, max_attempts, next_attempt_at, created_at)
               SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), ep.webhook_id, ev.event_id, ev.event_type, 'PENDING', $4, $5, $5
                 FROM ev JOIN ep ON (CASE WHEN ev.family = '' THEN ep.owner = ev.owner ELSE ev.family = ANY(ep.families) OR '*' = ANY(ep.families) END)
                                AND (ev.event_type = ANY(ep.event_types) OR '*' = ANY(ep.event_types))
                ORDER BY ev.ord, ep.created_version
               RETURNING delivery_id, event_id, seq)`;

// The endpoints are narrowed first by the distinct types (an overlap test with a few elements, not hundreds).
const distinctTypes = (events: readonly Pick<EventRow, 'eventType'>[]): string[] => [...new Set(events.map((e) => e.eventType)), '*'];

/** The event statements of one transaction. */
export class EventsTx {
  constructor(private readonly sql: Sql) {}

  /**
   * Stores the events whose ids are new, in one statement whatever their number (array parameters
   * keep its text, and so its prepared statement, the same); returns the ids it stored. Rows go in
   * event id order, so two batches sharing ids wait on each other in one order and never deadlock.
   */
  async insertEvents(events: readonly EventRow[], at: Date): Promise<Set<string>> {
    const { rows } = await this.sql.query(
      `${insertEventsFrom('$9')}
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bytea[], $7::timestamptz[], $8::text[], $10::text[])
              AS e(event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, family)
        ORDER BY e.event_id
       ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
      [
        events.map((e) => e.eventId), events.map((e) => e.eventType), events.map((e) => e.owner), events.map((e) => e.payload),
        events.map((e) => e.contentType), events.map((e) => e.digest), events.map((e) => e.occurredAt), events.map((e) => JSON.stringify(e.traceContext)), at,
        events.map((e) => e.family),
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
   * One PENDING delivery of each event per enabled endpoint that receives it (domain/families.ts
   * `receives`: subscribed to its type or to "*", and the event's owner's for an owned event,
   * entitled to its family for a platform event), due at `at`, in one statement whatever the
   * number of events. Returns each event's delivery ids, oldest endpoint first (events without
   * any are absent).
   */
  async fanOut(events: readonly Pick<EventRow, 'eventId' | 'eventType' | 'owner' | 'family'>[], maxAttempts: number, at: Date): Promise<Map<string, string[]>> {
    const { rows } = await this.sql.query(
      `WITH ev AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $7::text[]) WITH ORDINALITY AS ev(event_id, event_type, owner, family, ord)),
       ${FAN_OUT_CTES}
       SELECT event_id, array_agg(delivery_id ORDER BY seq) AS delivery_ids, pg_notify('${QUEUED_CHANNEL}', '') AS notified FROM ins GROUP BY event_id`,
      [events.map((e) => e.eventId), events.map((e) => e.eventType), events.map((e) => e.owner), maxAttempts, at, distinctTypes(events), events.map((e) => e.family)],
    );
    return new Map(rows.map((r) => [r.event_id as string, r.delivery_ids as string[]]));
  }

  /**
   * insertEvents and fanOut of the events it stored, in one statement (one round trip for a
   * publish call of any size): returns the ids stored and each one's delivery ids, oldest endpoint
   * first. Events whose ids were stored before are neither stored nor fanned out again.
   * `notify: false` leaves the dispatchers' wake-up to the caller, after its commit
   * (delivery/queued-notifier.ts says why publish calls do).
   */
  async publish(events: readonly EventRow[], maxAttempts: number, at: Date, opts: { notify: boolean } = { notify: true }): Promise<{ inserted: Set<string>; queued: Map<string, string[]> }> {
    const notice = opts.notify ? `SELECT pg_notify('${QUEUED_CHANNEL}', '') FROM (SELECT 1 FROM ins LIMIT 1) queued` : `SELECT 1 WHERE false`;
    const { rows } = await this.sql.query(
      `WITH src AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $8::bytea[], $9::text[], $10::bytea[], $11::timestamptz[], $12::text[], $7::text[])
                      WITH ORDINALITY AS e(event_id, event_type, owner, payload, content_type, digest, occurred_at, trace_context, family, ord)),
       stored AS (${insertEventsFrom('$5')} FROM src e ORDER BY e.event_id ON CONFLICT (event_id) DO NOTHING RETURNING event_id),
       ev AS (SELECT src.event_id, src.event_type, src.owner, src.family, src.ord FROM src JOIN stored USING (event_id)),
       ${FAN_OUT_CTES},
       notice AS (${notice}),
       queued AS (SELECT event_id, array_agg(delivery_id ORDER BY seq) AS delivery_ids FROM ins GROUP BY event_id)
       SELECT stored.event_id, queued.delivery_ids, (SELECT count(*) FROM notice) AS notices FROM stored LEFT JOIN queued USING (event_id)`,
      [
        events.map((e) => e.eventId), events.map((e) => e.eventType), events.map((e) => e.owner), maxAttempts, at, distinctTypes(events), events.map((e) => e.family),
        events.map((e) => e.payload), events.map((e) => e.contentType), events.map((e) => e.digest), events.map((e) => e.occurredAt), events.map((e) => JSON.stringify(e.traceContext)),
      ],
    );
    const queued = new Map<string, string[]>();
    for (const r of rows) if (r.delivery_ids) queued.set(r.event_id as string, r.delivery_ids as string[]);
    return { inserted: new Set(rows.map((r) => r.event_id as string)), queued };
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
