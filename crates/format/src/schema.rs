//! The snapshot schema as the manifest and `--schema` files hold it: primary key, typed columns,
//! the reserved column names. The Arrow side of the layout lives in `ots-schema`.

use std::collections::HashMap;

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
