//! The billing schedule of a subscription: a pure function of its plan and an instant.
//! Periods and terms are counted from the anchor date (00:00 Europe/Paris), each boundary
//! computed from the anchor, never from the previous one. An add-on taken inside a period
//! of its parent's calendar pays that first period prorated by days; a pack's included
//! credits follow 12-month periods of its own, anchored on its start.

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
    /// The subscription's own first day: the anchor, or for an add-on the day it was
    /// taken, which may fall inside a period of its parent's calendar.
    pub start: NaiveDate,
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

/// What a subscription pays for one billing period, billed in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodCharge {
    pub period: Period,
    /// The first day billed: the period's start, or an add-on's start inside it.
    pub from: NaiveDate,
    /// Days billed, `[from, period.end)`.
    pub days_billed: u32,
    pub days_in_period: u32,
    /// The unit price of the period's charge: `price × days_billed ÷ days_in_period`
    /// rounded to the cent, or the price as the catalog has it when every day is billed.
    pub amount: Decimal,
}

impl PeriodCharge {
    pub fn is_prorated(&self) -> bool {
        self.days_billed < self.days_in_period
    }
}

/// `price × days_left ÷ days_in_period`, rounded to the cent, half away from zero: what
/// an add-on taken with `days_left` days of its first period to run pays for them. A
/// whole period is `price` itself, untouched.
pub fn prorate(price: Decimal, days_left: u32, days_in_period: u32) -> Decimal {
    if days_left >= days_in_period || days_in_period == 0 {
        return price;
    }
    round_cents(price * Decimal::from(days_left) / Decimal::from(days_in_period))
}

/// Period `index` of a pack that starts on `start`, in 12-month periods (period *k*
/// starts on `start + 12k months`, clamped to the month's end): Assistance+ quotas and
/// Service+ grants follow these, whatever the parent's terms or billing period.
pub fn twelve_month_period(start: NaiveDate, index: u32) -> Period {
    Period {
        index,
        start: add_months(start, 12 * index),
        end: add_months(start, 12 * (index + 1)),
    }
}

/// The 12-month period of a pack that starts on `start` holding `date`.
pub fn twelve_month_period_at(start: NaiveDate, date: NaiveDate) -> Period {
    twelve_month_period(start, months_between(start, date) / 12)
}

/// The 12-month periods of a pack that starts on `start` that have begun by `until`: one
/// grant of a Service+ pack's included credits each.
pub fn twelve_month_periods(
    start: NaiveDate,
    until: DateTime<Utc>,
) -> impl Iterator<Item = Period> {
    (0u32..)
        .map(move |k| twelve_month_period(start, k))
        .take_while(move |p| paris_midnight(p.start) <= until)
}

fn days(from: NaiveDate, to: NaiveDate) -> u32 {
    u32::try_from((to - from).num_days()).unwrap_or(0)
}

