ALTER TABLE mandate_amendments DROP CONSTRAINT mandate_amendments_reported_in_fkey;
DROP TABLE sepa_collections;
DROP TABLE sepa_batches;
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check CHECK (method IN ('transfer', 'card'));
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('issued', 'overdue', 'paid', 'credited'));
