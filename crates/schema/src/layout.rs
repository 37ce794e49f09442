//! The snapshot schema and its Arrow layout (normative text: docs/FORMAT.md, "Columns").
//!
//! - primary-key columns, typed, non-null, in table order;
//! - one typed, nullable column per schema attribute column holding the row's latest version when its
//!   type is the column's type;
//! - `$ts`: a struct with one Int64 field per typed column: that latest version's timestamp (ms);
//! - `$cells`: a list of every other cell (older versions, type conflicts, columns outside the schema),
//!   each with name, type, timestamp and a value in the field of its type.
//!
//! `$` cannot occur in a Tablestore column name, so reserved names never collide.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use ots_wire::types::{PkType, ValueType};
use serde::{Deserialize, Serialize};

/// Version of the column layout described here; bumps when the layout changes incompatibly.
pub const LAYOUT_VERSION: u32 = 1;

pub const TS_COLUMN: &str = "$ts";
pub const CELLS_COLUMN: &str = "$cells";
/// Arrow schema metadata key holding the snapshot schema as JSON, so every file describes itself.
pub const SCHEMA_METADATA_KEY: &str = "otsarchive.schema";

/// Field names inside each `$cells` entry.
pub mod cell_field {
    pub const NAME: &str = "name";
    pub const TYPE: &str = "type";
    pub const TS: &str = "ts";
    pub const INTEGER: &str = "v_integer";
    pub const DOUBLE: &str = "v_double";
    pub const BOOLEAN: &str = "v_boolean";
    pub const STRING: &str = "v_string";
    pub const BINARY: &str = "v_binary";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkColumnSchema {
    pub name: String,
    #[serde(rename = "type", with = "pk_type_serde")]
    pub pk_type: PkType,
    /// Declared AUTO_INCREMENT in the source table.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_increment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type", with = "value_type_serde")]
    pub value_type: ValueType,
}

/// What a snapshot's files look like. Printed as JSON, it can be edited and pinned with `--schema`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSchema {
    pub layout_version: u32,
    pub primary_key: Vec<PkColumnSchema>,
    /// Typed attribute columns, in file order.
    pub columns: Vec<ColumnSchema>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "column name '{0}' is not a Tablestore column name ([A-Za-z_][A-Za-z0-9_]*, 1–255 bytes)"
    )]
    InvalidName(String),
    #[error("column '{0}' appears twice in the schema")]
    Duplicate(String),
    #[error("a snapshot schema needs 1 to 4 primary-key columns, found {0}")]
    PrimaryKeyCount(usize),
    #[error("layout version {found} is not supported (this build reads {LAYOUT_VERSION})")]
    LayoutVersion { found: u32 },
    #[error("schema JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn is_valid_column_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl SnapshotSchema {
    pub fn new(
        primary_key: Vec<PkColumnSchema>,
        columns: Vec<ColumnSchema>,
    ) -> Result<Self, SchemaError> {
        let s = SnapshotSchema {
            layout_version: LAYOUT_VERSION,
            primary_key,
            columns,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks names and counts; a schema read from a file or edited by hand goes through this.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.layout_version != LAYOUT_VERSION {
            return Err(SchemaError::LayoutVersion {
                found: self.layout_version,
            });
        }
        if !(1..=4).contains(&self.primary_key.len()) {
            return Err(SchemaError::PrimaryKeyCount(self.primary_key.len()));
        }
        let mut seen = std::collections::HashSet::new();
        let names = self
            .primary_key
            .iter()
            .map(|c| &c.name)
            .chain(self.columns.iter().map(|c| &c.name));
        for name in names {
            if !is_valid_column_name(name) {
                return Err(SchemaError::InvalidName(name.clone()));
            }
            if !seen.insert(name) {
                return Err(SchemaError::Duplicate(name.clone()));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, SchemaError> {
        let s: SnapshotSchema = serde_json::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Position of each typed column by name.
    pub fn column_index(&self) -> HashMap<&str, usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect()
    }

    /// The Arrow schema of the snapshot's files.
    pub fn arrow_schema(&self) -> SchemaRef {
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), self.to_json())]);
        Arc::new(Schema::new_with_metadata(self.arrow_fields(), metadata))
    }

    /// The fields of [`arrow_schema`](Self::arrow_schema), without the metadata (no JSON rendered).
    pub fn arrow_fields(&self) -> Vec<Field> {
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

    pub(crate) fn ts_fields(&self) -> Fields {
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

pub fn value_type_from_name(name: &str) -> Option<ValueType> {
    Some(match name {
        "INTEGER" => ValueType::Integer,
        "DOUBLE" => ValueType::Double,
        "BOOLEAN" => ValueType::Boolean,
        "STRING" => ValueType::String,
        "BINARY" => ValueType::Binary,
        _ => return None,
    })
}

pub fn pk_type_name(t: PkType) -> &'static str {
    match t {
        PkType::Integer => "INTEGER",
        PkType::String => "STRING",
        PkType::Binary => "BINARY",
    }
}

mod pk_type_serde {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &PkType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(pk_type_name(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PkType, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "INTEGER" => Ok(PkType::Integer),
            "STRING" => Ok(PkType::String),
            "BINARY" => Ok(PkType::Binary),
            other => Err(D::Error::custom(format!(
                "unknown primary-key type '{other}' (INTEGER, STRING or BINARY)"
            ))),
        }
    }
}

mod value_type_serde {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &ValueType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ValueType, D::Error> {
        let name = String::deserialize(d)?;
        value_type_from_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown column type '{name}' (INTEGER, DOUBLE, BOOLEAN, STRING or BINARY)"
            ))
        })
    }
}
