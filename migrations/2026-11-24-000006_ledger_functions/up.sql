-- Ledger write path v2: every ledger write is one function call, and no per-row trigger
-- runs on the write path. The invariants of ARCHITECTURE.md stay in the database:
--   1. ledger_post refuses a transaction that does not balance per unit; captures move
--      one amount from one account to another;
--   2. transactions and postings stay append-only (UPDATE/DELETE/TRUNCATE raise), and
--      the service role may not write any ledger table at all;
--   3. the CHECK on balances (no overdraft, pending included) is unchanged;
--   4. only these functions change balances: each locks the balance rows it touches in
--      ascending account id and updates each exactly once (ledger_apply);
--   6. amounts within their unit's scale: checked by ledger_apply for every row it moves.
-- The functions are SECURITY DEFINER, owned by the role that runs the migrations (the
-- schema owner), with search_path pinned; the service role may only EXECUTE them.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grandlivre_service') THEN
        CREATE ROLE grandlivre_service NOLOGIN;
    END IF;
END $$;

-- The per-row triggers that maintained balances and checked each transaction at commit.
DROP TRIGGER postings_apply ON postings;
DROP TRIGGER postings_balanced ON postings;
DROP TRIGGER transactions_balanced ON transactions;
DROP TRIGGER transactions_stamp ON transactions;
DROP TRIGGER holds_apply ON holds;
DROP TRIGGER holds_guard ON holds;
DROP TRIGGER holds_capture_posted ON holds;
DROP TRIGGER balances_guard ON balances;
DROP TRIGGER accounts_create_balance ON accounts;
DROP FUNCTION postings_apply();
DROP FUNCTION ledger_check_balanced();
DROP FUNCTION transactions_stamp();
DROP FUNCTION holds_apply();
DROP FUNCTION holds_guard();
DROP FUNCTION holds_check_capture();
DROP FUNCTION balances_guard();
DROP FUNCTION accounts_create_balance();
DROP FUNCTION ledger_post(uuid, text, text, bytea, timestamptz, text, jsonb, uuid, uuid[], text[], numeric[], text[]);

-- The foreign keys of postings and holds were per-row checks too (each locking the
-- account row it names, shared by every concurrent writer of that account). What they
-- checked now holds by construction: only the functions below write these rows, a
-- posting joins the transaction inserted in the same call, and every account a posting
-- or hold names must have a balance row (ledger_apply raises otherwise; balances keep
-- their foreign key to accounts, which are never deleted). Verify reports any posting
-- whose transaction or account is missing.
ALTER TABLE postings DROP CONSTRAINT postings_transaction_id_fkey,
                     DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE holds DROP CONSTRAINT holds_debit_account_id_fkey,
                  DROP CONSTRAINT holds_credit_account_id_fkey,
                  DROP CONSTRAINT holds_capture_transaction_id_fkey;

