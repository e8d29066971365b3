DROP TABLE invoice_vat;
DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP FUNCTION invoices_immutable();
DROP TABLE document_counters;
