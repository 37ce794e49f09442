//! Snapshot ids (sortable by time) and attempt and owner tokens.

use std::time::SystemTime;

use crate::time::rfc3339;

/// A time-sortable snapshot id: `YYYYMMDDTHHMMSSZ-<8 hex>`.
pub fn new_snapshot_id(t: SystemTime) -> String {
    let stamp: String = rfc3339(t)
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{stamp}Z-{}", random_token())
}

/// Whether `s` has the shape of a snapshot id (so a destination folder is not taken for one).
pub fn is_snapshot_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 25
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..].iter().all(|c| c.is_ascii_hexdigit())
}

/// 8 random hex digits: attempt tokens, lease owners, id suffixes.
pub fn random_token() -> String {
    format!("{:08x}", random_u32())
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; mixing in the clock and a counter makes
    // tokens of one process differ too.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_recognised() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_081_012_345);
        let id = new_snapshot_id(t);
        assert!(id.starts_with("20251125T143012Z-"), "{id}");
        assert!(is_snapshot_id(&id), "{id}");
        assert!(!is_snapshot_id("data") && !is_snapshot_id("splits"));
        let later = new_snapshot_id(t + std::time::Duration::from_secs(1));
        assert!(later > id);
        assert_ne!(random_token(), random_token());
    }
}
