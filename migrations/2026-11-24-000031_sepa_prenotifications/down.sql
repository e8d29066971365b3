DROP TABLE invoice_direct_debits;
