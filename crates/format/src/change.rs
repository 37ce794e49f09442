//! Change capture: the stream positions a snapshot starts and ends at, the capture record, the
//! manifest's change set, and one captured change as the rest of the code passes it around.
//! FORMAT.md §10 is the normative description.
//!
//! A snapshot that captured changes is a link of a chain. A *full* link (a consistent full snapshot)
//! holds data files from a scan plus every change from a stream position taken before the scan
//! began up to its consistency point T_c; an *incremental* link holds only the changes from its
//! parent's T_c to its own. Replaying a link's changes, in `ordinal` order, over its parent's image
//! (for a full link: over its own scan) yields the table exactly as of the link's T_c.

use ots_wire::types::{ColumnUpdate, PkColumn, RecordSequence};
use serde::{Deserialize, Serialize};

use crate::snapshot::FileEntry;

/// The promise a manifest with a change set makes, in words.
pub const EXACT_STATEMENT: &str = "Restoring this snapshot (with its chain, for an incremental) yields the table exactly as it \
was at the consistency point consistency_point.t_us: the scan is made exact by replaying every change logged from before the scan \
began up to that point.";

/// What a stream record did to its row (stream fact sheet §2, `ActionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeOp {
    /// Replace the whole row with the record's cells.
    PutRow,
    /// Apply the record's cell operations in order.
    UpdateRow,
    /// Delete the row.
    DeleteRow,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::PutRow => "PUT_ROW",
            ChangeOp::UpdateRow => "UPDATE_ROW",
            ChangeOp::DeleteRow => "DELETE_ROW",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeOp> {
        match s {
            "PUT_ROW" => Some(ChangeOp::PutRow),
            "UPDATE_ROW" => Some(ChangeOp::UpdateRow),
            "DELETE_ROW" => Some(ChangeOp::DeleteRow),
            _ => None,
        }
    }

    /// The stream's `ActionType` number.
    pub fn from_action_type(n: i32) -> Option<ChangeOp> {
        match n {
            1 => Some(ChangeOp::PutRow),
            2 => Some(ChangeOp::UpdateRow),
            3 => Some(ChangeOp::DeleteRow),
            _ => None,
        }
    }
}

/// One captured change: one stream record, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The order of replay within the snapshot (0, 1, 2, … in capture order). Capture reads a shard
    /// only after its parents, so this order respects every key's order.
    pub ordinal: u64,
    /// Shared by every change of the shard (one allocation per shard, not per change).
    pub shard: std::sync::Arc<str>,
    pub sequence: RecordSequence,
    pub op: ChangeOp,
    pub primary_key: Vec<PkColumn>,
    /// PUT_ROW: puts only; UPDATE_ROW: puts, deletes of one version and of all versions, in the
    /// record's order; DELETE_ROW: empty. Every put carries its timestamp.
    pub cells: Vec<ColumnUpdate>,
}

/// Where reading one shard resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    pub shard_id: String,
    /// The opaque iterator to continue from; `None` when the shard has been read to its end.
    pub iterator: Option<String>,
}

impl ShardCheckpoint {
    pub fn finished(&self) -> bool {
        self.iterator.is_none()
    }
}

/// A position in a table's stream: every record written at or before `t_us` is accounted for, and
/// reading on from `checkpoints` (skipping records dated at or before `t_us`) yields exactly the
/// records after it. A shard that is not listed is read from its start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Microseconds since the epoch.
    pub t_us: i64,
    /// `t_us` as RFC 3339 UTC with microseconds.
    pub time: String,
    pub checkpoints: Vec<ShardCheckpoint>,
}

/// What kind of link a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A scan plus the changes that make it exact.
    Full,
    /// Only the changes since the parent.
    Incremental,
}

/// The plan's part of change capture: decided before anything is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePlan {
    pub kind: LinkKind,
    pub stream_id: String,
    /// Where capture starts: for a full link, positions taken before the scan began; for an
    /// incremental, the parent's consistency point.
    pub start: StreamPosition,
    /// The parent snapshot's id (incremental only).
    pub parent: Option<String>,
    /// The id of the chain's full link (for a full link, its own id).
    pub base: String,
}

/// Changes captured, by operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub put_row: u64,
    pub update_row: u64,
    pub delete_row: u64,
    /// Cell operations over all records: puts, deletes of one version, deletes of all versions.
    pub cell_puts: u64,
    pub cell_deletes_one_version: u64,
    pub cell_deletes_all_versions: u64,
}

impl ChangeCounts {
    pub fn records(&self) -> u64 {
        self.put_row + self.update_row + self.delete_row
    }

    pub fn add(&mut self, change: &Change) {
        match change.op {
            ChangeOp::PutRow => self.put_row += 1,
            ChangeOp::UpdateRow => self.update_row += 1,
            ChangeOp::DeleteRow => self.delete_row += 1,
        }
        for c in &change.cells {
            match c {
                ColumnUpdate::Put { .. } | ColumnUpdate::Increment { .. } => self.cell_puts += 1,
                ColumnUpdate::DeleteOneVersion { .. } => self.cell_deletes_one_version += 1,
                ColumnUpdate::DeleteAllVersions { .. } => self.cell_deletes_all_versions += 1,
            }
        }
    }

    pub fn merge(&mut self, other: &ChangeCounts) {
        self.put_row += other.put_row;
        self.update_row += other.update_row;
        self.delete_row += other.delete_row;
        self.cell_puts += other.cell_puts;
        self.cell_deletes_one_version += other.cell_deletes_one_version;
        self.cell_deletes_all_versions += other.cell_deletes_all_versions;
    }
}

/// A capture attempt's record (`changes/<attempt>.json`, create-once): the attempt read every shard
/// from the plan's start to its consistency point, and its change files exist and are complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub format_version: u32,
    pub snapshot_id: String,
    pub attempt: String,
    /// The consistency point T_c and the checkpoints to continue from.
    pub end: StreamPosition,
    /// Change files, in replay order (`changes/part-<attempt>-<n>.parquet`).
    pub files: Vec<FileEntry>,
    pub counts: ChangeCounts,
    /// The shards read, in the order they were read.
    pub shards_read: Vec<String>,
    pub committed_at: String,
}

/// The manifest's account of a snapshot's changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub kind: LinkKind,
    pub stream_id: String,
    pub parent: Option<String>,
    pub base: String,
    /// The changes held are those logged after `start.t_us` and at or before
    /// `consistency_point.t_us`.
    pub start: StreamPosition,
    /// T_c, with the checkpoints a following incremental starts from.
    pub consistency_point: StreamPosition,
    /// [`EXACT_STATEMENT`].
    pub statement: String,
    /// The chosen capture attempt.
    pub attempt: String,
    pub files: Vec<FileEntry>,
    pub counts: ChangeCounts,
}

impl ChangeSet {
    pub fn assemble(plan: &CapturePlan, record: &CaptureRecord) -> ChangeSet {
        ChangeSet {
            kind: plan.kind,
            stream_id: plan.stream_id.clone(),
            parent: plan.parent.clone(),
            base: plan.base.clone(),
            start: plan.start.clone(),
            consistency_point: record.end.clone(),
            statement: EXACT_STATEMENT.to_string(),
            attempt: record.attempt.clone(),
            files: record.files.clone(),
            counts: record.counts,
        }
    }
}
