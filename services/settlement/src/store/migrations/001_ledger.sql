-- The settlement ledger: double-entry accounts and immutable transfers (TigerBeetle's model in
-- SQL). Balances are never written directly: inserting a transfer posts it to both accounts
-- (trigger below), and each account's floor is a CHECK constraint, so a booking that would take
-- a balance below zero fails inside its own transaction and books nothing.

CREATE TABLE settlement.accounts (
  id             text PRIMARY KEY,
  debits_posted  bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
  credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
  -- false only for the funding account (the world outside the ledger).
  floor_zero     boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT debits_must_not_exceed_credits CHECK (NOT floor_zero OR debits_posted <= credits_posted)
);

INSERT INTO settlement.accounts (id, floor_zero) VALUES ('funding', false), ('house', true);

CREATE TABLE settlement.transfers (
  id             text PRIMARY KEY,
  debit_account  text   NOT NULL REFERENCES settlement.accounts (id),
  credit_account text   NOT NULL REFERENCES settlement.accounts (id),
  amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
  kind           text   NOT NULL,
  session_id     text,
  memo           text   NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL,
  CHECK (debit_account <> credit_account)
);
CREATE INDEX transfers_session ON settlement.transfers (session_id) WHERE session_id IS NOT NULL;

CREATE FUNCTION settlement.post_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE settlement.accounts SET debits_posted = debits_posted + NEW.amount_minor WHERE id = NEW.debit_account;
  UPDATE settlement.accounts SET credits_posted = credits_posted + NEW.amount_minor WHERE id = NEW.credit_account;
  RETURN NULL;
END $$;
CREATE TRIGGER post_transfer AFTER INSERT ON settlement.transfers
  FOR EACH ROW EXECUTE FUNCTION settlement.post_transfer();

CREATE FUNCTION settlement.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'settlement.transfers is append-only: book a correcting transfer instead';
END $$;
CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON settlement.transfers
  FOR EACH ROW EXECUTE FUNCTION settlement.refuse_change();

CREATE TABLE settlement.credit_lines (
  session_id             text PRIMARY KEY,
  wallet_address         text   NOT NULL,
  credit_limit_minor     bigint NOT NULL CHECK (credit_limit_minor > 0),
  drawn_minor            bigint NOT NULL DEFAULT 0,
  draw_count             integer NOT NULL DEFAULT 0 CHECK (draw_count >= 0),
  created_at             timestamptz NOT NULL,
  expires_at             timestamptz NOT NULL,
  settled_at             timestamptz,
  outcome                text,
  net_pnl_minor          bigint,
  final_l2_balance_minor bigint,
  locked_in_bets_minor   bigint,
  returned_minor         bigint,
  CONSTRAINT draws_within_limit CHECK (drawn_minor >= 0 AND drawn_minor <= credit_limit_minor),
  CONSTRAINT settled_fields CHECK ((settled_at IS NULL) = (outcome IS NULL))
);
-- A wallet has at most one unsettled credit line (open or expired).
CREATE UNIQUE INDEX credit_lines_one_unsettled ON settlement.credit_lines (wallet_address) WHERE settled_at IS NULL;
CREATE INDEX credit_lines_wallet ON settlement.credit_lines (wallet_address);

-- Idempotency records: a wallet's nonces (owner = wallet address) and admin transfer ids
-- (owner = 'admin'). The response of the first success is kept so a retry returns it.
CREATE TABLE settlement.requests (
  owner      text  NOT NULL,
  key        text  NOT NULL,
  operation  text  NOT NULL,
  digest     bytea NOT NULL,
  response   jsonb,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (owner, key)
);
