//! Chargeable interventions: the electronic intervention sheet a chargeable capture
//! records, the customer's 5-day dispute window, its resolution, and the release job that
//! turns what is due into charges. The rules are here; the SQL and use cases in [`store`].

pub mod store;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::calendar::{paris_date, paris_midnight};
use crate::money::{round_cents, DecimalString};

/// Days a customer has to dispute an intervention sheet (seed 003).
pub const DISPUTE_DAYS: i64 = 5;

/// Disputes are accepted before this instant: the end of the fifth day after the sheet's
/// day, Paris time.
pub fn dispute_deadline(sheet_at: DateTime<Utc>) -> DateTime<Utc> {
    paris_midnight(paris_date(sheet_at) + Duration::days(DISPUTE_DAYS + 1))
}

/// An intervention sheet to record: what was done, priced.
#[derive(Debug, Clone)]
pub struct Sheet {
    pub id: Uuid,
    pub offer_code: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

crate::text_enum! {
    /// Where an intervention stands: `pending` (its dispute window is open), `disputed`,
    /// `upheld` (resolved against the customer), `released` (charged) or `voided`
    /// (resolved for the customer, never billed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum InterventionStatus {
        Pending = "pending",
        Disputed = "disputed",
        Upheld = "upheld",
        Released = "released",
        Voided = "voided",
    }
}

/// A chargeable intervention and its dispute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InterventionView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub authorization_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    pub description: String,
    pub quantity: DecimalString,
    pub unit_price: DecimalString,
    pub amount: DecimalString,
    pub sheet_at: DateTime<Utc>,
    /// Disputes are accepted before this instant (5 days after the sheet's day, Paris).
    pub dispute_deadline: DateTime<Utc>,
    pub status: InterventionStatus,
}

impl InterventionView {
    /// The amount billed: quantity × unit price, to the cent.
    pub fn amount(quantity: Decimal, unit_price: Decimal) -> DecimalString {
        DecimalString(round_cents(quantity * unit_price))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InterventionError {
    #[error("intervention {0} does not exist")]
    NotFound(Uuid),
    #[error("intervention {0} is {1}")]
    WrongState(Uuid, &'static str),
    #[error("offer `{0}` does not exist")]
    UnknownOffer(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl crate::db::Retryable for InterventionError {
    fn is_retryable(&self) -> bool {
        matches!(self, InterventionError::Database(e) if crate::db::is_retryable(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_at_paris_midnight_after_the_fifth_day() {
        // a sheet on Friday 20 November 2026 at 15:00 Paris: disputable until the 25th ends
        let sheet = "2026-11-20T14:00:00Z".parse().unwrap();
        assert_eq!(
            dispute_deadline(sheet),
            "2026-11-25T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // across the change to summer time: midnight Paris is 22:00 UTC
        let sheet = "2027-03-26T10:00:00Z".parse().unwrap();
        assert_eq!(
            dispute_deadline(sheet),
            "2027-03-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
