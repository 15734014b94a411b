-- Draws are booked by the draw committer (src/store/draw-committer.ts): many per transaction, with
-- the rules of src/domain/credit-line.ts only. The PL/pgSQL fast path that repeated those rules in
-- SQL (migrations 002 and 003) goes.
DROP FUNCTION settlement.try_draw(text, text, bigint, text, bytea, text, text, timestamptz, text, text, bytea, jsonb);
