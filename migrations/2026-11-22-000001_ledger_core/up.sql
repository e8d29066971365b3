-- Ledger core: units, accounts, balances, transactions, postings, holds.
-- The invariants of ARCHITECTURE.md are enforced here, whoever writes:
--   1. every transaction balances per unit (deferred constraint trigger, at commit);
--   2. transactions and postings are append-only (UPDATE/DELETE/TRUNCATE raise);
--   3. no-overdraft accounts never go negative, pending holds included (CHECK on balances);
--   4. balances are maintained by triggers from postings and holds;
--   6. amounts respect their unit's scale (checked per posting and per hold).
-- Errors the service maps to its own codes carry a CONSTRAINT name starting with `gl_`.

CREATE TABLE units (
    code  text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{1,15}$'),
    scale smallint NOT NULL CHECK (scale BETWEEN 0 AND 6)
);
INSERT INTO units (code, scale) VALUES ('EUR', 2), ('CREDIT', 2), ('TICKET', 0), ('APPOINTMENT', 0);

CREATE TABLE accounts (
    id           uuid PRIMARY KEY,
    code         text NOT NULL CHECK (code ~ '^[0-9A-Za-z][0-9A-Za-z._:-]{0,63}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    unit         text NOT NULL REFERENCES units (code),
    customer_id  uuid,
    normal_side  text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    no_overdraft boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_code_customer_key UNIQUE NULLS NOT DISTINCT (code, customer_id)
);
CREATE INDEX accounts_customer_idx ON accounts (customer_id, id) WHERE customer_id IS NOT NULL;

-- One balance row per account, created with it. unit, scale and the overdraft rule are
-- copied here (they never change) so that the posting trigger touches one row only.
CREATE TABLE balances (
    account_id      uuid PRIMARY KEY REFERENCES accounts (id),
    unit            text NOT NULL,
    unit_scale      smallint NOT NULL,
    normal_side     text NOT NULL,
    no_overdraft    boolean NOT NULL,
    posted_debits   numeric NOT NULL DEFAULT 0 CHECK (posted_debits >= 0),
    posted_credits  numeric NOT NULL DEFAULT 0 CHECK (posted_credits >= 0),
    pending_debits  numeric NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    pending_credits numeric NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gl_insufficient_funds CHECK (
        NOT no_overdraft OR CASE normal_side
            WHEN 'credit' THEN posted_credits - posted_debits - pending_debits >= 0
            ELSE posted_debits - posted_credits - pending_credits >= 0
        END)
);

-- Stored balances change only through the posting and hold triggers (trigger depth > 1),
-- and what they copy from the account never changes.
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

CREATE FUNCTION accounts_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger accounts cannot be deleted' USING CONSTRAINT = 'gl_append_only';
    END IF;
    IF (NEW.id, NEW.code, NEW.unit, NEW.customer_id, NEW.normal_side, NEW.no_overdraft, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.code, OLD.unit, OLD.customer_id, OLD.normal_side, OLD.no_overdraft, OLD.created_at) THEN
        RAISE EXCEPTION 'only the name of a ledger account may change' USING CONSTRAINT = 'gl_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_guard_update BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_guard_update();

CREATE TABLE transactions (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    effective_at    timestamptz NOT NULL,
    description     text CHECK (length(description) <= 500),
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    reverses        uuid REFERENCES transactions (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transactions_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT gl_already_reversed UNIQUE (reverses),
    CONSTRAINT transactions_not_self_reversing CHECK (reverses IS DISTINCT FROM id)
);

CREATE TABLE postings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id uuid NOT NULL REFERENCES transactions (id),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    side           text NOT NULL CHECK (side IN ('debit', 'credit')),
    amount         numeric NOT NULL CHECK (amount > 0),
    unit           text NOT NULL
);
CREATE INDEX postings_transaction_idx ON postings (transaction_id);
CREATE INDEX postings_account_idx ON postings (account_id, id);

CREATE TABLE holds (
    id                uuid PRIMARY KEY,
    idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash      bytea NOT NULL,
    debit_account_id  uuid NOT NULL REFERENCES accounts (id),
    credit_account_id uuid NOT NULL REFERENCES accounts (id),
    unit              text NOT NULL,
    amount            numeric NOT NULL CHECK (amount > 0),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'captured', 'voided', 'expired')),
    expires_at        timestamptz NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    captured_amount   numeric CHECK (captured_amount >= 0 AND captured_amount <= amount),
    capture_transaction_id uuid REFERENCES transactions (id) DEFERRABLE INITIALLY DEFERRED,
    created_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    CONSTRAINT holds_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT holds_distinct_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT holds_resolution CHECK ((status = 'pending') = (resolved_at IS NULL)),
    CONSTRAINT holds_capture CHECK ((status = 'captured') = (captured_amount IS NOT NULL)
                                    AND (status = 'captured') = (capture_transaction_id IS NOT NULL))
);
CREATE INDEX holds_pending_expiry_idx ON holds (expires_at) WHERE status = 'pending';
CREATE INDEX holds_debit_account_idx ON holds (debit_account_id);
CREATE INDEX holds_credit_account_idx ON holds (credit_account_id);

