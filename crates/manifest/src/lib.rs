//! The snapshot format on the object store: the manifest, per-split commit records, the plan that
//! makes a backup resumable, and the commit protocol (docs/FORMAT.md §7–§9).
//!
//! ```text
//! DEST/<snapshot-id>/plan.json                 written first: T, schema, splits (resume reads it)
//! DEST/<snapshot-id>/data/<partition>/part-*.parquet
//! DEST/<snapshot-id>/splits/<split>.json       a split's commit record, written after its files
//! DEST/<snapshot-id>/manifest.json             written last: the commit point
//! ```
//!
//! Nothing is ever overwritten and nothing needs create-only or compare-and-swap writes (OSS's S3 API
//! has neither): data file names carry the attempt that wrote them, a split record is written once,
//! after its files, and the manifest is written once, after every split record.

pub mod model;
pub mod store;
pub mod verify;

pub use model::*;
pub use store::{ManifestError, SnapshotStore};
pub use verify::{VerifyIssue, VerifyReport, verify_snapshot};
