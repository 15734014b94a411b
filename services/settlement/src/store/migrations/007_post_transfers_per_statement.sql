-- Transfers post to their accounts once per statement instead of once per row: a draw batch
-- inserts many transfers in one statement, and the row trigger ran two UPDATEs for each (about
-- half of a batch's write statement). The statement trigger sums each account's debits and
-- credits over the inserted rows and updates each account once, by its primary key.
-- Balances, the floors (CHECK constraints, checked on each account's new totals) and the
-- append-only rule are unchanged; the audit (SettlementStore.audit) re-derives every account's
-- totals from the transfers.
DROP TRIGGER post_transfer ON settlement.transfers;
DROP FUNCTION settlement.post_transfer();

CREATE FUNCTION settlement.post_transfers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Sums per account first (linear in the rows inserted), then one primary-key update per account:
  -- the ANY(ARRAY(...)) keeps the accounts read an index scan whatever the planner believes about
  -- the transition table's size.
  WITH posted AS MATERIALIZED (
    SELECT account, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits
      FROM (SELECT debit_account AS account, amount_minor AS debit, 0::bigint AS credit FROM booked
            UNION ALL
            SELECT credit_account, 0::bigint, amount_minor FROM booked) m
     GROUP BY account)
  UPDATE settlement.accounts a
     SET debits_posted = a.debits_posted + p.debits, credits_posted = a.credits_posted + p.credits
    FROM posted p
   WHERE a.id = p.account AND a.id = ANY (ARRAY(SELECT account FROM posted));
  RETURN NULL;
END $$;
CREATE TRIGGER post_transfers AFTER INSERT ON settlement.transfers
  REFERENCING NEW TABLE AS booked
  FOR EACH STATEMENT EXECUTE FUNCTION settlement.post_transfers();
