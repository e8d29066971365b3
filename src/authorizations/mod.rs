//! Ticketing authorizations: is a request covered, and by what. The rules are the pure
//! [`decision`]; holds, capture and interventions build on the ledger and the wallets.

pub mod decision;
pub mod store;
