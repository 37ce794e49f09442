//! Where each object of a snapshot lives, relative to the snapshot's folder. Only the `Snapshot`
//! handle (crate `ots-manifest`) joins these with a destination; nothing else builds paths.
//!
//! ```text
//! plan.json                                   create-once, first
//! data/<partition>/part-<split>-<attempt>-<n>.parquet
//! splits/<split>/<attempt>.json               create-once, after the attempt's files
//! changes/part-<attempt>-<n>.parquet          change files of a capture attempt
//! changes/<attempt>.json                      create-once, after the attempt's change files
//! leases/<owner>-<renewal>.json               create-once, while a process runs
//! manifest.json                               create-once, last: the commit point
//! ```

pub const PLAN_FILE: &str = "plan.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SPLITS_DIR: &str = "splits";
pub const DATA_DIR: &str = "data";
pub const LEASES_DIR: &str = "leases";
pub const CHANGES_DIR: &str = "changes";

/// `changes/7f3a9c01.json`: one capture attempt's record.
pub fn capture_record_path(attempt: &str) -> String {
    format!("{CHANGES_DIR}/{attempt}.json")
}

/// `changes/part-7f3a9c01-000.parquet`: the change files of a capture attempt, in replay order.
pub fn change_file_path(attempt: &str, seq: u32) -> String {
    format!("{CHANGES_DIR}/part-{attempt}-{seq:03}.parquet")
}

/// The attempt a change file's or capture record's name carries.
pub fn change_object_attempt(path: &str) -> Option<&str> {
    let name = path.strip_prefix(CHANGES_DIR)?.strip_prefix('/')?;
    if let Some(rest) = name.strip_prefix("part-") {
        return rest.strip_suffix(".parquet")?.split('-').next();
    }
    name.strip_suffix(".json")
}

/// `splits/00003/7f3a9c01.json`: one attempt's record.
pub fn record_path(split: u32, attempt: &str) -> String {
    format!("{SPLITS_DIR}/{split:05}/{attempt}.json")
}

/// `splits/00003.json`: format version 1's single record per split.
pub fn record_path_v1(split: u32) -> String {
    format!("{SPLITS_DIR}/{split:05}.json")
}

/// `data/<partition>/part-00003-7f3a9c01-000.parquet` (no partition folder when `partition` is empty).
pub fn data_file_path(partition: &str, split: u32, attempt: &str, seq: u32) -> String {
    let dir = if partition.is_empty() {
        DATA_DIR.to_string()
    } else {
        format!("{DATA_DIR}/{partition}")
    };
    format!("{dir}/part-{split:05}-{attempt}-{seq:03}.parquet")
}

/// The split and attempt a data file's name carries, if it has the shape above.
pub fn data_file_attempt(path: &str) -> Option<(u32, &str)> {
    let name = path.rsplit('/').next()?;
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.splitn(3, '-');
    let split = parts.next()?.parse().ok()?;
    let attempt = parts.next()?;
    parts.next()?;
    Some((split, attempt))
}

/// `leases/<owner>-<renewal:06>.json`.
pub fn lease_path(owner: &str, renewal: u32) -> String {
    format!("{LEASES_DIR}/{owner}-{renewal:06}.json")
}

/// The owner and renewal of a lease's path, if it has the shape of [`lease_path`].
pub fn parse_lease_path(path: &str) -> Option<(&str, u32)> {
    let name = path.strip_prefix(LEASES_DIR)?.strip_prefix('/')?;
    let (owner, renewal) = name.strip_suffix(".json")?.rsplit_once('-')?;
    if owner.is_empty() || renewal.is_empty() || !renewal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((owner, renewal.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        assert_eq!(record_path(3, "7f3a9c01"), "splits/00003/7f3a9c01.json");
        let p = data_file_path("dt=2026-11-24", 3, "7f3a9c01", 0);
        assert_eq!(p, "data/dt=2026-11-24/part-00003-7f3a9c01-000.parquet");
        assert_eq!(data_file_attempt(&p), Some((3, "7f3a9c01")));
        assert_eq!(
            data_file_path("", 12, "ab", 7),
            "data/part-00012-ab-007.parquet"
        );
        assert_eq!(data_file_attempt("data/x.parquet"), None);
        assert_eq!(
            parse_lease_path(&lease_path("1a2b3c4d", 42)),
            Some(("1a2b3c4d", 42))
        );
        assert_eq!(parse_lease_path("leases/x.json"), None);
        assert_eq!(parse_lease_path("leases/-000001.json"), None);
    }
}
