//! The billing schedule of a subscription: a pure function of its plan and an instant.
//! Periods and terms are counted from the anchor date (00:00 Europe/Paris), each boundary
//! computed from the anchor, never from the previous one.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::calendar::{add_months, months_between, paris_date, paris_midnight};
use crate::money::{round_cents, DecimalString};

/// The last instant up to `as_of` at which a subscription ending at `ends_at` is alive.
pub fn alive_until(ends_at: Option<DateTime<Utc>>, as_of: DateTime<Utc>) -> DateTime<Utc> {
    match ends_at {
        Some(end) if end <= as_of => end - chrono::Duration::microseconds(1),
        _ => as_of,
    }
}

/// The calendar of a subscription (for an add-on, its parent's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub anchor: NaiveDate,
    pub billing_months: u32,
    pub commitment_months: u32,
    pub renewal_months: u32,
    pub notice_days: u32,
    /// The first billed period (an add-on taken mid-way starts later than 0).
    pub first_period: u32,
}

/// One billing period: `[start, end)` in Paris dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Period {
    pub index: u32,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// A commitment term: the first lasts the commitment, each tacit renewal one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Term {
    /// 0 for the commitment, n for the n-th renewal.
    pub index: u32,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// What an early termination at an instant would cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EarlyTermination {
    /// Billing periods of the current term that start after the instant.
    pub remaining_periods: u32,
    /// The period price in force on the termination date.
    pub unit_price: DecimalString,
    pub rate: DecimalString,
    /// `rate × remaining_periods × unit_price`, rounded to the cent.
    pub fee: DecimalString,
}

impl Plan {
    pub fn period(&self, index: u32) -> Period {
        Period {
            index,
            start: add_months(self.anchor, index * self.billing_months),
            end: add_months(self.anchor, (index + 1) * self.billing_months),
        }
    }

    /// The end of term `index`, in months from the anchor.
    fn term_end_months(&self, index: u32) -> u32 {
        self.commitment_months + index * self.renewal_months
    }

    /// Term `index` as months from the anchor: `[start, end)`.
    fn term_months(&self, index: u32) -> (u32, u32) {
        let start = if index == 0 {
            0
        } else {
            self.term_end_months(index - 1)
        };
        (start, self.term_end_months(index))
    }

    pub fn term(&self, index: u32) -> Term {
        let (start, end) = self.term_months(index);
        Term {
            index,
            start: add_months(self.anchor, start),
            end: add_months(self.anchor, end),
        }
    }

    /// The term in progress at `at` (the first one before the anchor).
    pub fn term_at(&self, at: DateTime<Utc>) -> Term {
        let date = paris_date(at);
        let months = months_between(self.anchor, date);
        let index = if months < self.commitment_months || self.renewal_months == 0 {
            0
        } else {
            (months - self.commitment_months) / self.renewal_months + 1
        };
        self.term(index)
    }

    /// The last day a cancellation may be received to stop the renewal at `term`'s end.
    pub fn notice_deadline(&self, term: Term) -> NaiveDate {
        term.end - chrono::Days::new(u64::from(self.notice_days))
    }

    /// Where a cancellation received at `received` ends the subscription: at the current
    /// term's end when received by the notice deadline, else at the end of the next term.
    pub fn end_after_cancellation(&self, received: DateTime<Utc>) -> NaiveDate {
        let term = self.term_at(received);
        if paris_date(received) <= self.notice_deadline(term) {
            term.end
        } else {
            self.term(term.index + 1).end
        }
    }

