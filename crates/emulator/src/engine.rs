//! The instance: its tables, the table operations, and the dispatch from action name to handler.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ots_wire::pb;
use prost::Message;

use crate::error::{ApiError, ApiResult};
use crate::schema::{self, MAX_TABLES, Options, TableDef};
use crate::store::{Key, StoredRow, Visibility};
use crate::stream::{self, StreamLog};

/// GetRange page caps (fact sheet §5.5). Tests shrink them to reach the caps with little data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimits {
    /// Rows scanned (and so returned) per GetRange page.
    pub max_rows: usize,
    /// Bytes per page: encoded rows plus the data of rows a filter rejected.
    pub max_bytes: usize,
    /// Opt-in wide-row mode (`None`, the default, is the service's documented behaviour: pages end
    /// at row boundaries and a row of any width comes back whole). `Some(n)`: a row with more than
    /// `n` selected cells is answered in parts of `n` cells; a part ends its page, with
    /// `next_start_primary_key` = that row's key and a `next_token` that continues it.
    pub wide_row_cells: Option<usize>,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            max_rows: 5000,
            max_bytes: 4 * 1024 * 1024,
            wide_row_cells: None,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A handler's answer: the encoded response body and the capacity it consumed.
pub(crate) struct Reply {
    pub body: Vec<u8>,
    pub read_cu: u64,
    pub write_cu: u64,
}

impl Reply {
    pub fn new(msg: &impl Message, read_cu: u64, write_cu: u64) -> Self {
        Reply {
            body: msg.encode_to_vec(),
            read_cu,
            write_cu,
        }
    }
}

pub(crate) struct Table {
    pub def: TableDef,
    pub state: RwLock<TableState>,
}

pub(crate) struct TableState {
    pub options: Options,
    pub read_cu: i32,
    pub write_cu: i32,
    pub last_increase_s: i64,
    pub last_decrease_s: Option<i64>,
    /// The change log while the table's stream is enabled.
    pub stream: Option<StreamLog>,
    /// Secondary indexes, as CreateTable/CreateIndex gave them (fields 1–5). Index tables are not
    /// materialized: their names cannot be written, read or listed.
    pub indexes: Vec<pb::IndexMeta>,
    pub rows: BTreeMap<Key, StoredRow>,
    names: HashSet<Arc<str>>,
    pub last_auto_increment: i64,
}

impl TableState {
    pub fn visibility(&self, now_ms: i64) -> Visibility {
        Visibility {
            table_max_versions: usize::try_from(self.options.max_versions).unwrap_or(1),
            ttl_cutoff_ms: self.options.ttl_cutoff_ms(now_ms),
        }
    }

    /// One shared allocation per distinct column name.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }
}

impl Table {
    pub fn read(&self) -> RwLockReadGuard<'_, TableState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, TableState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Engine {
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    pub limits: PageLimits,
    /// Split every open stream shard after this many logged records (`--stream-split-every`).
    pub stream_split_every: Option<u64>,
}

pub(crate) fn decode<M: Message + Default>(body: &[u8], what: &str) -> ApiResult<M> {
    M::decode(body)
        .map_err(|e| ApiError::param(format!("Failed to parse the {what} protobuf message: {e}.")))
}

pub(crate) fn capacity(read: u64, write: u64) -> pb::ConsumedCapacity {
    pb::ConsumedCapacity {
        capacity_unit: pb::CapacityUnit {
            read: Some(i32::try_from(read).unwrap_or(i32::MAX)),
            write: Some(i32::try_from(write).unwrap_or(i32::MAX)),
        },
        capacity_data_size: None,
    }
}

/// Capacity units for `bytes` (1 CU = 4 KB, rounded up).
pub(crate) fn cu(bytes: usize) -> u64 {
    bytes.div_ceil(4096) as u64
}

/// Whether the action reads, writes, or manages tables (for the CU budget).
pub(crate) fn action_kind(action: &str) -> crate::faults::CuKind {
    use crate::faults::CuKind;
    match action {
        "GetRow"
        | "BatchGetRow"
        | "GetRange"
        | "ComputeSplitPointsBySize"
        | "ListStream"
        | "DescribeStream"
        | "GetShardIterator"
        | "GetStreamRecord" => CuKind::Read,
        "PutRow" | "UpdateRow" | "DeleteRow" | "BatchWriteRow" => CuKind::Write,
        _ => CuKind::Table,
    }
}

