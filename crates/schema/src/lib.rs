//! The snapshot schema: how Tablestore rows become typed, queryable Arrow record batches and come
//! back, losing nothing. `docs/FORMAT.md` is the normative description of the layout.
//!
//! - [`layout`]: `SnapshotSchema` and its Arrow schema (typed columns, `$ts`, `$cells`).
//! - [`infer`]: inference from a bounded sample.
//! - [`to_arrow`]: rows → RecordBatch with per-column statistics (backup).
//! - [`from_arrow`]: RecordBatch → rows (restore).
//! - [`changes`]: change files: captured stream records ↔ RecordBatch.

pub mod changes;
pub mod from_arrow;
pub mod infer;
pub mod layout;
pub mod to_arrow;

pub use changes::{
    CHANGE_LAYOUT_VERSION, CHANGES_METADATA_KEY, ChangeBatchBuilder, ChangeFileError,
    ChangeFileMeta, ChangeReader, change_arrow_schema,
};
pub use from_arrow::{CellView, RowReader};
pub use infer::SchemaInferrer;
pub use layout::{ArrowLayout, ColumnSchema, PkColumnSchema, SnapshotSchema};
pub use to_arrow::{BatchBuilder, ColumnStats, ConvertError, SnapshotStats};
