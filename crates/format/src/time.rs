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
