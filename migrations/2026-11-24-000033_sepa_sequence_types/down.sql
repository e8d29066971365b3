DROP INDEX invoice_direct_debits_mandate_idx;
ALTER TABLE mandates
    DROP CONSTRAINT mandates_final_is_recurrent,
    DROP COLUMN final_requested_at,
    DROP COLUMN payment_type;
