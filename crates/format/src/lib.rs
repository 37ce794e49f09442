//! The otsarchive snapshot format's types, at the bottom of the dependency graph: the plan, split
//! records, the manifest, file entries, the source table's meta, keys and splits, the schema as
//! documents hold it, statistics, ids and the checks a manifest must pass. No I/O, no async, no
//! Arrow, no object store: every crate that reads or writes snapshots shares these types.
//! docs/FORMAT.md is the normative description.

pub mod change;
pub mod check;
pub mod id;
pub mod key;
pub mod layout;
pub mod schema;
pub mod snapshot;
pub mod stats;
pub mod table;
pub mod time;
pub mod worker;

pub use change::{
    CapturePlan, CaptureRecord, Change, ChangeCounts, ChangeOp, ChangeSet, EXACT_STATEMENT,
    LinkKind, ShardCheckpoint, StreamPosition,
};
pub use check::{ManifestProblem, check_manifest, check_record};
pub use id::{is_snapshot_id, new_snapshot_id, random_token};
pub use key::{DisplayKey, KeyError, KeyPart, KeyValue, Split, cmp_keys, display_columns};
pub use layout::*;
pub use schema::{ColumnSchema, PkColumnSchema, SchemaError, SnapshotSchema};
pub use snapshot::*;
pub use stats::{ColumnStats, SnapshotStats};
pub use table::{IndexMetaDoc, IndexType, IndexUpdateMode, TableMeta, TableMetaError, pk_text};
pub use worker::WorkerSlot;

/// What kind of failure an error is, so that the CLI maps every library error to its exit code in
/// one place: 2 for bad usage or input, 3 for a verification mismatch, 1 for anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad options or input, found before anything was written.
    Usage,
    /// Something does not match what it should (a checksum, a manifest, a table).
    Mismatch,
    /// Everything else: the service, the store, the network.
    Failure,
}
