-- SEPA mandates as the issue 13 model has them: the debtor's name and account (IBAN,
-- optional BIC), the scheme (CORE or B2B), why and when the status last changed, and the
-- last collection (a mandate unused for 36 months lapses). An IBAN, BIC or debtor name
-- change is an amendment, kept with the values it replaced until a collection reports it.

ALTER TABLE mandates
    ADD COLUMN debtor_name       text CHECK (length(debtor_name) BETWEEN 1 AND 70),
    -- ISO 13616: country, check digits, BBAN (the service checks mod-97 and the country's
    -- structure; this only refuses what could never be one)
    ADD COLUMN iban              text CHECK (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    ADD COLUMN bic               text CHECK (bic ~ '^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$'),
    ADD COLUMN scheme            text NOT NULL DEFAULT 'CORE' CHECK (scheme IN ('CORE', 'B2B')),
    ADD COLUMN last_collected_on date,
    ADD COLUMN status_changed_at timestamptz,
    ADD COLUMN status_reason     text CHECK (length(status_reason) BETWEEN 1 AND 500);

-- A mandate recorded before this migration names no debtor account: it can collect nothing,
-- so it no longer counts as active (record it again through the API).
UPDATE mandates
   SET status = 'revoked',
       status_changed_at = now(),
       status_reason = 'recorded without the debtor''s name and IBAN, before mandates were complete'
 WHERE status = 'active' AND (iban IS NULL OR debtor_name IS NULL);

ALTER TABLE mandates
    ADD CONSTRAINT mandates_active_is_complete
        CHECK (status <> 'active' OR (iban IS NOT NULL AND debtor_name IS NOT NULL)),
    ADD CONSTRAINT mandates_status_change
        CHECK ((status = 'active') = (status_changed_at IS NULL));

CREATE INDEX mandates_customer_list_idx ON mandates (customer_id, id);

CREATE TABLE mandate_amendments (
    id                   uuid PRIMARY KEY,
    mandate_id           uuid NOT NULL REFERENCES mandates (id),
    -- what the amendment replaced (NULL: that part did not change)
    previous_iban        text CHECK (previous_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    previous_bic         text CHECK (previous_bic ~ '^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$'),
    previous_debtor_name text CHECK (length(previous_debtor_name) BETWEEN 1 AND 70),
    bic_changed          boolean NOT NULL,
    amended_on           date NOT NULL,
    created_at           timestamptz NOT NULL,
    -- the collection batch that reported it to the debtor's bank (none yet: the next one)
    reported_in          uuid,
    CONSTRAINT mandate_amendments_something
        CHECK (previous_iban IS NOT NULL OR previous_debtor_name IS NOT NULL OR bic_changed)
);
CREATE INDEX mandate_amendments_mandate_idx ON mandate_amendments (mandate_id, id);
CREATE INDEX mandate_amendments_unreported_idx ON mandate_amendments (mandate_id)
    WHERE reported_in IS NULL;
