-- Back to the per-row trigger design of the first migration (its definitions, unchanged).
ALTER DEFAULT PRIVILEGES REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM grandlivre_service;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM grandlivre_service;
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = current_user::regrole LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM grandlivre_service', f);
    END LOOP;
END $$;

DROP FUNCTION ledger_settle(uuid[], text[], numeric[], text[], uuid[], timestamptz, boolean);
DROP FUNCTION ledger_hold(uuid[], text[], bytea[], uuid[], uuid[], text[], numeric[], timestamptz[], jsonb[], timestamptz);
DROP FUNCTION ledger_post(uuid, text, text, bytea, timestamptz, text, jsonb, uuid, uuid[], text[], numeric[], text[]);
DROP FUNCTION ledger_open_account(uuid, text, text, text, uuid, text, boolean);
DROP FUNCTION ledger_apply(uuid[], text[], numeric[], numeric[], numeric[], numeric[], numeric[]);
DROP TRIGGER balances_no_delete ON balances;
DROP TRIGGER holds_no_delete ON holds;
ALTER TABLE postings ADD CONSTRAINT postings_transaction_id_fkey FOREIGN KEY (transaction_id) REFERENCES transactions (id),
                     ADD CONSTRAINT postings_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id);
ALTER TABLE holds ADD CONSTRAINT holds_debit_account_id_fkey FOREIGN KEY (debit_account_id) REFERENCES accounts (id),
                  ADD CONSTRAINT holds_credit_account_id_fkey FOREIGN KEY (credit_account_id) REFERENCES accounts (id),
                  ADD CONSTRAINT holds_capture_transaction_id_fkey FOREIGN KEY (capture_transaction_id)
                      REFERENCES transactions (id) DEFERRABLE INITIALLY DEFERRED;

CREATE FUNCTION balances_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'balances cannot be deleted' USING CONSTRAINT = 'gl_append_only';
    END IF;
    IF pg_trigger_depth() < 2
       OR (NEW.account_id, NEW.unit, NEW.unit_scale, NEW.normal_side, NEW.no_overdraft)
          IS DISTINCT FROM (OLD.account_id, OLD.unit, OLD.unit_scale, OLD.normal_side, OLD.no_overdraft) THEN
        RAISE EXCEPTION 'balances change only through postings and holds' USING CONSTRAINT = 'gl_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER balances_guard BEFORE UPDATE OR DELETE ON balances
    FOR EACH ROW EXECUTE FUNCTION balances_guard();

CREATE FUNCTION accounts_create_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances (account_id, unit, unit_scale, normal_side, no_overdraft)
    SELECT NEW.id, NEW.unit, u.scale, NEW.normal_side, NEW.no_overdraft
    FROM units u WHERE u.code = NEW.unit;
    RETURN NULL;
END $$;
CREATE TRIGGER accounts_create_balance AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_create_balance();

CREATE FUNCTION transactions_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER transactions_stamp BEFORE INSERT ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_stamp();

CREATE FUNCTION postings_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- a committed transaction is closed: postings join only one created in this database
    -- transaction (created_at is forced to now(), the start of the database transaction)
    IF NOT EXISTS (SELECT 1 FROM transactions WHERE id = NEW.transaction_id AND created_at = now()) THEN
        RAISE EXCEPTION 'postings can only be added to a transaction created in the same database transaction'
            USING CONSTRAINT = 'gl_append_only';
    END IF;
    IF NEW.side = 'debit' THEN
        UPDATE balances SET posted_debits = posted_debits + NEW.amount, updated_at = now()
        WHERE account_id = NEW.account_id AND unit = NEW.unit AND scale(NEW.amount) <= unit_scale;
    ELSE
        UPDATE balances SET posted_credits = posted_credits + NEW.amount, updated_at = now()
        WHERE account_id = NEW.account_id AND unit = NEW.unit AND scale(NEW.amount) <= unit_scale;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting % % on account %: unknown account, wrong unit or too many decimals',
            NEW.amount, NEW.unit, NEW.account_id USING CONSTRAINT = 'gl_posting_invalid';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_apply AFTER INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION postings_apply();

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid;
    v_count integer;
    v_unbalanced text;
