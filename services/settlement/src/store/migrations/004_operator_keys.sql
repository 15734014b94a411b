-- House-attested settlement (docs/settlement.md, "Trust model"): the L2 operator keys whose
-- attestations settle sessions, and the attestation each settlement was booked on.
--
-- A key's row is its history: who registered it and when, and, once, who revoked it, when and
-- why. Rows are never deleted and a revoked key never becomes active again (a trigger refuses
-- both), so every settlement's attesting key can be traced to its registration for as long as
-- the ledger exists.
CREATE TABLE settlement.operator_keys (
  public_key    bytea PRIMARY KEY CHECK (octet_length(public_key) = 32),
  name          text  NOT NULL,
  registered_at timestamptz NOT NULL,
  registered_by text  NOT NULL,
  revoked_at    timestamptz,
  revoked_by    text,
  revoke_reason text,
  CONSTRAINT revoked_fields CHECK ((revoked_at IS NULL) = (revoked_by IS NULL) AND (revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX operator_keys_registered ON settlement.operator_keys (registered_at DESC);

CREATE FUNCTION settlement.operator_keys_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'settlement.operator_keys keeps every key: revoke it instead';
  END IF;
  IF OLD.revoked_at IS NOT NULL OR NEW.public_key <> OLD.public_key OR NEW.name <> OLD.name
     OR NEW.registered_at <> OLD.registered_at OR NEW.registered_by <> OLD.registered_by THEN
    RAISE EXCEPTION 'an operator key changes once, when it is revoked';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER operator_keys_history BEFORE UPDATE OR DELETE ON settlement.operator_keys
  FOR EACH ROW EXECUTE FUNCTION settlement.operator_keys_history();

-- The attestation a settlement was booked on: with the line's final state it re-verifies offline.
-- NULL on lines settled before attestations were required.
ALTER TABLE settlement.credit_lines
  ADD COLUMN attested_by bytea REFERENCES settlement.operator_keys (public_key),
  ADD COLUMN attestation bytea;
