//! Integration tests: the real application against a real PostgreSQL, one database per test.

mod helpers;

mod access;
mod authorizations;
mod catalog;
mod cli;
mod contract;
mod credit_notes;
mod customers;
mod documents;
mod dunning;
mod errors;
mod fec;
mod input;
mod interventions;
mod invoice_properties;
mod invoice_runs;
mod invoices;
mod keys;
mod ledger_core;
mod ledger_http;
mod migrations;
mod payments;
mod purchases;
mod sepa;
mod sepa_batches;
mod sepa_files;
mod sepa_returns;
mod subscriptions;
mod test_clock;
mod wallets;
