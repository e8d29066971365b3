-- Credit notes (issue 12): their own series (A2026-000001), numbered from the locked
-- `document_counters` row like invoices; each references its invoice, credits some of its
-- lines (by the line's charge) and is immutable like an invoice.
CREATE TABLE credit_notes (
    id                uuid PRIMARY KEY,
    number            text NOT NULL UNIQUE,
    series            text NOT NULL CHECK (series IN ('A')),
    year              integer NOT NULL CHECK (year BETWEEN 1000 AND 9999),
    seq               bigint NOT NULL CHECK (seq > 0),
    invoice_id        uuid NOT NULL REFERENCES invoices (id),
    customer_id       uuid NOT NULL REFERENCES customers (id),
    issued_on         date NOT NULL,
    reason            text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    total_ht          numeric(12, 2) NOT NULL CHECK (total_ht >= 0),
    total_vat         numeric(12, 2) NOT NULL CHECK (total_vat >= 0),
    total_ttc         numeric(12, 2) NOT NULL CHECK (total_ttc = total_ht + total_vat),
    -- what it took off what the invoice still asked (receivable 411), and the rest, which
    -- went to the customer's credit balance (4191)
    applied_to_invoice numeric(12, 2) NOT NULL CHECK (applied_to_invoice >= 0),
    to_credit_balance  numeric(12, 2) NOT NULL CHECK (to_credit_balance >= 0),
    created_at        timestamptz NOT NULL,
    CONSTRAINT credit_notes_seq_once UNIQUE (series, year, seq),
    CONSTRAINT credit_notes_split CHECK (applied_to_invoice + to_credit_balance = total_ttc)
);
CREATE INDEX credit_notes_invoice_idx ON credit_notes (invoice_id);
CREATE INDEX credit_notes_customer_idx ON credit_notes (customer_id, id);

CREATE TABLE credit_note_lines (
    credit_note_id uuid NOT NULL REFERENCES credit_notes (id),
    position       integer NOT NULL CHECK (position >= 0),
    -- the invoice line credited, by its charge
    charge_id      uuid NOT NULL REFERENCES invoice_lines (charge_id),
    description    text NOT NULL,
    -- of the line's quantity; none when an amount was credited
    quantity       numeric(14, 4) CHECK (quantity > 0),
    unit_price     numeric(14, 4) NOT NULL,
    price_basis    text NOT NULL CHECK (price_basis IN ('ht', 'ttc')),
    vat_rate       numeric(6, 4) NOT NULL,
    net_ht         numeric(12, 2) NOT NULL CHECK (net_ht > 0),
    PRIMARY KEY (credit_note_id, position),
    CONSTRAINT credit_note_lines_once UNIQUE (credit_note_id, charge_id)
);
CREATE INDEX credit_note_lines_charge_idx ON credit_note_lines (charge_id);

CREATE TABLE credit_note_vat (
    credit_note_id uuid NOT NULL REFERENCES credit_notes (id),
    vat_rate       numeric(6, 4) NOT NULL,
    base_ht        numeric(12, 2) NOT NULL,
    vat            numeric(12, 2) NOT NULL,
    PRIMARY KEY (credit_note_id, vat_rate)
);

CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER credit_note_lines_immutable BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER credit_note_vat_immutable BEFORE UPDATE OR DELETE ON credit_note_vat
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();

-- Tickets of a purchase taken back by credit notes: never paid out, never usable.
ALTER TABLE ticket_purchases ADD COLUMN credited integer NOT NULL DEFAULT 0;
ALTER TABLE ticket_purchases ADD CONSTRAINT ticket_purchases_credited
    CHECK (credited BETWEEN 0 AND quantity);
