//! grandlivre: a billing and credits ledger. See `ARCHITECTURE.md` of the project for the
//! layers; `cli::run` is the entry point of the binary.

pub mod auth;
pub mod authorizations;
pub mod calendar;
pub mod catalog;
pub mod charges;
pub mod cli;
pub mod clock;
pub mod customers;
pub mod db;
pub mod demo;
pub mod dunning;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod input;
pub mod interventions;
pub mod invoicing;
pub mod jobs;
pub mod ledger;
pub mod money;
pub mod openapi;
pub mod payments;
pub mod pg_cluster;
pub mod schema;
pub mod sepa;
pub mod startup;
pub mod subscriptions;
pub mod telemetry;
pub mod text_enum;
pub mod wallets;
