//! Dates as the business sees them: Europe/Paris. Timestamps are stored in UTC; a date
//! `D` of a business rule means 00:00 Paris time on `D`.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
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
