-- Authors and per-owner idempotency keys (docs/log.md, docs/security-log.md).
--
-- Every entry appended from now on records who appended it: the authenticated caller's subject
-- (a token's sub, or a platform workload's SPIFFE ID). Its hashes commit to it (encoding version 2,
-- services/log/src/domain/entry.ts). Entries appended before keep author NULL and their version 1
-- hashes, which still verify: nothing existing is rewritten (the append-only trigger would refuse).
ALTER TABLE log.entries ADD COLUMN author text;
-- NOT VALID: enforced on every new row, without scanning the existing ones (all NULL) under lock.
ALTER TABLE log.entries ADD CONSTRAINT entries_author_recordable
  CHECK (author IS NULL OR octet_length(author) BETWEEN 1 AND 1024) NOT VALID;

-- An idempotency key belonged to its partition, so any caller with log.append could take a key
-- first (an event id it expects a relay to send) and make that relay's append fail. A key now
-- belongs to an owner within the partition: the author's subject, or '' for keys of the whole
-- partition: those of audit partitions (written only by their owning service, whichever of its
-- workloads sends) and every key recorded before this migration, whose author is unknown. A
-- lookup consults the caller's own keys and the partition-wide ones, so a re-send across the
-- upgrade still finds the entry it appended before.
ALTER TABLE log.idempotency_keys ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE log.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE log.idempotency_keys ADD PRIMARY KEY (partition, owner, key);
