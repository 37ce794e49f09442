//! Change files: captured stream records ([`Change`]) as plain Parquet, one row per change
//! (normative text: docs/FORMAT.md §10, "Change files").
//!
//! Columns, in order: `$change` (the ordinal), the stream sequence (`$shard`, `$epoch`,
//! `$time_us`, `$row_index`), `$op`, the primary-key columns typed as in data files, and `$cells`:
//! the record's cell operations in order, each with `op`, `name`, `ts`, `type` and the value in the
//! `v_*` field of its type (the field names of data files' `$cells`). The Arrow schema carries
//! `otsarchive.changes`: the layout version and the primary key, as JSON.
//!
//! [`ChangeBatchBuilder`] turns changes into record batches; [`ChangeReader`] turns batches back
//! into changes, checking the schema and every value: malformed content is an error naming the
//! column and the row, never a panic.

use std::collections::HashMap;
use std::sync::Arc;

use crate::layout::types_match;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use ots_format::change::{Change, ChangeOp};
use ots_wire::types::{ColumnUpdate, PkColumn, PkType, PkValue, RecordSequence, Value, ValueType};
use serde::{Deserialize, Serialize};

use crate::layout::{
    PkColumnSchema, cell_field, pk_arrow_type, pk_type_name, value_type_from_name,
};

/// The layout version of change files (in the `otsarchive.changes` metadata).
pub const CHANGE_LAYOUT_VERSION: u32 = 1;
/// Arrow schema metadata key holding [`ChangeFileMeta`] as JSON.
pub const CHANGES_METADATA_KEY: &str = "otsarchive.changes";

/// Reserved column names of change files (`$` never occurs in a Tablestore column name).
pub mod change_column {
    pub const CHANGE: &str = "$change";
    pub const SHARD: &str = "$shard";
    pub const EPOCH: &str = "$epoch";
    pub const TIME_US: &str = "$time_us";
    pub const ROW_INDEX: &str = "$row_index";
    pub const OP: &str = "$op";
    pub const CELLS: &str = "$cells";
    /// The field of a `$cells` entry naming its operation.
    pub const CELL_OP: &str = "op";
}

/// `$cells.op` values.
pub mod cell_op {
    pub const PUT: &str = "PUT";
    pub const DELETE_ONE_VERSION: &str = "DELETE_ONE_VERSION";
    pub const DELETE_ALL_VERSIONS: &str = "DELETE_ALL_VERSIONS";
}

/// What the `otsarchive.changes` metadata holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFileMeta {
    pub layout_version: u32,
    pub primary_key: Vec<PkColumnSchema>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeFileError {
    /// A change that cannot be written (nothing of it was appended).
    #[error("change {ordinal}: {detail}")]
    Change { ordinal: u64, detail: String },
    /// A batch whose columns are not those of a change file for this primary key.
    #[error("not a change file of this table: {0}")]
    Schema(String),
    /// A value that a change file cannot hold.
    #[error("change file row {row}, column {column}: {detail}")]
    Value {
        row: usize,
        column: String,
        detail: String,
    },
    #[error("Arrow: {0}")]
    Arrow(#[from] ArrowError),
}

fn cells_struct_fields() -> Fields {
    use cell_field::*;
    Fields::from(vec![
        Field::new(change_column::CELL_OP, DataType::Utf8, false),
        Field::new(NAME, DataType::Utf8, false),
        Field::new(TS, DataType::Int64, true),
        Field::new(TYPE, DataType::Utf8, true),
        Field::new(INTEGER, DataType::Int64, true),
        Field::new(DOUBLE, DataType::Float64, true),
        Field::new(BOOLEAN, DataType::Boolean, true),
        Field::new(STRING, DataType::Utf8, true),
        Field::new(BINARY, DataType::Binary, true),
    ])
}

fn cells_item_field() -> Field {
    Field::new("item", DataType::Struct(cells_struct_fields()), false)
}

/// The fields of a change file for a table with primary key `pk` (without metadata).
pub fn change_arrow_fields(pk: &[PkColumnSchema]) -> Vec<Field> {
    use change_column::*;
    let mut fields = vec![
        Field::new(CHANGE, DataType::Int64, false),
        Field::new(SHARD, DataType::Utf8, false),
        Field::new(EPOCH, DataType::Int64, false),
        Field::new(TIME_US, DataType::Int64, false),
        Field::new(ROW_INDEX, DataType::Int64, false),
        Field::new(OP, DataType::Utf8, false),
    ];
    fields.extend(
        pk.iter()
            .map(|c| Field::new(&c.name, pk_arrow_type(c.pk_type), false)),
    );
    fields.push(Field::new(
        CELLS,
        DataType::List(Arc::new(cells_item_field())),
        false,
    ));
    fields
}

/// The Arrow schema of a change file, with the `otsarchive.changes` metadata.
pub fn change_arrow_schema(pk: &[PkColumnSchema]) -> SchemaRef {
    let meta = ChangeFileMeta {
        layout_version: CHANGE_LAYOUT_VERSION,
        primary_key: pk.to_vec(),
    };
    // Serializing plain strings and numbers cannot fail; an empty object would only lose the check.
    let json = serde_json::to_string(&meta).unwrap_or_else(|_| "{}".to_string());
    Arc::new(Schema::new_with_metadata(
        change_arrow_fields(pk),
        HashMap::from([(CHANGES_METADATA_KEY.to_string(), json)]),
    ))
}

enum PkBuilder {
    Integer(Int64Builder),
    String(StringBuilder),
    Binary(BinaryBuilder),
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Integer(_) | Value::Double(_) => 8,
        Value::Boolean(_) => 1,
        Value::String(s) => s.len(),
        Value::Binary(b) => b.len(),
    }
}

