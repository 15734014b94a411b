-- Idempotency keys expire (log.idempotencyKeyRetentionHours, 7 days by default): they were kept
-- forever, one row per keyed entry, and a re-send comes within minutes or hours, not months. The
-- entries they named stay, immutable; only the keys are deleted, in bounded batches, by a
-- background task (services/log/src/store/key-pruner.ts). After its horizon a re-sent append with
-- the same key appends a new entry.
--
-- created_ms is the time of the append that recorded the key (its entry's ts_ms), indexed so a
-- pruning batch reads only the keys it deletes. Keys recorded before this migration take their
-- entry's time. The default covers a binary from before this migration still inserting keys
-- during a rolling upgrade.
ALTER TABLE log.idempotency_keys ADD COLUMN created_ms bigint;

-- Keys stay immutable; only DELETE (pruning) is now allowed.
DROP TRIGGER idempotency_keys_append_only ON log.idempotency_keys;
UPDATE log.idempotency_keys k SET created_ms = e.ts_ms FROM log.entries e WHERE e.partition = k.partition AND e.seq = k.seq;
ALTER TABLE log.idempotency_keys
  ALTER COLUMN created_ms SET DEFAULT (extract(epoch FROM statement_timestamp()) * 1000)::bigint,
  ALTER COLUMN created_ms SET NOT NULL;
CREATE TRIGGER idempotency_keys_immutable BEFORE UPDATE ON log.idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION log.refuse_change();

CREATE INDEX idempotency_keys_by_age ON log.idempotency_keys (created_ms);
