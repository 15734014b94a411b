-- The approvals schema: requests, their votes, and the change history that watches resume from.
--
-- Versions are service-wide, like Kubernetes' resourceVersion: every change takes the next value
-- of the one counter in approvals.head, inside the transaction that makes the change. The counter's
-- row lock is held until commit, so changes commit in version order and a reader that sees version
-- v sees every version below it: a watcher that asks for "version > v" never misses one.

CREATE TABLE approvals.head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version   bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO approvals.head (version) VALUES (0);

CREATE TABLE approvals.requests (
  approval_id        text        PRIMARY KEY,
  -- The version of the change that created it: a unique, monotonic "newest first" order.
  created_version    bigint      NOT NULL UNIQUE,
  -- The version of its last change.
  version            bigint      NOT NULL,
  requester          text        NOT NULL,
  -- The caller's idempotency key (NULL when none) and a digest of the body it was sent with.
  request_id         text,
  request_digest     bytea       NOT NULL,
  type               text        NOT NULL CHECK (type IN ('LARGE_TRANSACTION', 'CONTRACT_DEPLOYMENT', 'PARAMETER_CHANGE', 'ACCESS_GRANT', 'OTHER')),
  -- 1 NORMAL, 2 HIGH, 3 CRITICAL: a number so that "at least HIGH" is a comparison.
  priority           smallint    NOT NULL CHECK (priority BETWEEN 1 AND 3),
  title              text        NOT NULL,
  content            bytea       NOT NULL,
  content_hash       bytea       NOT NULL CHECK (octet_length(content_hash) = 32),
  validators         text[]      NOT NULL CHECK (cardinality(validators) BETWEEN 1 AND 100),
  required_approvals integer     NOT NULL,
  state              text        NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'EXPIRED')),
  labels             jsonb       NOT NULL,
  created_at         timestamptz NOT NULL,
  expires_at         timestamptz NOT NULL,
  finalized_at       timestamptz,
  CONSTRAINT m_of_n CHECK (required_approvals BETWEEN 1 AND cardinality(validators)),
  CONSTRAINT finalized_when_terminal CHECK ((state = 'PENDING') = (finalized_at IS NULL)),
  CONSTRAINT versions_ordered CHECK (version >= created_version)
);
CREATE UNIQUE INDEX requests_idempotency ON approvals.requests (requester, request_id) WHERE request_id IS NOT NULL;
-- The sweeper's work list.
CREATE INDEX requests_due ON approvals.requests (expires_at) WHERE state = 'PENDING';
-- "Requests this validator is in the set of" (validators @> ARRAY[$1]).
CREATE INDEX requests_validators ON approvals.requests USING gin (validators);
CREATE INDEX requests_requester ON approvals.requests (requester, created_version);

-- Terminal states never change: the last line behind the quorum rules in the domain layer.
CREATE FUNCTION approvals.refuse_terminal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'approval % is already % and cannot change', OLD.approval_id, OLD.state USING ERRCODE = 'check_violation', CONSTRAINT = 'terminal_states_never_change';
END $$;
CREATE TRIGGER terminal_states_never_change BEFORE UPDATE ON approvals.requests
  FOR EACH ROW WHEN (OLD.state <> 'PENDING') EXECUTE FUNCTION approvals.refuse_terminal_change();

CREATE TABLE approvals.votes (
  approval_id text        NOT NULL REFERENCES approvals.requests (approval_id),
  validator   text        NOT NULL,
  decision    text        NOT NULL CHECK (decision IN ('APPROVE', 'REJECT', 'ABSTAIN')),
  reason      text        NOT NULL,
  cast_at     timestamptz NOT NULL,
  -- The version of the change that recorded it: the request as of version v has the votes <= v.
  version     bigint      NOT NULL UNIQUE,
  PRIMARY KEY (approval_id, validator)
);

-- One row per change, for watches to resume from. Pruned from the oldest end (the sweeper keeps a
-- bounded number of versions); a watch from before the oldest retained row gets OUT_OF_RANGE.
CREATE TABLE approvals.events (
  version     bigint      PRIMARY KEY,
  approval_id text        NOT NULL REFERENCES approvals.requests (approval_id),
  type        text        NOT NULL CHECK (type IN ('CREATED', 'VOTED', 'FINALIZED')),
  -- The request's state after this change.
  state       text        NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'REJECTED', 'EXPIRED')),
  at          timestamptz NOT NULL,
  CONSTRAINT finalized_is_terminal CHECK ((type = 'FINALIZED') = (state <> 'PENDING'))
);
CREATE INDEX events_approval ON approvals.events (approval_id, version);
