// The outbox table, `<schema>.outbox`, of every service that emits domain events. The kit owns its
// shape, as it owns the flags tables: Outbox (outbox.ts) writes it and the relay (relay.ts) claims,
// marks and deletes its rows, so a service lists outboxMigrations(schema) before its own numbered
// migrations instead of carrying a copy of the DDL.
//
// Services created the table in their own numbered migration before the kit owned it (settlement
// 003, approvals 002), in exactly this shape. So the DDL is idempotent (IF NOT EXISTS) and recorded
// under a version of the kit's range: on such a database it records its version and changes
// nothing; on a new one it creates the table before the service's migrations run.
import { KIT_MIGRATION_VERSIONS_FROM, assertSchemaName, type Migration } from '../storage/migrations.js';

/** The outbox migration's version in a service's schema_migrations. */
export const OUTBOX_MIGRATION_VERSION = KIT_MIGRATION_VERSIONS_FROM + 1;

/**
 * The DDL of `<schema>.outbox` (docs/events.md), safe to run again: one row per event, with per
 * sink (log, webhooks) when it was sent and until when a relay holds its lease, and a partial
 * index per sink on the rows it has yet to send.
 */
export function outboxTableSql(schema: string): string {
  assertSchemaName(schema);
  return `
CREATE TABLE IF NOT EXISTS ${schema}.outbox (
  seq                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id             text NOT NULL UNIQUE,
  event_type           text NOT NULL,
  payload              bytea NOT NULL,
  trace_context        jsonb NOT NULL DEFAULT '{}',
  created_at           timestamptz NOT NULL,
  log_done_at          timestamptz,
  log_lease_until      timestamptz,
  webhooks_done_at     timestamptz,
  webhooks_lease_until timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_log_pending ON ${schema}.outbox (seq) WHERE log_done_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_webhooks_pending ON ${schema}.outbox (seq) WHERE webhooks_done_at IS NULL;
`;
}

/** The kit's migrations of `<schema>.outbox`: list them before the service's own. */
export function outboxMigrations(schema: string): Migration[] {
  return [{ version: OUTBOX_MIGRATION_VERSION, name: 'kit_outbox', sql: outboxTableSql(schema) }];
}
