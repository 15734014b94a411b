-- Domain events (docs/events.md) through the transactional outbox: each booking that is an event
-- (credit line approved, credit drawn, credit line settled) inserts its event into settlement.outbox
-- in its own transaction, so an event exists exactly when its change committed. The table is the
-- kit's (services/kit/src/events/outbox-table.ts, listed before these migrations); until the kit
-- owned it, this migration created it, and databases migrated then have it from here.
--
-- The draw fast path (migration 002) as before, and it also writes the draw's event when it books.
-- p_event_id is NULL when events are off.
DROP FUNCTION settlement.try_draw(text, text, bigint, text, bytea, text, text, timestamptz);
CREATE FUNCTION settlement.try_draw(
  p_wallet text, p_session text, p_amount bigint, p_nonce text, p_digest bytea,
  p_transfer_id text, p_reason text, p_now timestamptz,
  p_event_id text, p_event_type text, p_event bytea, p_trace jsonb
) RETURNS TABLE (outcome text, response jsonb) LANGUAGE plpgsql AS $$
DECLARE
  v_line   settlement.credit_lines%ROWTYPE;
  v_prior  settlement.requests%ROWTYPE;
  v_wallet bigint;
  v_l1     bigint;
  v_body   jsonb;
BEGIN
  INSERT INTO settlement.requests (owner, key, operation, digest, created_at)
  VALUES (p_wallet, p_nonce, 'CreditDraw', p_digest, p_now) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    SELECT * INTO v_prior FROM settlement.requests WHERE owner = p_wallet AND key = p_nonce;
    IF v_prior.operation = 'CreditDraw' AND v_prior.digest = p_digest AND v_prior.response IS NOT NULL THEN
      RETURN QUERY SELECT 'replay'::text, v_prior.response;
    ELSE
      RETURN QUERY SELECT 'checked'::text, NULL::jsonb;
    END IF;
    RETURN;
  END IF;

  SELECT * INTO v_line FROM settlement.credit_lines WHERE session_id = p_session FOR UPDATE;
  IF NOT FOUND OR v_line.wallet_address <> p_wallet OR v_line.settled_at IS NOT NULL
     OR v_line.expires_at <= p_now OR v_line.drawn_minor + p_amount > v_line.credit_limit_minor THEN
    RAISE EXCEPTION USING ERRCODE = 'GN001', MESSAGE = 'draw not allowed on the fast path; take the checked path';
  END IF;

  SELECT credits_posted - debits_posted INTO v_wallet FROM settlement.accounts WHERE id = 'wallet:' || p_wallet;
  v_l1 := coalesce(v_wallet, 0) + v_line.credit_limit_minor - v_line.drawn_minor;
  UPDATE settlement.credit_lines SET drawn_minor = drawn_minor + p_amount, draw_count = draw_count + 1 WHERE session_id = p_session;
  INSERT INTO settlement.transfers (id, debit_account, credit_account, amount_minor, kind, session_id, memo, created_at)
  VALUES (p_transfer_id, 'credit:' || p_session, 'escrow:' || p_session, p_amount, 'draw', p_session, p_reason, p_now);
  v_body := jsonb_build_object(
    'transferId', p_transfer_id,
    'amountDrawnMinor', p_amount::text,
    'l1BalanceBeforeMinor', v_l1::text,
    'l1BalanceAfterMinor', (v_l1 - p_amount)::text,
    'l2BalanceMinor', (v_line.drawn_minor + p_amount)::text,
    'remainingCreditMinor', (v_line.credit_limit_minor - v_line.drawn_minor - p_amount)::text,
    'drawCount', v_line.draw_count + 1);
  UPDATE settlement.requests SET response = v_body WHERE owner = p_wallet AND key = p_nonce;
  IF p_event_id IS NOT NULL THEN
    INSERT INTO settlement.outbox (event_id, event_type, payload, trace_context, created_at)
    VALUES (p_event_id, p_event_type, p_event, p_trace, p_now);
  END IF;
  RETURN QUERY SELECT 'booked'::text, v_body;
END $$;
