DROP INDEX sepa_collections_invoice_idx;
ALTER TABLE sepa_collections
    DROP CONSTRAINT sepa_collections_failed,
    DROP CONSTRAINT sepa_collections_settled,
    DROP COLUMN return_file_id,
    DROP COLUMN return_reason;
ALTER TABLE sepa_collections ADD CONSTRAINT sepa_collections_settled
    CHECK ((status = 'settled') = (payment_id IS NOT NULL));
ALTER TABLE sepa_collections DROP CONSTRAINT sepa_collections_status_check;
ALTER TABLE sepa_collections ADD CONSTRAINT sepa_collections_status_check
    CHECK (status IN ('pending', 'submitted', 'settled'));
DROP TABLE sepa_return_files;
ALTER TABLE invoice_settlements DROP CONSTRAINT invoice_settlements_kind_check;
ALTER TABLE invoice_settlements ADD CONSTRAINT invoice_settlements_kind_check
    CHECK (kind IN ('payment', 'credit_note', 'credit_balance'));
