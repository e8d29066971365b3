-- The authorization hot path in fewer round trips: lock the customer and read what the
-- decision needs in one call. Each statement of a VOLATILE function reads what committed
-- before it started, so the read that follows the lock wait sees the previous decision's
-- holds (a single SELECT ... FOR UPDATE would read the snapshot taken before the wait).
CREATE FUNCTION authorization_begin(p_customer uuid, p_at timestamptz, p_today date, p_service text)
RETURNS TABLE (status text, free_diagnostics boolean, assistance_included boolean, maintenance boolean,
               pack_id uuid, tickets numeric, ticket_wallet uuid, ticket_used uuid, credit_used uuid,
               credits numeric, hourly_rate numeric, service_euros numeric, service_credits numeric)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM 1 FROM customers c WHERE c.id = p_customer FOR UPDATE;
    RETURN QUERY SELECT * FROM authorization_snapshot(p_customer, p_at, p_today, p_service);
END $fn$;
