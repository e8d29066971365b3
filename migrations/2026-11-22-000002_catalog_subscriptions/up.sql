-- Customers, the catalog (offers and dated price versions), SEPA mandates (the lookup the
-- subscription rules need; the SEPA issue extends them), subscriptions with their status
-- history, and charges: uninvoiced billable items that invoicing turns into lines.

CREATE TABLE customers (
    id            uuid PRIMARY KEY,
    legal_name    text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 200),
    siren         text NOT NULL CHECK (siren ~ '^[0-9]{9}$'),
    siret         text CHECK (siret ~ '^[0-9]{14}$' AND left(siret, 9) = siren),
    vat_number    text CHECK (vat_number ~ '^[A-Z]{2}[0-9A-Z]{2,13}$'),
    billing_email text NOT NULL CHECK (length(billing_email) BETWEEN 3 AND 254),
    street_number text CHECK (length(street_number) <= 16),
    street        text NOT NULL CHECK (length(street) BETWEEN 1 AND 70),
    postcode      text NOT NULL CHECK (length(postcode) BETWEEN 1 AND 16),
    town          text NOT NULL CHECK (length(town) BETWEEN 1 AND 35),
    country       text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    idempotency_key text UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash  bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_siren_idx ON customers (siren);

CREATE TABLE mandates (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    reference   text NOT NULL UNIQUE CHECK (reference ~ '^[A-Za-z0-9+?/:().,'' -]{1,35}$'),
    signed_on   date NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'lapsed')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mandates_customer_idx ON mandates (customer_id) WHERE status = 'active';

CREATE TABLE offers (
    code                   text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,47}$'),
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- month | year: recurring; once: one-off; per_use: metered (intervention time)
    billing_period         text NOT NULL CHECK (billing_period IN ('month', 'year', 'once', 'per_use')),
    price_basis            text NOT NULL CHECK (price_basis IN ('ht', 'ttc')),
    vat_rate               numeric(6, 4) NOT NULL CHECK (vat_rate >= 0 AND vat_rate < 1),
    commitment_months      integer NOT NULL DEFAULT 0 CHECK (commitment_months BETWEEN 0 AND 120),
    renewal_months         integer NOT NULL DEFAULT 0 CHECK (renewal_months BETWEEN 0 AND 120),
    notice_days            integer NOT NULL DEFAULT 0 CHECK (notice_days BETWEEN 0 AND 365),
    early_termination_rate numeric(5, 4) NOT NULL DEFAULT 1 CHECK (early_termination_rate BETWEEN 0 AND 1),
    sepa_required          boolean NOT NULL DEFAULT false,
    activation_on_payment  boolean NOT NULL DEFAULT false,
    addon                  boolean NOT NULL DEFAULT false,
    -- entitlements: what holding an active subscription to the offer gives
    free_diagnostics       boolean NOT NULL DEFAULT false,
    assistance_included    boolean NOT NULL DEFAULT false,
    maintenance            boolean NOT NULL DEFAULT false,
    appointment_quota      integer CHECK (appointment_quota > 0),
    credits_per_term       numeric(12, 2) CHECK (credits_per_term > 0),
    unit_credit_purchase   boolean NOT NULL DEFAULT false,
    -- a service sold either in euros (the price) or in service credits
    credit_price           numeric(12, 2) CHECK (credit_price > 0),
    -- metered offers bill per started increment of this many minutes
    increment_minutes      integer CHECK (increment_minutes BETWEEN 1 AND 240),
    created_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT offers_recurring_terms CHECK (
        (billing_period IN ('month', 'year')) = (commitment_months > 0 AND renewal_months > 0)),
    CONSTRAINT offers_terms_whole_periods CHECK (
        billing_period <> 'year' OR (commitment_months % 12 = 0 AND renewal_months % 12 = 0))
);

-- The price in force on a date is the latest version effective on or before it.
CREATE TABLE offer_prices (
    offer_code     text NOT NULL REFERENCES offers (code),
    effective_from date NOT NULL,
    unit_price     numeric(14, 4) NOT NULL CHECK (unit_price >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (offer_code, effective_from)
);

CREATE TABLE subscriptions (
    id                   uuid PRIMARY KEY,
    customer_id          uuid NOT NULL REFERENCES customers (id),
    offer_code           text NOT NULL REFERENCES offers (code),
    parent_id            uuid REFERENCES subscriptions (id),
    status               text NOT NULL CHECK (status IN ('pending_payment', 'active', 'ended')),
    -- the date (Europe/Paris) every period and term is counted from; unknown while a
    -- subscription waits for its first payment
    anchor_date          date,
    -- for an add-on, the first day it was held (its first charge is the period holding it)
    start_date           date NOT NULL,
    cancel_received_at   timestamptz,
    -- the end fixed by a cancellation (00:00 Paris that day) or an early termination
    ends_at              timestamptz,
    terminated_at        timestamptz,
    idempotency_key      text UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash         bytea,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_anchor CHECK ((status = 'pending_payment') = (anchor_date IS NULL))
);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id, created_at);
CREATE INDEX subscriptions_parent_idx ON subscriptions (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX subscriptions_live_idx ON subscriptions (status) WHERE status <> 'ended';

CREATE TABLE subscription_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    kind            text NOT NULL CHECK (kind IN ('created', 'activated', 'renewed', 'cancellation_received',
                                                   'terminated', 'ended')),
    at              timestamptz NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    -- renewals are recorded once per term
    term_index      integer,
    CONSTRAINT subscription_events_once UNIQUE NULLS NOT DISTINCT (subscription_id, kind, term_index)
);

CREATE TABLE charges (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    subscription_id uuid REFERENCES subscriptions (id),
    offer_code      text REFERENCES offers (code),
    source          text NOT NULL CHECK (source IN ('subscription_period', 'early_termination', 'one_off',
                                                     'ticket_purchase', 'credit_purchase',
                                                     'assistance_overage', 'intervention')),
    -- the billing period a subscription charge is for (0 = first)
    period_index    integer,
    description     text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    quantity        numeric(14, 4) NOT NULL CHECK (quantity > 0),
    unit_price      numeric(14, 4) NOT NULL CHECK (unit_price >= 0),
    price_basis     text NOT NULL CHECK (price_basis IN ('ht', 'ttc')),
    vat_rate        numeric(6, 4) NOT NULL CHECK (vat_rate >= 0 AND vat_rate < 1),
    service_start   date,
    service_end     date,
    -- who asked for it, so that a retried request creates one charge
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL,
    invoice_id      uuid,
    CONSTRAINT charges_service_period CHECK (service_end IS NULL OR service_start < service_end)
);
-- a subscription's period (or its early-termination fee) is charged once, whatever the
-- number of job runs
CREATE UNIQUE INDEX charges_subscription_once ON charges (subscription_id, source, coalesce(period_index, -1))
    WHERE subscription_id IS NOT NULL;
CREATE INDEX charges_customer_idx ON charges (customer_id, created_at);
CREATE INDEX charges_uninvoiced_idx ON charges (customer_id) WHERE invoice_id IS NULL;
