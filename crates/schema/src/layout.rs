//! The snapshot schema's Arrow layout (normative text: docs/FORMAT.md, "Columns").
//!
//! - primary-key columns, typed, non-null, in table order;
//! - one typed, nullable column per schema attribute column holding the row's latest version when its
//!   type is the column's type;
//! - `$ts`: a struct with one Int64 field per typed column: that latest version's timestamp (ms);
//! - `$cells`: a list of every other cell (older versions, type conflicts, columns outside the schema),
//!   each with name, type, timestamp and a value in the field of its type.
//!
//! `$` cannot occur in a Tablestore column name, so reserved names never collide. The schema as a
//! document (`SnapshotSchema`) is the format crate's; this module gives it its Arrow shape.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use ots_wire::types::{PkType, ValueType};

pub use ots_format::schema::{
    CELLS_COLUMN, ColumnSchema, LAYOUT_VERSION, PkColumnSchema, SCHEMA_METADATA_KEY, SchemaError,
    SnapshotSchema, TS_COLUMN, cell_field, is_valid_column_name, pk_type_name,
    value_type_from_name,
};

/// The Arrow shape of a snapshot schema.
pub trait ArrowLayout {
    /// The Arrow schema of the snapshot's files (with the schema JSON as metadata).
    fn arrow_schema(&self) -> SchemaRef;
    /// The fields of [`arrow_schema`](Self::arrow_schema), without the metadata (no JSON rendered).
    fn arrow_fields(&self) -> Vec<Field>;
    /// The fields of `$ts`: one Int64 per typed column.
    fn ts_fields(&self) -> Fields;
}

impl ArrowLayout for SnapshotSchema {
    /// The Arrow schema of the snapshot's files.
    fn arrow_schema(&self) -> SchemaRef {
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), self.to_json())]);
        Arc::new(Schema::new_with_metadata(self.arrow_fields(), metadata))
    }

    /// The fields of [`arrow_schema`](Self::arrow_schema), without the metadata (no JSON rendered).
    fn arrow_fields(&self) -> Vec<Field> {
        let mut fields: Vec<Field> = self
            .primary_key
            .iter()
            .map(|c| Field::new(&c.name, pk_arrow_type(c.pk_type), false))
            .collect();
        fields.extend(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, value_arrow_type(c.value_type), true)),
        );
        // Parquet cannot store a struct without fields, so `$ts` exists only with typed columns.
        if !self.columns.is_empty() {
            fields.push(Field::new(
                TS_COLUMN,
                DataType::Struct(self.ts_fields()),
                false,
            ));
        }
        fields.push(Field::new(
            CELLS_COLUMN,
            DataType::List(Arc::new(cells_item_field())),
            false,
        ));
        fields
    }

    fn ts_fields(&self) -> Fields {
        self.columns
            .iter()
            .map(|c| Field::new(&c.name, DataType::Int64, true))
            .collect()
    }
}

pub fn pk_arrow_type(t: PkType) -> DataType {
    match t {
        PkType::Integer => DataType::Int64,
        PkType::String => DataType::Utf8,
        PkType::Binary => DataType::Binary,
    }
}

pub fn value_arrow_type(t: ValueType) -> DataType {
    match t {
        ValueType::Integer => DataType::Int64,
        ValueType::Double => DataType::Float64,
        ValueType::Boolean => DataType::Boolean,
        ValueType::String => DataType::Utf8,
        ValueType::Binary => DataType::Binary,
    }
}

pub(crate) fn cells_struct_fields() -> Fields {
    use cell_field::*;
    Fields::from(vec![
        Field::new(NAME, DataType::Utf8, false),
        Field::new(TYPE, DataType::Utf8, false),
        Field::new(TS, DataType::Int64, true),
        Field::new(INTEGER, DataType::Int64, true),
        Field::new(DOUBLE, DataType::Float64, true),
        Field::new(BOOLEAN, DataType::Boolean, true),
        Field::new(STRING, DataType::Utf8, true),
        Field::new(BINARY, DataType::Binary, true),
    ])
}

pub(crate) fn cells_item_field() -> Field {
    Field::new("item", DataType::Struct(cells_struct_fields()), false)
}

/// Whether a file's Arrow type matches the layout's: names and types must agree, while field
/// nullability and metadata may differ after a Parquet round trip (content is checked value by
/// value instead).
pub(crate) fn types_match(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| p.name() == q.name() && types_match(p.data_type(), q.data_type()))
        }
        (DataType::List(x), DataType::List(y)) => types_match(x.data_type(), y.data_type()),
        _ => a == b,
    }
}
