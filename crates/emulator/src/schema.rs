//! Table definitions and request validation against them: names, PK schema, PK values (fact sheet §5.1,
//! §5.4).

use ots_wire::pb;
use ots_wire::types::{PkCellRef, PkType, PkValue, PkValueRef};

use crate::error::{ApiError, ApiResult};

pub const MAX_PK_COLUMNS: usize = 4;
pub const MAX_PK_VALUE_LEN: usize = 1024;
pub const MAX_ATTR_VALUE_LEN: usize = 2 * 1024 * 1024;
pub const MAX_DEFINED_COLUMNS: usize = 32;
/// Secondary indexes per table (stream fact sheet §6).
pub const MAX_INDEXES: usize = 5;
pub const MAX_TABLES: usize = 64;
pub const MAX_COLUMNS_PER_WRITE: usize = 1024;
pub const MAX_COLUMNS_TO_GET: usize = 128;
pub const MIN_TTL_SECONDS: i32 = 86400;
/// What the Python SDK sends and the service reports when a table is created without it.
pub const DEFAULT_DEVIATION_SECONDS: i64 = 86400;

/// `[A-Za-z_][A-Za-z0-9_]*`, 1–255 bytes: the rule for table and column names.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Instance names: 3–16 chars of letters, digits and `-`, starting with a letter, not ending with `-`.
pub fn is_valid_instance_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=16).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1] != b'-'
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkColumnDef {
    pub name: String,
    pub ty: PkType,
    pub auto_increment: bool,
}

/// Mutable table options (UpdateTable can change them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Seconds, -1 = forever.
    pub ttl: i32,
    pub max_versions: i32,
    pub deviation: i64,
    /// Whether UpdateRow is allowed. Recorded and reported (it decides whether a table with a TTL
    /// may have indexes); UpdateRow is not refused when it is false (EMULATOR_DEFECTS.md).
    pub allow_update: bool,
}

impl Options {
    pub fn to_pb(self) -> pb::TableOptions {
        pb::TableOptions {
            time_to_live: Some(self.ttl),
            max_versions: Some(self.max_versions),
            bloom_filter_type: None,
            block_size: None,
            deviation_cell_version_in_sec: Some(self.deviation),
            allow_update: Some(self.allow_update),
            update_full_row: None,
        }
    }

    /// Cells older than this have expired.
    pub fn ttl_cutoff_ms(self, now_ms: i64) -> i64 {
        if self.ttl < 0 {
            i64::MIN
        } else {
            now_ms.saturating_sub(i64::from(self.ttl) * 1000)
        }
    }
}

/// The immutable part of a table: what CreateTable fixed.
#[derive(Clone, Debug)]
pub struct TableDef {
    pub name: String,
    pub pk: Vec<PkColumnDef>,
    pub defined_columns: Vec<pb::DefinedColumnSchema>,
}

impl TableDef {
    pub fn pk_schema_pb(&self) -> Vec<pb::PrimaryKeySchema> {
        self.pk
            .iter()
            .map(|c| pb::PrimaryKeySchema {
                name: c.name.clone(),
                r#type: match c.ty {
                    PkType::Integer => pb::PrimaryKeyType::Integer as i32,
                    PkType::String => pb::PrimaryKeyType::String as i32,
                    PkType::Binary => pb::PrimaryKeyType::Binary as i32,
                },
                option: c
                    .auto_increment
                    .then_some(pb::PrimaryKeyOption::AutoIncrement as i32),
            })
            .collect()
    }

    pub fn meta_pb(&self) -> pb::TableMeta {
        pb::TableMeta {
            table_name: self.name.clone(),
            primary_key: self.pk_schema_pb(),
            defined_column: self.defined_columns.clone(),
            table_id: None,
            global_table_id: None,
        }
    }

    pub fn is_pk_name(&self, name: &str) -> bool {
        self.pk.iter().any(|c| c.name == name)
    }

    pub fn auto_increment_index(&self) -> Option<usize> {
        self.pk.iter().position(|c| c.auto_increment)
    }
}

