//! The snapshot's documents: plan, split records, manifest. Field names are part of the format:
//! change them only with [`FORMAT_VERSION`] (docs/FORMAT.md §7–§9 is the normative text).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::key::{KeyPart, Split};
use crate::schema::SnapshotSchema;
use crate::stats::SnapshotStats;
use crate::table::TableMeta;

/// The newest version of the snapshot format described in docs/FORMAT.md. Version 4 adds
/// encrypted files (the `encryption` of plan and manifest: FORMAT.md §12); version 3 adds captured
/// changes (`changes/`, the manifest's `changes`: FORMAT.md §10); version 2 keeps one record per
/// split attempt (`splits/<split>/<attempt>.json`) and names the chosen attempt in the manifest;
/// version 1 kept one record per split (`splits/<split>.json`). All four are read.
pub const FORMAT_VERSION: u32 = 4;
/// The version written for a snapshot with change capture and plaintext files.
pub const CHANGES_FORMAT_VERSION: u32 = 3;
/// The version written for a snapshot without change capture or encryption: nothing in it needs
/// a newer version, so older readers still read it, while they refuse a link of a chain
/// (restoring only its scan would not be exact) or an encrypted snapshot (they would call its
/// files corrupt).
pub const SCAN_FORMAT_VERSION: u32 = 2;

/// The version a snapshot's documents are written with: the oldest that holds what it uses.
pub fn format_version_for(captures_changes: bool, encrypted: bool) -> u32 {
    if encrypted {
        FORMAT_VERSION
    } else if captures_changes {
        CHANGES_FORMAT_VERSION
    } else {
        SCAN_FORMAT_VERSION
    }
}

/// How a snapshot's Parquet files are encrypted (FORMAT.md §12): the scheme and the id of the
/// master key that wraps each file's data key. Never key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    pub scheme: String,
    pub master_key_id: String,
}

/// Parquet modular encryption, AES-GCM with an encrypted footer, a random 256-bit data key per
/// file wrapped under the master key into PKMT1 key material in the footer key metadata.
pub const ENCRYPTION_SCHEME: &str = "parquet-modular/AES_GCM_V1/PKMT1";

impl EncryptionInfo {
    pub fn parquet_modular(master_key_id: &str) -> Self {
        EncryptionInfo {
            scheme: ENCRYPTION_SCHEME.to_string(),
            master_key_id: master_key_id.to_string(),
        }
    }
}

/// The oldest format this build still reads, verifies and restores.
pub const OLDEST_READABLE_FORMAT: u32 = 1;

/// What cannot be guaranteed without the Stream API; recorded in every manifest.
pub const CONSISTENCY_NOTE: &str = "Rows deleted (or cells deleted) while the scan ran cannot be excluded without the Stream API: \
such a row is in the snapshot if its split was read before the delete. With time_range.scope \"up_to_t\", cells dated after \
the snapshot time T are not backed up; they are counted in cells_after_t.";

/// Where the data came from. The endpoint never carries credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub endpoint: String,
    pub instance: String,
    pub table: TableMeta,
}

/// Which cells a snapshot holds by timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeScope {
    /// Cells dated up to and including T (`[start_ms, end_ms)` with end_ms = T + 1). Cells dated
    /// after T (Tablestore accepts timestamps up to now + the table's deviation) are counted.
    #[default]
    UpToT,
    /// Every cell, however it is dated (`--time-range all`).
    All,
}

/// The scan's time range: cells with timestamps in `[start_ms, end_ms)`; `t_ms` is the snapshot
/// time T fixed at the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub t_ms: i64,
    #[serde(default)]
    pub scope: TimeScope,
}

impl TimeRange {
    /// The exclusive end of scope `all`: cell timestamps are valid in `[0, i64::MAX / 1000)` ms
    /// (protocol fact sheet §5.1), so this bound covers every cell that can exist.
    pub const MAX_END_MS: i64 = i64::MAX / 1000;

    pub fn up_to(t_ms: i64) -> Self {
        TimeRange {
            start_ms: 0,
            end_ms: t_ms.saturating_add(1),
            t_ms,
            scope: TimeScope::UpToT,
        }
    }

    pub fn all(t_ms: i64) -> Self {
        TimeRange {
            start_ms: 0,
            end_ms: Self::MAX_END_MS,
            t_ms,
            scope: TimeScope::All,
        }
    }
}

/// Cells dated after T that a snapshot of scope `up_to_t` does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellsAfterT {
    pub rows: u64,
    pub cells: u64,
    /// The newest such timestamp (ms).
    pub max_ts_ms: Option<i64>,
}

