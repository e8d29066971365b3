-- The FEC export reads transactions in the order of their effective instant, a page at a
-- time (issue 14).
CREATE INDEX transactions_effective_idx ON transactions (effective_at, id);
