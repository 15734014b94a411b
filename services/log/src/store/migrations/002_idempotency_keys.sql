-- Idempotency keys: a producer (an outbox relay) names each payload, and a re-sent payload returns
-- the entry its key was first appended as instead of appending it again. A key is written in the
-- same statement as its entry, under the partition's row lock, so it exists exactly when the entry
-- does. Keys are as immutable as the entries they name.

CREATE TABLE log.idempotency_keys (
  partition text   NOT NULL,
  -- 1-128 printable ASCII characters without spaces (checked by the API, enforced here too).
  key       text   NOT NULL CHECK (key ~ '^[!-~]{1,128}$'),
  seq       bigint NOT NULL,
  PRIMARY KEY (partition, key),
  FOREIGN KEY (partition, seq) REFERENCES log.entries (partition, seq)
);

CREATE TRIGGER idempotency_keys_append_only BEFORE UPDATE OR DELETE ON log.idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION log.refuse_change();
