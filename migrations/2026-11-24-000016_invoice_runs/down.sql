DROP TABLE invoice_run_errors;
DROP TABLE invoice_runs;
