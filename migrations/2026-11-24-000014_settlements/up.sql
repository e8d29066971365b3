-- What settles an invoice (issue 12): a payment, a credit note, or the customer's credit
-- balance (4191) applied to it. An invoice asks its total incl. VAT less its settlements;
-- its status follows: `paid` or `credited` when nothing remains, `overdue` past its due
-- date (the dunning job). Settlements are never changed or deleted (a refund or a reversal
-- is a new movement).
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('issued', 'overdue', 'paid', 'credited'));

CREATE TABLE invoice_settlements (
    id          uuid PRIMARY KEY,
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    kind        text NOT NULL CHECK (kind IN ('payment', 'credit_note', 'credit_balance')),
    -- the payment or the credit note; for the credit balance, the ledger transaction's id
    source_id   uuid NOT NULL,
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    -- the value date of the payment, the issue date of the credit note or of the invoice
    settled_on  date NOT NULL,
    created_at  timestamptz NOT NULL,
    CONSTRAINT invoice_settlements_once UNIQUE (invoice_id, kind, source_id)
);
CREATE INDEX invoice_settlements_customer_idx ON invoice_settlements (customer_id, settled_on);

CREATE TRIGGER invoice_settlements_immutable BEFORE UPDATE OR DELETE ON invoice_settlements
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
