-- A process's feature flags: the current flags and their change history. The schema name is the
-- process's own (flags_<targets>, see flags/store.ts), written here as {schema}.
--
-- Versions are store-wide: each change takes the next value of the counter in {schema}.head inside
-- its transaction (the row lock orders writers), so changes commit in version order and the
-- history is gapless: a watch that asks for "version > cursor" never misses one.

CREATE TABLE {schema}.head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version   bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO {schema}.head (version) VALUES (0);

-- The flags now; `flag` is the flagd definition (state, variants, defaultVariant, targeting, metadata).
CREATE TABLE {schema}.flags (
  key        text        PRIMARY KEY,
  flag       jsonb       NOT NULL,
  version    bigint      NOT NULL,
  source     text        NOT NULL,
  updated_at timestamptz NOT NULL,
  bytes      integer     NOT NULL
);

-- One row per change, pruned to the newest FLAGS_LIMITS.retainedChanges; `flag` is NULL for a deletion.
CREATE TABLE {schema}.changes (
  version bigint      PRIMARY KEY,
  key     text        NOT NULL,
  type    text        NOT NULL CHECK (type IN ('PUT', 'DELETED')),
  flag    jsonb,
  source  text        NOT NULL,
  at      timestamptz NOT NULL
);
