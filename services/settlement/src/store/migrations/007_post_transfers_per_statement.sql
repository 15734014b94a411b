-- Transfers post to their accounts once per statement instead of once per row: a draw batch
-- inserts many transfers in one statement, and the row trigger ran two UPDATEs for each (about
-- half of a batch's write statement). The statement trigger updates each account the inserted
-- transfers name once, by its primary key, with the sums of its debits and credits among them.
-- Balances, the floors (CHECK constraints, checked on each account's new totals) and the
-- append-only rule are unchanged; the audit (SettlementStore.audit) re-derives every account's
-- totals from the transfers.
DROP TRIGGER post_transfer ON settlement.transfers;
DROP FUNCTION settlement.post_transfer();

CREATE FUNCTION settlement.post_transfers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE settlement.accounts a
     SET debits_posted = a.debits_posted + coalesce((SELECT sum(b.amount_minor) FROM booked b WHERE b.debit_account = a.id), 0),
         credits_posted = a.credits_posted + coalesce((SELECT sum(b.amount_minor) FROM booked b WHERE b.credit_account = a.id), 0)
   WHERE a.id = ANY (ARRAY(SELECT debit_account FROM booked UNION SELECT credit_account FROM booked));
  RETURN NULL;
END $$;
CREATE TRIGGER post_transfers AFTER INSERT ON settlement.transfers
  REFERENCING NEW TABLE AS booked
  FOR EACH STATEMENT EXECUTE FUNCTION settlement.post_transfers();