BEGIN
    IF TG_TABLE_NAME = 'transactions' THEN
        v_tx := NEW.id;
    ELSE
        v_tx := NEW.transaction_id;
    END IF;
    SELECT count(*)::integer,
           string_agg(DISTINCT unit, ',') FILTER (WHERE unit_sum <> 0)
      INTO v_count, v_unbalanced
      FROM (SELECT unit,
                   sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) OVER (PARTITION BY unit) AS unit_sum
              FROM postings WHERE transaction_id = v_tx) p;
    IF v_count < 2 THEN
        RAISE EXCEPTION 'transaction % has % posting(s); at least two are required', v_tx, v_count
            USING CONSTRAINT = 'gl_unbalanced';
    END IF;
    IF v_unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'transaction % does not balance in %', v_tx, v_unbalanced
            USING CONSTRAINT = 'gl_unbalanced';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transactions_balanced AFTER INSERT ON transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION holds_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'holds cannot be deleted' USING CONSTRAINT = 'gl_append_only';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'a hold starts pending' USING CONSTRAINT = 'gl_append_only';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status USING CONSTRAINT = 'gl_hold_not_pending';
    END IF;
    IF NEW.status = 'pending'
       OR (NEW.id, NEW.idempotency_key, NEW.request_hash, NEW.debit_account_id, NEW.credit_account_id,
           NEW.unit, NEW.amount, NEW.expires_at, NEW.metadata, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.idempotency_key, OLD.request_hash, OLD.debit_account_id, OLD.credit_account_id,
           OLD.unit, OLD.amount, OLD.expires_at, OLD.metadata, OLD.created_at) THEN
        RAISE EXCEPTION 'a hold may only be resolved' USING CONSTRAINT = 'gl_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER holds_guard BEFORE INSERT OR UPDATE OR DELETE ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_guard();

CREATE FUNCTION holds_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
    v_account uuid;
BEGIN
    -- lock in ascending account order, like postings
    FOREACH v_account IN ARRAY ARRAY[least(NEW.debit_account_id, NEW.credit_account_id),
                                     greatest(NEW.debit_account_id, NEW.credit_account_id)] LOOP
        UPDATE balances SET
            pending_debits = pending_debits + CASE WHEN v_account = NEW.debit_account_id THEN v_sign * NEW.amount ELSE 0 END,
            pending_credits = pending_credits + CASE WHEN v_account = NEW.credit_account_id THEN v_sign * NEW.amount ELSE 0 END,
            updated_at = now()
        WHERE account_id = v_account AND unit = NEW.unit AND scale(NEW.amount) <= unit_scale;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold on account %: unknown account, wrong unit or too many decimals', v_account
                USING CONSTRAINT = 'gl_posting_invalid';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER holds_apply AFTER INSERT OR UPDATE ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_apply();

CREATE FUNCTION holds_check_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'captured' AND NOT (
        SELECT count(*) = 2
               AND bool_and(amount = NEW.captured_amount AND unit = NEW.unit)
               AND bool_or(side = 'debit' AND account_id = NEW.debit_account_id)
               AND bool_or(side = 'credit' AND account_id = NEW.credit_account_id)
          FROM postings WHERE transaction_id = NEW.capture_transaction_id) THEN
        RAISE EXCEPTION 'hold % is captured without a matching capture transaction', NEW.id
            USING CONSTRAINT = 'gl_unbalanced';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER holds_capture_posted AFTER UPDATE ON holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION holds_check_capture();

CREATE FUNCTION ledger_post(
    p_id uuid, p_kind text, p_key text, p_hash bytea, p_effective_at timestamptz,
    p_description text, p_metadata jsonb, p_reverses uuid,
    p_accounts uuid[], p_sides text[], p_amounts numeric[], p_units text[]
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_hash bytea;
BEGIN
    INSERT INTO transactions (id, kind, idempotency_key, request_hash, effective_at, description, metadata, reverses)
    VALUES (p_id, p_kind, p_key, p_hash, coalesce(p_effective_at, now()), p_description, p_metadata, p_reverses)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT id, request_hash INTO v_id, v_hash FROM transactions WHERE idempotency_key = p_key;
        IF v_hash IS DISTINCT FROM p_hash THEN
            RAISE EXCEPTION 'idempotency key % was used for a different request', p_key
                USING CONSTRAINT = 'gl_idempotency_conflict';
        END IF;
        RETURN v_id;
    END IF;
    INSERT INTO postings (transaction_id, account_id, side, amount, unit)
    SELECT p_id, a, s, m, u FROM unnest(p_accounts, p_sides, p_amounts, p_units) AS t (a, s, m, u)
    ORDER BY a, s;
    RETURN p_id;
END $$;
