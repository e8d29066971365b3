-- SEPA collection batches (issue 13): a batch gathers invoices to collect on one date, each
-- collection frozen as its pain.008 file names it (mandate, debtor account, amount, sequence
-- type, end-to-end id). Submitting moves receivables 411 to direct debits in transit 5112
-- and the invoices to `collection_pending`; settling pays them (a `direct_debit` payment
-- each, through the payments' own path) and moves 5112 to the bank 512.

ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('issued', 'overdue', 'collection_pending', 'paid', 'credited'));

ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('transfer', 'card', 'direct_debit'));

CREATE TABLE sepa_batches (
    id              uuid PRIMARY KEY,
    message_id      text NOT NULL UNIQUE CHECK (message_id ~ '^[A-Za-z0-9]{1,35}$'),
    collection_date date NOT NULL,
    status          text NOT NULL CHECK (status IN ('created', 'submitted', 'settled')),
    collections     integer NOT NULL CHECK (collections > 0),
    total           numeric(14, 2) NOT NULL CHECK (total > 0),
    created_at      timestamptz NOT NULL,
    submitted_at    timestamptz,
    settled_at      timestamptz,
    value_date      date,
    CONSTRAINT sepa_batches_submitted CHECK ((status <> 'created') = (submitted_at IS NOT NULL)),
    CONSTRAINT sepa_batches_settled
        CHECK ((status = 'settled') = (settled_at IS NOT NULL AND value_date IS NOT NULL))
);

CREATE TABLE sepa_collections (
    id                uuid PRIMARY KEY,
    batch_id          uuid NOT NULL REFERENCES sepa_batches (id),
    invoice_id        uuid NOT NULL REFERENCES invoices (id),
    customer_id       uuid NOT NULL REFERENCES customers (id),
    mandate_id        uuid NOT NULL REFERENCES mandates (id),
    -- unique per collection attempt, naming the invoice
    end_to_end_id     text NOT NULL UNIQUE CHECK (end_to_end_id ~ '^[A-Za-z0-9-]{1,35}$'),
    attempt           integer NOT NULL CHECK (attempt >= 1),
    amount            numeric(12, 2) NOT NULL CHECK (amount > 0),
    sequence_type     text NOT NULL CHECK (sequence_type IN ('FRST', 'RCUR', 'OOFF', 'FNAL')),
    scheme            text NOT NULL CHECK (scheme IN ('CORE', 'B2B')),
    -- what the file names, as it was when the batch was made
    mandate_reference text NOT NULL CHECK (length(mandate_reference) BETWEEN 1 AND 35),
    mandate_signed_on date NOT NULL,
    debtor_name       text NOT NULL CHECK (length(debtor_name) BETWEEN 1 AND 70),
    debtor_iban       text NOT NULL CHECK (debtor_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    debtor_bic        text CHECK (debtor_bic ~ '^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$'),
    debtor_address    jsonb NOT NULL CHECK (jsonb_typeof(debtor_address) = 'object'),
    -- the IBAN an amendment replaced, reported by this collection
    amended_from_iban text CHECK (amended_from_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    status            text NOT NULL CHECK (status IN ('pending', 'submitted', 'settled')),
    -- the payment that settled it
    payment_id        uuid REFERENCES payments (id),
    CONSTRAINT sepa_collections_settled CHECK ((status = 'settled') = (payment_id IS NOT NULL))
);
-- an invoice is in at most one collection not yet settled
CREATE UNIQUE INDEX sepa_collections_once ON sepa_collections (invoice_id)
    WHERE status IN ('pending', 'submitted');
CREATE INDEX sepa_collections_batch_idx ON sepa_collections (batch_id, customer_id, id);
CREATE INDEX sepa_collections_mandate_idx ON sepa_collections (mandate_id);

ALTER TABLE mandate_amendments
    ADD CONSTRAINT mandate_amendments_reported_in_fkey
        FOREIGN KEY (reported_in) REFERENCES sepa_batches (id);
