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
    /// The table's secondary indexes (IndexMeta fields 1–5 verbatim). Absent in snapshots taken
    /// before indexes were recorded, which read as "none recorded".
    #[serde(default)]
    pub indexes: Vec<IndexMetaDoc>,
}

/// One secondary index as DescribeTable reports it: IndexMeta fields 1–5, verbatim. The server's
/// state (`index_sync_phase`, field 6) is never kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMetaDoc {
    pub name: String,
    /// The index's key columns, in order (PK or defined columns of the table).
    pub primary_key: Vec<String>,
    /// The index's attribute columns (defined columns of the table).
    #[serde(default)]
    pub defined_columns: Vec<String>,
    pub update_mode: IndexUpdateMode,
    pub index_type: IndexType,
}

/// `IndexMeta.index_update_mode`: `"IUM_ASYNC_INDEX"` or `"IUM_SYNC_INDEX"`; a code this version
/// does not know is kept as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexUpdateMode {
    Async,
    Sync,
    Other(i32),
}

/// `IndexMeta.index_type`: `"IT_GLOBAL_INDEX"` or `"IT_LOCAL_INDEX"`; a code this version does not
/// know is kept as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexType {
    Global,
    Local,
    Other(i32),
}

impl IndexUpdateMode {
    pub fn from_code(code: i32) -> Self {
        match pb::IndexUpdateMode::try_from(code) {
            Ok(pb::IndexUpdateMode::IumAsyncIndex) => IndexUpdateMode::Async,
            Ok(pb::IndexUpdateMode::IumSyncIndex) => IndexUpdateMode::Sync,
            Err(_) => IndexUpdateMode::Other(code),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            IndexUpdateMode::Async => pb::IndexUpdateMode::IumAsyncIndex as i32,
            IndexUpdateMode::Sync => pb::IndexUpdateMode::IumSyncIndex as i32,
            IndexUpdateMode::Other(c) => c,
        }
    }

    /// The enum value's name in the protocol, or the number of an unknown one.
    pub fn name(self) -> String {
        match self {
            IndexUpdateMode::Async => "IUM_ASYNC_INDEX".into(),
            IndexUpdateMode::Sync => "IUM_SYNC_INDEX".into(),
            IndexUpdateMode::Other(c) => c.to_string(),
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "IUM_ASYNC_INDEX" => Some(IndexUpdateMode::Async),
            "IUM_SYNC_INDEX" => Some(IndexUpdateMode::Sync),
            _ => None,
        }
    }
}

impl IndexType {
    pub fn from_code(code: i32) -> Self {
        match pb::IndexType::try_from(code) {
            Ok(pb::IndexType::ItGlobalIndex) => IndexType::Global,
            Ok(pb::IndexType::ItLocalIndex) => IndexType::Local,
            Err(_) => IndexType::Other(code),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            IndexType::Global => pb::IndexType::ItGlobalIndex as i32,
            IndexType::Local => pb::IndexType::ItLocalIndex as i32,
            IndexType::Other(c) => c,
        }
    }

    /// The enum value's name in the protocol, or the number of an unknown one.
    pub fn name(self) -> String {
        match self {
            IndexType::Global => "IT_GLOBAL_INDEX".into(),
            IndexType::Local => "IT_LOCAL_INDEX".into(),
            IndexType::Other(c) => c.to_string(),
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "IT_GLOBAL_INDEX" => Some(IndexType::Global),
            "IT_LOCAL_INDEX" => Some(IndexType::Local),
            _ => None,
        }
    }
}

/// How an index enum appears in JSON: its name, or the number of a value without one.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EnumJson {
    Name(String),
    Code(i32),
}

macro_rules! index_enum_serde {
    ($t:ident, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $t::Other(c) => EnumJson::Code(*c),
                    known => EnumJson::Name(known.name()),
                }
                .serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match EnumJson::deserialize(d)? {
                    EnumJson::Name(n) => $t::from_name(&n).ok_or_else(|| {
                        serde::de::Error::custom(format!(concat!("unknown ", $what, " '{}'"), n))
                    }),
                    EnumJson::Code(c) => Ok($t::from_code(c)),
                }
            }
        }
    };
}

index_enum_serde!(IndexUpdateMode, "index update mode");
index_enum_serde!(IndexType, "index type");

impl IndexMetaDoc {
    /// Fields 1–5 of `m`; `index_sync_phase` is the server's state and is dropped.
    pub fn from_pb(m: &pb::IndexMeta) -> Self {
        IndexMetaDoc {
            name: m.name.clone(),
            primary_key: m.primary_key.clone(),
            defined_columns: m.defined_column.clone(),
            update_mode: IndexUpdateMode::from_code(m.index_update_mode),
            index_type: IndexType::from_code(m.index_type),
        }
    }