    /// Periods whose start has come by `at` and that start before `ends_at`.
    pub fn periods_due(
        &self,
        at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
    ) -> impl Iterator<Item = Period> + '_ {
        (self.first_period..)
            .map(|i| self.period(i))
            .take_while(move |p| {
                let start = paris_midnight(p.start);
                start <= at && ends_at.is_none_or(|end| start < end)
            })
    }

    /// The fee for ending at `at`: `rate` × the periods of the current term starting after
    /// `at`, each at `unit_price` (the price in force on the termination date).
    pub fn early_termination(
        &self,
        at: DateTime<Utc>,
        unit_price: Decimal,
        rate: Decimal,
    ) -> EarlyTermination {
        // terms are whole numbers of billing periods (the catalog refuses other offers)
        let (start, end) = self.term_months(self.term_at(at).index);
        let periods =
            (start / self.billing_months).max(self.first_period)..end / self.billing_months;
        let remaining = periods
            .filter(|&i| paris_midnight(self.period(i).start) > at)
            .count() as u32;
        let fee = round_cents(rate * unit_price * Decimal::from(remaining));
        EarlyTermination {
            remaining_periods: remaining,
            unit_price: crate::money::price(unit_price),
            rate: DecimalString(rate),
            fee: DecimalString(fee),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn fibre(anchor: &str) -> Plan {
        Plan {
            anchor: d(anchor),
            billing_months: 1,
            commitment_months: 36,
            renewal_months: 12,
            notice_days: 30,
            first_period: 0,
        }
    }

    #[test]
    fn worked_example_of_domain_md() {
        // fibre at 39.90 HT/month started 2026-01-31, terminated 2027-06-15
        let plan = fibre("2026-01-31");
        let at = paris_midnight(d("2027-06-15")) + chrono::Duration::hours(10);
        let term = plan.term_at(at);
        assert_eq!(
            (term.index, term.start, term.end),
            (0, d("2026-01-31"), d("2029-01-31"))
        );
        let fee = plan.early_termination(at, dec!(39.90), dec!(1));
        assert_eq!(fee.remaining_periods, 19);
        assert_eq!(fee.fee.0, dec!(758.10));
        assert_eq!(plan.period(17).start, d("2027-06-30"));
        assert_eq!(plan.period(35).start, d("2028-12-31"));
        assert_eq!(
            plan.early_termination(at, dec!(39.90), dec!(0.5)).fee.0,
            dec!(379.05)
        );
    }

    #[test]
    fn terms_renew_from_the_anchor() {
        let plan = fibre("2026-01-31");
        assert_eq!(
            plan.term(1),
            Term {
                index: 1,
                start: d("2029-01-31"),
                end: d("2030-01-31")
            }
        );
        let in_renewal = paris_midnight(d("2029-05-01"));
        assert_eq!(plan.term_at(in_renewal).index, 1);
        assert_eq!(plan.term_at(paris_midnight(d("2029-01-31"))).index, 1);
        assert_eq!(plan.term_at(paris_midnight(d("2029-01-30"))).index, 0);
        let cellular = Plan {
            anchor: d("2026-03-31"),
            billing_months: 1,
            commitment_months: 3,
            renewal_months: 1,
            notice_days: 10,
            first_period: 0,
        };
        assert_eq!(cellular.term(0).end, d("2026-06-30"));
        assert_eq!(
            cellular.term(1),
            Term {
                index: 1,
                start: d("2026-06-30"),
                end: d("2026-07-31")
            }
        );
        assert_eq!(cellular.term(2).end, d("2026-08-31"));
    }

    #[test]
    fn cancellation_notice_boundary() {
        let plan = fibre("2026-01-31");
        let term_end = d("2029-01-31");
        assert_eq!(plan.notice_deadline(plan.term(0)), d("2029-01-01"));
        // received on the deadline (any time that day, Paris): ends at term end
        let on_time = paris_midnight(d("2029-01-01")) + chrono::Duration::hours(23);
        assert_eq!(plan.end_after_cancellation(on_time), term_end);
        // one day later: renews once more
        let late = paris_midnight(d("2029-01-02"));
        assert_eq!(plan.end_after_cancellation(late), d("2030-01-31"));
    }

    #[test]
    fn periods_due_stop_at_the_end() {
        let plan = fibre("2024-02-29");
        let at = paris_midnight(d("2024-05-29"));
        let due: Vec<_> = plan.periods_due(at, None).map(|p| p.start).collect();
        assert_eq!(
            due,
            [
                d("2024-02-29"),
                d("2024-03-29"),
                d("2024-04-29"),
                d("2024-05-29")
            ]
        );
        let end = Some(paris_midnight(d("2024-04-29")));
        assert_eq!(plan.periods_due(at, end).count(), 2);
        assert_eq!(
            plan.periods_due(at - chrono::Duration::seconds(1), None)
                .count(),
            3
        );
    }
}
