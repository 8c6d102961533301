//! Time for the limits, injected so minute windows, month rollover and
//! hysteresis are tested by moving a fake clock instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn at(ms: u64) -> Self {
        FakeClock(AtomicU64::new(ms))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The UTC calendar month of `ms` as `year * 100 + month` (202611).
pub fn month_of(ms: u64) -> u32 {
    let (year, month, _) = civil_from_days((ms / 86_400_000) as i64);
    (year as u32) * 100 + month
}

/// Epoch milliseconds of 00:00 UTC on the first day of `year`/`month`.
pub fn month_start_ms(year: i64, month: u32) -> u64 {
    (days_from_civil(year, month, 1).max(0) as u64) * 86_400_000
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_at_midnight_utc() {
        let dec1 = month_start_ms(2026, 12);
        assert_eq!(month_of(dec1 - 1), 202_611, "23:59:59.999 on Nov 30");
        assert_eq!(month_of(dec1), 202_612, "00:00 on Dec 1");
        let jan1 = month_start_ms(2027, 1);
        assert_eq!(month_of(jan1 - 1), 202_612);
        assert_eq!(month_of(jan1), 202_701, "year rollover");
        let mar1 = month_start_ms(2028, 3);
        assert_eq!(month_of(mar1 - 1), 202_802, "Feb 29 of a leap year");
        assert_eq!(month_of(0), 197_001);
    }

    #[test]
    fn round_trips_every_day_for_years() {
        for day in 0..(365 * 60) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
