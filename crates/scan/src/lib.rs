//! Reading a whole Tablestore table fast and in parallel without holding it in memory.
//!
//! - [`split`]: split planning (ComputeSplitPointsBySize) into owned, serialisable PK ranges.
//! - [`scanner`]: pulling GetRange pages of one split, following `next_start_primary_key` until it
//!   is absent, with an optional shared read-CU rate limit and progress counters.
//!
//! Concurrency is the caller's: run one [`SplitScanner`] per split on as many tasks as wanted; each
//! holds at most one page, so memory is bounded by concurrency × page size.

pub mod scanner;
pub mod split;

pub use scanner::{Page, RateLimiter, ScanOptions, SplitCounters, SplitScanner};
pub use split::{KeyPart, KeyValue, ScanError, Split, SplitPlan, SplitSize, plan_splits};
