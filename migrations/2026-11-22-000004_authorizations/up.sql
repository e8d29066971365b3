-- Ticketing authorizations (decision + what is held) and chargeable interventions waiting
-- out their 5-day dispute window.

CREATE TABLE authorizations (
    id                 uuid PRIMARY KEY,
    customer_id        uuid NOT NULL REFERENCES customers (id),
    request_ref        text NOT NULL UNIQUE CHECK (length(request_ref) BETWEEN 1 AND 200),
    request_hash       bytea NOT NULL,
    request            jsonb NOT NULL,
    decision           text NOT NULL CHECK (decision IN ('approved', 'denied')),
    funding            text CHECK (funding IN ('included', 'quota', 'overage', 'credits', 'ticket', 'chargeable')),
    reason             text NOT NULL,
    status             text NOT NULL CHECK (status IN ('denied', 'open', 'captured', 'voided', 'expired')),
    price              numeric(14, 4),
    hourly             boolean NOT NULL DEFAULT false,
    offer_code         text,
    credits            numeric(14, 2),
    subscription_id    uuid REFERENCES subscriptions (id),
    hold_ids           uuid[] NOT NULL DEFAULT '{}',
    expires_at         timestamptz,
    take_charge_due_at timestamptz,
    captured_units     numeric(14, 2),
    created_at         timestamptz NOT NULL,
    resolved_at        timestamptz,
    CONSTRAINT authorizations_decided CHECK ((decision = 'denied') = (status = 'denied'))
);
CREATE INDEX authorizations_open_idx ON authorizations (expires_at) WHERE status = 'open';

CREATE TABLE interventions (
    id               uuid PRIMARY KEY,
    authorization_id uuid NOT NULL UNIQUE REFERENCES authorizations (id),
    customer_id      uuid NOT NULL REFERENCES customers (id),
    offer_code       text NOT NULL,
    description      text NOT NULL,
    quantity         numeric(14, 4) NOT NULL CHECK (quantity > 0),
    unit_price       numeric(14, 4) NOT NULL CHECK (unit_price >= 0),
    -- the electronic intervention sheet's date; disputes are accepted until the deadline
    sheet_at         timestamptz NOT NULL,
    dispute_deadline timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'disputed', 'upheld', 'released', 'voided')),
    disputed_at      timestamptz,
    resolved_at      timestamptz
);
CREATE INDEX interventions_pending_idx ON interventions (dispute_deadline) WHERE status IN ('pending', 'upheld');
