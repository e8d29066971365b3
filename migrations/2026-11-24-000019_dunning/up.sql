-- Dunning (issue 12, seed 001): a formal notice sent at 15 days past due suspends the
-- account; cleared when nothing is overdue any more, enforced (the contracts terminated)
-- when left without effect for 30 days. At most one open notice per customer.
CREATE TABLE formal_notices (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    -- the Paris date it was sent
    sent_on     date NOT NULL,
    -- what was overdue when it was sent
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    status      text NOT NULL CHECK (status IN ('open', 'cleared', 'enforced')),
    closed_on   date CHECK ((status = 'open') = (closed_on IS NULL) AND closed_on >= sent_on),
    created_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX formal_notices_one_open ON formal_notices (customer_id) WHERE status = 'open';
CREATE INDEX formal_notices_customer_idx ON formal_notices (customer_id, sent_on);
-- the dunning job finds what is past due without reading paid invoices
CREATE INDEX invoices_open_due_idx ON invoices (due_on) WHERE status IN ('issued', 'overdue');
