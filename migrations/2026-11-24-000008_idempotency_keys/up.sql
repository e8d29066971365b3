-- One idempotency store for every creating endpoint. A key is the caller's: its scope
-- names the caller (a customer, or a staff role), so one customer can neither see nor
-- block another's keys. The row is claimed in the same transaction as the operation it
-- guards and holds that operation's answer when it commits: a concurrent request with the
-- same key waits on the claim, then replays the answer.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL CHECK (length(scope) BETWEEN 1 AND 100),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation    text NOT NULL CHECK (length(operation) BETWEEN 1 AND 100),
    -- SHA-256 of the operation and its parsed request
    request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
    -- the answer's body; set before the claiming transaction commits
    response     jsonb,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