/// Row-level fault decisions for a BatchWriteRow with `n` rows.
/// Decides the injected failure of each BatchWriteRow row about to be attempted, given their
/// primary keys.
pub(crate) type RowFaults<'a> = &'a dyn Fn(&[&[ots_wire::types::PkValue]]) -> Vec<Option<ApiError>>;

impl Engine {
    pub fn new(limits: PageLimits, stream_split_every: Option<u64>) -> Self {
        Engine {
            tables: RwLock::new(BTreeMap::new()),
            limits,
            stream_split_every,
        }
    }

    /// Every table, in name order (a snapshot: the map's lock is not held afterwards).
    pub fn all_tables(&self) -> Vec<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn new_stream_log(
        &self,
        table: &str,
        expiration_hours: i32,
        spec: &pb::StreamSpecification,
    ) -> StreamLog {
        StreamLog::new(
            table,
            now_us(),
            expiration_hours,
            spec.columns_to_get.clone(),
            self.stream_split_every,
        )
    }

    pub fn table(&self, name: &str) -> ApiResult<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(ApiError::table_not_exist)
    }

    /// The table a write names. The name of an index is refused with the service's words; any
    /// other missing table is OTSObjectNotExist.
    pub fn table_for_write(&self, name: &str) -> ApiResult<Arc<Table>> {
        self.table(name).map_err(|e| {
            let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
            if index_owner(&tables, name).is_some() {
                ApiError::param("Can't write index table directly.")
            } else {
                e
            }
        })
    }

    /// Runs one action on a request body.
    pub fn dispatch(
        &self,
        action: &str,
        body: &[u8],
        row_faults: RowFaults<'_>,
    ) -> ApiResult<Reply> {
        match action {
            "CreateTable" => self.create_table(&decode(body, "CreateTableRequest")?),
            "DescribeTable" => self.describe_table(&decode(body, "DescribeTableRequest")?),
            "ListTable" => {
                let _: pb::ListTableRequest = decode(body, "ListTableRequest")?;
                self.list_table()
            }
            "DeleteTable" => self.delete_table(&decode(body, "DeleteTableRequest")?),
            "UpdateTable" => self.update_table(&decode(body, "UpdateTableRequest")?),
            "PutRow" => self.put_row(&decode(body, "PutRowRequest")?),
            "UpdateRow" => self.update_row(&decode(body, "UpdateRowRequest")?),
            "DeleteRow" => self.delete_row(&decode(body, "DeleteRowRequest")?),
            "BatchWriteRow" => {
                self.batch_write_row(&decode(body, "BatchWriteRowRequest")?, row_faults)
            }
            "GetRow" => self.get_row(&decode(body, "GetRowRequest")?),
            "BatchGetRow" => self.batch_get_row(&decode(body, "BatchGetRowRequest")?),
            "GetRange" => self.get_range(&decode(body, "GetRangeRequest")?),
            "ComputeSplitPointsBySize" => {
                self.compute_split_points(&decode(body, "ComputeSplitPointsBySizeRequest")?)
            }
            "ListStream" => self.list_stream(&decode(body, "ListStreamRequest")?),
            "DescribeStream" => self.describe_stream(&decode(body, "DescribeStreamRequest")?),
            "GetShardIterator" => {
                self.get_shard_iterator(&decode(body, "GetShardIteratorRequest")?)
            }
            "GetStreamRecord" => self.get_stream_record(&decode(body, "GetStreamRecordRequest")?),
            "CreateIndex" => self.create_index(&decode(body, "CreateIndexRequest")?),
            "DropIndex" => self.drop_index(&decode(body, "DropIndexRequest")?),
            other => Err(ApiError::param(format!(
                "Unsupported operation: '{other}'."
            ))),
        }
    }

    fn create_table(&self, req: &pb::CreateTableRequest) -> ApiResult<Reply> {
        let now = now_ms();
        let (def, options, indexes) = schema::validate_create(req)?;
        let cu = &req.reserved_throughput.capacity_unit;
        let stream = match &req.stream_spec {
            Some(spec) => stream::validate_spec(spec)?
                .map(|hours| self.new_stream_log(&def.name, hours, spec)),
            None => None,
        };
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if tables.contains_key(&def.name) || index_owner(&tables, &def.name).is_some() {
            return Err(ApiError::table_already_exists());
        }
        for m in &indexes {
            check_index_name_free(&tables, &m.name)?;
            if m.name == def.name {
                return Err(ApiError::param(format!(
                    "The index name '{}' is the name of its table.",
                    m.name
                )));
            }
        }
        if tables.len() >= MAX_TABLES {
            return Err(ApiError::new(
                403,
                "OTSQuotaExhausted",
                "Number of tables exceeded the quota.",
            ));
        }
        let state = TableState {
            options,
            read_cu: cu.read.unwrap_or(0),
            write_cu: cu.write.unwrap_or(0),
            last_increase_s: now / 1000,
            last_decrease_s: None,
            stream,
            indexes,
            rows: BTreeMap::new(),
            names: HashSet::new(),
            last_auto_increment: 0,
        };
        tables.insert(
            def.name.clone(),
            Arc::new(Table {
                def,
                state: RwLock::new(state),
            }),
        );
        Ok(Reply::new(&pb::CreateTableResponse {}, 0, 0))
    }

    fn list_table(&self) -> ApiResult<Reply> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let resp = pb::ListTableResponse {
            table_names: tables.keys().cloned().collect(),
        };
        Ok(Reply::new(&resp, 0, 0))
    }

    fn delete_table(&self, req: &pb::DeleteTableRequest) -> ApiResult<Reply> {
        let removed = self
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.table_name);
        match removed {
            Some(_) => Ok(Reply::new(&pb::DeleteTableResponse {}, 0, 0)),
            None => Err(ApiError::table_not_exist()),
        }
    }

    fn describe_table(&self, req: &pb::DescribeTableRequest) -> ApiResult<Reply> {
        let table = self.table(&req.table_name)?;
        let st = table.read();
        let resp = pb::DescribeTableResponse {
            table_meta: table.def.meta_pb(),
            reserved_throughput_details: throughput_details(&st),
            table_options: st.options.to_pb(),
            // Always sent: golang/protobuf 1.3 treats it as required.
            table_status: Some(pb::TableStatus::Active as i32),
            stream_details: Some(stream_details(&st)),
            shard_splits: Vec::new(),
            sse_details: None,
            index_metas: st
                .indexes
                .iter()
                .map(|m| pb::IndexMeta {
                    // The emulator has no index tables to build: every index is in its
                    // incremental phase at once.
                    index_sync_phase: Some(pb::IndexSyncPhase::IspIncr as i32),
                    ..m.clone()
                })
                .collect(),
            creation_time: None,
        };
        Ok(Reply::new(&resp, 0, 0))
    }

    fn update_table(&self, req: &pb::UpdateTableRequest) -> ApiResult<Reply> {
        let table = self.table(&req.table_name)?;
        let mut st = table.write();
        // Validate everything before changing anything.
        let mut options = st.options;
        if let Some(o) = &req.table_options {
            schema::apply_options(&mut options, o)?;
        }
        if !st.indexes.is_empty() {
            // The rules a table with indexes lives by hold after the change too.
            let mut checked = Vec::new();
            for m in &st.indexes {
                schema::check_index(&table.def, &options, &checked, m)?;
                checked.push(m.clone());
            }
        }
        let stream_change = match &req.stream_spec {
            Some(spec) => Some((stream::validate_spec(spec)?, spec)),
            None => None,
        };
        if let Some(rt) = &req.reserved_throughput {
            schema::check_capacity(&rt.capacity_unit)?;
            let now_s = now_ms() / 1000;
            let (r, w) = (rt.capacity_unit.read, rt.capacity_unit.write);
            let new_r = r.unwrap_or(st.read_cu);
            let new_w = w.unwrap_or(st.write_cu);
            if new_r > st.read_cu || new_w > st.write_cu {
                st.last_increase_s = now_s;
            }
            if new_r < st.read_cu || new_w < st.write_cu {
                st.last_decrease_s = Some(now_s);
            }
            st.read_cu = new_r;
            st.write_cu = new_w;
        }
        match stream_change {
            None => {}
            // Disabling drops the log.
            Some((None, _)) => st.stream = None,
            // Enabling an enabled stream keeps its id and log and changes the expiration.
            Some((Some(hours), spec)) => match st.stream.as_mut() {
                Some(log) => {
                    log.expiration_hours = hours;
                    log.columns_to_get = spec.columns_to_get.clone();
                }
                // (Re-)enabling starts a new stream with a new id.
                None => st.stream = Some(self.new_stream_log(&table.def.name, hours, spec)),
            },
        }
        st.options = options;
        let resp = pb::UpdateTableResponse {
            reserved_throughput_details: throughput_details(&st),
            table_options: st.options.to_pb(),
            stream_details: Some(stream_details(&st)),
        };
        Ok(Reply::new(&resp, 0, 0))
    }
}