/// Refuses the date a customer's notice was received when it cannot be: after `today`
/// (the day it is recorded, Paris), or before the subscription's first day `start`.
pub fn check_received_on(
    received_on: NaiveDate,
    start: NaiveDate,
    today: NaiveDate,
) -> Result<(), String> {
    if received_on > today {
        Err(format!(
            "{received_on} is in the future: a notice is recorded once received (today is {today})"
        ))
    } else if received_on < start {
        Err(format!(
            "{received_on} is before the subscription started ({start})"
        ))
    } else {
        Ok(())
    }
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

    /// The first billed period: the one holding [`Plan::start`].
    pub fn first_period(&self) -> u32 {
        months_between(self.anchor, self.start) / self.billing_months.max(1)
    }

    /// The first day of period `p` the subscription pays for: the period's start, or the
    /// subscription's own start when it falls inside the period.
    pub fn billed_from(&self, p: Period) -> NaiveDate {
        p.start.max(self.start).min(p.end)
    }

    /// What period `p` costs at `price` (the price in force on its first billed day): the
    /// whole price, or for an add-on taken inside it the days from its start to the
    /// period's end, prorated.
    pub fn charge(&self, p: Period, price: Decimal) -> PeriodCharge {
        let from = self.billed_from(p);
        let (days_billed, days_in_period) = (days(from, p.end), days(p.start, p.end));
        PeriodCharge {
            period: p,
            from,
            days_billed,
            days_in_period,
            amount: prorate(price, days_billed, days_in_period),
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
        self.term_on(paris_date(at))
    }

    /// The term holding the Paris date `date` (the first one before the anchor).
    pub fn term_on(&self, date: NaiveDate) -> Term {
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

    /// Where a cancellation received on `received_on` ends the subscription: at the end
    /// of the term holding that day when received by its notice deadline, else at the end
    /// of the next term.
    pub fn end_after_cancellation(&self, received_on: NaiveDate) -> NaiveDate {
        let term = self.term_on(received_on);
        if received_on <= self.notice_deadline(term) {
            term.end
        } else {
            self.term(term.index + 1).end
        }
    }

    /// Periods whose first billed day (the period's start, or the subscription's inside
    /// it) has come by `at` and is before `ends_at`.
    pub fn periods_due(
        &self,
        at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
    ) -> impl Iterator<Item = Period> + '_ {
        (self.first_period()..)
            .map(|i| self.period(i))
            .take_while(move |p| {
                let from = paris_midnight(self.billed_from(*p));
                from <= at && ends_at.is_none_or(|end| from < end)
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
            (start / self.billing_months).max(self.first_period())..end / self.billing_months;
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

    #[test]
    fn appointment_periods_are_twelve_months_from_the_pack_start() {
        let start = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        assert_eq!(
            twelve_month_period_at(start, NaiveDate::from_ymd_opt(2027, 1, 30).unwrap()).index,
            0
        );
        let second = twelve_month_period_at(start, NaiveDate::from_ymd_opt(2027, 1, 31).unwrap());
        assert_eq!(second.index, 1);
        assert_eq!(second, twelve_month_period(start, 1));
    }
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
            start: d(anchor),
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
            start: d("2026-03-31"),
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
        // received on the deadline: ends at term end
        assert_eq!(plan.end_after_cancellation(d("2029-01-01")), term_end);
        // one day later: renews once more
        assert_eq!(
            plan.end_after_cancellation(d("2029-01-02")),
            d("2030-01-31")
        );
        // received late in the first renewal: the end of the second
        assert_eq!(
            plan.end_after_cancellation(d("2030-01-15")),
            d("2031-01-31")
        );
    }

    #[test]
    fn a_notice_is_received_between_the_start_and_today() {
        let (start, today) = (d("2026-01-31"), d("2028-12-20"));
        assert_eq!(check_received_on(d("2028-12-20"), start, today), Ok(()));
        assert_eq!(check_received_on(d("2026-01-31"), start, today), Ok(()));
        let future = check_received_on(d("2028-12-21"), start, today).unwrap_err();
        assert!(future.contains("in the future"), "{future}");
        let early = check_received_on(d("2026-01-30"), start, today).unwrap_err();
        assert!(early.contains("before the subscription started"), "{early}");
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
    /// A yearly add-on on a parent anchored on `anchor`, taken on `start`.
    fn yearly_addon(anchor: &str, start: &str) -> Plan {
        Plan {
            billing_months: 12,
            start: d(start),
            ..fibre(anchor)
        }
    }

    #[test]
    fn an_add_on_taken_mid_period_pays_the_days_left_then_whole_periods() {
        // Assistance+ at 600.00/year taken 2026-05-10 on fibre anchored 2026-01-31: the
        // period 2026-01-31..2027-01-31 has 365 days, 266 of them from 2026-05-10
        let plan = yearly_addon("2026-01-31", "2026-05-10");
        assert_eq!(plan.first_period(), 0);
        let first = plan.charge(plan.period(0), dec!(600.00));
        assert_eq!(
            (first.from, first.days_billed, first.days_in_period),
            (d("2026-05-10"), 266, 365)
        );
        assert!(first.is_prorated());
        assert_eq!(first.amount, dec!(437.26), "600.00 × 266 / 365 = 437.2603");
        let second = plan.charge(plan.period(1), dec!(600.00));
        assert_eq!(
            (second.from, second.days_billed, second.days_in_period),
            (d("2027-01-31"), 365, 365)
        );
        assert!(!second.is_prorated());
        assert_eq!(second.amount, dec!(600.00));
    }

    #[test]
    fn proration_counts_29_february() {
        // 1200.00/year, period 2027-03-01..2028-03-01 (366 days), taken 2027-09-15: 168 days
        let plan = yearly_addon("2027-03-01", "2027-09-15");
        let first = plan.charge(plan.period(0), dec!(1200.00));
        assert_eq!((first.days_billed, first.days_in_period), (168, 366));
        assert_eq!(first.amount, dec!(550.82), "1200.00 × 168 / 366 = 550.8197");
        // taken on 29 February of a period anchored on 29 February: the next period
        // starts on 28 February 2029 (clamped), 365 days later
        let plan = yearly_addon("2024-02-29", "2028-02-29");
        assert_eq!(plan.first_period(), 4);
        let p = plan.charge(plan.period(4), dec!(1200.00));
        assert_eq!(
            (p.from, p.period.end, p.days_billed, p.amount),
            (d("2028-02-29"), d("2029-02-28"), 365, dec!(1200.00))
        );
        let plan = yearly_addon("2024-02-29", "2028-03-01");
        let p = plan.charge(plan.period(4), dec!(1200.00));
        assert_eq!(
            (p.days_billed, p.days_in_period, p.amount),
            (364, 365, dec!(1196.71)),
            "1200.00 × 364 / 365 = 1196.7123"
        );
    }

    #[test]
    fn proration_at_month_ends_rounds_half_away_from_zero() {
        // monthly on an anchor of the 31st: period 0 is 2026-01-31..2026-02-28 (28 days)
        let plan = Plan {
            start: d("2026-02-27"),
            ..fibre("2026-01-31")
        };
        assert_eq!(plan.first_period(), 0);
        let last_day = plan.charge(plan.period(0), dec!(39.90));
        assert_eq!((last_day.days_billed, last_day.days_in_period), (1, 28));
        assert_eq!(
            last_day.amount,
            dec!(1.43),
            "39.90 / 28 = 1.425, half away from zero (half to even would say 1.42)"
        );
        // taken on 28 February: that is period 1's first day, nothing to prorate
        let plan = Plan {
            start: d("2026-02-28"),
            ..fibre("2026-01-31")
        };
        assert_eq!(plan.first_period(), 1);
        let whole = plan.charge(plan.period(1), dec!(39.9000));
        assert_eq!(
            (whole.from, whole.period.end, whole.days_billed),
            (d("2026-02-28"), d("2026-03-31"), 31)
        );
        assert_eq!(
            whole.amount.to_string(),
            "39.9000",
            "the catalog price untouched"
        );
        assert_eq!(prorate(dec!(0.70), 1, 28), dec!(0.03), "0.025");
        assert_eq!(prorate(dec!(10), 1, 3), dec!(3.33));
        assert_eq!(prorate(dec!(10), 3, 3), dec!(10));
    }

    #[test]
    fn an_add_on_is_due_from_its_own_start_at_paris_midnight() {
        let plan = yearly_addon("2026-01-31", "2026-05-10");
        // 00:00 Paris on 10 May 2026 (summer time) is 22:00 UTC the day before
        let midnight: DateTime<Utc> = "2026-05-09T22:00:00Z".parse().unwrap();
        assert_eq!(paris_midnight(d("2026-05-10")), midnight);
        let before = midnight - chrono::Duration::seconds(1);
        assert_eq!(plan.periods_due(before, None).count(), 0);
        let due: Vec<_> = plan.periods_due(midnight, None).collect();
        assert_eq!(due.len(), 1);
        assert_eq!(plan.billed_from(due[0]), d("2026-05-10"));
        // ending on its first day: nothing is due
        assert_eq!(plan.periods_due(midnight, Some(midnight)).count(), 0);
        // the fee for leaving counts the periods after the instant only
        let fee = plan.early_termination(midnight, dec!(600.00), dec!(1));
        assert_eq!((fee.remaining_periods, fee.fee.0), (2, dec!(1200.00)));
    }

    #[test]
    fn twelve_month_periods_follow_the_pack_not_its_parent() {
        // a pack taken 2026-05-10 in a 36-month term ending 2029-01-31: three periods
        let end = paris_midnight(d("2029-01-31"));
        let until = alive_until(Some(end), end + chrono::Duration::days(400));
        let starts: Vec<_> = twelve_month_periods(d("2026-05-10"), until)
            .map(|p| (p.index, p.start, p.end))
            .collect();
        assert_eq!(
            starts,
            [
                (0, d("2026-05-10"), d("2027-05-10")),
                (1, d("2027-05-10"), d("2028-05-10")),
                (2, d("2028-05-10"), d("2029-05-10")),
            ]
        );
        // anchored on 29 February: clamped each year, back on the 29th in 2032
        let until = paris_midnight(d("2032-02-29"));
        let starts: Vec<_> = twelve_month_periods(d("2028-02-29"), until)
            .map(|p| p.start)
            .collect();
        assert_eq!(
            starts,
            [
                d("2028-02-29"),
                d("2029-02-28"),
                d("2030-02-28"),
                d("2031-02-28"),
                d("2032-02-29")
            ]
        );
        let just_before = until - chrono::Duration::microseconds(1);
        assert_eq!(
            twelve_month_periods(d("2028-02-29"), just_before).count(),
            4
        );
        assert_eq!(
            twelve_month_periods(d("2028-02-29"), paris_midnight(d("2028-02-28"))).count(),
            0
        );
    }
}
