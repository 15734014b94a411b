-- The webhooks schema: the endpoint registry with its change history, published events, and the
-- delivery outbox that every replica's dispatcher claims from.
--
-- Registry versions are service-wide, as in approvals: each change takes the next value of the
-- counter in webhooks.head inside its transaction, so changes commit in version order.

CREATE TABLE webhooks.head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version   bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO webhooks.head (version) VALUES (0);

CREATE TABLE webhooks.endpoints (
  webhook_id            text        PRIMARY KEY,
  created_version       bigint      NOT NULL UNIQUE,
  version               bigint      NOT NULL,
  owner                 text        NOT NULL,
  -- The owner's stable key; NULL when none.
  external_id           text,
  url                   text        NOT NULL,
  event_types           text[]      NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 64),
  headers               jsonb       NOT NULL,
  description           text        NOT NULL,
  paused                boolean     NOT NULL,
  rate_limit_per_second integer     NOT NULL CHECK (rate_limit_per_second >= 0),
  max_concurrency       integer     NOT NULL CHECK (max_concurrency >= 0),
  labels                jsonb       NOT NULL,
  -- ENABLED (active or paused, by spec.paused), DISABLED by the service, or DELETED.
  state                 text        NOT NULL CHECK (state IN ('ENABLED', 'DISABLED', 'DELETED')),
  disabled_reason       text        NOT NULL DEFAULT '',
  -- Failed attempts in a row, and when the first of them happened (the disable rule needs both).
  consecutive_failures  integer     NOT NULL DEFAULT 0,
  failing_since         timestamptz,
  -- AES-256-GCM ciphertexts (nonce | ciphertext | tag) and the id of the key that made them.
  secret_key_id         text        NOT NULL,
  secret_ciphertext     bytea       NOT NULL,
  previous_key_id       text,
  previous_ciphertext   bytea,
  previous_expires_at   timestamptz,
  secret_rotated_at     timestamptz NOT NULL,
  created_at            timestamptz NOT NULL,
  updated_at            timestamptz NOT NULL,
  -- Dispatcher bookkeeping, not part of the registry (changes here take no version): the
  -- per-endpoint rate window (database clock, ms) and the last claim, for round-robin fairness.
  rate_window_start_ms  bigint      NOT NULL DEFAULT 0,
  rate_window_count     integer     NOT NULL DEFAULT 0,
  last_claimed_at       timestamptz,
  CONSTRAINT previous_secret_complete CHECK ((previous_ciphertext IS NULL) = (previous_expires_at IS NULL) AND (previous_ciphertext IS NULL) = (previous_key_id IS NULL))
);
CREATE UNIQUE INDEX endpoints_external_id ON webhooks.endpoints (owner, external_id) WHERE external_id IS NOT NULL AND state <> 'DELETED';
CREATE INDEX endpoints_owner ON webhooks.endpoints (owner, created_version);
CREATE INDEX endpoints_event_types ON webhooks.endpoints USING gin (event_types) WHERE state = 'ENABLED';

-- One row per registry change, with the webhook as it was after it (never a secret), for watches
-- to resume from.
CREATE TABLE webhooks.registry_changes (
  version    bigint      PRIMARY KEY,
  webhook_id text        NOT NULL REFERENCES webhooks.endpoints (webhook_id),
  owner      text        NOT NULL,
  type       text        NOT NULL CHECK (type IN ('CREATED', 'UPDATED', 'DELETED', 'SECRET_ROTATED')),
  webhook    jsonb       NOT NULL,
  at         timestamptz NOT NULL
);

-- Published events, kept for idempotency (event_id) and as the body every delivery sends.
CREATE TABLE webhooks.events (
  event_id      text        PRIMARY KEY,
  event_type    text        NOT NULL,
  -- '' = every owner.
  owner         text        NOT NULL,
  payload       bytea       NOT NULL,
  content_type  text        NOT NULL,
  -- SHA-256 of what makes the event (type, owner, content type, payload): a reused id with another body is refused.
  digest        bytea       NOT NULL,
  occurred_at   timestamptz,
  trace_context jsonb       NOT NULL,
  created_at    timestamptz NOT NULL
);

-- The outbox: one event addressed to one endpoint. A dispatcher claims a due row by taking a lease
-- (lease_token, lease_expires_at on the database clock) in a FOR UPDATE SKIP LOCKED transaction,
-- sends outside any transaction, and records the outcome only while its lease token still holds.
-- A replica that dies mid-attempt leaves a lease that expires; another replica then claims the row.
CREATE TABLE webhooks.deliveries (
  delivery_id     text        PRIMARY KEY,
  seq             bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
  webhook_id      text        NOT NULL REFERENCES webhooks.endpoints (webhook_id),
  event_id        text        NOT NULL REFERENCES webhooks.events (event_id),
  event_type      text        NOT NULL,
  status          text        NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DEAD_LETTERED', 'CANCELLED')),
  -- Attempts started in total (attempt numbers), and the count when the current round began (a
  -- replay starts a new round of max_attempts).
  attempts        integer     NOT NULL DEFAULT 0,
  round_start     integer     NOT NULL DEFAULT 0,
  max_attempts    integer     NOT NULL CHECK (max_attempts >= 1),
  next_attempt_at timestamptz,
  -- A test event (TriggerWebhook) goes to a paused endpoint too.
  ignore_pause    boolean     NOT NULL DEFAULT false,
  lease_token     text,
  lease_expires_at timestamptz,
  created_at      timestamptz NOT NULL,
  completed_at    timestamptz,
  UNIQUE (event_id, webhook_id),
  CONSTRAINT pending_is_scheduled CHECK ((status = 'PENDING') = (next_attempt_at IS NOT NULL)),
  CONSTRAINT completed_when_final CHECK ((status = 'PENDING') = (completed_at IS NULL)),
  CONSTRAINT rounds_ordered CHECK (round_start <= attempts)
);
CREATE INDEX deliveries_due ON webhooks.deliveries (webhook_id, next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX deliveries_history ON webhooks.deliveries (webhook_id, seq);
CREATE INDEX deliveries_dead ON webhooks.deliveries (webhook_id, completed_at) WHERE status = 'DEAD_LETTERED';

CREATE TABLE webhooks.attempts (
  delivery_id     text        NOT NULL REFERENCES webhooks.deliveries (delivery_id),
  attempt_number  integer     NOT NULL CHECK (attempt_number >= 1),
  started_at      timestamptz NOT NULL,
  latency_ms      integer     NOT NULL,
  response_status integer     NOT NULL,
  error           text        NOT NULL,
  response_body_excerpt text  NOT NULL,
  PRIMARY KEY (delivery_id, attempt_number)
);
