-- Wallets: prepaid tickets, service-credit lots, Assistance+ appointments. Every quantity
-- lives in ledger accounts; these tables only describe what the accounts stand for.

-- One lot of service credits: its own no-overdraft CREDIT account, a unit price (0 for
-- credits included in a Service+ pack) and an expiry 12 months after the grant.
CREATE TABLE credit_lots (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    account_id      uuid NOT NULL UNIQUE REFERENCES accounts (id),
    origin          text NOT NULL CHECK (origin IN ('pack_grant', 'purchase')),
    subscription_id uuid REFERENCES subscriptions (id),
    term_index      integer,
    granted         numeric(14, 2) NOT NULL CHECK (granted > 0),
    unit_price      numeric(14, 4) NOT NULL CHECK (unit_price >= 0),
    granted_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL CHECK (expires_at > granted_at),
    -- set by the credit-expiry job once the remainder went to breakage
    expired_at      timestamptz,
    idempotency_key text UNIQUE,
    CONSTRAINT credit_lots_grant_once UNIQUE (subscription_id, term_index),
    CONSTRAINT credit_lots_origin CHECK ((origin = 'pack_grant') = (subscription_id IS NOT NULL AND term_index IS NOT NULL))
);
CREATE INDEX credit_lots_customer_idx ON credit_lots (customer_id, expires_at, granted_at);

-- Tickets bought, waiting for their invoice to be paid, then available.
CREATE TABLE ticket_purchases (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    quantity        integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    status          text NOT NULL CHECK (status IN ('pending_payment', 'available')),
    idempotency_key text UNIQUE,
    request_hash    bytea,
    created_at      timestamptz NOT NULL,
    paid_at         timestamptz
);
CREATE INDEX ticket_purchases_customer_idx ON ticket_purchases (customer_id, created_at);

-- Assistance+ appointments booked against a pack, in the pack's 12-month period.
CREATE TABLE appointments (
    id              uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    period_index    integer NOT NULL CHECK (period_index >= 0),
    -- position within the period: beyond the quota it is overage
    overage         boolean NOT NULL,
    booked_at       timestamptz NOT NULL,
    idempotency_key text NOT NULL UNIQUE
);
CREATE INDEX appointments_period_idx ON appointments (subscription_id, period_index);

-- Each closed Assistance+ period is charged once.
CREATE TABLE appointment_period_closes (
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    period_index    integer NOT NULL,
    closed_at       timestamptz NOT NULL,
    overage         integer NOT NULL CHECK (overage >= 0),
    PRIMARY KEY (subscription_id, period_index)
);
