-- The draw's fast path: the common case (a new nonce, a draw the line allows) booked in ONE round
-- trip and one implicit transaction, instead of five round trips around an explicit one.
--
-- It only ever books what the checked path (services/settlement/src/api/handlers.ts, rules in
-- src/domain/credit-line.ts) would book. Anything else — a nonce seen before with a different
-- body, an unknown or foreign session, a settled or expired line, a draw over the remaining
-- credit — answers 'checked' (or raises 'GN001', rolling back its nonce claim), and the service
-- runs the checked path, which explains the refusal precisely. The ledger's constraints stand
-- behind both paths.
--
-- For an unsettled line, credit:<s> holds limit - drawn and escrow:<s> holds drawn (both paths
-- keep that invariant, and the audit re-derives every balance from the transfers), so the
-- response is computed from the locked line and the wallet's balance.
--
-- The response is built in the JSON mapping of gantry.settlement.v1.CreditDrawResponse, the
-- same form the checked path stores, so a retry gets the same answer whichever path booked it.
CREATE FUNCTION settlement.try_draw(
  p_wallet text, p_session text, p_amount bigint, p_nonce text, p_digest bytea,
  p_transfer_id text, p_reason text, p_now timestamptz
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
  RETURN QUERY SELECT 'booked'::text, v_body;
END $$;