/// Checks that `change` fits a change file of primary key `pk`: its key, its ordinal and its
/// cells (PUT_ROW: puts only; DELETE_ROW: none; every put and delete of one version with a
/// timestamp; no increments).
pub fn check_change(pk: &[PkColumnSchema], change: &Change) -> Result<(), ChangeFileError> {
    let err = |detail: String| ChangeFileError::Change {
        ordinal: change.ordinal,
        detail,
    };
    if i64::try_from(change.ordinal).is_err() {
        return Err(err("the ordinal is beyond the Int64 range".into()));
    }
    if change.primary_key.len() != pk.len() {
        return Err(err(format!(
            "the key has {} columns, the table has {}",
            change.primary_key.len(),
            pk.len()
        )));
    }
    for (i, (c, s)) in change.primary_key.iter().zip(pk).enumerate() {
        if c.name != s.name {
            return Err(err(format!(
                "key column {i} is '{}', the table's is '{}'",
                c.name, s.name
            )));
        }
        if c.value.pk_type() != Some(s.pk_type) {
            return Err(err(format!(
                "key column '{}' holds {:?}, the table's type is {}",
                c.name,
                c.value,
                pk_type_name(s.pk_type)
            )));
        }
    }
    if change.op == ChangeOp::DeleteRow && !change.cells.is_empty() {
        return Err(err(format!(
            "a DELETE_ROW with {} cell operations",
            change.cells.len()
        )));
    }
    for (i, c) in change.cells.iter().enumerate() {
        match c {
            ColumnUpdate::Put {
                timestamp: None,
                name,
                ..
            } => {
                return Err(err(format!(
                    "cell {i} ('{name}'): a put without a timestamp"
                )));
            }
            ColumnUpdate::Increment { name, .. } => {
                return Err(err(format!(
                    "cell {i} ('{name}'): an increment (the stream logs its result as a put)"
                )));
            }
            ColumnUpdate::DeleteOneVersion { name, .. }
            | ColumnUpdate::DeleteAllVersions { name }
                if change.op == ChangeOp::PutRow =>
            {
                return Err(err(format!(
                    "cell {i} ('{name}'): a PUT_ROW holds puts only"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Accumulates changes into record batches of the change-file layout.
pub struct ChangeBatchBuilder {
    pk_schema: Vec<PkColumnSchema>,
    schema: SchemaRef,
    change: Int64Builder,
    shard: StringBuilder,
    epoch: Int64Builder,
    time_us: Int64Builder,
    row_index: Int64Builder,
    op: StringBuilder,
    pk: Vec<PkBuilder>,
    offsets: Vec<i32>,
    cell_op: StringBuilder,
    cell_name: StringBuilder,
    cell_ts: Int64Builder,
    cell_type: StringBuilder,
    v_integer: Int64Builder,
    v_double: Float64Builder,
    v_boolean: BooleanBuilder,
    v_string: StringBuilder,
    v_binary: BinaryBuilder,
    rows: usize,
    bytes: usize,
}

/// Bytes a change costs besides its strings: the sequence, the ordinal, the op, list offsets.
const CHANGE_FIXED_BYTES: usize = 8 * 4 + 16 + 4;
/// Bytes a cell entry costs besides its name and value: op, ts, type, offsets, validity.
const CELL_FIXED_BYTES: usize = 8 + 8 + 8 + 16 + 8 * 5;

impl ChangeBatchBuilder {
    pub fn new(pk: &[PkColumnSchema]) -> Self {
        ChangeBatchBuilder {
            pk_schema: pk.to_vec(),
            schema: change_arrow_schema(pk),
            change: Int64Builder::new(),
            shard: StringBuilder::new(),
            epoch: Int64Builder::new(),
            time_us: Int64Builder::new(),
            row_index: Int64Builder::new(),
            op: StringBuilder::new(),
            pk: pk
                .iter()
                .map(|c| match c.pk_type {
                    PkType::Integer => PkBuilder::Integer(Int64Builder::new()),
                    PkType::String => PkBuilder::String(StringBuilder::new()),
                    PkType::Binary => PkBuilder::Binary(BinaryBuilder::new()),
                })
                .collect(),
            offsets: vec![0],
            cell_op: StringBuilder::new(),
            cell_name: StringBuilder::new(),
            cell_ts: Int64Builder::new(),
            cell_type: StringBuilder::new(),
            v_integer: Int64Builder::new(),
            v_double: Float64Builder::new(),
            v_boolean: BooleanBuilder::new(),
            v_string: StringBuilder::new(),
            v_binary: BinaryBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Changes buffered since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// An estimate of the bytes the buffered changes hold (flush by it).
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one change. A change that does not fit ([`check_change`]) is an error and nothing
    /// of it is appended.
    pub fn push(&mut self, change: &Change) -> Result<(), ChangeFileError> {
        check_change(&self.pk_schema, change)?;
        let entries = self
            .cell_name
            .len()
            .checked_add(change.cells.len())
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| ChangeFileError::Change {
                ordinal: change.ordinal,
                detail: "too many cell operations in one batch (flush sooner)".into(),
            })?;
        let mut bytes = CHANGE_FIXED_BYTES + change.shard.len();
        // Checked above: the ordinal fits an i64.
        self.change
            .append_value(i64::try_from(change.ordinal).unwrap_or(i64::MAX));
        self.shard.append_value(&change.shard);
        self.epoch.append_value(i64::from(change.sequence.epoch));
        self.time_us.append_value(change.sequence.timestamp_us);
        self.row_index
            .append_value(i64::from(change.sequence.row_index));
        self.op.append_value(change.op.as_str());
        for (b, c) in self.pk.iter_mut().zip(&change.primary_key) {
            // Types checked above: a mismatch cannot happen here.
            match (b, &c.value) {
                (PkBuilder::Integer(b), PkValue::Integer(v)) => {
                    b.append_value(*v);
                    bytes += 8;
                }
                (PkBuilder::String(b), PkValue::String(v)) => {
                    b.append_value(v);
                    bytes += v.len() + 4;
                }
                (PkBuilder::Binary(b), PkValue::Binary(v)) => {
                    b.append_value(v);
                    bytes += v.len() + 4;
                }
                _ => {}
            }
        }
        for c in &change.cells {
            let (op, name, ts, value) = match c {
                ColumnUpdate::Put {
                    name,
                    value,
                    timestamp,
                } => (cell_op::PUT, name, *timestamp, Some(value)),
                ColumnUpdate::DeleteOneVersion { name, timestamp } => {
                    (cell_op::DELETE_ONE_VERSION, name, Some(*timestamp), None)
                }
                ColumnUpdate::DeleteAllVersions { name } => {
                    (cell_op::DELETE_ALL_VERSIONS, name, None, None)
                }
                // Refused by check_change.
                ColumnUpdate::Increment { .. } => continue,
            };
            bytes += CELL_FIXED_BYTES + name.len() + value.map_or(0, value_size);
            self.cell_op.append_value(op);
            self.cell_name.append_value(name);
            self.cell_ts.append_option(ts);
            self.cell_type
                .append_option(value.map(|v| v.value_type().name()));
            self.v_integer.append_option(match value {
                Some(Value::Integer(x)) => Some(*x),
                _ => None,
            });
            self.v_double.append_option(match value {
                Some(Value::Double(x)) => Some(*x),
                _ => None,
            });
            self.v_boolean.append_option(match value {
                Some(Value::Boolean(x)) => Some(*x),
                _ => None,
            });
            self.v_string.append_option(match value {
                Some(Value::String(x)) => Some(x.as_str()),
                _ => None,
            });
            self.v_binary.append_option(match value {
                Some(Value::Binary(x)) => Some(x.as_slice()),
                _ => None,
            });
        }
        self.offsets.push(entries);
        self.rows += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Emits the buffered changes as one record batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch, ChangeFileError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.change.finish()),
            Arc::new(self.shard.finish()),
            Arc::new(self.epoch.finish()),
            Arc::new(self.time_us.finish()),
            Arc::new(self.row_index.finish()),
            Arc::new(self.op.finish()),
        ];
        for b in &mut self.pk {
            columns.push(match b {
                PkBuilder::Integer(b) => Arc::new(b.finish()),
                PkBuilder::String(b) => Arc::new(b.finish()),
                PkBuilder::Binary(b) => Arc::new(b.finish()),
            });
        }
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.cell_op.finish()),
            Arc::new(self.cell_name.finish()),
            Arc::new(self.cell_ts.finish()),
            Arc::new(self.cell_type.finish()),
            Arc::new(self.v_integer.finish()),
            Arc::new(self.v_double.finish()),
            Arc::new(self.v_boolean.finish()),
            Arc::new(self.v_string.finish()),
            Arc::new(self.v_binary.finish()),
        ];
        let values = StructArray::try_new(cells_struct_fields(), children, None)?;
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        columns.push(Arc::new(ListArray::try_new(
            Arc::new(cells_item_field()),
            OffsetBuffer::new(offsets.into()),
            Arc::new(values),
            None,
        )?));
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Reads changes back out of record batches of the change-file layout.
pub struct ChangeReader {
    pk: Vec<PkColumnSchema>,
    fields: Vec<Field>,
}

fn schema_err(msg: impl Into<String>) -> ChangeFileError {
    ChangeFileError::Schema(msg.into())
}

/// The `$cells` entry arrays of one batch.
struct CellArrays<'a> {
    list: &'a ListArray,
    entries: &'a StructArray,
    op: &'a StringArray,
    name: &'a StringArray,
    ts: &'a Int64Array,
    kind: &'a StringArray,
    integer: &'a Int64Array,
    double: &'a Float64Array,
    boolean: &'a BooleanArray,
    string: &'a StringArray,
    binary: &'a BinaryArray,
}

impl ChangeReader {
    pub fn new(pk: &[PkColumnSchema]) -> Self {
        ChangeReader {
            pk: pk.to_vec(),
            fields: change_arrow_fields(pk),
        }
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), ChangeFileError> {
        if let Some(json) = schema.metadata().get(CHANGES_METADATA_KEY) {
            let meta: ChangeFileMeta = serde_json::from_str(json).map_err(|e| {
                schema_err(format!(
                    "its {CHANGES_METADATA_KEY} metadata is not valid: {e}"
                ))
            })?;
            if meta.layout_version != CHANGE_LAYOUT_VERSION {
                return Err(schema_err(format!(
                    "change layout version {} (this build reads {CHANGE_LAYOUT_VERSION})",
                    meta.layout_version
                )));
            }
            if meta.primary_key != self.pk {
                return Err(schema_err(format!(
                    "its primary key is ({}), the table's is ({})",
                    ots_format::pk_text(&meta.primary_key),
                    ots_format::pk_text(&self.pk)
                )));
            }
        }
        let found = schema.fields();
        if found.len() != self.fields.len() {
            return Err(schema_err(format!(
                "{} columns, a change file of this table has {}",
                found.len(),
                self.fields.len()
            )));
        }
        for (e, f) in self.fields.iter().zip(found) {
            if e.name() != f.name() || !types_match(e.data_type(), f.data_type()) {
                return Err(schema_err(format!(
                    "column '{}' ({}) where a change file has '{}' ({})",
                    f.name(),
                    f.data_type(),
                    e.name(),
                    e.data_type()
                )));
            }
        }
        Ok(())
    }

    /// Every change of `batch`, in batch order.
    pub fn read_batch(&self, batch: &RecordBatch) -> Result<Vec<Change>, ChangeFileError> {
        use change_column::*;
        self.check_schema(&batch.schema())?;
        let cols = batch.columns();
        let col = |i: usize| -> Result<&ArrayRef, ChangeFileError> {
            cols.get(i)
                .ok_or_else(|| schema_err(format!("column {i} is missing")))
        };
        let int64 = |i: usize, name: &str| -> Result<&Int64Array, ChangeFileError> {
            col(i)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| schema_err(format!("column '{name}' is not Int64")))
        };
        let utf8 = |i: usize, name: &str| -> Result<&StringArray, ChangeFileError> {
            col(i)?
                .as_string_opt::<i32>()
                .ok_or_else(|| schema_err(format!("column '{name}' is not Utf8")))
        };
        let change = int64(0, CHANGE)?;
        let shard = utf8(1, SHARD)?;
        let epoch = int64(2, EPOCH)?;
        let time_us = int64(3, TIME_US)?;
        let row_index = int64(4, ROW_INDEX)?;
        let op = utf8(5, OP)?;
        let n_pk = self.pk.len();
        let cells = self.cell_arrays(col(6 + n_pk)?)?;

        let value_err = |row: usize, column: &str, detail: String| ChangeFileError::Value {
            row,
            column: column.to_string(),
            detail,
        };
        let not_null = |a: &dyn Array, row: usize, column: &str| {
            if a.is_null(row) {
                Err(value_err(row, column, "null".into()))
            } else {
                Ok(())
            }
        };
        let mut out = Vec::with_capacity(batch.num_rows());
        // A file's changes come from few shards, mostly in runs: one name per run, shared.
        let mut last_shard: Option<std::sync::Arc<str>> = None;
        for row in 0..batch.num_rows() {
            for (a, name) in [
                (change as &dyn Array, CHANGE),
                (shard, SHARD),
                (epoch, EPOCH),
                (time_us, TIME_US),
                (row_index, ROW_INDEX),
                (op, OP),
                (cells.list, CELLS),
            ] {
                not_null(a, row, name)?;
            }
            let ordinal = u64::try_from(change.value(row)).map_err(|_| {
                value_err(row, CHANGE, format!("{} is negative", change.value(row)))
            })?;
            let epoch_v = u32::try_from(epoch.value(row))
                .map_err(|_| value_err(row, EPOCH, format!("{} is not a u32", epoch.value(row))))?;
            let row_index_v = u32::try_from(row_index.value(row)).map_err(|_| {
                value_err(
                    row,
                    ROW_INDEX,
                    format!("{} is not a u32", row_index.value(row)),
                )
            })?;
            let op_v = ChangeOp::parse(op.value(row)).ok_or_else(|| {
                value_err(
                    row,
                    OP,
                    format!(
                        "'{}' is not PUT_ROW, UPDATE_ROW or DELETE_ROW",
                        op.value(row)
                    ),
                )
            })?;
            let mut primary_key = Vec::with_capacity(n_pk);
            for (k, s) in self.pk.iter().enumerate() {
                let a = col(6 + k)?;
                not_null(a.as_ref(), row, &s.name)?;
                let wrong = || schema_err(format!("column '{}' has another type", s.name));
                let v = match s.pk_type {
                    PkType::Integer => PkValue::Integer(
                        a.as_primitive_opt::<Int64Type>()
                            .ok_or_else(wrong)?
                            .value(row),
                    ),
                    PkType::String => PkValue::String(
                        a.as_string_opt::<i32>()
                            .ok_or_else(wrong)?
                            .value(row)
                            .to_owned(),
                    ),
                    PkType::Binary => PkValue::Binary(
                        a.as_binary_opt::<i32>()
                            .ok_or_else(wrong)?
                            .value(row)
                            .to_vec(),
                    ),
                };
                primary_key.push(PkColumn::new(&s.name, v));
            }
            let cell_ops = cells.row(row, op_v)?;
            let shard_v = match &last_shard {
                Some(s) if s.as_ref() == shard.value(row) => s.clone(),
                _ => last_shard.insert(shard.value(row).into()).clone(),
            };
            out.push(Change {
                ordinal,
                shard: shard_v,
                sequence: RecordSequence {
                    epoch: epoch_v,
                    timestamp_us: time_us.value(row),
                    row_index: row_index_v,
                },
                op: op_v,
                primary_key,
                cells: cell_ops,
            });
        }
        Ok(out)
    }

    fn cell_arrays<'a>(&self, a: &'a ArrayRef) -> Result<CellArrays<'a>, ChangeFileError> {
        use cell_field::*;
        let list = a
            .as_list_opt::<i32>()
            .ok_or_else(|| schema_err(format!("{} is not a list", change_column::CELLS)))?;
        let entries = list.values().as_struct_opt().ok_or_else(|| {
            schema_err(format!("{} entries are not structs", change_column::CELLS))
        })?;
        let field = |name: &str| -> Result<&'a ArrayRef, ChangeFileError> {
            entries.column_by_name(name).ok_or_else(|| {
                schema_err(format!("{} has no field '{name}'", change_column::CELLS))
            })
        };
        let wrong =
            |name: &str| schema_err(format!("{}.{name} has another type", change_column::CELLS));
        Ok(CellArrays {
            list,
            entries,
            op: field(change_column::CELL_OP)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(change_column::CELL_OP))?,
            name: field(NAME)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(NAME))?,
            ts: field(TS)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(TS))?,
            kind: field(TYPE)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(TYPE))?,
            integer: field(INTEGER)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| wrong(INTEGER))?,
            double: field(DOUBLE)?
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| wrong(DOUBLE))?,
            boolean: field(BOOLEAN)?
                .as_boolean_opt()
                .ok_or_else(|| wrong(BOOLEAN))?,
            string: field(STRING)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(STRING))?,
            binary: field(BINARY)?
                .as_binary_opt::<i32>()
                .ok_or_else(|| wrong(BINARY))?,
        })
    }
}

