-- Who receives what, and what is kept secret (docs/security-webhooks.md).
--
-- Endpoints: the platform event families each one is entitled to (from the scopes of whoever
-- registered it), whether an administrator or a platform workload approved its internal target
-- (unqualified webhooks.allowedCidrs entries apply only then), and its extra request headers
-- encrypted like its secret. Existing endpoints are entitled to nothing and approved for nothing:
-- an entitled caller updates them to grant it again. Their plaintext header values are sealed by
-- the service when it starts (a migration cannot reach the key ring); `headers` then keeps the
-- names only, each with an empty value.
ALTER TABLE webhooks.endpoints
  ADD COLUMN families           text[]  NOT NULL DEFAULT '{}',
  ADD COLUMN internal_approved  boolean NOT NULL DEFAULT false,
  ADD COLUMN headers_key_id     text,
  ADD COLUMN headers_ciphertext bytea,
  ADD CONSTRAINT headers_sealed_complete CHECK ((headers_key_id IS NULL) = (headers_ciphertext IS NULL));

-- Events: a platform family's event has the family and no owner; every other event has an owner
-- and the family ''.
ALTER TABLE webhooks.events ADD COLUMN family text NOT NULL DEFAULT '';

-- The registry history kept every webhook's header values in the clear: keep the names only.
UPDATE webhooks.registry_changes
   SET webhook = jsonb_set(webhook, '{spec,headers}',
         COALESCE((SELECT jsonb_object_agg(k, to_jsonb(''::text)) FROM jsonb_object_keys(webhook->'spec'->'headers') AS k), '{}'::jsonb))
 WHERE jsonb_typeof(webhook->'spec'->'headers') = 'object' AND webhook->'spec'->'headers' <> '{}'::jsonb;
