-- Invoice runs (issue 12): one invoice per customer with uninvoiced charges up to `as_of`,
-- issued in the background. The run's figures move with each batch of customers, in the
-- batch's own transaction, so they always equal what was committed. A run whose process
-- stopped is `interrupted` (see `invoicing::store_runs`); a re-run picks up what is left.
CREATE TABLE invoice_runs (
    id               uuid PRIMARY KEY,
    as_of            timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('running', 'completed', 'interrupted')),
    -- customers with charges to invoice when the run started
    customers_total  integer NOT NULL CHECK (customers_total >= 0),
    customers_done   integer NOT NULL DEFAULT 0 CHECK (customers_done >= 0),
    customers_failed integer NOT NULL DEFAULT 0 CHECK (customers_failed >= 0),
    invoices_issued  integer NOT NULL DEFAULT 0 CHECK (invoices_issued >= 0),
    total_ht         numeric(20, 2) NOT NULL DEFAULT 0,
    total_vat        numeric(20, 2) NOT NULL DEFAULT 0,
    total_ttc        numeric(20, 2) NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    CONSTRAINT invoice_runs_finished CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT invoice_runs_totals CHECK (total_ttc = total_ht + total_vat)
);

-- Why a customer's invoice could not be issued by a run (the next run tries again).
CREATE TABLE invoice_run_errors (
    run_id      uuid NOT NULL REFERENCES invoice_runs (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    error       text NOT NULL CHECK (length(error) BETWEEN 1 AND 2000),
    PRIMARY KEY (run_id, customer_id)
);
