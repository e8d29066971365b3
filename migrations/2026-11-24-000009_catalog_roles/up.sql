-- The catalog items other rules price from are named by data, never by fixed codes:
-- a pack names the offer its unit credits (Service+) or its overage (Assistance+) are
-- sold at, and the offer that sells tickets or prices intervention time carries that
-- role (at most one offer per role).
ALTER TABLE offers
    ADD COLUMN unit_credit_offer text REFERENCES offers (code),
    ADD COLUMN overage_offer     text REFERENCES offers (code),
    ADD COLUMN catalog_role      text CHECK (catalog_role IN ('ticket', 'intervention_time')),
    ADD CONSTRAINT offers_role_billing CHECK (
        catalog_role IS NULL
        OR (catalog_role = 'ticket' AND billing_period = 'once')
        OR (catalog_role = 'intervention_time' AND billing_period = 'per_use'));
CREATE UNIQUE INDEX offers_one_per_role ON offers (catalog_role) WHERE catalog_role IS NOT NULL;

-- catalogs loaded before (the demo's) keep the items they priced from by code
UPDATE offers SET catalog_role = 'ticket' WHERE code = 'ticket' AND billing_period = 'once';
UPDATE offers SET catalog_role = 'intervention_time'
 WHERE code = 'intervention_time' AND billing_period = 'per_use';
UPDATE offers SET overage_offer = 'appointment'
 WHERE appointment_quota IS NOT NULL AND EXISTS (SELECT 1 FROM offers WHERE code = 'appointment');
UPDATE offers SET unit_credit_offer = 'service_credit'
 WHERE unit_credit_purchase AND EXISTS (SELECT 1 FROM offers WHERE code = 'service_credit');
-- new packs must name their items (older rows that could not are left as they are)
ALTER TABLE offers ADD CONSTRAINT offers_pack_names_its_items CHECK (
    (appointment_quota IS NULL OR overage_offer IS NOT NULL)
    AND (NOT unit_credit_purchase OR unit_credit_offer IS NOT NULL)) NOT VALID;

-- The authorization snapshot finds the customer's accounts by the codes the Rust chart of
-- accounts gives (src/ledger/chart.rs), and intervention time by its role.
DROP FUNCTION authorization_begin(uuid, timestamptz, date, text);
DROP FUNCTION authorization_snapshot(uuid, timestamptz, date, text);

CREATE FUNCTION authorization_snapshot(p_customer uuid, p_at timestamptz, p_today date, p_service text,
                                       p_accounts text[])
RETURNS TABLE (status text, free_diagnostics boolean, assistance_included boolean, maintenance boolean,
               pack_id uuid, tickets numeric, ticket_wallet uuid, ticket_used uuid, credit_used uuid,
               credits numeric, intervention_offer text, hourly_rate numeric, service_euros numeric,
               service_credits numeric)
LANGUAGE sql STABLE AS $fn$
SELECT c.status,
       coalesce(e.free_diagnostics, false) AS free_diagnostics,
       coalesce(e.assistance_included, false) AS assistance_included,
       coalesce(e.maintenance, false) AS maintenance,
       e.pack_id,
       coalesce((SELECT b.posted_credits - b.posted_debits - b.pending_debits
                   FROM accounts a JOIN balances b ON b.account_id = a.id
                  WHERE a.customer_id = c.id AND a.code = p_accounts[1]), 0) AS tickets,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = p_accounts[1]) AS ticket_wallet,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = p_accounts[2]) AS ticket_used,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = p_accounts[3]) AS credit_used,
       coalesce((SELECT sum(b.posted_credits - b.posted_debits - b.pending_debits)
                   FROM credit_lots l JOIN balances b ON b.account_id = l.account_id
                  WHERE l.customer_id = c.id AND l.expires_at > p_at AND l.granted_at <= p_at
                    AND l.expired_at IS NULL), 0) AS credits,
       t.code AS intervention_offer,
       (SELECT p.unit_price FROM offer_prices p WHERE p.offer_code = t.code AND p.effective_from <= p_today
         ORDER BY p.effective_from DESC LIMIT 1) AS hourly_rate,
       (SELECT p.unit_price FROM offer_prices p WHERE p.offer_code = p_service AND p.effective_from <= p_today
         ORDER BY p.effective_from DESC LIMIT 1) AS service_euros,
       (SELECT o.credit_price FROM offers o WHERE o.code = p_service) AS service_credits
  FROM customers c
  LEFT JOIN offers t ON t.catalog_role = 'intervention_time'
  LEFT JOIN LATERAL (
       SELECT bool_or(o.free_diagnostics) AS free_diagnostics,
              bool_or(o.assistance_included) AS assistance_included,
              bool_or(o.maintenance) AS maintenance,
              (array_agg(s.id ORDER BY s.id) FILTER (WHERE o.appointment_quota IS NOT NULL))[1] AS pack_id
         FROM subscriptions s JOIN offers o ON o.code = s.offer_code
        WHERE s.customer_id = c.id AND s.status = 'active' AND s.start_date <= p_today
          AND (s.ends_at IS NULL OR s.ends_at > p_at)) e ON true
 WHERE c.id = p_customer;
$fn$;

-- Locks the customer, then reads its snapshot: each statement of a VOLATILE function reads
-- what committed before it started, so the read after the lock wait sees the previous
-- decision's holds.
CREATE FUNCTION authorization_begin(p_customer uuid, p_at timestamptz, p_today date, p_service text,
                                    p_accounts text[])
RETURNS TABLE (status text, free_diagnostics boolean, assistance_included boolean, maintenance boolean,
               pack_id uuid, tickets numeric, ticket_wallet uuid, ticket_used uuid, credit_used uuid,
               credits numeric, intervention_offer text, hourly_rate numeric, service_euros numeric,
               service_credits numeric)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM 1 FROM customers c WHERE c.id = p_customer FOR UPDATE;
    RETURN QUERY SELECT * FROM authorization_snapshot(p_customer, p_at, p_today, p_service, p_accounts);
END $fn$;

REVOKE EXECUTE ON FUNCTION authorization_snapshot(uuid, timestamptz, date, text, text[]),
    authorization_begin(uuid, timestamptz, date, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authorization_begin(uuid, timestamptz, date, text, text[]),
    authorization_snapshot(uuid, timestamptz, date, text, text[]) TO grandlivre_service;
