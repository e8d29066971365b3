DROP INDEX invoices_open_due_idx;
DROP TABLE formal_notices;
