-- Domain events (docs/events.md): the transactional outbox. Every change that is an event
-- (created, vote cast, finalized, expired) inserts its events here in its own transaction, so an
-- event exists exactly when its change committed. The relay (services/kit/src/events/relay.ts)
-- sends each row to the log and to webhooks and deletes it once both have it. The shape is the
-- kit's contract (services/kit/src/events/outbox.ts).
CREATE TABLE approvals.outbox (
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
CREATE INDEX outbox_log_pending ON approvals.outbox (seq) WHERE log_done_at IS NULL;
CREATE INDEX outbox_webhooks_pending ON approvals.outbox (seq) WHERE webhooks_done_at IS NULL;
