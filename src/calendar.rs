//! Dates as the business sees them: Europe/Paris. Timestamps are stored in UTC; a date
//! `D` of a business rule means 00:00 Paris time on `D`. Business days are Monday to
//! Friday except French metropolitan public holidays (the Easter-based ones computed);
//! business hours are 09:00–17:00 Paris time by default.

use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Europe::Paris;

/// The Paris calendar date of an instant.
pub fn paris_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Paris).date_naive()
}

/// 00:00 Paris time on `date`, as an instant. (Midnight always exists in Paris: the DST
/// changes happen at 02:00 and 03:00.)
pub fn paris_midnight(date: NaiveDate) -> DateTime<Utc> {
    Paris
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| date.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// `anchor + months`, clamped to the end of the month, always counted from the anchor
/// (31 Jan + 1 → 29 Feb, + 2 → 31 Mar), never from a previous result.
pub fn add_months(anchor: NaiveDate, months: u32) -> NaiveDate {
    anchor
        .checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The whole months from `anchor` to `date`'s month-anniversary at or before `date`.
pub fn months_between(anchor: NaiveDate, date: NaiveDate) -> u32 {
    if date <= anchor {
        return 0;
    }
    let guess = (date.year() - anchor.year()) * 12 + date.month() as i32 - anchor.month() as i32;
    let mut n = guess.max(0) as u32;
    while n > 0 && add_months(anchor, n) > date {
        n -= 1;
    }
    n
}

/// Easter Sunday of `year` (Gregorian computus, Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).unwrap_or(NaiveDate::MIN)
}

/// The French metropolitan public holidays of `year`, in date order.
pub fn public_holidays(year: i32) -> Vec<NaiveDate> {
    let fixed = |m, d| NaiveDate::from_ymd_opt(year, m, d).unwrap_or(NaiveDate::MIN);
    let easter = easter_sunday(year);
    let mut days = vec![
        fixed(1, 1),
        easter + Duration::days(1), // Easter Monday
        fixed(5, 1),
        fixed(5, 8),
        easter + Duration::days(39), // Ascension
        easter + Duration::days(50), // Whit Monday
        fixed(7, 14),
        fixed(8, 15),
        fixed(11, 1),
        fixed(11, 11),
        fixed(12, 25),
    ];
    days.sort();
    days
}

pub fn is_public_holiday(date: NaiveDate) -> bool {
    public_holidays(date.year()).contains(&date)
}

pub fn is_business_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_public_holiday(date)
}

/// The business day of the working week: when it opens and closes (Paris local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    pub open: NaiveTime,
    pub close: NaiveTime,
}

impl Default for BusinessHours {
    /// 09:00–17:00 (seed 002).
    fn default() -> Self {
        BusinessHours {
            open: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            close: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

fn paris_local(at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&Paris).naive_local()
}

/// A Paris wall-clock time as an instant (business hours never fall in a DST gap).
fn from_paris_local(local: NaiveDateTime) -> DateTime<Utc> {
    Paris
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| local.and_utc())
}

impl BusinessHours {
    /// The business time of `date` as `[open, close)` in Paris local time, if it is a
    /// business day.
    fn window(&self, date: NaiveDate) -> Option<(NaiveDateTime, NaiveDateTime)> {
        is_business_day(date).then(|| (date.and_time(self.open), date.and_time(self.close)))
    }

    /// `n` business hours (and minutes) after `from`: only time inside business hours
    /// counts. Friday 16:00 + 4 h is Monday 12:00 (Monday not a holiday).
    pub fn add(&self, from: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
        let mut at = paris_local(from);
        let mut left = duration;
        // a year of business days is far more than any delay asked of this
        for _ in 0..800 {
            if let Some((open, close)) = self.window(at.date()) {
                let start = at.max(open);
                if start < close {
                    let room = close - start;
                    if left <= room {
                        return from_paris_local(start + left);
                    }
                    left -= room;
                }
            }
            at = (at.date() + Duration::days(1)).and_time(NaiveTime::MIN);
        }
        from_paris_local(at)
    }

