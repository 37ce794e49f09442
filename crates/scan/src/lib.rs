//! Reading a whole Tablestore table fast and in parallel without holding it in memory.
//!
//! - [`split`]: split planning (ComputeSplitPointsBySize) into owned, serialisable PK ranges.
//! - [`scanner`]: pulling GetRange pages of one split, following `next_start_primary_key` until it
//!   is absent, checking every response, with an optional shared read-CU rate limit, progress
//!   counters, and an optional prefetch task ([`spawn_prefetch`]).
//! - [`page`]: a page's rows, read only through [`PageRows`], which checks each row as it decodes it.
//! - [`stream`]: reading a table's change log between two points ([`Capture`]), parents before
//!   children, with per-shard checkpoints.
//! - [`probe`]: counting the cells dated after a snapshot time ([`probe_cells_after`]).
//!
//! Concurrency is the caller's: run one [`SplitScanner`] per split on as many tasks as wanted; each
//! holds at most one page, so memory is bounded by concurrency × page size.

pub mod page;
pub mod probe;
pub mod scanner;
pub mod split;
pub mod stream;

pub use page::{Page, PageRows};
pub use probe::{AfterT, CELL_TIMESTAMP_END_MS, probe_cells_after};
pub use scanner::{
    Prefetch, RateLimiter, ScanOptions, SplitCounters, SplitScanner, spawn_prefetch,
};
pub use split::{
    KeyPart, KeyValue, ScanError, Split, SplitPlan, SplitSize, plan_splits, plan_splits_for,
};
pub use stream::{Capture, CaptureOptions, CaptureStats, StreamError};
