import { randomUUID } from 'node:crypto';
import { context, propagation } from '@opentelemetry/api';
import { eventsv1 } from '@gantry/proto';
import type { Database, Sql } from '../storage/database.js';

/**
 * A service's transactional outbox: domain events written in the same transaction as the change
 * they describe, then sent on by the relay (events/relay.ts). The table `<schema>.outbox` is the
 * kit's (`outboxMigrations(schema)`, listed first in the service's migrations), in this shape
 * (docs/events.md):
 *
 *   seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text UNIQUE, event_type text,
 *   payload bytea (a binary gantry.events.v1.Event), trace_context jsonb, created_at timestamptz,
 *   and per sink (log, webhooks): <sink>_done_at timestamptz, <sink>_lease_until timestamptz,
 *   with a partial index on seq WHERE <sink>_done_at IS NULL.
 */

/** The payload cases of gantry.events.v1.Event. */
export type EventData = NonNullable<eventsv1.Event['data']>;

/**
 * The event types a module may write, by payload case: its part of the catalogue (docs/events.md),
 * declared by the module that owns those events.
 */
export type EventCatalogue = Partial<Record<EventData['$case'], string>>;

/** One event ready for the outbox. */
export interface OutboxEvent {
  id: string;
  type: string;
  /** The binary gantry.events.v1.Event. */
  payload: Buffer;
}

/** Builds and encodes a domain event of `type` with a new id. */
export function domainEvent(source: string, type: string, subject: string, occurredAt: Date, data: EventData, id = newEventId()): OutboxEvent {
  const payload = Buffer.from(eventsv1.Event.encode({ id, type, source, occurredAt, subject, data }).finish());
  return { id, type, payload };
}

/** "evt_" and 32 hex digits. */
export function newEventId(): string {
  return `evt_${randomUUID().replaceAll('-', '')}`;
}

/** The W3C trace context (`traceparent`, `tracestate`) of the active span, empty when none. */
export function activeTraceContext(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/** Writes a service's events into its outbox; disabled (writes nothing) when events are off. */
export class Outbox {
  private readonly insertSql: string;
  private wakeRelay: () => void = () => {};

  constructor(
    readonly schema: string,
    readonly source: string,
    readonly enabled: boolean,
    /** The event types this outbox's module owns; writing any other is a programming error. */
    private readonly types: EventCatalogue = {},
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`invalid schema name: ${schema}`);
    this.insertSql = `INSERT INTO ${schema}.outbox (event_id, event_type, payload, trace_context, created_at)
      SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS e, (SELECT $4::jsonb, $5::timestamptz) AS c`;
  }

  /** Builds an event of this service (see {@link domainEvent}). */
  event(subject: string, occurredAt: Date, data: EventData): OutboxEvent {
    const type = this.types[data.$case];
    if (type === undefined) throw new Error(`invariant: ${this.source} does not declare events of case ${data.$case} in its catalogue`);
    return domainEvent(this.source, type, subject, occurredAt, data);
  }

  /**
   * Inserts `events` in the caller's transaction, with the active trace context, so they are
   * relayed exactly when the transaction commits. Call {@link committed} after the commit.
   */
  async add(tx: Sql, events: readonly OutboxEvent[], now: Date): Promise<void> {
    if (!this.enabled || events.length === 0) return;
    await tx.query(this.insertSql, [events.map((e) => e.id), events.map((e) => e.type), events.map((e) => e.payload), JSON.stringify(activeTraceContext()), now]);
  }

  /**
   * Runs `fn` in one transaction of `db` on the store's transaction object (`begin`), and hands the
   * events it emitted to the relay once it has committed.
   */
  async transaction<X extends EventWriter, T>(db: Database, begin: (sql: Sql) => X, fn: (tx: X) => Promise<T>): Promise<T> {
    let tx: X | undefined;
    const result = await db.transaction((sql) => fn((tx = begin(sql))));
    if (tx?.emitted) this.committed();
    return result;
  }

  /** Tells this process's relay that events were committed, so it sends them now rather than at its next poll. */
  committed(): void {
    if (this.enabled) this.wakeRelay();
  }

  /** The relay registers here (runtime wiring). */
  onCommitted(wake: () => void): void {
    this.wakeRelay = wake;
  }
}

/** What a store's transaction object extends to write domain events in that transaction. */
export class EventWriter {
  /** Whether this transaction wrote events (the relay is woken after the commit). */
  emitted = false;

  constructor(
    protected readonly sql: Sql,
    protected readonly outbox: Outbox,
  ) {}

  /** Writes domain events in this transaction: they are relayed if, and only if, it commits. */
  async emit(events: readonly OutboxEvent[], now: Date): Promise<void> {
    await this.outbox.add(this.sql, events, now);
    this.emitted ||= this.outbox.enabled && events.length > 0;
  }
}
