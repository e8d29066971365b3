ALTER TABLE document_counters DROP COLUMN last_issued_on;
ALTER TABLE invoice_vat ALTER CONSTRAINT invoice_vat_invoice_id_fkey NOT DEFERRABLE;
ALTER TABLE invoice_lines ALTER CONSTRAINT invoice_lines_invoice_id_fkey NOT DEFERRABLE;