impl CellArrays<'_> {
    /// The cell operations of change row `row`, checked against its op.
    fn row(&self, row: usize, op: ChangeOp) -> Result<Vec<ColumnUpdate>, ChangeFileError> {
        use cell_field::*;
        let offsets = self.list.value_offsets();
        let (start, end) = match (offsets.get(row), offsets.get(row + 1)) {
            (Some(&s), Some(&e)) if 0 <= s && s <= e => (s as usize, e as usize),
            _ => {
                return Err(ChangeFileError::Value {
                    row,
                    column: change_column::CELLS.into(),
                    detail: "invalid list offsets".into(),
                });
            }
        };
        if end > self.entries.len() {
            return Err(ChangeFileError::Value {
                row,
                column: change_column::CELLS.into(),
                detail: "list offsets beyond its entries".into(),
            });
        }
        let mut out = Vec::with_capacity(end - start);
        for (k, j) in (start..end).enumerate() {
            let err = |field: &str, detail: String| ChangeFileError::Value {
                row,
                column: if field.is_empty() {
                    format!("{}[{k}]", change_column::CELLS)
                } else {
                    format!("{}[{k}].{field}", change_column::CELLS)
                },
                detail,
            };
            if self.entries.is_null(j) {
                return Err(err("", "null entry".into()));
            }
            if self.op.is_null(j) {
                return Err(err(change_column::CELL_OP, "null".into()));
            }
            if self.name.is_null(j) {
                return Err(err(NAME, "null".into()));
            }
            let name = self.name.value(j).to_owned();
            let ts = self.ts.is_valid(j).then(|| self.ts.value(j));
            let kind = self.kind.is_valid(j).then(|| self.kind.value(j));
            let set: [(bool, &str); 5] = [
                (self.integer.is_valid(j), INTEGER),
                (self.double.is_valid(j), DOUBLE),
                (self.boolean.is_valid(j), BOOLEAN),
                (self.string.is_valid(j), STRING),
                (self.binary.is_valid(j), BINARY),
            ];
            let cell_op = self.op.value(j);
            let update = match cell_op {
                cell_op::PUT => {
                    let ts = ts.ok_or_else(|| err(TS, "a PUT without a timestamp".into()))?;
                    let kind = kind.ok_or_else(|| err(TYPE, "a PUT without a type".into()))?;
                    let t = value_type_from_name(kind).ok_or_else(|| {
                        err(
                            TYPE,
                            format!("'{kind}' is not INTEGER, DOUBLE, BOOLEAN, STRING or BINARY"),
                        )
                    })?;
                    let field = match t {
                        ValueType::Integer => INTEGER,
                        ValueType::Double => DOUBLE,
                        ValueType::Boolean => BOOLEAN,
                        ValueType::String => STRING,
                        ValueType::Binary => BINARY,
                    };
                    if let Some((_, other)) = set.iter().find(|(s, f)| *s && *f != field) {
                        return Err(err(
                            other,
                            format!("set in a PUT of type {kind} (only {field} may be)"),
                        ));
                    }
                    let value = match t {
                        ValueType::Integer => self
                            .integer
                            .is_valid(j)
                            .then(|| Value::Integer(self.integer.value(j))),
                        ValueType::Double => self
                            .double
                            .is_valid(j)
                            .then(|| Value::Double(self.double.value(j))),
                        ValueType::Boolean => self
                            .boolean
                            .is_valid(j)
                            .then(|| Value::Boolean(self.boolean.value(j))),
                        ValueType::String => self
                            .string
                            .is_valid(j)
                            .then(|| Value::String(self.string.value(j).to_owned())),
                        ValueType::Binary => self
                            .binary
                            .is_valid(j)
                            .then(|| Value::Binary(self.binary.value(j).to_vec())),
                    }
                    .ok_or_else(|| err(field, format!("a PUT of type {kind} without a value")))?;
                    ColumnUpdate::Put {
                        name,
                        value,
                        timestamp: Some(ts),
                    }
                }
                cell_op::DELETE_ONE_VERSION | cell_op::DELETE_ALL_VERSIONS => {
                    if op == ChangeOp::PutRow {
                        return Err(err(
                            change_column::CELL_OP,
                            format!("{cell_op} in a PUT_ROW (puts only)"),
                        ));
                    }
                    if kind.is_some() {
                        return Err(err(TYPE, format!("set in a {cell_op}")));
                    }
                    if let Some((_, f)) = set.iter().find(|(s, _)| *s) {
                        return Err(err(f, format!("a value in a {cell_op}")));
                    }
                    if cell_op == cell_op::DELETE_ONE_VERSION {
                        let timestamp = ts.ok_or_else(|| {
                            err(TS, "a DELETE_ONE_VERSION without a timestamp".into())
                        })?;
                        ColumnUpdate::DeleteOneVersion { name, timestamp }
                    } else {
                        if ts.is_some() {
                            return Err(err(TS, "a timestamp in a DELETE_ALL_VERSIONS".into()));
                        }
                        ColumnUpdate::DeleteAllVersions { name }
                    }
                }
                other => {
                    return Err(err(
                        change_column::CELL_OP,
                        format!("'{other}' is not PUT, DELETE_ONE_VERSION or DELETE_ALL_VERSIONS"),
                    ));
                }
            };
            out.push(update);
        }
        if op == ChangeOp::DeleteRow && !out.is_empty() {
            return Err(ChangeFileError::Value {
                row,
                column: change_column::CELLS.into(),
                detail: format!("{} cell operations in a DELETE_ROW", out.len()),
            });
        }
        Ok(out)
    }
}