/// Validates CreateTable's meta, options and indexes, returning the definition, the options and
/// the indexes.
pub fn validate_create(
    req: &pb::CreateTableRequest,
) -> ApiResult<(TableDef, Options, Vec<pb::IndexMeta>)> {
    let meta = &req.table_meta;
    if !is_valid_name(&meta.table_name) {
        return Err(ApiError::param(format!(
            "Invalid table name: '{}'.",
            meta.table_name
        )));
    }
    if meta.primary_key.is_empty() || meta.primary_key.len() > MAX_PK_COLUMNS {
        return Err(ApiError::param(format!(
            "The number of primary key columns must be in range: [1, {MAX_PK_COLUMNS}]."
        )));
    }
    let mut pk: Vec<PkColumnDef> = Vec::with_capacity(meta.primary_key.len());
    for (i, col) in meta.primary_key.iter().enumerate() {
        if !is_valid_name(&col.name) {
            return Err(ApiError::param(format!(
                "Invalid column name: '{}'.",
                col.name
            )));
        }
        if pk.iter().any(|c| c.name == col.name) {
            return Err(ApiError::param(format!(
                "Duplicated primary key name: '{}'.",
                col.name
            )));
        }
        let ty = match pb::PrimaryKeyType::try_from(col.r#type) {
            Ok(pb::PrimaryKeyType::Integer) => PkType::Integer,
            Ok(pb::PrimaryKeyType::String) => PkType::String,
            Ok(pb::PrimaryKeyType::Binary) => PkType::Binary,
            // Only the Python 6.x proto has PK_BOOLEAN; the service rejects boolean PKs.
            Ok(pb::PrimaryKeyType::PkBoolean) => {
                return Err(ApiError::param(
                    "BOOLEAN is an invalid type for the primary key.",
                ));
            }
            Err(_) => {
                return Err(ApiError::param(format!(
                    "Unknown primary key type: {}.",
                    col.r#type
                )));
            }
        };
        let auto_increment = match col.option {
            None => false,
            Some(o) if o == pb::PrimaryKeyOption::AutoIncrement as i32 => true,
            Some(o) => {
                return Err(ApiError::param(format!("Unknown primary key option: {o}.")));
            }
        };
        if auto_increment {
            if ty != PkType::Integer {
                return Err(ApiError::param(format!(
                    "The AUTO_INCREMENT primary key column must be INTEGER: '{}'.",
                    col.name
                )));
            }
            if i == 0 {
                return Err(ApiError::param(
                    "The partition key (first primary key column) can not be AUTO_INCREMENT.",
                ));
            }
            if pk.iter().any(|c| c.auto_increment) {
                return Err(ApiError::param(
                    "At most one primary key column can be AUTO_INCREMENT.",
                ));
            }
        }
        pk.push(PkColumnDef {
            name: col.name.clone(),
            ty,
            auto_increment,
        });
    }
    if meta.defined_column.len() > MAX_DEFINED_COLUMNS {
        return Err(ApiError::param(format!(
            "The number of defined columns must be in range: [0, {MAX_DEFINED_COLUMNS}]."
        )));
    }
    for (i, col) in meta.defined_column.iter().enumerate() {
        if !is_valid_name(&col.name) {
            return Err(ApiError::param(format!(
                "Invalid column name: '{}'.",
                col.name
            )));
        }
        if pk.iter().any(|c| c.name == col.name)
            || meta.defined_column[..i].iter().any(|c| c.name == col.name)
        {
            return Err(ApiError::param(format!(
                "Duplicated column name: '{}'.",
                col.name
            )));
        }
        if pb::DefinedColumnType::try_from(col.r#type).is_err() {
            return Err(ApiError::param(format!(
                "Unknown defined column type: {}.",
                col.r#type
            )));
        }
    }
    check_capacity(&req.reserved_throughput.capacity_unit)?;
    // Python always sends all three options; absent ones take the service defaults.
    let mut options = Options {
        ttl: -1,
        max_versions: 1,
        deviation: DEFAULT_DEVIATION_SECONDS,
        allow_update: true,
    };
    if let Some(o) = &req.table_options {
        apply_options(&mut options, o)?;
    }
    let def = TableDef {
        name: meta.table_name.clone(),
        pk,
        defined_columns: meta.defined_column.clone(),
    };
    let mut indexes: Vec<pb::IndexMeta> = Vec::with_capacity(req.index_metas.len());
    for m in &req.index_metas {
        check_index(&def, &options, &indexes, m)?;
        indexes.push(m.clone());
    }
    Ok((def, options, indexes))
}

