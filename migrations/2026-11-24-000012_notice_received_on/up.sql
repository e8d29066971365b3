-- The date a customer's notice of cancellation or termination was received (DOMAIN.md,
-- "Cancellation date"): the notice deadline is checked against it, not against the instant
-- the notice was recorded. Never after the day it was recorded (Europe/Paris); the rule
-- that it is not before the subscription's start is the service's (rows recorded before
-- this rule existed may break it).
ALTER TABLE subscriptions
    ADD COLUMN cancel_received_on date,
    ADD COLUMN termination_received_on date;

-- notices recorded before: received the day they were recorded
UPDATE subscriptions
   SET cancel_received_on = (cancel_received_at AT TIME ZONE 'Europe/Paris')::date
 WHERE cancel_received_at IS NOT NULL;
UPDATE subscriptions
   SET termination_received_on = (terminated_at AT TIME ZONE 'Europe/Paris')::date
 WHERE terminated_at IS NOT NULL;

ALTER TABLE subscriptions
    ADD CONSTRAINT subscriptions_cancel_received_on CHECK (
        (cancel_received_on IS NULL) = (cancel_received_at IS NULL)
        AND cancel_received_on <= (cancel_received_at AT TIME ZONE 'Europe/Paris')::date),
    ADD CONSTRAINT subscriptions_termination_received_on CHECK (
        (termination_received_on IS NULL) = (terminated_at IS NULL)
        AND termination_received_on <= (terminated_at AT TIME ZONE 'Europe/Paris')::date);
