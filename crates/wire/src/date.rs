//! UTC calendar math and the date formats of the protocol and of our own records, with no
//! external time crate.
//!
//! - `x-ots-date`: [`format_ots_date`] (milliseconds, what clients send),
//!   [`format_ots_date_micros`] (microseconds, what the service answers with), [`parse_ots_date`].
//! - `x-ots-signdate` (V4): [`format_sign_date`], [`parse_sign_date`].
//! - RFC 3339 timestamps for records and logs: [`rfc3339_millis`], [`parse_rfc3339`],
//!   and [`unix_millis`].
//!
//! All of them use the proleptic Gregorian calendar ([`days_from_civil`], [`civil_from_days`]);
//! times before 1970 are supported. Text forms are defined for the years 0000–9999.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A date string that does not match the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date format: {0}")]
pub struct DateError(pub String);

// ---------------------------------------------------------------------------
// Calendar math
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before 1970).
///
/// `month` must be 1..=12. Days past the end of the month run on into the next one
/// (2023-02-29 is 2023-03-01); callers that need a real date check it first.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Counts from 0000-03-01 in eras of 400 years (146,097 days), so that the leap day falls at
    // the end of each counted year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let month_from_march = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` that is `days` days after 1970-01-01
/// (before it when negative); the inverse of [`days_from_civil`].
///
/// Defined for `|days|` below 2^60 (far beyond any `SystemTime`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

// (seconds since epoch, nanoseconds 0..1e9), floor semantics for pre-epoch times.
fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

fn to_civil(t: SystemTime) -> Civil {
    let (secs, nanos) = split_time(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        nanos,
    }
}

