//! The source table's meta as a snapshot records it, and its conversions from DescribeTable and
//! to CreateTable.

use ots_wire::pb;
use ots_wire::types::{PkType, ValueType};
use serde::{Deserialize, Serialize};

use crate::schema::{ColumnSchema, PkColumnSchema, pk_type_name};

/// The source table's meta, enough to recreate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    pub table_name: String,
    pub primary_key: Vec<PkColumnSchema>,
    #[serde(default)]
    pub defined_columns: Vec<ColumnSchema>,
    pub max_versions: Option<i32>,
    /// Seconds; -1 = forever.
    pub time_to_live: Option<i32>,
    pub deviation_cell_version_in_sec: Option<i64>,
    pub allow_update: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableMetaError {
    #[error("table '{table}' has primary-key column '{column}' of unsupported type {code}")]
    UnsupportedPkType {
        table: String,
        column: String,
        code: i32,
    },
}

impl TableMeta {
    /// The meta of `table` from DescribeTable's answer.
    pub fn from_describe(
        table: &str,
        d: &pb::DescribeTableResponse,
    ) -> Result<TableMeta, TableMetaError> {
        let primary_key = d
            .table_meta
            .primary_key
            .iter()
            .map(|c| {
                let pk_type = match pb::PrimaryKeyType::try_from(c.r#type) {
                    Ok(pb::PrimaryKeyType::Integer) => PkType::Integer,
                    Ok(pb::PrimaryKeyType::String) => PkType::String,
                    Ok(pb::PrimaryKeyType::Binary) => PkType::Binary,
                    _ => {
                        return Err(TableMetaError::UnsupportedPkType {
                            table: table.to_string(),
                            column: c.name.clone(),
                            code: c.r#type,
                        });
                    }
                };
                Ok(PkColumnSchema {
                    name: c.name.clone(),
                    pk_type,
                    auto_increment: c.option == Some(pb::PrimaryKeyOption::AutoIncrement as i32),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let defined_columns = d
            .table_meta
            .defined_column
            .iter()
            .filter_map(|c| {
                let t = match pb::DefinedColumnType::try_from(c.r#type).ok()? {
                    pb::DefinedColumnType::DctInteger => ValueType::Integer,
                    pb::DefinedColumnType::DctDouble => ValueType::Double,
                    pb::DefinedColumnType::DctBoolean => ValueType::Boolean,
                    pb::DefinedColumnType::DctString => ValueType::String,
                    pb::DefinedColumnType::DctBlob => ValueType::Binary,
                };
                Some(ColumnSchema {
                    name: c.name.clone(),
                    value_type: t,
                })
            })
            .collect();
        let o = &d.table_options;
        Ok(TableMeta {
            table_name: table.to_string(),
            primary_key,
            defined_columns,
            max_versions: o.max_versions,
            time_to_live: o.time_to_live,
            deviation_cell_version_in_sec: o.deviation_cell_version_in_sec,
            allow_update: o.allow_update,
        })
    }

    /// A CreateTable request for a table `name` with this meta. `keep_auto_increment` declares
    /// AUTO_INCREMENT columns as such (the service then assigns new values); otherwise they are
    /// plain INTEGER so that original values can be written. `deviation_sec` overrides the
    /// recorded version deviation (a restore widens it to accept the oldest original timestamp).
    pub fn create_table_request(
        &self,
        name: &str,
        keep_auto_increment: bool,
        deviation_sec: Option<i64>,
    ) -> pb::CreateTableRequest {
        pb::CreateTableRequest {
            table_meta: pb::TableMeta {
                table_name: name.to_string(),
                primary_key: self
                    .primary_key
                    .iter()
                    .map(|c| pb::PrimaryKeySchema {
                        name: c.name.clone(),
                        r#type: pk_type_to_pb(c.pk_type) as i32,
                        option: (c.auto_increment && keep_auto_increment)
                            .then_some(pb::PrimaryKeyOption::AutoIncrement as i32),
                    })
                    .collect(),
                defined_column: self
                    .defined_columns
                    .iter()
                    .map(|c| pb::DefinedColumnSchema {
                        name: c.name.clone(),
                        r#type: defined_type_to_pb(c.value_type) as i32,
                    })
                    .collect(),
                ..Default::default()
            },
            reserved_throughput: pb::ReservedThroughput {
                capacity_unit: pb::CapacityUnit {
                    read: Some(0),
                    write: Some(0),
                },
            },
            table_options: Some(pb::TableOptions {
                time_to_live: Some(self.time_to_live.unwrap_or(-1)),
                max_versions: Some(self.max_versions.unwrap_or(1)),
                deviation_cell_version_in_sec: deviation_sec
                    .or(self.deviation_cell_version_in_sec)
                    .or(Some(86_400)),
                allow_update: self.allow_update,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `user_id STRING, seq INTEGER`: the primary key as people read it.
    pub fn primary_key_text(&self) -> String {
        pk_text(&self.primary_key)
    }
}

/// `user_id STRING, seq INTEGER`.
pub fn pk_text(pk: &[PkColumnSchema]) -> String {
    pk.iter()
        .map(|c| format!("{} {}", c.name, pk_type_name(c.pk_type)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn pk_type_to_pb(t: PkType) -> pb::PrimaryKeyType {
    match t {
        PkType::Integer => pb::PrimaryKeyType::Integer,
        PkType::String => pb::PrimaryKeyType::String,
        PkType::Binary => pb::PrimaryKeyType::Binary,
    }
}

pub fn defined_type_to_pb(t: ValueType) -> pb::DefinedColumnType {
    match t {
        ValueType::Integer => pb::DefinedColumnType::DctInteger,
        ValueType::Double => pb::DefinedColumnType::DctDouble,
        ValueType::Boolean => pb::DefinedColumnType::DctBoolean,
        ValueType::String => pb::DefinedColumnType::DctString,
        ValueType::Binary => pb::DefinedColumnType::DctBlob,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_then_create_keeps_the_meta() {
        let meta = TableMeta {
            table_name: "t".into(),
            primary_key: vec![
                PkColumnSchema {
                    name: "id".into(),
                    pk_type: PkType::String,
                    auto_increment: false,
                },
                PkColumnSchema {
                    name: "n".into(),
                    pk_type: PkType::Integer,
                    auto_increment: true,
                },
            ],
            defined_columns: vec![ColumnSchema {
                name: "c".into(),
                value_type: ValueType::Double,
            }],
            max_versions: Some(3),
            time_to_live: Some(-1),
            deviation_cell_version_in_sec: Some(86_400),
            allow_update: Some(true),
        };
        let req = meta.create_table_request("t", true, None);
        let described = pb::DescribeTableResponse {
            table_meta: req.table_meta.clone(),
            table_options: req.table_options.unwrap_or_default(),
            ..Default::default()
        };
        assert_eq!(TableMeta::from_describe("t", &described), Ok(meta.clone()));
        let plain = meta.create_table_request("t", false, Some(999));
        assert_eq!(plain.table_meta.primary_key[1].option, None);
        assert_eq!(
            plain
                .table_options
                .and_then(|o| o.deviation_cell_version_in_sec),
            Some(999)
        );
        assert_eq!(meta.primary_key_text(), "id STRING, n INTEGER");
    }
}