/// Checks index `m` for a table `def` with `options` that already has `existing` indexes
/// (stream fact sheet §6): a valid, unused name; at most [`MAX_INDEXES`]; key columns that are PK
/// or defined columns of the table, attribute columns that are defined columns, none twice; known
/// type and update mode; a local index keyed first by the table's partition key; and a table with
/// one version and either no TTL or no updates. Names unique across the instance are the engine's
/// check.
pub fn check_index(
    def: &TableDef,
    options: &Options,
    existing: &[pb::IndexMeta],
    m: &pb::IndexMeta,
) -> ApiResult<()> {
    if !is_valid_name(&m.name) {
        return Err(ApiError::param(format!(
            "Invalid index name: '{}'.",
            m.name
        )));
    }
    if existing.iter().any(|e| e.name == m.name) {
        return Err(ApiError::param(format!(
            "Duplicated index name: '{}'.",
            m.name
        )));
    }
    if existing.len() >= MAX_INDEXES {
        return Err(ApiError::param(format!(
            "The number of indexes of table '{}' exceeds the limit: {MAX_INDEXES}.",
            def.name
        )));
    }
    if options.max_versions != 1 {
        return Err(ApiError::param(format!(
            "A table with indexes must keep one version: table '{}' has max_versions {}.",
            def.name, options.max_versions
        )));
    }
    if options.ttl != -1 && options.allow_update {
        return Err(ApiError::param(format!(
            "A table with indexes must have time_to_live -1 or disallow updates: table '{}' has time_to_live {} and allow_update true.",
            def.name, options.ttl
        )));
    }
    if m.primary_key.is_empty() {
        return Err(ApiError::param(format!(
            "Index '{}' has no primary key column.",
            m.name
        )));
    }
    let is_defined = |name: &str| def.defined_columns.iter().any(|c| c.name == name);
    for (i, col) in m.primary_key.iter().enumerate() {
        if !def.is_pk_name(col) && !is_defined(col) {
            return Err(ApiError::param(format!(
                "The primary key column '{col}' of index '{}' is neither a primary key column nor a defined column of table '{}'.",
                m.name, def.name
            )));
        }
        if m.primary_key[..i].contains(col) {
            return Err(ApiError::param(format!(
                "Duplicated primary key column in index '{}': '{col}'.",
                m.name
            )));
        }
    }
    for (i, col) in m.defined_column.iter().enumerate() {
        if !is_defined(col) {
            return Err(ApiError::param(format!(
                "The defined column '{col}' of index '{}' is not a defined column of table '{}'.",
                m.name, def.name
            )));
        }
        if m.primary_key.contains(col) || m.defined_column[..i].contains(col) {
            return Err(ApiError::param(format!(
                "Duplicated column in index '{}': '{col}'.",
                m.name
            )));
        }
    }
    if pb::IndexUpdateMode::try_from(m.index_update_mode).is_err() {
        return Err(ApiError::param(format!(
            "Unknown index update mode: {}.",
            m.index_update_mode
        )));
    }
    match pb::IndexType::try_from(m.index_type) {
        Ok(pb::IndexType::ItGlobalIndex) => {}
        Ok(pb::IndexType::ItLocalIndex) => {
            let partition_key = def.pk.first().map(|c| c.name.as_str());
            if m.primary_key.first().map(String::as_str) != partition_key {
                return Err(ApiError::param(format!(
                    "The first primary key column of local index '{}' must be the partition key of table '{}'.",
                    m.name, def.name
                )));
            }
        }
        Err(_) => {
            return Err(ApiError::param(format!(
                "Unknown index type: {}.",
                m.index_type
            )));
        }
    }
    Ok(())
}

pub fn check_capacity(cu: &pb::CapacityUnit) -> ApiResult<()> {
    for (what, v) in [("read", cu.read), ("write", cu.write)] {
        if let Some(v) = v
            && v < 0
        {
            return Err(ApiError::param(format!(
                "The {what} capacity unit must be non-negative: {v}."
            )));
        }
    }
    Ok(())
}

