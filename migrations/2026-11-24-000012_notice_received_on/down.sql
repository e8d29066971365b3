ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_termination_received_on,
    DROP CONSTRAINT subscriptions_cancel_received_on,
    DROP COLUMN termination_received_on,
    DROP COLUMN cancel_received_on;
