//! Non-payment (DOMAIN.md "Non-payment", seed 001): an invoice unpaid past its due date is
//! overdue; a formal notice sent 15 days past due suspends support until the overdue
//! amount is paid; a notice left without effect for 30 days terminates the contracts
//! (early-termination fees apply). And the liability cap: the assistance fees the customer
//! paid over the 12 months before a date.

pub mod store;

use chrono::{Days, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::{round_cents, DecimalString};

/// The delays of the dunning procedure, in calendar days *(config)*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Days past the due date at which the formal notice is sent.
    pub notice_days_past_due: u32,
    /// Days a notice may stay without effect before the contracts are terminated.
    pub termination_days_after_notice: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            notice_days_past_due: 15,
            termination_days_after_notice: 30,
        }
    }
}

impl Policy {
    /// An invoice due on `due_on` is overdue from the next day.
    pub fn is_overdue(self, due_on: NaiveDate, today: NaiveDate) -> bool {
        today > due_on
    }

    /// Whether the notice is due today for overdue invoices the oldest of which was due on
    /// `oldest_due_on`.
    pub fn notice_due(self, oldest_due_on: NaiveDate, today: NaiveDate) -> bool {
        oldest_due_on
            .checked_add_days(Days::new(self.notice_days_past_due.into()))
            .is_some_and(|d| today >= d)
    }

    /// Whether a notice sent on `sent_on`, still without effect, now terminates the
    /// contracts.
    pub fn termination_due(self, sent_on: NaiveDate, today: NaiveDate) -> bool {
        sent_on
            .checked_add_days(Days::new(self.termination_days_after_notice.into()))
            .is_some_and(|d| today >= d)
    }
}

crate::text_enum! {
    /// Where a formal notice stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum NoticeStatus {
        /// Sent, the account suspended, something still overdue.
        Open = "open",
        /// Nothing overdue any more: the suspension was lifted.
        Cleared = "cleared",
        /// Left without effect: the contracts were terminated.
        Enforced = "enforced",
    }
}

/// A customer's standing with respect to payment, shown on the customer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DunningView {
    /// What the customer's overdue invoices still ask.
    #[schema(example = "100.00")]
    pub overdue_amount: DecimalString,
    /// The due date of the oldest overdue invoice.
    pub overdue_since: Option<NaiveDate>,
    /// The latest formal notice, if any.
    pub notice: Option<NoticeView>,
}

/// A formal notice.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NoticeView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The Paris date it was sent.
    pub sent_on: NaiveDate,
    /// What was overdue when it was sent.
    #[schema(example = "100.00")]
    pub amount: DecimalString,
    pub status: NoticeStatus,
    /// When it was cleared or enforced.
    pub closed_on: Option<NaiveDate>,
}

/// The window of the liability cap ending on `on`: the 12 months before it, from the same
/// day a year earlier (excluded; clamped to the month's end) to `on` (included).
pub fn cap_window(on: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    Some((on.checked_sub_months(Months::new(12))?, on))
}

/// The part of a payment of `paid` on an invoice of total `total_ttc` that pays its
/// assistance lines, worth `assistance_ttc` of it: in proportion, to the cent (half away
/// from zero).
pub fn assistance_part(paid: Decimal, total_ttc: Decimal, assistance_ttc: Decimal) -> Decimal {
    if total_ttc <= Decimal::ZERO || assistance_ttc <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    if assistance_ttc >= total_ttc {
        return paid;
    }
    round_cents(paid * assistance_ttc / total_ttc)
}

/// `GET /v1/customers/{id}/liability-cap`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiabilityCap {
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: Uuid,
    /// The window: payments with a value date after `from` and up to `to`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The assistance fees paid in the window (EUR incl. VAT): the seed's cap.
    #[schema(example = "300.00")]
    pub amount: DecimalString,
    /// How many payments (or credit balance applications) paid assistance fees.
    pub payments: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn overdue_the_day_after_due_notice_at_15_days_termination_30_days_later() {
        let p = Policy::default();
        assert!(!p.is_overdue(d("2026-12-24"), d("2026-12-24")));
        assert!(p.is_overdue(d("2026-12-24"), d("2026-12-25")));
        assert!(!p.notice_due(d("2026-12-24"), d("2027-01-07")));
        assert!(p.notice_due(d("2026-12-24"), d("2027-01-08")));
        assert!(!p.termination_due(d("2027-01-08"), d("2027-02-06")));
        assert!(p.termination_due(d("2027-01-08"), d("2027-02-07")));
    }

    #[test]
    fn the_cap_window_is_the_twelve_months_before_the_date() {
        assert_eq!(
            cap_window(d("2026-11-24")),
            Some((d("2025-11-24"), d("2026-11-24")))
        );
        assert_eq!(
            cap_window(d("2028-02-29")),
            Some((d("2027-02-28"), d("2028-02-29")))
        );
    }

    #[test]
    fn a_payment_pays_assistance_in_proportion_to_the_cent() {
        assert_eq!(
            assistance_part(dec!(100), dec!(300), dec!(100)),
            dec!(33.33)
        );
        assert_eq!(assistance_part(dec!(50), dec!(100), dec!(100)), dec!(50));
        assert_eq!(assistance_part(dec!(50), dec!(100), dec!(0)), dec!(0));
        assert_eq!(
            assistance_part(dec!(0.01), dec!(0.02), dec!(0.01)),
            dec!(0.01)
        );
    }
}
