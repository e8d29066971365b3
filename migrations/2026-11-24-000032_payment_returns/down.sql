DROP INDEX subscription_events_once;
DELETE FROM subscription_events WHERE kind = 'activation_reversed';
DELETE FROM subscription_events e USING subscription_events f
 WHERE e.kind = 'activated' AND f.kind = 'activated'
   AND e.subscription_id = f.subscription_id AND e.id > f.id;
ALTER TABLE subscription_events
    ADD CONSTRAINT subscription_events_once UNIQUE NULLS NOT DISTINCT (subscription_id, kind, term_index),
    DROP CONSTRAINT subscription_events_kind_check,
    ADD CONSTRAINT subscription_events_kind_check
        CHECK (kind IN ('created', 'activated', 'renewed', 'cancellation_received',
                        'terminated', 'ended'));
ALTER TABLE ticket_purchases DROP COLUMN returns;