    /// The business time between `from` and `to` (zero when `to` is not after `from`).
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let (from, to) = (paris_local(from), paris_local(to));
        let mut total = Duration::zero();
        let mut day = from.date();
        while day <= to.date() {
            if let Some((open, close)) = self.window(day) {
                let (start, end) = (open.max(from), close.min(to));
                if start < end {
                    total += end - start;
                }
            }
            day += Duration::days(1);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn months_are_counted_from_the_anchor() {
        let a = d("2024-01-31");
        assert_eq!(add_months(a, 1), d("2024-02-29"));
        assert_eq!(add_months(a, 2), d("2024-03-31"));
        assert_eq!(add_months(a, 13), d("2025-02-28"));
        assert_eq!(add_months(d("2024-02-29"), 12), d("2025-02-28"));
        assert_eq!(add_months(d("2024-02-29"), 48), d("2028-02-29"));
        assert_eq!(months_between(a, d("2024-02-28")), 0);
        assert_eq!(months_between(a, d("2024-02-29")), 1);
        assert_eq!(months_between(a, d("2024-03-30")), 1);
        assert_eq!(months_between(a, d("2024-03-31")), 2);
    }

    #[test]
    fn paris_midnight_follows_daylight_saving() {
        assert_eq!(
            paris_midnight(d("2026-01-15")).to_rfc3339(),
            "2026-01-14T23:00:00+00:00"
        );
        assert_eq!(
            paris_midnight(d("2026-07-15")).to_rfc3339(),
            "2026-07-14T22:00:00+00:00"
        );
        assert_eq!(
            paris_midnight(d("2026-03-29")).to_rfc3339(),
            "2026-03-28T23:00:00+00:00"
        );
        assert_eq!(
            paris_date("2026-07-14T22:00:00Z".parse().unwrap()),
            d("2026-07-15")
        );
        assert_eq!(
            paris_date("2026-07-14T21:59:59Z".parse().unwrap()),
            d("2026-07-14")
        );
    }
}

#[cfg(test)]
mod business_tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Paris wall-clock time as an instant.
    fn p(s: &str) -> DateTime<Utc> {
        from_paris_local(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
    }

    #[test]
    fn holidays_2024_to_2032_match_the_official_table() {
        // Easter Monday, Ascension Thursday, Whit Monday (the fixed ones are fixed)
        let moving = [
            (2024, "2024-04-01", "2024-05-09", "2024-05-20"),
            (2025, "2025-04-21", "2025-05-29", "2025-06-09"),
            (2026, "2026-04-06", "2026-05-14", "2026-05-25"),
            (2027, "2027-03-29", "2027-05-06", "2027-05-17"),
            (2028, "2028-04-17", "2028-05-25", "2028-06-05"),
            (2029, "2029-04-02", "2029-05-10", "2029-05-21"),
            (2030, "2030-04-22", "2030-05-30", "2030-06-10"),
            (2031, "2031-04-14", "2031-05-22", "2031-06-02"),
            (2032, "2032-03-29", "2032-05-06", "2032-05-17"),
        ];
        for (year, monday, ascension, whit) in moving {
            let mut expected: Vec<NaiveDate> = [
                "01-01", "05-01", "05-08", "07-14", "08-15", "11-01", "11-11", "12-25",
            ]
            .iter()
            .map(|md| d(&format!("{year}-{md}")))
            .chain([d(monday), d(ascension), d(whit)])
            .collect();
            expected.sort();
            assert_eq!(public_holidays(year), expected, "{year}");
        }
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        assert!(
            is_business_day(d("2026-12-24")),
            "a holiday eve is a business day"
        );
        assert!(!is_business_day(d("2026-12-25")));
        assert!(!is_business_day(d("2026-11-21")), "Saturday");
        assert!(!is_business_day(d("2026-05-14")), "Ascension");
        assert!(is_business_day(d("2026-05-15")));
    }

    #[test]
    fn adding_business_hours() {
        let h = BusinessHours::default();
        let four = Duration::hours(4);
        // DOMAIN.md: Friday 16:00 + 4 business hours = Monday 12:00
        assert_eq!(h.add(p("2026-11-20 16:00"), four), p("2026-11-23 12:00"));
        // before opening and after closing
        assert_eq!(h.add(p("2026-11-23 07:30"), four), p("2026-11-23 13:00"));
        assert_eq!(h.add(p("2026-11-23 18:00"), four), p("2026-11-24 13:00"));
        // exactly at closing time: nothing left that day
        assert_eq!(
            h.add(p("2026-11-23 17:00"), Duration::hours(1)),
            p("2026-11-24 10:00")
        );
        // a holiday eve, then the holiday: 24 Dec 15:00 + 4 h = 26 Dec is Saturday → 28 Dec 11:00
        assert_eq!(h.add(p("2026-12-24 15:00"), four), p("2026-12-28 11:00"));
        // across the DST change of 29 March 2026 (Sunday): wall-clock hours count
        assert_eq!(h.add(p("2026-03-27 15:00"), four), p("2026-03-30 11:00"));
        assert_eq!(
            p("2026-03-30 11:00") - p("2026-03-27 15:00"),
            Duration::hours(67),
            "one hour fewer in UTC"
        );
        // across Ascension Thursday: Wednesday 16:00 + 8 h = Friday 16:00
        assert_eq!(
            h.add(p("2026-05-13 16:00"), Duration::hours(8)),
            p("2026-05-15 16:00")
        );
        // 24 business hours = 3 business days
        assert_eq!(
            h.add(p("2026-11-20 10:00"), Duration::hours(24)),
            p("2026-11-25 10:00")
        );
    }

    #[test]
    fn business_time_between_two_instants() {
        let h = BusinessHours::default();
        assert_eq!(
            h.between(p("2026-11-20 16:00"), p("2026-11-23 12:00")),
            Duration::hours(4)
        );
        assert_eq!(
            h.between(p("2026-11-21 10:00"), p("2026-11-22 18:00")),
            Duration::zero(),
            "a weekend"
        );
        assert_eq!(
            h.between(p("2026-11-23 12:00"), p("2026-11-20 16:00")),
            Duration::zero()
        );
        assert_eq!(
            h.between(p("2026-03-27 15:00"), p("2026-03-30 11:00")),
            Duration::hours(4)
        );
        assert_eq!(
            h.between(p("2026-12-24 08:00"), p("2026-12-28 09:30")),
            Duration::minutes(8 * 60 + 30)
        );
        for (from, hours) in [
            ("2026-11-20 16:00", 4),
            ("2026-12-24 15:00", 7),
            ("2026-05-13 16:00", 24),
        ] {
            let end = h.add(p(from), Duration::hours(hours));
            assert_eq!(
                h.between(p(from), end),
                Duration::hours(hours),
                "{from} + {hours} h"
            );
        }
    }
}
