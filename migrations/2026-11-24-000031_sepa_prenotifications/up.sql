-- The pre-notification of a SEPA collection (issue 13): an invoice issued to a customer
-- with an active mandate tells the debtor, on the invoice, the amount that will be
-- collected, the day, the mandate and the creditor identifier. Written once, when the
-- invoice is issued, like the invoice itself; a collection batch takes only the invoices
-- that announced a collection on or before its date.

CREATE TABLE invoice_direct_debits (
    invoice_id        uuid PRIMARY KEY REFERENCES invoices (id),
    mandate_id        uuid NOT NULL REFERENCES mandates (id),
    mandate_reference text NOT NULL CHECK (length(mandate_reference) BETWEEN 1 AND 35),
    creditor_id       text NOT NULL CHECK (length(creditor_id) BETWEEN 8 AND 35),
    debtor_iban       text NOT NULL CHECK (debtor_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    amount            numeric(14, 2) NOT NULL CHECK (amount > 0),
    collection_on     date NOT NULL
);
CREATE INDEX invoice_direct_debits_collection_idx ON invoice_direct_debits (collection_on);