impl Engine {
    fn create_index(&self, req: &pb::CreateIndexRequest) -> ApiResult<Reply> {
        // The instance's names are checked and the index added under one lock, so two
        // CreateIndex calls cannot both take a name.
        let tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let table = tables
            .get(&req.main_table_name)
            .cloned()
            .ok_or_else(ApiError::table_not_exist)?;
        // Before the table's own lock: looking through the instance's indexes reads every table.
        check_index_name_free(&tables, &req.index_meta.name)?;
        let mut st = table.write();
        schema::check_index(&table.def, &st.options, &st.indexes, &req.index_meta)?;
        // `include_base_data` needs nothing: index tables are not materialized.
        st.indexes.push(req.index_meta.clone());
        Ok(Reply::new(&pb::CreateIndexResponse {}, 0, 0))
    }

    fn drop_index(&self, req: &pb::DropIndexRequest) -> ApiResult<Reply> {
        let table = self.table(&req.main_table_name)?;
        let mut st = table.write();
        let Some(i) = st.indexes.iter().position(|m| m.name == req.index_name) else {
            return Err(ApiError::param(format!(
                "Index '{}' does not exist on table '{}'.",
                req.index_name, req.main_table_name
            )));
        };
        st.indexes.remove(i);
        Ok(Reply::new(&pb::DropIndexResponse {}, 0, 0))
    }
}

