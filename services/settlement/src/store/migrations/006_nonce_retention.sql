-- Wallet nonces older than the signature timestamp window can no longer be replayed (the timestamp
-- check refuses them first), so they are pruned in bounded batches, oldest first
-- (src/store/nonce-pruner.ts). Admin transfer ids are kept: no timestamp stands behind them.
CREATE INDEX requests_wallet_nonces_by_age ON settlement.requests (created_at) WHERE owner <> 'admin';
