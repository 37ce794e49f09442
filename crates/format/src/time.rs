//! Timestamps as the snapshot documents write them (the calendar math is `ots_wire::date`'s).

use std::time::SystemTime;

pub use ots_wire::date::{DateError, civil_from_days, parse_rfc3339};

/// RFC 3339 UTC with milliseconds, e.g. `2025-11-25T14:30:12.345Z`.
pub fn rfc3339(t: SystemTime) -> String {
    ots_wire::date::rfc3339_millis(t)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> i64 {
    ots_wire::date::unix_millis(t)
}

/// Microseconds since the Unix epoch (the stream's clock), negative before it.
pub fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The time `us` microseconds after the epoch.
pub fn from_unix_micros(us: i64) -> SystemTime {
    let d = std::time::Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2025-11-25T14:30:12.345678Z`: how change capture writes
/// its points in time.
pub fn rfc3339_micros(us: i64) -> String {
    ots_wire::date::format_ots_date_micros(from_unix_micros(us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_through_rfc3339() {
        let us = 1_700_000_000_123_456;
        assert_eq!(rfc3339_micros(us), "2023-11-14T22:13:20.123456Z");
        let back = parse_rfc3339(&rfc3339_micros(us)).unwrap();
        assert_eq!(unix_micros(back), us);
        assert_eq!(unix_micros(from_unix_micros(-5)), -5);
    }
}
