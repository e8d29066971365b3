ALTER TABLE accounts DISABLE TRIGGER accounts_guard_update;
UPDATE accounts SET no_overdraft = false WHERE code = '487' AND customer_id IS NOT NULL;
UPDATE balances SET no_overdraft = false
WHERE account_id IN (SELECT id FROM accounts WHERE code = '487' AND customer_id IS NOT NULL);
ALTER TABLE accounts ENABLE TRIGGER accounts_guard_update;

DROP INDEX invoices_issued_on_idx;
ALTER TABLE invoices DROP COLUMN mentions;
ALTER TABLE credit_lots DROP COLUMN invoice_id;
DROP INDEX ticket_purchases_unused_idx;
ALTER TABLE ticket_purchases
    DROP CONSTRAINT ticket_purchases_used_range,
    DROP COLUMN tickets_used,
    DROP COLUMN net_ht,
    DROP COLUMN invoice_id;