impl CellsAfterT {
    pub fn merge(&mut self, o: &CellsAfterT) {
        self.rows += o.rows;
        self.cells += o.cells;
        self.max_ts_ms = match (self.max_ts_ms, o.max_ts_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
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

/// Everything a backup decides before reading data; written first (create-once), read back on
/// resume so that a resumed run produces the same content as an uninterrupted one.
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
    /// Change capture from the table's stream (FORMAT.md §10); `None` without a stream.
    #[serde(default)]
    pub changes: Option<crate::change::CapturePlan>,
    /// How the files are encrypted (FORMAT.md §12); `None`: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
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

/// A split attempt's record (`splits/<split>/<attempt>.json`, create-once): the attempt scanned
/// the whole split and its files exist and are complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub format_version: u32,
    pub snapshot_id: String,
    pub split: Split,
    /// Token of the attempt whose files these are; every file name carries it.
    pub attempt: String,
    pub files: Vec<FileEntry>,
    pub stats: SnapshotStats,
    /// Cells of this split dated after T (scope `up_to_t` only).
    #[serde(default)]
    pub cells_after_t: CellsAfterT,
    pub committed_at: String,
}

/// The deterministic rule that picks one record per split from all attempts: the smallest
/// attempt token among the records that match the plan's split. Every process that sees the same
/// records picks the same one; one that sees more picks a record that is just as complete.
pub fn choose_record<'a>(
    split: &Split,
    records: impl IntoIterator<Item = &'a SplitRecord>,
) -> Option<&'a SplitRecord> {
    records
        .into_iter()
        .filter(|r| r.split == *split)
        .min_by(|a, b| a.attempt.cmp(&b.attempt))
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
    /// The attempt whose record and files the snapshot holds (empty in format version 1).
    #[serde(default)]
    pub attempt: String,
    #[serde(default)]
    pub cells_after_t: CellsAfterT,
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
    /// Cells dated after T that the snapshot does not hold (scope `up_to_t`).
    #[serde(default)]
    pub cells_after_t: u64,
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
    /// The captured changes, T_c and the chain (FORMAT.md §10); `None` without a stream.
    #[serde(default)]
    pub changes: Option<crate::change::ChangeSet>,
    /// How the files are encrypted (FORMAT.md §12); `None`: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
}

impl Manifest {
    /// The instant the snapshot restores to, in µs since the epoch: the consistency point T_c of a
    /// snapshot that captured changes, else the snapshot time T.
    pub fn instant_us(&self) -> i64 {
        match &self.changes {
            Some(c) => c.consistency_point.t_us,
            None => self.time_range.t_ms.saturating_mul(1000),
        }
    }

    /// Builds the manifest from the plan, the chosen record of every split, in split order, and
    /// (for a snapshot that captures changes) the chosen capture record.
    pub fn assemble(
        plan: &Plan,
        records: &[&SplitRecord],
        capture: Option<&crate::change::CaptureRecord>,
        finished_at: String,
    ) -> Manifest {
        let changes = match (&plan.changes, capture) {
            (Some(p), Some(r)) => Some(crate::change::ChangeSet::assemble(p, r)),
            _ => None,
        };
        let mut stats = SnapshotStats::default();
        let mut files = Vec::new();
        let mut splits = Vec::new();
        let mut after = CellsAfterT::default();
        for r in records {
            stats.merge(&r.stats);
            after.merge(&r.cells_after_t);
            splits.push(SplitStatus {
                id: r.split.id,
                status: "committed".into(),
                files: r.files.len() as u64,
                rows: r.files.iter().map(|f| f.rows).sum(),
                start: r.split.start.clone(),
                end: r.split.end.clone(),
                attempt: r.attempt.clone(),
                cells_after_t: r.cells_after_t,
            });
            files.extend(r.files.iter().cloned());
        }
        let totals = Totals {
            rows: stats.rows,
            cells: stats.cells,
            overflow_cells: stats.overflow_cells,
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.bytes).sum(),
            cells_after_t: after.cells,
        };
        Manifest {
            format_version: plan.format_version,
            snapshot_id: plan.snapshot_id.clone(),
            tool_version: plan.tool_version.clone(),
            source: plan.source.clone(),
            time_range: plan.time_range,
            consistency: if changes.is_some() {
                crate::change::EXACT_STATEMENT.to_string()
            } else {
                CONSISTENCY_NOTE.to_string()
            },
            schema: plan.schema.clone(),
            partitioning: plan.partitioning.clone(),
            stats,
            files,
            splits,
            totals,
            started_at: plan.started_at.clone(),
            finished_at,
            changes,
            encryption: plan.encryption.clone(),
        }
    }
}
