//! The snapshot on the object store: the [`Snapshot`] handle that owns every object path, the
//! create-once writes of the commit protocol, leases, verification, garbage collection and
//! retention (docs/FORMAT.md §7–§9). The documents' types are `ots-format`'s, re-exported here.
//!
//! ```text
//! DEST/<snapshot-id>/plan.json                         create-once, first
//! DEST/<snapshot-id>/data/<partition>/part-<split>-<attempt>-<n>.parquet
//! DEST/<snapshot-id>/splits/<split>/<attempt>.json     create-once, after the attempt's files
//! DEST/<snapshot-id>/leases/<owner>-<renewal>.json     create-once, while a process works
//! DEST/<snapshot-id>/manifest.json                     create-once, last: the commit point
//! DEST/<snapshot-id>/manifest.json.sig, plan.json.sig  create-once, with --sign-key-file
//! ```
//!
//! Nothing here overwrites; only [`gc`] (leftovers) and [`expire`] (retention) delete.

pub mod expire;
pub mod gc;
pub mod lease;
pub mod signing;
pub mod snapshot;
pub mod verify;

pub use expire::{
    Entry, EntryState, ExpireDeleted, ExpireFailure, ExpireKept, ExpireOptions, ExpireReport,
    ExpireSkipped, Policy, Verdict, expire, select,
};
pub use gc::{GcFailure, GcReport, gc};
pub use lease::{LEASE_TTL, Lease, LeaseError, LeaseGuard};
pub use ots_format::*;
pub use snapshot::{Committed, Listed, ManifestError, ReadKeys, Snapshot, Snapshots, recency_key};
pub use verify::{
    VerifyIssue, VerifyProgress, VerifyReport, read_footer, verify_manifest, verify_snapshot,
};