    /// The IndexMeta that recreates this index (without `index_sync_phase`).
    pub fn to_pb(&self) -> pb::IndexMeta {
        pb::IndexMeta {
            name: self.name.clone(),
            primary_key: self.primary_key.clone(),
            defined_column: self.defined_columns.clone(),
            index_update_mode: self.update_mode.code(),
            index_type: self.index_type.code(),
            index_sync_phase: None,
        }
    }

    /// `idx_city (city, user_id) [+ name] IT_GLOBAL_INDEX IUM_ASYNC_INDEX`: the index as people read it.
    pub fn text(&self) -> String {
        let mut s = format!("{} ({})", self.name, self.primary_key.join(", "));
        if !self.defined_columns.is_empty() {
            s.push_str(&format!(" + [{}]", self.defined_columns.join(", ")));
        }
        s.push_str(&format!(
            " {} {}",
            self.index_type.name(),
            self.update_mode.name()
        ));
        s
    }
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
            indexes: d.index_metas.iter().map(IndexMetaDoc::from_pb).collect(),
        })
    }

    /// A CreateTable request for a table `name` with this meta, its defined columns and its
    /// secondary indexes (fields 1–5, as recorded). `keep_auto_increment` declares
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
            index_metas: self.indexes.iter().map(IndexMetaDoc::to_pb).collect(),
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
            indexes: vec![
                IndexMetaDoc {
                    name: "by_c".into(),
                    primary_key: vec!["c".into(), "id".into()],
                    defined_columns: vec![],
                    update_mode: IndexUpdateMode::Async,
                    index_type: IndexType::Global,
                },
                IndexMetaDoc {
                    name: "local_c".into(),
                    primary_key: vec!["id".into(), "c".into()],
                    defined_columns: vec!["c".into()],
                    update_mode: IndexUpdateMode::Sync,
                    index_type: IndexType::Local,
                },
            ],
        };
        let req = meta.create_table_request("t", true, None);
        assert_eq!(req.index_metas.len(), 2);
        assert!(req.index_metas.iter().all(|m| m.index_sync_phase.is_none()));
        assert_eq!(
            req.index_metas[1].index_type,
            pb::IndexType::ItLocalIndex as i32
        );
        let described = pb::DescribeTableResponse {
            table_meta: req.table_meta.clone(),
            table_options: req.table_options.unwrap_or_default(),
            // The server's sync phase is not part of the meta.
            index_metas: req
                .index_metas
                .iter()
                .cloned()
                .map(|mut m| {
                    m.index_sync_phase = Some(pb::IndexSyncPhase::IspIncr as i32);
                    m
                })
                .collect(),
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

    #[test]
    fn indexes_serialise_verbatim_and_old_metas_still_read() {
        let old = r#"{"table_name":"t","primary_key":[{"name":"id","type":"STRING"}],
            "defined_columns":[{"name":"c","type":"DOUBLE"}],"max_versions":1,"time_to_live":-1,
            "deviation_cell_version_in_sec":86400,"allow_update":true}"#;
        let meta: TableMeta = serde_json::from_str(old).unwrap();
        assert!(meta.indexes.is_empty());
        assert_eq!(meta.defined_columns.len(), 1);

        let doc = IndexMetaDoc {
            name: "i".into(),
            primary_key: vec!["c".into()],
            defined_columns: vec![],
            update_mode: IndexUpdateMode::Sync,
            index_type: IndexType::Local,
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "i", "primary_key": ["c"], "defined_columns": [],
                "update_mode": "IUM_SYNC_INDEX", "index_type": "IT_LOCAL_INDEX"})
        );
        assert_eq!(serde_json::from_value::<IndexMetaDoc>(v).unwrap(), doc);
        // A code without a name is kept as its number, and goes back out as it came.
        let odd = IndexMetaDoc::from_pb(&pb::IndexMeta {
            name: "x".into(),
            primary_key: vec!["c".into()],
            defined_column: vec!["d".into()],
            index_update_mode: 7,
            index_type: 9,
            index_sync_phase: Some(1),
        });
        let v = serde_json::to_value(&odd).unwrap();
        assert_eq!(v["update_mode"], 7);
        assert_eq!(v["index_type"], 9);
        let back = serde_json::from_value::<IndexMetaDoc>(v).unwrap().to_pb();
        assert_eq!((back.index_update_mode, back.index_type), (7, 9));
        assert_eq!(back.index_sync_phase, None);
        let bad = r#"{"name":"i","primary_key":["c"],"update_mode":"IUM_LAZY","index_type":"IT_GLOBAL_INDEX"}"#;
        let e = serde_json::from_str::<IndexMetaDoc>(bad).unwrap_err();
        assert!(e.to_string().contains("IUM_LAZY"), "{e}");
        assert_eq!(doc.text(), "i (c) IT_LOCAL_INDEX IUM_SYNC_INDEX");
    }
}