-- Balance rows and holds are never deleted, whoever asks (not on the write path: only
-- DELETE fires these).
CREATE TRIGGER balances_no_delete BEFORE DELETE ON balances
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Moves balances: for each (account, unit), add the four deltas to its balance row.
-- Rows are locked in ascending account id (so concurrent writers never deadlock on
-- them) and each is updated exactly once. A row that does not exist, is in another unit
-- or whose scale is below an amount's raises gl_posting_invalid; an overdraft raises
-- gl_insufficient_funds (the CHECK on balances). Internal: called by the functions below
-- (it runs with their owner's rights and pinned search_path), not executable by the service.
CREATE FUNCTION ledger_apply(
    p_accounts uuid[], p_units text[], p_amounts numeric[],
    p_posted_debits numeric[], p_posted_credits numeric[],
    p_pending_debits numeric[], p_pending_credits numeric[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT a, u, max(scale(m)) AS sc, sum(pd) AS pd, sum(pc) AS pc, sum(hd) AS hd, sum(hc) AS hc
          FROM unnest(p_accounts, p_units, p_amounts, p_posted_debits, p_posted_credits,
                      p_pending_debits, p_pending_credits) AS t (a, u, m, pd, pc, hd, hc)
         GROUP BY a, u
         ORDER BY a, u
    LOOP
        UPDATE balances
           SET posted_debits = posted_debits + r.pd,
               posted_credits = posted_credits + r.pc,
               pending_debits = pending_debits + r.hd,
               pending_credits = pending_credits + r.hc,
               updated_at = now()
         WHERE account_id = r.a AND unit = r.u AND r.sc <= unit_scale;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'account %: unknown, not in %, or fewer decimals than the amount', r.a, r.u
                USING CONSTRAINT = 'gl_posting_invalid';
        END IF;
    END LOOP;
END $$;

-- Opens an account (with its balance row) unless one with the same code exists for the
-- same customer; returns the id of the account with that code.
CREATE FUNCTION ledger_open_account(
    p_id uuid, p_code text, p_name text, p_unit text, p_customer uuid,
    p_normal_side text, p_no_overdraft boolean
) RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_id uuid;
BEGIN
    INSERT INTO accounts (id, code, name, unit, customer_id, normal_side, no_overdraft)
    VALUES (p_id, p_code, p_name, p_unit, p_customer, p_normal_side, p_no_overdraft)
    ON CONFLICT ON CONSTRAINT accounts_code_customer_key DO NOTHING;
    IF FOUND THEN
        INSERT INTO balances (account_id, unit, unit_scale, normal_side, no_overdraft)
        SELECT p_id, p_unit, u.scale, p_normal_side, p_no_overdraft FROM units u WHERE u.code = p_unit;
        RETURN p_id;
    END IF;
    SELECT a.id INTO v_id FROM accounts a
     WHERE a.code = p_code AND a.customer_id IS NOT DISTINCT FROM p_customer;
    RETURN v_id;
END $$;

-- Posts one transaction. Idempotent on p_key: a replay with the same request hash returns
-- the first transaction's id; another hash raises gl_idempotency_conflict. Returns the id
-- of the transaction (p_id when this call created it).
CREATE FUNCTION ledger_post(
    p_id uuid, p_kind text, p_key text, p_hash bytea, p_effective_at timestamptz,
    p_description text, p_metadata jsonb, p_reverses uuid,
    p_accounts uuid[], p_sides text[], p_amounts numeric[], p_units text[]
) RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_n integer := coalesce(cardinality(p_accounts), 0);
    v_id uuid;
    v_hash bytea;
    v_unbalanced text;
BEGIN
    IF v_n NOT BETWEEN 2 AND 100 OR cardinality(p_sides) <> v_n
       OR cardinality(p_amounts) <> v_n OR cardinality(p_units) <> v_n THEN
        RAISE EXCEPTION 'a transaction has 2 to 100 postings (% given), each with an account, a side, an amount and a unit', v_n
            USING CONSTRAINT = 'gl_unbalanced';
    END IF;
    SELECT string_agg(u, ',' ORDER BY u) INTO v_unbalanced FROM (
        SELECT u FROM unnest(p_sides, p_amounts, p_units) AS t (s, m, u)
         GROUP BY u HAVING sum(CASE s WHEN 'debit' THEN m ELSE -m END) <> 0) x;
    IF v_unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'transaction does not balance in %', v_unbalanced USING CONSTRAINT = 'gl_unbalanced';
    END IF;
    INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at, description, metadata, reverses)
    VALUES (p_id, p_kind, p_key, p_hash, coalesce(p_effective_at, now()), p_description, p_metadata, p_reverses)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT t.id, t.request_hash INTO v_id, v_hash FROM transactions t WHERE t.idempotency_key = p_key;
        IF v_hash IS DISTINCT FROM p_hash THEN
            RAISE EXCEPTION 'idempotency key % was used for a different request', p_key
                USING CONSTRAINT = 'gl_idempotency_conflict';
        END IF;
        RETURN v_id;
    END IF;
    INSERT INTO postings (transaction_id, account_id, side, amount, unit)
    SELECT p_id, a, s, m, u FROM unnest(p_accounts, p_sides, p_amounts, p_units) AS t (a, s, m, u)
     ORDER BY a, s;
    PERFORM ledger_apply(
        p_accounts, p_units, p_amounts,
        ARRAY(SELECT CASE s WHEN 'debit' THEN m ELSE 0 END FROM unnest(p_sides, p_amounts) AS t (s, m)),
        ARRAY(SELECT CASE s WHEN 'credit' THEN m ELSE 0 END FROM unnest(p_sides, p_amounts) AS t (s, m)),
        array_fill(0::numeric, ARRAY[v_n]), array_fill(0::numeric, ARRAY[v_n]));
    RETURN p_id;
END $$;

-- Places holds (pending amounts), each idempotent on its key: a replay with the same hash
-- returns the first hold (replayed), another hash raises gl_idempotency_conflict.
CREATE FUNCTION ledger_hold(
    p_ids uuid[], p_keys text[], p_hashes bytea[], p_debits uuid[], p_credits uuid[],
    p_units text[], p_amounts numeric[], p_expires timestamptz[], p_metadata jsonb[],
    p_now timestamptz
) RETURNS TABLE (hold_id uuid, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_new uuid[];
    v_conflict text;
BEGIN
    WITH ins AS (
        INSERT INTO holds (id, idempotency_key, request_hash, debit_account_id, credit_account_id,
                           unit, amount, expires_at, metadata, created_at)
        SELECT i, k, h, d, c, u, m, e, coalesce(md, '{}'), p_now
          FROM unnest(p_ids, p_keys, p_hashes, p_debits, p_credits, p_units, p_amounts, p_expires, p_metadata)
               AS t (i, k, h, d, c, u, m, e, md)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id)
    SELECT coalesce(array_agg(id), '{}') INTO v_new FROM ins;
    IF cardinality(v_new) < cardinality(p_ids) THEN
        SELECT string_agg(x.idempotency_key, ', ') INTO v_conflict
          FROM holds x
         WHERE x.idempotency_key = ANY (p_keys)
           AND x.request_hash IS DISTINCT FROM p_hashes[array_position(p_keys, x.idempotency_key)];
        IF v_conflict IS NOT NULL THEN
            RAISE EXCEPTION 'idempotency key % was used for a different hold', v_conflict
                USING CONSTRAINT = 'gl_idempotency_conflict';
        END IF;
    END IF;
    -- what a new hold reserves: pending debit on its debit account, pending credit on its
    -- credit account (read from the arguments: only index look-ups touch holds)
    IF cardinality(v_new) > 0 THEN
        PERFORM ledger_apply(
            array_agg(acct), array_agg(unit), array_agg(amount),
            array_agg(0::numeric), array_agg(0::numeric), array_agg(hd), array_agg(hc))
           FROM (SELECT d AS acct, u AS unit, m AS amount, m AS hd, 0::numeric AS hc
                   FROM unnest(p_ids, p_debits, p_units, p_amounts) AS t (i, d, u, m) WHERE i = ANY (v_new)
                 UNION ALL
                 SELECT c, u, m, 0, m
                   FROM unnest(p_ids, p_credits, p_units, p_amounts) AS t (i, c, u, m) WHERE i = ANY (v_new)) x;
    END IF;
    IF cardinality(v_new) = cardinality(p_ids) THEN
        RETURN QUERY SELECT i, false FROM unnest(p_ids) AS i;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT x.id, NOT (x.id = ANY (v_new))
          FROM holds x
         WHERE x.idempotency_key = ANY (p_keys)
         ORDER BY array_position(p_keys, x.idempotency_key);
END $$;

-- Resolves pending holds: each captured (posted in a transaction of its own,
-- `capture:{hold}`, under p_tx_ids[i]) for p_captures[i] in p_units[i] (NULL: the whole
-- hold) with the rest released, or released as voided or expired. Holds are locked in id
-- order first. A hold that is not pending raises gl_hold_not_pending (DETAIL: "<id>
-- <status>") unless p_skip_resolved; one past its expiry cannot be captured or voided,
-- one not yet due cannot be expired. Returns each resolved hold with its capture
-- transaction (NULL when released).
CREATE FUNCTION ledger_settle(
    p_holds uuid[], p_statuses text[], p_captures numeric[], p_units text[], p_tx_ids uuid[],
    p_now timestamptz, p_skip_resolved boolean
) RETURNS TABLE (hold_id uuid, transaction_id uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r record;
    v_n integer;
    v_s text;
    v_take numeric;
    v_tx uuid;
    v_found integer := 0;
    -- what the settled holds move, two rows each (debit account, credit account)
    v_accounts uuid[] := '{}';
    v_units text[] := '{}';
    v_amounts numeric[] := '{}';
    v_posted_debits numeric[] := '{}';
    v_posted_credits numeric[] := '{}';
    v_pending_debits numeric[] := '{}';
    v_pending_credits numeric[] := '{}';
BEGIN
    FOR r IN
        SELECT h.id, h.status, h.amount, h.unit, h.expires_at, h.debit_account_id, h.credit_account_id
          FROM holds h
         WHERE h.id = ANY (p_holds)
         ORDER BY h.id
           FOR UPDATE
    LOOP
        v_found := v_found + 1;
        v_n := array_position(p_holds, r.id);
        v_s := p_statuses[v_n];
        IF r.status <> 'pending' OR (v_s = 'expired') <> (r.expires_at <= p_now) THEN
            CONTINUE WHEN p_skip_resolved;
            RAISE EXCEPTION 'hold % is %', r.id,
                    CASE WHEN r.status <> 'pending' THEN r.status WHEN v_s = 'expired' THEN 'not due' ELSE 'expired' END
                USING CONSTRAINT = 'gl_hold_not_pending',
                      DETAIL = r.id || ' ' || CASE WHEN r.status <> 'pending' THEN r.status
                                                   WHEN v_s = 'expired' THEN 'pending' ELSE 'expired' END;
        END IF;
        IF v_s IS NULL OR v_s NOT IN ('captured', 'voided', 'expired')
           OR (v_s <> 'captured' AND p_captures[v_n] IS NOT NULL)
           OR (p_captures[v_n] IS NOT NULL AND p_units[v_n] IS DISTINCT FROM r.unit) THEN
            RAISE EXCEPTION 'hold % (in %): a hold is captured in its unit, or voided or expired for nothing', r.id, r.unit
                USING CONSTRAINT = 'gl_posting_invalid';
        END IF;
        v_take := CASE WHEN v_s = 'captured' THEN coalesce(p_captures[v_n], r.amount) END;
        v_tx := CASE WHEN v_take IS NOT NULL THEN p_tx_ids[v_n] END;
        IF v_take <= 0 OR v_take > r.amount THEN
            RAISE EXCEPTION 'cannot capture % from hold % of %', v_take, r.id, r.amount
                USING CONSTRAINT = 'gl_capture_exceeds_hold', DETAIL = r.id || ' ' || r.amount;
        END IF;
        IF v_tx IS NOT NULL THEN
            INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at, metadata)
            VALUES (v_tx, 'hold.capture', 'capture:' || r.id, sha256(convert_to(r.id || ':' || v_take, 'UTF8')),
                    p_now, jsonb_build_object('hold_id', r.id));
            INSERT INTO postings (transaction_id, account_id, side, amount, unit)
            SELECT v_tx, a, s, v_take, r.unit
              FROM (VALUES (r.debit_account_id, 'debit'), (r.credit_account_id, 'credit')) AS p (a, s)
             ORDER BY a;
        END IF;
        UPDATE holds
           SET status = v_s, resolved_at = p_now, captured_amount = v_take, capture_transaction_id = v_tx
         WHERE id = r.id;
        -- pending released, the captured amount posted
        v_accounts := v_accounts || ARRAY[r.debit_account_id, r.credit_account_id];
        v_units := v_units || ARRAY[r.unit, r.unit];
        v_amounts := v_amounts || ARRAY[coalesce(v_take, r.amount), coalesce(v_take, r.amount)];
        v_posted_debits := v_posted_debits || ARRAY[coalesce(v_take, 0), 0];
        v_posted_credits := v_posted_credits || ARRAY[0, coalesce(v_take, 0)];
        v_pending_debits := v_pending_debits || ARRAY[-r.amount, 0];
        v_pending_credits := v_pending_credits || ARRAY[0, -r.amount];
        hold_id := r.id;
        transaction_id := v_tx;
        RETURN NEXT;
    END LOOP;
    IF v_found < coalesce(cardinality(p_holds), 0) THEN
        RAISE EXCEPTION 'unknown hold among %', p_holds USING CONSTRAINT = 'gl_unknown_hold';
    END IF;
    -- each balance row moved once, in account order
    PERFORM ledger_apply(v_accounts, v_units, v_amounts, v_posted_debits, v_posted_credits,
                         v_pending_debits, v_pending_credits);
END $$;

-- Privileges: the service reads everything, writes the domain tables, and changes the
-- ledger (accounts, balances, transactions, postings, holds, units) only through the
-- functions above.
REVOKE ALL ON accounts, balances, transactions, postings, holds, units FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO grandlivre_service;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER
    ON accounts, balances, transactions, postings, holds, units, __diesel_schema_migrations
    FROM grandlivre_service;
-- (the functions this role owns: an extension's are not ours to change)
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = current_user::regrole LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION
    ledger_open_account(uuid, text, text, text, uuid, text, boolean),
    ledger_post(uuid, text, text, bytea, timestamptz, text, jsonb, uuid, uuid[], text[], numeric[], text[]),
    ledger_hold(uuid[], text[], bytea[], uuid[], uuid[], text[], numeric[], timestamptz[], jsonb[], timestamptz),
    ledger_settle(uuid[], text[], numeric[], text[], uuid[], timestamptz, boolean),
    authorization_begin(uuid, timestamptz, date, text),
    authorization_snapshot(uuid, timestamptz, date, text)
    TO grandlivre_service;
-- tables of later migrations are the service's to write unless a migration says otherwise;
-- functions are nobody's to call until granted
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO grandlivre_service;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
