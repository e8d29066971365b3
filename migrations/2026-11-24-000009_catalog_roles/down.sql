DROP FUNCTION authorization_begin(uuid, timestamptz, date, text, text[]);
DROP FUNCTION authorization_snapshot(uuid, timestamptz, date, text, text[]);
CREATE FUNCTION authorization_snapshot(p_customer uuid, p_at timestamptz, p_today date, p_service text)
RETURNS TABLE (status text, free_diagnostics boolean, assistance_included boolean, maintenance boolean,
               pack_id uuid, tickets numeric, ticket_wallet uuid, ticket_used uuid, credit_used uuid,
               credits numeric, hourly_rate numeric, service_euros numeric, service_credits numeric)
LANGUAGE sql STABLE AS $fn$
SELECT c.status,
       coalesce(e.free_diagnostics, false) AS free_diagnostics,
       coalesce(e.assistance_included, false) AS assistance_included,
       coalesce(e.maintenance, false) AS maintenance,
       e.pack_id,
       coalesce((SELECT b.posted_credits - b.posted_debits - b.pending_debits
                   FROM accounts a JOIN balances b ON b.account_id = a.id
                  WHERE a.customer_id = c.id AND a.code = 'TICKET-WALLET'), 0) AS tickets,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = 'TICKET-WALLET') AS ticket_wallet,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = 'TICKET-USED') AS ticket_used,
       (SELECT a.id FROM accounts a WHERE a.customer_id = c.id AND a.code = 'CREDIT-USED') AS credit_used,
       coalesce((SELECT sum(b.posted_credits - b.posted_debits - b.pending_debits)
                   FROM credit_lots l JOIN balances b ON b.account_id = l.account_id
                  WHERE l.customer_id = c.id AND l.expires_at > p_at AND l.granted_at <= p_at
                    AND l.expired_at IS NULL), 0) AS credits,
       (SELECT p.unit_price FROM offer_prices p WHERE p.offer_code = 'intervention_time' AND p.effective_from <= p_today
         ORDER BY p.effective_from DESC LIMIT 1) AS hourly_rate,
       (SELECT p.unit_price FROM offer_prices p WHERE p.offer_code = p_service AND p.effective_from <= p_today
         ORDER BY p.effective_from DESC LIMIT 1) AS service_euros,
       (SELECT o.credit_price FROM offers o WHERE o.code = p_service) AS service_credits
  FROM customers c
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
CREATE FUNCTION authorization_begin(p_customer uuid, p_at timestamptz, p_today date, p_service text)
RETURNS TABLE (status text, free_diagnostics boolean, assistance_included boolean, maintenance boolean,
               pack_id uuid, tickets numeric, ticket_wallet uuid, ticket_used uuid, credit_used uuid,
               credits numeric, hourly_rate numeric, service_euros numeric, service_credits numeric)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM 1 FROM customers c WHERE c.id = p_customer FOR UPDATE;
    RETURN QUERY SELECT * FROM authorization_snapshot(p_customer, p_at, p_today, p_service);
END $fn$;
REVOKE EXECUTE ON FUNCTION authorization_snapshot(uuid, timestamptz, date, text),
    authorization_begin(uuid, timestamptz, date, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authorization_begin(uuid, timestamptz, date, text),
    authorization_snapshot(uuid, timestamptz, date, text) TO grandlivre_service;
DROP INDEX offers_one_per_role;
ALTER TABLE offers DROP CONSTRAINT offers_pack_names_its_items, DROP CONSTRAINT offers_role_billing,
    DROP COLUMN unit_credit_offer, DROP COLUMN overage_offer, DROP COLUMN catalog_role;
