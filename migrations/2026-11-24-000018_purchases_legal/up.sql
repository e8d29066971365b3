-- Purchases invoiced at once, ticket revenue recognised at use, legal mentions (issue 12).

-- A ticket purchase names its invoice and the net it was sold for; `tickets_used` counts
-- its tickets captured so far (oldest purchase first), each recognising its share of that
-- net, and no more than it holds.
ALTER TABLE ticket_purchases
    ADD COLUMN invoice_id uuid REFERENCES invoices (id),
    ADD COLUMN net_ht numeric(12, 2) CHECK (net_ht >= 0),
    ADD COLUMN tickets_used integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT ticket_purchases_used_range CHECK (tickets_used BETWEEN 0 AND quantity);
CREATE INDEX ticket_purchases_unused_idx ON ticket_purchases (customer_id, created_at, id)
    WHERE tickets_used < quantity;

-- purchases invoiced by the invoicing job before this migration
UPDATE ticket_purchases p SET invoice_id = l.invoice_id, net_ht = l.net_ht
FROM charges c JOIN invoice_lines l ON l.charge_id = c.id
WHERE c.idempotency_key = 'tickets:' || p.id::text;

-- tickets captured before this migration, given to the customer's paid purchases oldest
-- first (their revenue was not recognised then, and is not now)
WITH used AS (
    SELECT customer_id, count(*) AS n FROM authorizations
    WHERE funding = 'ticket' AND status = 'captured' AND captured_units > 0
    GROUP BY customer_id
), before AS (
    SELECT p.id, u.n,
           sum(p.quantity) OVER (PARTITION BY p.customer_id ORDER BY p.created_at, p.id)
               - p.quantity AS earlier
    FROM ticket_purchases p JOIN used u ON u.customer_id = p.customer_id
    WHERE p.status = 'available'
)
UPDATE ticket_purchases p SET tickets_used = least(p.quantity, greatest(0, b.n - b.earlier))
FROM before b WHERE b.id = p.id;

-- A bought credit lot names its invoice.
ALTER TABLE credit_lots ADD COLUMN invoice_id uuid REFERENCES invoices (id);

-- What an invoice says of its seller, its buyer and its terms, frozen at issue (DOMAIN.md
-- "Invoices and credit notes"); checked by `invoicing::LegalMentions` when read. Null only
-- on invoices issued before this migration. Immutable like the rest of the invoice.
ALTER TABLE invoices ADD COLUMN mentions jsonb
    CHECK (mentions IS NULL OR (jsonb_typeof(mentions) = 'object'
                                AND mentions ?& ARRAY['seller', 'buyer', 'legal']));
CREATE INDEX invoices_issued_on_idx ON invoices (issued_on, id);

-- Deferred revenue (487) now holds every sale before its use (the sale is posted by the
-- purchase's invoice, in the purchase's transaction): it may never go below zero, which the
-- ledger enforces from now on. A database where one is below zero (credits used before
-- their purchase was invoiced) must run the invoicing job before this migration.
DO $$
DECLARE negative bigint;
BEGIN
    SELECT count(*) INTO negative FROM balances b JOIN accounts a ON a.id = b.account_id
    WHERE a.code = '487' AND a.customer_id IS NOT NULL
      AND b.posted_credits - b.posted_debits - b.pending_debits < 0;
    IF negative > 0 THEN
        RAISE EXCEPTION '% deferred revenue (487) accounts are below zero: run the invoicing job with the previous version first', negative;
    END IF;
END $$;
ALTER TABLE accounts DISABLE TRIGGER accounts_guard_update;
UPDATE accounts SET no_overdraft = true WHERE code = '487' AND customer_id IS NOT NULL;
UPDATE balances SET no_overdraft = true
WHERE account_id IN (SELECT id FROM accounts WHERE code = '487' AND customer_id IS NOT NULL);
ALTER TABLE accounts ENABLE TRIGGER accounts_guard_update;
