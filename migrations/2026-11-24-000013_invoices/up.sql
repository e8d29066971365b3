-- Invoices issued from charges (issue 12). Numbers come from a counter row locked inside
-- the issuing transaction, never from a sequence: a rolled-back issue leaves no gap.
CREATE TABLE document_counters (
    kind     text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    year     integer NOT NULL CHECK (year BETWEEN 1000 AND 9999),
    last_seq bigint NOT NULL CHECK (last_seq >= 0),
    PRIMARY KEY (kind, year)
);

CREATE TABLE invoices (
    id          uuid PRIMARY KEY,
    number      text NOT NULL UNIQUE,
    series      text NOT NULL CHECK (series IN ('F')),
    year        integer NOT NULL CHECK (year BETWEEN 1000 AND 9999),
    seq         bigint NOT NULL CHECK (seq > 0),
    customer_id uuid NOT NULL REFERENCES customers (id),
    issued_on   date NOT NULL,
    due_on      date NOT NULL CHECK (due_on >= issued_on),
    status      text NOT NULL CHECK (status IN ('issued')),
    total_ht    numeric(12, 2) NOT NULL,
    total_vat   numeric(12, 2) NOT NULL,
    total_ttc   numeric(12, 2) NOT NULL CHECK (total_ttc = total_ht + total_vat),
    created_at  timestamptz NOT NULL,
    CONSTRAINT invoices_seq_once UNIQUE (series, year, seq)
);
CREATE INDEX invoices_customer_idx ON invoices (customer_id, id);

CREATE TABLE invoice_lines (
    invoice_id    uuid NOT NULL REFERENCES invoices (id),
    position      integer NOT NULL CHECK (position >= 0),
    charge_id     uuid NOT NULL UNIQUE REFERENCES charges (id),
    description   text NOT NULL,
    quantity      numeric(14, 4) NOT NULL,
    unit_price    numeric(14, 4) NOT NULL,
    price_basis   text NOT NULL CHECK (price_basis IN ('ht', 'ttc')),
    unit_price_ht numeric(14, 4) NOT NULL,
    vat_rate      numeric(6, 4) NOT NULL,
    net_ht        numeric(12, 2) NOT NULL,
    service_start date,
    service_end   date,
    PRIMARY KEY (invoice_id, position)
);

CREATE TABLE invoice_vat (
    invoice_id uuid NOT NULL REFERENCES invoices (id),
    vat_rate   numeric(6, 4) NOT NULL,
    base_ht    numeric(12, 2) NOT NULL,
    vat        numeric(12, 2) NOT NULL,
    PRIMARY KEY (invoice_id, vat_rate)
);

-- An issued invoice is a legal document: never deleted, its content never changed
-- (corrections are credit notes). Only its status may move.
CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'an issued invoice is never deleted' USING ERRCODE = 'check_violation';
    END IF;
    IF TG_TABLE_NAME = 'invoices'
       AND (to_jsonb(NEW) - 'status') = (to_jsonb(OLD) - 'status') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an issued invoice is never changed' USING ERRCODE = 'check_violation';
END
$$;

CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE TRIGGER invoice_vat_immutable BEFORE UPDATE OR DELETE ON invoice_vat
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
