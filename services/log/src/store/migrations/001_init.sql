-- The log service's schema. Entries are append-only: the trigger below refuses UPDATE and DELETE,
-- so rewriting history takes a superuser disabling the trigger, and Verify still catches it.

CREATE TABLE log.partitions (
  name             text PRIMARY KEY,
  -- Number of entries: the next seq to assign and the current Merkle tree size.
  size             bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
  -- Hash of the last entry; 32 zero bytes while empty (the prev_hash of seq 0).
  head_hash        bytea NOT NULL,
  -- Right edge of the Merkle tree (perfect-subtree hashes), so any replica can append.
  compact_range    bytea NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  last_appended_at timestamptz
);

CREATE TABLE log.entries (
  partition text   NOT NULL REFERENCES log.partitions (name),
  seq       bigint NOT NULL CHECK (seq >= 0),
  ts_ms     bigint NOT NULL,
  data      bytea  NOT NULL,
  prev_hash bytea  NOT NULL,
  hash      bytea  NOT NULL,
  PRIMARY KEY (partition, seq)
);

-- Hash of every complete (perfect) subtree: node (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Any RFC 6962 proof needs O(log n) of them.
CREATE TABLE log.tree_nodes (
  partition text     NOT NULL REFERENCES log.partitions (name),
  level     smallint NOT NULL CHECK (level >= 0 AND level < 64),
  idx       bigint   NOT NULL CHECK (idx >= 0),
  hash      bytea    NOT NULL,
  PRIMARY KEY (partition, level, idx)
);

CREATE FUNCTION log.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'log.% is append-only', TG_TABLE_NAME;
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON log.entries
  FOR EACH ROW EXECUTE FUNCTION log.refuse_change();
CREATE TRIGGER tree_nodes_append_only BEFORE UPDATE OR DELETE ON log.tree_nodes
  FOR EACH ROW EXECUTE FUNCTION log.refuse_change();