/// The table that has an index called `name`, if any.
fn index_owner(tables: &BTreeMap<String, Arc<Table>>, name: &str) -> Option<String> {
    tables
        .values()
        .find(|t| t.read().indexes.iter().any(|m| m.name == name))
        .map(|t| t.def.name.clone())
}

/// Index tables share the instance's namespace with tables: a new index's name must be neither.
fn check_index_name_free(tables: &BTreeMap<String, Arc<Table>>, name: &str) -> ApiResult<()> {
    if tables.contains_key(name) {
        return Err(ApiError::param(format!(
            "The index name '{name}' is the name of a table."
        )));
    }
    if let Some(owner) = index_owner(tables, name) {
        return Err(ApiError::param(format!(
            "The index name '{name}' is taken by an index of table '{owner}'."
        )));
    }
    Ok(())
}

fn throughput_details(st: &TableState) -> pb::ReservedThroughputDetails {
    pb::ReservedThroughputDetails {
        capacity_unit: pb::CapacityUnit {
            read: Some(st.read_cu),
            write: Some(st.write_cu),
        },
        last_increase_time: st.last_increase_s,
        last_decrease_time: st.last_decrease_s,
    }
}

/// Always sent; `enable_stream: false` (and nothing else) without a stream.
fn stream_details(st: &TableState) -> pb::StreamDetails {
    match &st.stream {
        Some(log) => log.details(),
        None => pb::StreamDetails {
            enable_stream: false,
            stream_id: None,
            expiration_time: None,
            last_enable_time: None,
            column_to_get: Vec::new(),
        },
    }
}
