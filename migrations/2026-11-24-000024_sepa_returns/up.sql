-- SEPA rejects and returns (issue 13): a pain.002 status report or a camt.054 notification
-- imported once (its message id); each collection it names comes back with its reason code:
-- `rejected` before settlement, `returned` after. A returned payment is a settlement of its
-- own kind that gives back what the payment paid (settlements are never changed).

ALTER TABLE invoice_settlements DROP CONSTRAINT invoice_settlements_kind_check;
ALTER TABLE invoice_settlements ADD CONSTRAINT invoice_settlements_kind_check
    CHECK (kind IN ('payment', 'credit_note', 'credit_balance', 'payment_return'));

CREATE TABLE sepa_return_files (
    id          uuid PRIMARY KEY,
    message_id  text NOT NULL UNIQUE CHECK (length(message_id) BETWEEN 1 AND 35),
    format      text NOT NULL CHECK (format IN ('pain.002', 'camt.054')),
    imported_at timestamptz NOT NULL,
    report      jsonb NOT NULL CHECK (jsonb_typeof(report) = 'object')
);

ALTER TABLE sepa_collections DROP CONSTRAINT sepa_collections_status_check;
ALTER TABLE sepa_collections ADD CONSTRAINT sepa_collections_status_check
    CHECK (status IN ('pending', 'submitted', 'settled', 'rejected', 'returned'));
ALTER TABLE sepa_collections DROP CONSTRAINT sepa_collections_settled;
ALTER TABLE sepa_collections
    ADD COLUMN return_reason  text CHECK (return_reason ~ '^[A-Z0-9]{4}$'),
    ADD COLUMN return_file_id uuid REFERENCES sepa_return_files (id),
    ADD CONSTRAINT sepa_collections_settled
        CHECK (status NOT IN ('settled', 'returned') OR payment_id IS NOT NULL),
    ADD CONSTRAINT sepa_collections_failed
        CHECK ((status IN ('rejected', 'returned')) = (return_reason IS NOT NULL AND return_file_id IS NOT NULL));
CREATE INDEX sepa_collections_invoice_idx ON sepa_collections (invoice_id);
