-- The sequence types a mandate's collections take besides FRST and RCUR (issue 13):
-- a one-off mandate allows a single collection (OOFF); a recurrent mandate the creditor or
-- the debtor asked to end after one last collection takes it as FNAL, and the batch that
-- presents it, once submitted, revokes the mandate.
ALTER TABLE mandates
    ADD COLUMN payment_type       text NOT NULL DEFAULT 'recurrent'
        CHECK (payment_type IN ('recurrent', 'one_off')),
    ADD COLUMN final_requested_at timestamptz,
    ADD CONSTRAINT mandates_final_is_recurrent
        CHECK (final_requested_at IS NULL OR payment_type = 'recurrent');

-- a one-off mandate announces one invoice's collection only
CREATE INDEX invoice_direct_debits_mandate_idx ON invoice_direct_debits (mandate_id);
