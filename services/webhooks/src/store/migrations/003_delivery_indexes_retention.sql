-- Indexes for the batched dispatcher and for retention (issue #18).
--
-- The claim counts each endpoint's attempts in flight (unexpired leases of every replica) under the
-- endpoint's lock. Through deliveries_due that walked every pending row of the endpoint, retries
-- scheduled for later included; leased rows are at most the attempts in flight (and leases left by
-- a crashed replica until they are reclaimed), so this index keeps the count that small.
CREATE INDEX deliveries_leased ON webhooks.deliveries (webhook_id, lease_expires_at) WHERE status = 'PENDING' AND lease_token IS NOT NULL;

-- Test deliveries (TriggerWebhook) go to paused endpoints too; a paused endpoint's backlog must not
-- be walked to find them.
CREATE INDEX deliveries_due_ignoring_pause ON webhooks.deliveries (webhook_id, next_attempt_at) WHERE status = 'PENDING' AND ignore_pause;

-- Retention (delivery/pruner.ts): final deliveries oldest completed first, events oldest first.
CREATE INDEX deliveries_final ON webhooks.deliveries (completed_at) WHERE status <> 'PENDING';
CREATE INDEX events_created ON webhooks.events (created_at);
