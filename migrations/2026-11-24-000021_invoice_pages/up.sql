-- Invoices written a page at a time (issue 12's benchmark): an invoice's lines and VAT
-- are written before it is numbered and its own row written, at the end of its
-- transaction, so that the series' counter row is held only that long. Their references
-- to it are checked at commit.
ALTER TABLE invoice_lines ALTER CONSTRAINT invoice_lines_invoice_id_fkey DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE invoice_vat ALTER CONSTRAINT invoice_vat_invoice_id_fkey DEFERRABLE INITIALLY DEFERRED;

-- The date of a series' last issue: a document numbered after it is never dated before it
-- (numbers and dates in the same order, even when transactions that started before
-- midnight are numbered after it).
ALTER TABLE document_counters ADD COLUMN last_issued_on date;
UPDATE document_counters c
   SET last_issued_on = (SELECT max(i.issued_on) FROM invoices i WHERE i.year = c.year)
 WHERE c.kind = 'invoice';
UPDATE document_counters c
   SET last_issued_on = (SELECT max(n.issued_on) FROM credit_notes n WHERE n.year = c.year)
 WHERE c.kind = 'credit_note';
