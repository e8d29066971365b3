-- Payments received and credit balances refunded (issue 12). A payment is a bank transfer
-- or a card settlement reported by its processor; its reference (the bank's or the
-- processor's) is its idempotency key. What it settles is in `invoice_settlements`
-- (kind `payment`, source_id the payment); what is left over goes to the customer's credit
-- balance (4191). Both are records of money that moved: never changed nor deleted.
CREATE TABLE payments (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    reference   text NOT NULL UNIQUE CHECK (char_length(reference) BETWEEN 1 AND 200),
    method      text NOT NULL CHECK (method IN ('transfer', 'card')),
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    value_date  date NOT NULL,
    received_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX payments_customer_idx ON payments (customer_id, id);

CREATE TABLE refunds (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    reference   text NOT NULL UNIQUE CHECK (char_length(reference) BETWEEN 1 AND 200),
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    value_date  date NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX refunds_customer_idx ON refunds (customer_id, id);

-- As issued invoices (`invoices_immutable`): a mistake is corrected by a new movement.
CREATE FUNCTION money_records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a row of % is never changed nor deleted', TG_TABLE_NAME
        USING ERRCODE = 'check_violation';
END
$$;

CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION money_records_immutable();
CREATE TRIGGER refunds_immutable BEFORE UPDATE OR DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION money_records_immutable();

-- A ticket purchase names the charge that invoices it, so that paying that invoice finds
-- the purchase by a column, not by parsing a key.
ALTER TABLE ticket_purchases ADD COLUMN charge_id uuid REFERENCES charges (id);
UPDATE ticket_purchases p SET charge_id = c.id
    FROM charges c WHERE c.idempotency_key = 'tickets:' || p.id::text;
CREATE UNIQUE INDEX ticket_purchases_charge_idx ON ticket_purchases (charge_id);