// The time of a valid date and time of day, or `None` when the date does not exist.
fn time_from_parts(
    year: i64,
    month: u32,
    day: u32,
    secs_of_day: u32,
    nanos: u32,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + i64::from(secs_of_day);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z, negative before it (rounded down, like
/// [`rfc3339_millis`]); saturates far outside ±292 million years.
pub fn unix_millis(t: SystemTime) -> i64 {
    let (secs, nanos) = split_time(t);
    secs.saturating_mul(1000)
        .saturating_add(i64::from(nanos / 1_000_000))
}

/// How far apart two times are, whichever comes first.
pub(crate) fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    match a.duration_since(b) {
        Ok(d) => d,
        Err(e) => e.duration(),
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

fn format_with_fraction(t: SystemTime, digits: u32) -> String {
    let c = to_civil(t);
    let frac = c.nanos / 10u32.pow(9 - digits);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0width$}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        frac,
        width = digits as usize
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, real milliseconds (truncated): the `x-ots-date` a client
/// sends.
pub fn format_ots_date(t: SystemTime) -> String {
    format_with_fraction(t, 3)
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` in UTC, as the service writes its response dates.
pub fn format_ots_date_micros(t: SystemTime) -> String {
    format_with_fraction(t, 6)
}

/// `YYYYMMDD` in UTC (V4 `x-ots-signdate`).
pub fn format_sign_date(t: SystemTime) -> String {
    let c = to_civil(t);
    format!("{:04}{:02}{:02}", c.year, c.month, c.day)
}

/// RFC 3339 in UTC with exactly three fraction digits (truncated), e.g.
/// `2025-11-25T14:30:12.345Z`. [`parse_rfc3339`] reads it back to the millisecond.
pub fn rfc3339_millis(t: SystemTime) -> String {
    format_with_fraction(t, 3)
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')),
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f]Z` (0..=9 fraction digits) and returns the time and the
/// number of fraction digits, or `None` for the digit count when there was no `.` at all.
pub(crate) fn parse_date_detailed(s: &str) -> Option<(SystemTime, Option<usize>)> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (nanos, frac_digits) = match &b[19..b.len() - 1] {
        [] => (0, None),
        [b'.', frac @ ..] if frac.len() <= 9 => {
            let mut nanos = 0u32;
            for (i, &c) in frac.iter().enumerate() {
                if !c.is_ascii_digit() {
                    return None;
                }
                nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
            }
            (nanos, Some(frac.len()))
        }
        _ => return None,
    };
    let t = time_from_parts(year, month, day, hour * 3600 + minute * 60 + second, nanos)?;
    Some((t, frac_digits))
}

/// Parses an `x-ots-date` value. Accepts no fraction or `.` followed by 0..=9 digits
/// (Go's SDK may send odd digit counts, §1.2).
pub fn parse_ots_date(s: &str) -> Result<SystemTime, DateError> {
    parse_date_detailed(s)
        .map(|(t, _)| t)
        .ok_or_else(|| DateError(s.to_string()))
}

/// Parses a V4 `x-ots-signdate` value, `YYYYMMDD`, as midnight UTC of that day.
pub fn parse_sign_date(s: &str) -> Result<SystemTime, DateError> {
    let parse = || {
        let b = s.as_bytes();
        if b.len() != 8 {
            return None;
        }
        time_from_parts(
            i64::from(digits(&b[0..4])?),
            digits(&b[4..6])?,
            digits(&b[6..8])?,
            0,
            0,
        )
    };
    parse().ok_or_else(|| DateError(s.to_string()))
}

/// Parses an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS[.fff]Z` as [`rfc3339_millis`] writes
/// it. The fraction, when present, has 1..=9 digits; the `T` and `Z` are upper case.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, DateError> {
    match parse_date_detailed(s) {
        Some((t, None)) => Ok(t),
        Some((t, Some(n))) if n > 0 => Ok(t),
        _ => Err(DateError(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01T00:00:00Z
    const JAN1_2024: u64 = 1_704_067_200;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn format_dates() {
        let t = at(JAN1_2024 + 3661, 987_654_321);
        assert_eq!(format_ots_date(t), "2024-01-01T01:01:01.987Z");
        assert_eq!(format_ots_date_micros(t), "2024-01-01T01:01:01.987654Z");
        assert_eq!(format_sign_date(t), "20240101");
        assert_eq!(format_ots_date(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (leap day) and 2023-12-31 23:59:59.
        assert_eq!(
            format_ots_date(at(1_709_164_800, 0)),
            "2024-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_ots_date(at(JAN1_2024 - 1, 999_999_999)),
            "2023-12-31T23:59:59.999Z"
        );
        // Before the epoch.
        let pre = UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(format_ots_date(pre), "1969-12-31T23:59:58.500Z");
    }

    #[test]
    fn parse_round_trips_and_fraction_digits() {
        let base = at(JAN1_2024 + 45_296, 0); // 12:34:56
        for (s, nanos) in [
            ("2024-01-01T12:34:56Z", 0),
            ("2024-01-01T12:34:56.Z", 0),
            ("2024-01-01T12:34:56.1Z", 100_000_000),
            ("2024-01-01T12:34:56.123Z", 123_000_000),
            ("2024-01-01T12:34:56.123456Z", 123_456_000),
            ("2024-01-01T12:34:56.123456789Z", 123_456_789),
        ] {
            assert_eq!(
                parse_ots_date(s),
                Ok(base + Duration::from_nanos(nanos)),
                "{s}"
            );
        }
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            4_107_542_399,
            253_402_300_799,
        ] {
            let t = at(secs, 123_456_789);
            assert_eq!(
                parse_ots_date(&format_ots_date_micros(t)),
                Ok(at(secs, 123_456_000))
            );
            assert_eq!(
                parse_ots_date(&format_ots_date(t)),
                Ok(at(secs, 123_000_000))
            );
        }
        // Leap years: 2000 and 2024 have Feb 29; 1900, 2100 and 2023 do not.
        assert!(parse_ots_date("2000-02-29T00:00:00Z").is_ok());
        assert_eq!(
            parse_ots_date("2024-02-29T00:00:00Z"),
            Ok(at(1_709_164_800, 0))
        );
        assert_eq!(
            parse_ots_date("2024-03-01T00:00:00Z"),
            Ok(at(1_709_251_200, 0))
        );
        for s in [
            "1900-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
        ] {
            assert!(parse_ots_date(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_ots_date("1969-12-31T23:59:58.5Z"),
            Ok(UNIX_EPOCH - Duration::new(1, 500_000_000))
        );
    }

    #[test]
    fn civil_conversion_is_consistent() {
        // Every day over several centuries, including 400-year era boundaries.
        let mut expected = (1600i64, 1u32, 1u32);
        for days in days_from_civil(1600, 1, 1)..days_from_civil(2401, 1, 1) {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn civil_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-365), (1969, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.000",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.0000000000Z",
            "2024-01-01T00:00:00.12a4Z",
            "2024-01-01T00:00:00+00:00",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:60Z",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000z",
            "2024-01-01T00:00:00.000ZZ",
            "２０２４-01-01T00:00:00Z",
            "2024-01-01T00:00:0é.0Z",
        ] {
            assert_eq!(parse_ots_date(s), Err(DateError(s.to_string())), "{s:?}");
        }
        for s in ["2024011", "20240230", "2024-1-1", "202401011", "2024010a"] {
            assert_eq!(parse_sign_date(s), Err(DateError(s.to_string())), "{s:?}");
        }
        assert_eq!(parse_sign_date("20240101"), Ok(at(JAN1_2024, 0)));
        assert_eq!(
            parse_sign_date("19691231"),
            Ok(UNIX_EPOCH - Duration::from_secs(86_400))
        );
    }

    // ---- RFC 3339 and Unix milliseconds -----------------------------------------

    #[test]
    fn rfc3339_epoch() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(unix_millis(UNIX_EPOCH), 0);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Ok(UNIX_EPOCH));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(UNIX_EPOCH));
    }

    #[test]
    fn rfc3339_example_and_fraction_forms() {
        let t = at(1_764_081_012, 345_678_901);
        assert_eq!(rfc3339_millis(t), "2025-11-25T14:30:12.345Z");
        assert_eq!(unix_millis(t), 1_764_081_012_345);
        // Always three digits, zeros kept.
        assert_eq!(
            rfc3339_millis(at(1_764_081_012, 5_000_000)),
            "2025-11-25T14:30:12.005Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_764_081_012, 0)),
            "2025-11-25T14:30:12.000Z"
        );
        for (s, nanos) in [
            ("2025-11-25T14:30:12Z", 0),
            ("2025-11-25T14:30:12.3Z", 300_000_000),
            ("2025-11-25T14:30:12.345Z", 345_000_000),
            ("2025-11-25T14:30:12.345678901Z", 345_678_901),
        ] {
            assert_eq!(parse_rfc3339(s), Ok(at(1_764_081_012, nanos)), "{s}");
        }
    }

    #[test]
    fn rfc3339_round_trips_to_the_millisecond() {
        for (secs, nanos) in [
            (0u64, 0u32),
            (1, 1),
            (JAN1_2024 - 1, 999_999_999),
            (1_709_164_800, 123_456_789), // 2024-02-29
            (1_764_081_012, 345_000_000),
            (253_402_300_799, 999_000_000), // 9999-12-31T23:59:59.999
        ] {
            let t = at(secs, nanos);
            let s = rfc3339_millis(t);
            let back = parse_rfc3339(&s).expect(&s);
            let truncated = at(secs, nanos / 1_000_000 * 1_000_000);
            assert_eq!(back, truncated, "{s}");
            assert_eq!(unix_millis(back), unix_millis(t), "{s}");
            assert_eq!(rfc3339_millis(back), s);
        }
    }

    #[test]
    fn rfc3339_before_the_epoch() {
        let last_ms_of_1969 = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(rfc3339_millis(last_ms_of_1969), "1969-12-31T23:59:59.999Z");
        assert_eq!(unix_millis(last_ms_of_1969), -1);
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.999Z"),
            Ok(last_ms_of_1969)
        );
        let dec31 = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339_millis(dec31), "1969-12-31T00:00:00.000Z");
        assert_eq!(unix_millis(dec31), -86_400_000);
        assert_eq!(parse_rfc3339("1969-12-31T00:00:00Z"), Ok(dec31));
        // Rounded down, never towards the epoch: 1.5 s before is -1500 ms.
        let t = UNIX_EPOCH - Duration::new(1, 500_000_000);
        assert_eq!(unix_millis(t), -1500);
        assert_eq!(rfc3339_millis(t), "1969-12-31T23:59:58.500Z");
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_nanos(1)), -1);
        assert_eq!(
            parse_rfc3339("1900-01-01T00:00:00Z").map(unix_millis),
            Ok(-2_208_988_800_000)
        );
    }

    #[test]
    fn rfc3339_leap_day() {
        let t = at(1_709_164_800 + 3_600, 42_000_000);
        assert_eq!(rfc3339_millis(t), "2024-02-29T01:00:00.042Z");
        assert_eq!(parse_rfc3339("2024-02-29T01:00:00.042Z"), Ok(t));
        assert_eq!(unix_millis(t), 1_709_168_400_042);
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2100-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for s in [
            "2025-13-01T00:00:00Z",
            "",
            "2025-11-25T14:30:12.345",
            "2025-11-25T14:30:12",
            "2025-11-25T14:30:12.Z",
            "2025-11-25t14:30:12Z",
            "2025-11-25T14:30:12z",
            "2025-11-25T14:30:12+00:00",
            "2025-11-25 14:30:12Z",
            "2025-11-31T00:00:00Z",
            "2025-11-25T25:00:00Z",
            "2025-11-25T14:30:12.1234567890Z",
            "2025-11-25T14:30:12.-12Z",
            "Z",
            "garbage",
            "2025-11-25T14:30:1€Z",
            "ééééééééééééééééééééé",
        ] {
            assert_eq!(parse_rfc3339(s), Err(DateError(s.to_string())), "{s:?}");
        }
    }
}
