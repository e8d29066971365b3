//! Wallets: prepaid tickets, 12-month service-credit lots, Assistance+ appointment quotas.
//! Every quantity is a ledger balance: these modules only name the accounts, decide what
//! to move, and hand balanced transactions to the ledger.
//!
//! Accounts of a customer (all customer-scoped, so nothing here locks another customer):
//! - TICKET: `TICKET-PENDING` (bought, invoice unpaid), `TICKET-WALLET` (usable, no
//!   overdraft), `TICKET-USED`, against `TICKET-ISSUED`.
//! - CREDIT: one `CREDIT-LOT:<lot>` per lot (no overdraft), `CREDIT-USED`,
//!   `CREDIT-EXPIRED`, against `CREDIT-ISSUED`; in EUR, `487` deferred revenue released to
//!   706 (consumption) or 7088 (breakage) at the lot's unit price, the movement that empties
//!   a lot taking the rest of its sale (`lots::LotSale`).
//! - APPOINTMENT, per Assistance+ pack and 12-month period: `APPT-QUOTA:<pack>:<n>` (no
//!   overdraft), `APPT-USED:<pack>:<n>`, `APPT-OVERAGE:<pack>:<n>`, against `APPT-ISSUED`.

pub mod lots;
pub mod store;
pub mod tickets;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::calendar::{add_months, paris_date, paris_midnight};
use crate::money::DecimalString;

/// A lot expires 12 months after its grant, at 00:00 Europe/Paris on the same day of the
/// month (clamped to the month's end).
pub fn lot_expiry(granted_at: DateTime<Utc>) -> DateTime<Utc> {
    paris_midnight(add_months(paris_date(granted_at), 12))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LotOrigin {
    /// Included in a Service+ pack, one lot per 12-month period of the pack (unit price 0).
    PackGrant,
    /// Bought as unit credits.
    Purchase,
}

/// A lot of service credits, with what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditLotView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub origin: LotOrigin,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub subscription_id: Option<Uuid>,
    pub granted: DecimalString,
    /// Used by captured authorizations. granted = consumed + expired + credited + held +
    /// remaining.
    pub consumed: DecimalString,
    /// Sent to breakage: the remainder at expiry, and what a hold released after it.
    pub expired: DecimalString,
    /// Taken back by a credit note on the lot's invoice (a bought lot, whole).
    pub credited: DecimalString,
    /// Held by open authorizations.
    pub held: DecimalString,
    /// Still usable (excluding credits held by open authorizations).
    pub remaining: DecimalString,
    /// EUR per credit: 0 for pack credits, the purchase price for bought ones.
    pub unit_price: DecimalString,
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The invoice of a bought lot, issued with it (null for pack credits).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub invoice_id: Option<Uuid>,
    #[schema(example = "F2026-000001")]
    pub invoice_number: Option<String>,
}

/// Why a wallet operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("customer {0} does not exist")]
    UnknownCustomer(Uuid),
    #[error("customer {0} is closed: its account is read-only")]
    CustomerClosed(Uuid),
    #[error("unit credits can be bought only while holding an active Service+ pack")]
    ServicePlusRequired,
    #[error("an active subscription includes assistance: tickets would never be used")]
    AssistanceIncluded,
    #[error("the balance cannot cover {0}")]
    Insufficient(String),
    #[error("offer `{0}` has no price on {1}")]
    NoPrice(String, NaiveDate),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    /// The lot exists (the pack's term was granted, or the purchase's key was used): the
    /// transaction that tried is rolled back, with the account it opened for the lot.
    #[error("the credit lot was granted already")]
    AlreadyGranted,
    #[error(transparent)]
    Invoicing(#[from] crate::invoicing::InvoicingError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl From<crate::idempotency::KeyReused> for WalletError {
    fn from(_: crate::idempotency::KeyReused) -> Self {
        WalletError::IdempotencyConflict
    }
}

impl crate::db::Retryable for WalletError {
    fn is_retryable(&self) -> bool {
        match self {
            WalletError::Database(e) => crate::db::is_retryable(e),
            WalletError::Ledger(e) => crate::db::Retryable::is_retryable(e),
            WalletError::Invoicing(e) => crate::db::Retryable::is_retryable(e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn lots_expire_at_paris_midnight_twelve_months_on() {
        // bought 31 March 2026 at 10:00 Paris (summer time): 31 March 2027, 00:00 Paris
        assert_eq!(
            lot_expiry(at("2026-03-31T08:00:00Z")),
            at("2027-03-30T22:00:00Z")
        );
        // granted in summer time, expiring in winter time, and the reverse
        assert_eq!(
            lot_expiry(at("2026-10-20T10:00:00Z")),
            at("2027-10-19T22:00:00Z")
        );
        assert_eq!(
            lot_expiry(at("2026-11-20T10:00:00Z")),
            at("2027-11-19T23:00:00Z")
        );
        assert_eq!(
            lot_expiry(at("2026-03-20T10:00:00Z")),
            at("2027-03-19T23:00:00Z")
        );
        // 29 February clamps to 28 February
        assert_eq!(
            lot_expiry(at("2028-02-29T12:00:00Z")),
            at("2029-02-27T23:00:00Z")
        );
        // just after midnight Paris is already the next day
        assert_eq!(
            lot_expiry(at("2026-06-14T22:30:00Z")),
            at("2027-06-14T22:00:00Z")
        );
    }
}
