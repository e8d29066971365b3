-- A returned payment (a SEPA collection coming back after settlement) takes back what the
-- payment released: a ticket purchase's unused tickets wait for payment again, and a
-- subscription its first payment activated waits for it again.

-- How many times a payment of the purchase came back: it names the ledger movements of
-- each round (the tickets taken back, then released by the next payment).
ALTER TABLE ticket_purchases
    ADD COLUMN returns integer NOT NULL DEFAULT 0 CHECK (returns >= 0);

ALTER TABLE subscription_events
    DROP CONSTRAINT subscription_events_kind_check,
    ADD CONSTRAINT subscription_events_kind_check
        CHECK (kind IN ('created', 'activated', 'renewed', 'cancellation_received',
                        'terminated', 'ended', 'activation_reversed'));

-- a subscription may be activated, reversed and activated again: those events may repeat
ALTER TABLE subscription_events DROP CONSTRAINT subscription_events_once;
CREATE UNIQUE INDEX subscription_events_once ON subscription_events (subscription_id, kind, term_index)
    NULLS NOT DISTINCT WHERE kind NOT IN ('activated', 'activation_reversed');