/// Applies the options a request sets onto `options`, validating each.
pub fn apply_options(options: &mut Options, o: &pb::TableOptions) -> ApiResult<()> {
    if let Some(ttl) = o.time_to_live {
        if ttl != -1 && ttl < MIN_TTL_SECONDS {
            return Err(ApiError::param(format!(
                "Invalid time to live: {ttl}. It must be -1 (forever) or at least {MIN_TTL_SECONDS} seconds."
            )));
        }
        options.ttl = ttl;
    }
    if let Some(mv) = o.max_versions {
        if mv <= 0 {
            return Err(ApiError::param(format!(
                "Invalid max versions: {mv}. It must be greater than 0."
            )));
        }
        options.max_versions = mv;
    }
    if let Some(dev) = o.deviation_cell_version_in_sec {
        if dev <= 0 {
            return Err(ApiError::param(format!(
                "Invalid deviation cell version: {dev}. It must be greater than 0."
            )));
        }
        options.deviation = dev;
    }
    if let Some(a) = o.allow_update {
        options.allow_update = a;
    }
    Ok(())
}

/// Where a primary key appears, which decides which markers it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkUse {
    /// GetRow, BatchGetRow, DeleteRow: concrete values only.
    Exact,
    /// PutRow: the AUTO_INCREMENT column must carry the placeholder.
    Put,
    /// UpdateRow: placeholder or a concrete value (updating a row whose id is known).
    Update,
    /// GetRange bounds: INF_MIN/INF_MAX anywhere.
    Bound,
}

fn vt_name(v: PkValueRef<'_>) -> &'static str {
    match v {
        PkValueRef::Integer(_) => "VT_INTEGER",
        PkValueRef::String(_) => "VT_STRING",
        PkValueRef::Binary(_) => "VT_BLOB",
        PkValueRef::InfMin => "VT_INF_MIN",
        PkValueRef::InfMax => "VT_INF_MAX",
        PkValueRef::AutoIncrement => "VT_AUTO_INCREMENT",
    }
}

fn vt_of(ty: PkType) -> &'static str {
    match ty {
        PkType::Integer => "VT_INTEGER",
        PkType::String => "VT_STRING",
        PkType::Binary => "VT_BLOB",
    }
}

/// Checks a request's primary key against the schema (count, names in order, types, lengths) and
/// returns it owned. Wrong count/name/type are OTSInvalidPK with the service's wording.
pub fn check_pk(def: &TableDef, cells: &[PkCellRef<'_>], usage: PkUse) -> ApiResult<Vec<PkValue>> {
    if cells.len() != def.pk.len() {
        return Err(ApiError::invalid_pk(format!(
            "Validate PK size fail. Input: {}, Meta: {}.",
            cells.len(),
            def.pk.len()
        )));
    }
    let mut out = Vec::with_capacity(cells.len());
    for (cell, col) in cells.iter().zip(&def.pk) {
        if cell.name != col.name {
            return Err(ApiError::invalid_pk(format!(
                "Validate PK name fail. Input: {}, Meta: {}.",
                cell.name, col.name
            )));
        }
        if cell.value == PkValueRef::AutoIncrement && matches!(usage, PkUse::Exact | PkUse::Bound) {
            // The service's documented wording (its public error list).
            return Err(ApiError::param(
                "PKAutoIncr can't be used for read operations.",
            ));
        }
        let ok = match cell.value {
            PkValueRef::InfMin | PkValueRef::InfMax => usage == PkUse::Bound,
            PkValueRef::AutoIncrement => {
                col.auto_increment && matches!(usage, PkUse::Put | PkUse::Update)
            }
            v => v.pk_type() == Some(col.ty),
        };
        if !ok {
            return Err(ApiError::invalid_pk(format!(
                "Validate PK type fail. Input: {}, Meta: {}.",
                vt_name(cell.value),
                vt_of(col.ty)
            )));
        }
        // The lead's reading of the service (not verified live): an AUTO_INCREMENT column is written
        // by PutRow only through the placeholder; the server, not the client, picks its value.
        if usage == PkUse::Put && col.auto_increment && cell.value != PkValueRef::AutoIncrement {
            return Err(ApiError::param(format!(
                "The primary key column '{}' is AUTO_INCREMENT: PutRow must send the AUTO_INCREMENT placeholder, not a value.",
                col.name
            )));
        }
        let len = match cell.value {
            PkValueRef::String(s) => s.len(),
            PkValueRef::Binary(b) => b.len(),
            _ => 0,
        };
        if len > MAX_PK_VALUE_LEN {
            return Err(ApiError::param(format!(
                "The length of primary key column: '{}' exceeded the MaxLength:{MAX_PK_VALUE_LEN} with CurrentLength:{len}.",
                col.name
            )));
        }
        out.push(cell.value.to_owned());
    }
    Ok(out)
}
