//! Time is injected: domain code asks a `Clock`, never `Utc::now()`, so that tests and
//! demos can move time forward.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        FixedClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Moves the clock to `at`, forward only (staying put is allowed); refused with the
    /// clock's time when `at` is earlier. What has happened stays in the past: a hold, a
    /// lot or a sheet is never younger than the clock that reads it.
    pub fn move_forward_to(&self, at: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if at < *now {
            return Err(*now);
        }
        *now = at;
        Ok(())
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The clock a process runs on: the system's, or with `--test-clock` a test clock (as
/// Stripe's test clocks) that stands still until an admin moves it forward
/// (`PUT /v1/test-clock`). Every "now" of the service and of `jobs run` is this clock's.
#[derive(Debug, Clone)]
pub enum ServiceClock {
    System,
    Test(Arc<FixedClock>),
}

impl ServiceClock {
    /// The system clock, or when `test` a test clock starting at `start` (default: the
    /// system time, to the second).
    pub fn new(test: bool, start: Option<DateTime<Utc>>) -> ServiceClock {
        if !test {
            return ServiceClock::System;
        }
        let start = start.unwrap_or_else(|| Utc::now().trunc_subsecs(0));
        ServiceClock::Test(Arc::new(FixedClock::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            ServiceClock::System => Utc::now(),
            ServiceClock::Test(clock) => clock.now(),
        }
    }

    /// The test clock, if the process runs on one.
    pub fn test_clock(&self) -> Option<&Arc<FixedClock>> {
        match self {
            ServiceClock::System => None,
            ServiceClock::Test(clock) => Some(clock),
        }
    }
}

impl Clock for ServiceClock {
    fn now(&self) -> DateTime<Utc> {
        ServiceClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_forward_only() {
        let start: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let clock = ServiceClock::new(true, Some(start));
        let test = clock.test_clock().unwrap();
        assert_eq!(clock.now(), start);
        assert_eq!(
            test.move_forward_to(start),
            Ok(()),
            "staying put is allowed"
        );
        let later = start + chrono::Duration::days(6);
        assert_eq!(test.move_forward_to(later), Ok(()));
        assert_eq!(clock.now(), later);
        assert_eq!(test.move_forward_to(start), Err(later));
        assert_eq!(clock.now(), later, "a refused move changes nothing");
        assert!(ServiceClock::new(false, None).test_clock().is_none());
        let from_system = ServiceClock::new(true, None).now();
        assert_eq!(from_system, from_system.trunc_subsecs(0));
    }
}
