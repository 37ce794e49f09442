//! Manifest types. Field names are part of the format: change them only with `FORMAT_VERSION`.

use std::collections::BTreeMap;

use ots_scan::{KeyPart, Split};
use ots_schema::layout::{ColumnSchema, PkColumnSchema};
use ots_schema::{SnapshotSchema, SnapshotStats};
use serde::{Deserialize, Serialize};

/// Version of the manifest format described in docs/FORMAT.md.
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const PLAN_FILE: &str = "plan.json";
pub const SPLITS_DIR: &str = "splits";
pub const DATA_DIR: &str = "data";

/// What cannot be guaranteed without the Stream API; recorded in every manifest.
pub const CONSISTENCY_NOTE: &str = "Cells written after the snapshot time T are excluded by the scan's time range [0, T]. \
Rows deleted (or cells deleted) while the scan ran cannot be excluded without the Stream API: such a row is in the \
snapshot if its split was read before the delete.";

/// The source table's meta, enough to recreate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    pub table_name: String,
    pub primary_key: Vec<PkColumnSchema>,
    #[serde(default)]
    pub defined_columns: Vec<ColumnSchema>,
    pub max_versions: Option<i32>,
    /// Seconds; -1 = forever.
    pub time_to_live: Option<i32>,
    pub deviation_cell_version_in_sec: Option<i64>,
    pub allow_update: Option<bool>,
}

/// Where the data came from. The endpoint never carries credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub endpoint: String,
    pub instance: String,
    pub table: TableMeta,
}

/// The scan's time range: cells with timestamps in `[start_ms, end_ms)`; `t_ms` is the snapshot
/// time T fixed at the start (end_ms = T + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub t_ms: i64,
}

/// How rows are spread over data files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Partitioning {
    /// Files per split (the default).
    None,
    /// Hive-style `column=value` folders.
    Column { column: String },
    /// `dt=YYYY-MM-DD` (or `dt=YYYY-MM-DD/hour=HH`) from a time column or the row's latest write.
    Time {
        source: TimeSource,
        granularity: TimeGranularity,
    },
    /// `bucket=N` from a hash of the primary key.
    HashBucket { buckets: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimeSource {
    EpochSeconds {
        column: String,
    },
    EpochMillis {
        column: String,
    },
    IsoString {
        column: String,
    },
    /// The newest cell timestamp of the row.
    LatestWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeGranularity {
    Day,
    Hour,
}

/// Everything a backup decides before reading data; written first, read back on resume so that a
/// resumed run produces the same content as an uninterrupted one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub snapshot_id: String,
    pub tool_version: String,
    pub source: Source,
    pub time_range: TimeRange,
    pub schema: SnapshotSchema,
    pub partitioning: Partitioning,
    pub splits: Vec<Split>,
    pub started_at: String,
}

/// One data file, as the manifest and split records describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the snapshot root, e.g. `data/dt=2026-11-24/part-00003-7f3a9c01-000.parquet`.
    pub path: String,
    pub split: u32,
    #[serde(default)]
    pub partition: BTreeMap<String, String>,
    pub rows: u64,
    pub cells: u64,
    pub bytes: u64,
    pub sha256: String,
    /// Smallest and largest primary key in the file.
    pub pk_min: Vec<KeyPart>,
    pub pk_max: Vec<KeyPart>,
}

/// A split's commit record (`splits/<id>.json`): its files exist and are complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub format_version: u32,
    pub snapshot_id: String,
    pub split: Split,
    /// Token of the attempt whose files these are (orphans of other attempts are ignored).
    pub attempt: String,
    pub files: Vec<FileEntry>,
    pub stats: SnapshotStats,
    pub committed_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitStatus {
    pub id: u32,
    pub status: String,
    pub files: u64,
    pub rows: u64,
    /// The split's primary-key range `[start, end)`.
    #[serde(default)]
    pub start: Vec<KeyPart>,
    #[serde(default)]
    pub end: Vec<KeyPart>,
}

impl SplitStatus {
    pub fn range(&self) -> Split {
        Split {
            id: self.id,
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub cells: u64,
    pub overflow_cells: u64,
    pub files: u64,
    pub bytes: u64,
}

/// The commit point of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub snapshot_id: String,
    pub tool_version: String,
    pub source: Source,
    pub time_range: TimeRange,
    pub consistency: String,
    pub schema: SnapshotSchema,
    pub partitioning: Partitioning,
    /// Per-column statistics (typed and overflow counts, types, timestamps).
    pub stats: SnapshotStats,
    pub files: Vec<FileEntry>,
    pub splits: Vec<SplitStatus>,
    pub totals: Totals,
    pub started_at: String,
    pub finished_at: String,
}

impl Manifest {
    /// Builds the manifest from the plan and every split's record, in split order.
    pub fn assemble(plan: &Plan, records: &[SplitRecord], finished_at: String) -> Manifest {
        let mut stats = SnapshotStats::default();
        let mut files = Vec::new();
        let mut splits = Vec::new();
        for r in records {
            stats.merge(&r.stats);
            splits.push(SplitStatus {
                id: r.split.id,
                status: "committed".into(),
                files: r.files.len() as u64,
                rows: r.files.iter().map(|f| f.rows).sum(),
                start: r.split.start.clone(),
                end: r.split.end.clone(),
            });
            files.extend(r.files.iter().cloned());
        }
        let totals = Totals {
            rows: stats.rows,
            cells: stats.cells,
            overflow_cells: stats.overflow_cells,
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.bytes).sum(),
        };
        Manifest {
            format_version: FORMAT_VERSION,
            snapshot_id: plan.snapshot_id.clone(),
            tool_version: plan.tool_version.clone(),
            source: plan.source.clone(),
            time_range: plan.time_range,
            consistency: CONSISTENCY_NOTE.to_string(),
            schema: plan.schema.clone(),
            partitioning: plan.partitioning.clone(),
            stats,
            files,
            splits,
            totals,
            started_at: plan.started_at.clone(),
            finished_at,
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// A time-sortable snapshot id: `YYYYMMDDTHHMMSSZ-<8 hex>`.
pub fn new_snapshot_id(t: std::time::SystemTime) -> String {
    let stamp: String = rfc3339(t)
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{stamp}Z-{:08x}", rand_u32())
}

pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ids_sort_by_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_081_012_345);
        assert_eq!(rfc3339(t), "2025-11-25T14:30:12.345Z");
        let id = new_snapshot_id(t);
        assert!(id.starts_with("20251125T143012Z-"), "{id}");
        let later = new_snapshot_id(t + std::time::Duration::from_secs(1));
        assert!(later > id);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
