-- Leases counted out of the delivery row (issue #18).
--
-- Every claim updated a delivery's lease columns (lease_token, lease_expires_at, attempts), and
-- deliveries_leased indexed them, so that update could never be HOT: it wrote a new entry in every
-- index of webhooks.deliveries. The index served one question only, each endpoint's attempts in
-- flight (its max_concurrency); that count now comes from this narrow table, one row per live lease,
-- written by the claim and deleted with the outcome in the same statements. The delivery row keeps
-- its lease columns (the outcome's check, the due filter), now in no index: the claim's update is HOT
-- wherever its page has room, which the lower fillfactor leaves.
--
-- No foreign keys: they would cost a lookup and a KEY SHARE lock per lease, and every row is written
-- and deleted by the claim, outcome and cancel statements that also write its delivery.
CREATE TABLE webhooks.leases (
  webhook_id  text        NOT NULL,
  lease_token text        NOT NULL,
  delivery_id text        NOT NULL,
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (webhook_id, lease_token)
);

-- The leases live now (of replicas running the previous version too) keep counting.
INSERT INTO webhooks.leases (webhook_id, lease_token, delivery_id, expires_at)
SELECT webhook_id, lease_token, delivery_id, lease_expires_at FROM webhooks.deliveries
 WHERE status = 'PENDING' AND lease_token IS NOT NULL;

DROP INDEX webhooks.deliveries_leased;

-- Room on each page for the claim's new row versions (HOT updates stay on their page). Applies to
-- pages written from now on; nothing is rewritten.
ALTER TABLE webhooks.deliveries SET (fillfactor = 50);
