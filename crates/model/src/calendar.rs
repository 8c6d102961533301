//! UTC calendar arithmetic for limits and budgets: months and days as the
//! integers the control database keeps them in (`202611`, `20261130`), and
//! the budget periods (a day, an ISO week from Monday, a calendar month) as
//! ranges of days. Pure functions of epoch milliseconds, so every boundary is
//! tested by passing a time rather than waiting for one.

const MS_PER_DAY: u64 = 86_400_000;

/// The UTC calendar month of `ms` as `year * 100 + month` (202611).
pub fn month_of(ms: u64) -> u32 {
    let (year, month, _) = civil_from_days(days_of(ms));
    (year as u32) * 100 + month
}

/// The UTC day of `ms` as `year * 10000 + month * 100 + day` (20261130).
pub fn day_of(ms: u64) -> u32 {
    day_key(days_of(ms))
}

/// Epoch milliseconds of 00:00 UTC on `year`-`month`-`day`.
pub fn date_ms(year: i64, month: u32, day: u32) -> u64 {
    (days_from_civil(year, month, day).max(0) as u64) * MS_PER_DAY
}

/// Epoch milliseconds of 00:00 UTC on the first day of `year`/`month`.
pub fn month_start_ms(year: i64, month: u32) -> u64 {
    date_ms(year, month, 1)
}

/// `ms` as RFC 3339 UTC with milliseconds (`2026-11-30T16:02:51.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d) = civil_from_days(days_of(ms));
    let in_day = ms % MS_PER_DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// A day key (`20261130`) as an ISO date (`2026-11-30`).
pub fn iso_date(day: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day / 10_000,
        day / 100 % 100,
        day % 100
    )
}

/// A budget's or an alert rule's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC calendar day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A UTC calendar month.
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The period containing `ms`, as its first day and the first day after
    /// it (both `year * 10000 + month * 100 + day`): the days to sum.
    pub fn days(self, ms: u64) -> (u32, u32) {
        let today = days_of(ms);
        let (first, next) = match self {
            Period::Day => (today, today + 1),
            Period::Week => {
                // 1970-01-01 was a Thursday: day 0 is weekday 3 from Monday.
                let monday = today - (today + 3).rem_euclid(7);
                (monday, monday + 7)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(today);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        };
        (day_key(first), day_key(next))
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn days_of(ms: u64) -> i64 {
    (ms / MS_PER_DAY) as i64
}

fn day_key(days: i64) -> u32 {
    let (y, m, d) = civil_from_days(days);
    (y as u32) * 10_000 + m * 100 + d
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

/// The wall clock, in milliseconds since the epoch (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time parameter: epoch milliseconds, `YYYY-MM-DD`, or
/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<u64> {
        let s = text.get(from..to)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let midnight = date_ms(year as i64, month as u32, day as u32);
    if b.len() == 10 {
        return Some(midnight);
    }
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (h, m, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let millis = match &text[19..text.len() - 1] {
        "" => 0,
        frac if frac.starts_with('.') && (2..=4).contains(&frac.len()) => {
            let digits = &frac[1..];
            let n = num(20, 20 + digits.len())?;
            n * 10u64.pow(3 - digits.len() as u32)
        }
        _ => return None,
    };
    Some(midnight + ((h * 60 + m) * 60 + s) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1795792752434"), Some(1_795_792_752_434));
        assert_eq!(parse_time("2026-11-30"), Some(date_ms(2026, 11, 30)));
        assert_eq!(
            parse_time("2026-11-30T01:02:03Z"),
            Some(date_ms(2026, 11, 30) + 3_723_000)
        );
        assert_eq!(
            parse_time("2026-11-30T01:02:03.5Z"),
            Some(date_ms(2026, 11, 30) + 3_723_500)
        );
        assert_eq!(
            parse_time("2026-11-30T01:02:03.123Z"),
            Some(date_ms(2026, 11, 30) + 3_723_123)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-30T25:00:00Z",
            "2026-11-30T01:02:03",
            "2026-11-30T01:02:03+01:00",
            "2026-11-30T01:02:03.1234Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

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
    fn days_roll_at_midnight_utc() {
        let dec1 = date_ms(2026, 12, 1);
        assert_eq!(day_of(dec1 - 1), 20_261_130);
        assert_eq!(day_of(dec1), 20_261_201);
        assert_eq!(day_of(date_ms(2028, 2, 29)), 20_280_229);
        assert_eq!(day_of(0), 19_700_101);
        assert_eq!(
            rfc3339(date_ms(2026, 11, 30) + 57_771_123),
            "2026-11-30T16:02:51.123Z"
        );
        assert_eq!(iso_date(20_261_130), "2026-11-30");
    }

    #[test]
    fn periods_are_ranges_of_days() {
        // Monday 2026-11-30, the last day of the month.
        let now = date_ms(2026, 11, 30) + 3_600_000;
        assert_eq!(Period::Day.days(now), (20_261_130, 20_261_201));
        assert_eq!(Period::Week.days(now), (20_261_130, 20_261_207));
        assert_eq!(Period::Month.days(now), (20_261_101, 20_261_201));
        // Sunday 2026-11-29 23:59:59.999 is still the week before.
        let sunday = date_ms(2026, 11, 30) - 1;
        assert_eq!(Period::Week.days(sunday), (20_261_123, 20_261_130));
        // A week across a year end, a month across one.
        assert_eq!(
            Period::Week.days(date_ms(2027, 1, 1)),
            (20_261_228, 20_270_104)
        );
        assert_eq!(
            Period::Month.days(date_ms(2026, 12, 31)),
            (20_261_201, 20_270_101)
        );
        assert_eq!(Period::parse("week"), Some(Period::Week));
        assert_eq!(Period::parse("year"), None);
    }

    #[test]
    fn round_trips_every_day_for_years() {
        for day in 0..(365 * 60) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