CREATE FUNCTION transactions_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER transactions_stamp BEFORE INSERT ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_stamp();

-- Invariant 2: append-only.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (post a reversing transaction instead)', TG_TABLE_NAME, TG_OP
        USING CONSTRAINT = 'gl_append_only';
END $$;
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER balances_no_truncate BEFORE TRUNCATE ON balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER holds_no_truncate BEFORE TRUNCATE ON holds
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Invariants 3, 4, 6 for postings: each posting moves its account's posted balance, in the
-- account's unit and within its scale. Postings inserted in ascending account order (as
-- ledger_post does) lock balance rows in that order, so concurrent posts never deadlock.
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

-- Invariant 1, at commit: a transaction has at least two postings and, per unit,
-- debits = credits. Fired for the transaction row and for each posting row, so that no
-- way of writing postings escapes it.
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

-- Holds reserve (pending) amounts; resolving a hold releases them. Only pending holds may
-- change, only to a final state, and nothing but the resolution may change.
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

-- AFTER, not BEFORE: an INSERT ... ON CONFLICT DO NOTHING that inserts nothing (an
-- idempotent replay) must not reserve anything.
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

-- At commit, a captured hold's capture transaction moves exactly the captured amount from
-- its debit account to its credit account.
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

-- Post one transaction in one round trip. Idempotent on p_key: a replay with the same
-- request hash returns the first transaction's id; a different hash raises
-- gl_idempotency_conflict. Returns the id of the transaction (p_id when it was created).
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

-- Accounts of the platform (French chart of accounts). Customer sub-accounts are created
-- by the domain modules.
INSERT INTO accounts (id, code, name, unit, normal_side) VALUES
    ('00000000-0000-4000-8000-000000000512', '512', 'Bank', 'EUR', 'debit'),
    ('00000000-0000-4000-8000-000000005112', '5112', 'Direct debits in transit', 'EUR', 'debit'),
    ('00000000-0000-4000-8000-000000000471', '471', 'Suspense (manual adjustments)', 'EUR', 'debit'),
    ('00000000-0000-4000-8000-000000000706', '706', 'Services revenue', 'EUR', 'credit'),
    ('00000000-0000-4000-8000-000000007088', '7088', 'Breakage revenue (expired credits)', 'EUR', 'credit'),
    ('00000000-0000-4000-8000-000000044571', '44571', 'VAT collected', 'EUR', 'credit');

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    key_hash    bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'finance', 'ticketing', 'customer')),
    customer_id uuid,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_customer_role CHECK ((role = 'customer') = (customer_id IS NOT NULL))
);
