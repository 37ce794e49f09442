//! The snapshot schema: how Tablestore rows become typed, queryable Arrow record batches and come
//! back, losing nothing. `docs/FORMAT.md` is the normative description of the layout.
//!
//! - [`layout`]: `SnapshotSchema` and its Arrow schema (typed columns, `$ts`, `$cells`).
//! - [`infer`]: inference from a bounded sample.
//! - [`to_arrow`]: rows → RecordBatch with per-column statistics (backup).
//! - [`from_arrow`]: RecordBatch → rows (restore).

pub mod from_arrow;
pub mod infer;
pub mod layout;
pub mod to_arrow;

pub use from_arrow::RowReader;
pub use infer::SchemaInferrer;
pub use layout::{ArrowLayout, ColumnSchema, PkColumnSchema, SnapshotSchema};
pub use to_arrow::{BatchBuilder, ColumnStats, ConvertError, SnapshotStats};
