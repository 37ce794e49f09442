//! The write path: PutRow, UpdateRow, DeleteRow and BatchWriteRow (fact sheet §5.2–§5.4, §5.7, §5.8).
//!
//! A write is first decoded and validated without any lock ([`prepare`]), then applied under the
//! table's write lock ([`apply`]), which checks what depends on the stored row and the table options
//! (conditions, timestamps, increments) before it changes anything: a failed write changes nothing.

use std::collections::HashSet;

use ots_wire::pb;
use ots_wire::plainbuffer::{PlainBufferWriter, decode_single_row};
use ots_wire::types::{CellOp, PkValue, Value, ValueRef};

use crate::engine::{Engine, Reply, RowFaults, Table, TableState, capacity, cu, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Filter, parse_condition};
use crate::schema::{
    MAX_ATTR_VALUE_LEN, MAX_COLUMNS_PER_WRITE, PkUse, TableDef, check_pk, is_valid_name,
};
use crate::store::{Key, StoredCell, StoredRow, pk_value_size};
use crate::stream::Record;

/// The service rejects a PutRow (or an UpdateRow) without attribute columns with this message, and
/// inside BatchWriteRow it fails the whole request (the SDK's own tests expect that). So the
/// emulator, like the service, never holds a row without attribute cells (fact sheet §8.7 decided
/// this way): a row exists exactly while it has a visible cell.
pub(crate) const ATTRIBUTE_MISSING: &str = "Attribute column is missing.";

const MAX_BATCH_WRITE_ROWS: usize = 200;
const MAX_BATCH_WRITE_BYTES: usize = 4 * 1024 * 1024;
const MAX_ROW_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Put,
    Update,
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
enum Change {
    Put { value: Value, ts: Option<i64> },
    DeleteOne { ts: i64 },
    DeleteAll,
    Increment(i64),
}

/// A decoded, validated write, ready to be applied.
#[derive(Debug)]
pub(crate) struct WriteOp {
    kind: WriteKind,
    pk: Vec<PkValue>,
    changes: Vec<(String, Change)>,
    existence: pb::RowExistenceExpectation,
    column_condition: Option<Filter>,
    return_type: pb::ReturnType,
    return_columns: Vec<String>,
    pk_size: usize,
    attr_size: usize,
}

impl WriteOp {
    fn has_condition(&self) -> bool {
        self.existence != pb::RowExistenceExpectation::Ignore || self.column_condition.is_some()
    }

    fn uses_auto_increment(&self) -> bool {
        self.pk.contains(&PkValue::AutoIncrement)
    }
}

/// A BatchWriteRow table entry after validation: the table (if it exists) and each row's op.
type PreparedTable = (Option<std::sync::Arc<Table>>, Vec<ApiResult<WriteOp>>);

/// What a successful write answers.
pub(crate) struct WriteOutcome {
    pub row: Option<Vec<u8>>,
    pub read_cu: u64,
    pub write_cu: u64,
}

fn check_value(name: &str, v: ValueRef<'_>) -> ApiResult<()> {
    match v {
        ValueRef::Double(d) if !d.is_finite() => Err(ApiError::param(format!(
            "The value of attribute column '{name}' is {d}: NaN and Infinity are not allowed."
        ))),
        ValueRef::String(_) | ValueRef::Binary(_) if v.data_size() > MAX_ATTR_VALUE_LEN => {
            Err(ApiError::param(format!(
                "The length of attribute column: '{name}' exceeded the MaxLength:{MAX_ATTR_VALUE_LEN} with CurrentLength:{}.",
                v.data_size()
            )))
        }
        _ => Ok(()),
    }
}

/// Decodes and validates one write against the table definition. No lock is held.
pub(crate) fn prepare(
    def: &TableDef,
    kind: WriteKind,
    row_bytes: &[u8],
    condition: &pb::Condition,
    return_content: Option<&pb::ReturnContent>,
) -> ApiResult<WriteOp> {
    if row_bytes.len() > MAX_ROW_BYTES {
        return Err(ApiError::new(
            400,
            "OTSOutOfRowSizeLimit",
            "The total data size of columns in one row exceeded the limit.",
        ));
    }
    let field = match kind {
        WriteKind::Delete => "primary_key",
        WriteKind::Put => "row",
        WriteKind::Update => "row_change",
    };
    let row = decode_single_row(row_bytes)
        .map_err(|e| ApiError::plainbuffer(field, &e))?
        .unwrap_or_default();
    match kind {
        WriteKind::Delete if !row.delete_marker => {
            return Err(ApiError::param(
                "The primary key of DeleteRow must end with the delete row marker.",
            ));
        }
        WriteKind::Put | WriteKind::Update if row.delete_marker => {
            return Err(ApiError::param(
                "The delete row marker is only allowed in DeleteRow.",
            ));
        }
        _ => {}
    }
    let usage = match kind {
        WriteKind::Put => PkUse::Put,
        WriteKind::Update => PkUse::Update,
        WriteKind::Delete => PkUse::Exact,
    };
    // Missing attributes is a request-shape error; report it before PK problems, as the service does.
    if kind != WriteKind::Delete && row.cells.is_empty() {
        return Err(ApiError::param(ATTRIBUTE_MISSING));
    }
    let pk = check_pk(def, &row.primary_key, usage)?;
    let pk_size = row.primary_key.iter().map(|c| c.name.len()).sum::<usize>()
        + pk.iter().map(pk_value_size).sum::<usize>();
    if kind == WriteKind::Delete && !row.cells.is_empty() {
        return Err(ApiError::param(
            "DeleteRow must not carry attribute columns.",
        ));
    }
    if row.cells.len() > MAX_COLUMNS_PER_WRITE {
        return Err(ApiError::new(
            400,
            "OTSOutOfColumnCountLimit",
            "The number of columns in one row exceeded the limit.",
        ));
    }
    let mut changes = Vec::with_capacity(row.cells.len());
    let mut attr_size = 0usize;
    for c in &row.cells {
        if !is_valid_name(c.name) {
            return Err(ApiError::param(format!(
                "Invalid column name: '{}'.",
                c.name
            )));
        }
        if def.is_pk_name(c.name) {
            return Err(ApiError::param(format!(
                "The attribute column '{}' has the name of a primary key column.",
                c.name
            )));
        }
        if let Some(v) = c.value {
            check_value(c.name, v)?;
        }
        attr_size += c.name.len() + c.value.map_or(0, ValueRef::data_size);
        let change = match (kind, c.op) {
            (WriteKind::Put, Some(op)) => {
                return Err(ApiError::param(format!(
                    "The cell type {op:?} of column '{}' is only allowed in UpdateRow.",
                    c.name
                )));
            }
            (_, None) => match c.value {
                Some(v) => Change::Put {
                    value: v.to_owned(),
                    ts: c.timestamp,
                },
                None => {
                    return Err(ApiError::param(format!(
                        "The value of attribute column '{}' is missing.",
                        c.name
                    )));
                }
            },
            (_, Some(CellOp::DeleteOneVersion)) => {
                if c.value.is_some() {
                    return Err(ApiError::param(format!(
                        "DELETE_ONE_VERSION must not carry a value: column '{}'.",
                        c.name
                    )));
                }
                match c.timestamp {
                    Some(ts) => Change::DeleteOne { ts },
                    None => {
                        return Err(ApiError::param(
                            "Timestamp must be given when type is DELETE_ONE_VERSION.",
                        ));
                    }
                }
            }
            (_, Some(CellOp::DeleteAllVersions)) => {
                if c.value.is_some() || c.timestamp.is_some() {
                    return Err(ApiError::param(format!(
                        "DELETE_ALL_VERSIONS must carry neither a value nor a timestamp: column '{}'.",
                        c.name
                    )));
                }
                Change::DeleteAll
            }
            (_, Some(CellOp::Increment)) => {
                if c.timestamp.is_some() {
                    return Err(ApiError::param(format!(
                        "INCREMENT must not carry a timestamp: column '{}'.",
                        c.name
                    )));
                }
                match c.value {
                    Some(ValueRef::Integer(d)) => Change::Increment(d),
                    _ => {
                        return Err(ApiError::param(format!(
                            "INCREMENT needs an INTEGER value: column '{}'.",
                            c.name
                        )));
                    }
                }
            }
        };
        changes.push((c.name.to_string(), change));
    }
    // An increment reads the stored value; another change to the same column in the same request
    // would make the result depend on the order of operations.
    for (i, (name, ch)) in changes.iter().enumerate() {
        if matches!(ch, Change::Increment(_))
            && changes
                .iter()
                .enumerate()
                .any(|(j, (n, _))| j != i && n == name)
        {
            return Err(ApiError::param(format!(
                "The column '{name}' is incremented and changed again in the same request."
            )));
        }
    }
    let existence =
        pb::RowExistenceExpectation::try_from(condition.row_existence).map_err(|_| {
            ApiError::param(format!(
                "Unknown row existence expectation: {}.",
                condition.row_existence
            ))
        })?;
    let column_condition = parse_condition(condition.column_condition.as_deref())?;
    let (return_type, return_columns) = match return_content {
        None => (pb::ReturnType::RtNone, Vec::new()),
        Some(rc) => (
            pb::ReturnType::try_from(rc.return_type.unwrap_or(0)).map_err(|_| {
                ApiError::param(format!(
                    "Unknown return type: {}.",
                    rc.return_type.unwrap_or(0)
                ))
            })?,
            rc.return_column_names.clone(),
        ),
    };
    let op = WriteOp {
        kind,
        pk,
        changes,
        existence,
        column_condition,
        return_type,
        return_columns,
        pk_size,
        attr_size,
    };
    if op.uses_auto_increment() && op.has_condition() {
        return Err(ApiError::param(
            "The row existence expectation must be IGNORE, without a column condition, when an AUTO_INCREMENT primary key column is written with the placeholder.",
        ));
    }
    Ok(op)
}

/// Explicit timestamps must fall in [max(now − deviation, now − TTL), now + deviation) (fact sheet §5.2).
fn check_timestamp(name: &str, ts: i64, st: &TableState, now: i64) -> ApiResult<()> {
    let dev_ms = st.options.deviation.saturating_mul(1000);
    let lower = now
        .saturating_sub(dev_ms)
        .max(st.options.ttl_cutoff_ms(now))
        .max(0);
    let upper = now.saturating_add(dev_ms).min(i64::MAX / 1000);
    if ts < lower || ts >= upper {
        return Err(ApiError::param(format!(
            "Invalid timestamp of attribute column '{name}': {ts}. It must be within [{lower}, {upper}) ms: the table allows a version deviation of {} s and a time to live of {} s.",
            st.options.deviation, st.options.ttl
        )));
    }
    Ok(())
}

fn encode_pk(w: &mut PlainBufferWriter, def: &TableDef, key: &Key) {
    for (col, v) in def.pk.iter().zip(key.0.iter()) {
        w.pk(&col.name, v.as_ref());
    }
}

/// A PK-only PlainBuffer (RT_PK, next keys, split points).
pub(crate) fn pk_buffer(def: &TableDef, key: &Key) -> Vec<u8> {
    let mut w = PlainBufferWriter::new();
    encode_pk(&mut w, def, key);
    w.end_row();
    w.into_bytes()
}

/// Applies a prepared write under the table's write lock.
pub(crate) fn apply(
    def: &TableDef,
    st: &mut TableState,
    mut op: WriteOp,
    now: i64,
) -> ApiResult<WriteOutcome> {
    let vis = st.visibility(now);
    let max_versions = vis.table_max_versions;
    let has_condition = op.has_condition();
    let mut pk = std::mem::take(&mut op.pk);
    if let Some(i) = def.auto_increment_index()
        && pk[i] == PkValue::AutoIncrement
    {
        // Unique and strictly increasing across the table, hence within every partition key.
        let next = (now.saturating_mul(1000)).max(st.last_auto_increment.saturating_add(1));
        st.last_auto_increment = next;
        pk[i] = PkValue::Integer(next);
    }
    let key = Key(pk.into_boxed_slice());
    let existing = st.rows.get(&key);
    let read_cu = if has_condition {
        cu(op.pk_size).max(1)
    } else {
        0
    };

    // Checks that depend on the stored row and the options; nothing is changed until they pass.
    let exists = existing.is_some_and(|r| r.exists(vis));
    let existence_ok = match op.existence {
        pb::RowExistenceExpectation::Ignore => true,
        pb::RowExistenceExpectation::ExpectExist => exists,
        pb::RowExistenceExpectation::ExpectNotExist => !exists,
    };
    if !existence_ok {
        return Err(ApiError::condition_failed());
    }
    if let Some(f) = &op.column_condition {
        let mut cells = Vec::new();
        if let Some(r) = existing {
            r.visible(vis, &mut cells);
        }
        if !f.matches(&cells) {
            return Err(ApiError::condition_failed());
        }
    }
    let mut increments = Vec::new();
    for (name, ch) in &op.changes {
        match ch {
            Change::Put { ts: Some(ts), .. } => check_timestamp(name, *ts, st, now)?,
            Change::Increment(delta) => {
                let base = match existing.and_then(|r| r.latest(name, vis)) {
                    None => 0,
                    Some(StoredCell {
                        value: Value::Integer(v),
                        ..
                    }) => *v,
                    Some(c) => {
                        return Err(ApiError::param(format!(
                            "INCREMENT can only be applied to an INTEGER column: '{name}' holds a {}.",
                            c.value.value_type()
                        )));
                    }
                };
                let sum = base.checked_add(*delta).ok_or_else(|| {
                    ApiError::param(format!("INCREMENT of column '{name}' overflows INTEGER."))
                })?;
                increments.push(sum);
            }
            _ => {}
        }
    }

    let write_cu = match op.kind {
        WriteKind::Delete => cu(op.pk_size),
        _ => cu(op.pk_size + op.attr_size),
    }
    .max(1);
    let mut touched: Vec<&str> = Vec::new();
    match op.kind {
        WriteKind::Delete => {
            st.rows.remove(&key);
        }
        WriteKind::Put => {
            let mut row = StoredRow::new(crate::read::pk_size(def, &key), op.changes.len());
            for (name, ch) in &op.changes {
                if let Change::Put { value, ts } = ch {
                    let name = st.intern(name);
                    row.put(name, ts.unwrap_or(now), value.clone(), max_versions);
                }
            }
            st.rows.insert(key.clone(), row);
        }
        WriteKind::Update => {
            let mut incs = increments.iter().copied();
            let names: Vec<_> = op.changes.iter().map(|(n, _)| st.intern(n)).collect();
            let row = st
                .rows
                .entry(key.clone())
                .or_insert_with(|| StoredRow::new(crate::read::pk_size(def, &key), names.len()));
            for ((_, ch), name) in op.changes.iter().zip(names) {
                match ch {
                    Change::Put { value, ts } => {
                        row.put(name, ts.unwrap_or(now), value.clone(), max_versions)
                    }
                    Change::DeleteOne { ts } => row.delete_one_version(&name, *ts),
                    Change::DeleteAll => row.delete_all_versions(&name),
                    Change::Increment(_) => {
                        let v = incs.next().unwrap_or_default();
                        row.put(name, now, Value::Integer(v), max_versions);
                    }
                }
            }
            // A row left without cells no longer exists.
            if row.is_empty() {
                st.rows.remove(&key);
            }
        }
    }
    for (name, _) in &op.changes {
        touched.push(name);
    }
    if st.stream.is_some() {
        log_write(def, st, &op, &key, &increments, now);
    }

    let row = match op.return_type {
        pb::ReturnType::RtNone => None,
        pb::ReturnType::RtPk => Some(pk_buffer(def, &key)),
        pb::ReturnType::RtAfterModify => {
            let mut w = PlainBufferWriter::new();
            encode_pk(&mut w, def, &key);
            let names: Vec<&str> = if op.return_columns.is_empty() {
                touched
            } else {
                op.return_columns.iter().map(String::as_str).collect()
            };
            if let Some(r) = st.rows.get(&key) {
                let mut seen = HashSet::new();
                for n in names {
                    if seen.insert(n)
                        && let Some(c) = r.latest(n, vis)
                    {
                        w.cell(&c.name, Some(c.value.as_ref()), None, Some(c.ts));
                    }
                }
            }
            w.end_row();
            Some(w.into_bytes())
        }
    };
    Ok(WriteOutcome {
        row,
        read_cu,
        write_cu,
    })
}

/// Appends the stream record of a write that succeeded: PUT_ROW with every written cell, UPDATE_ROW
/// with the cell operations in request order (an increment as a put of its result), DELETE_ROW with
/// the key and the delete marker. Timestamps the server assigned are filled in.
fn log_write(
    def: &TableDef,
    st: &mut TableState,
    op: &WriteOp,
    key: &Key,
    increments: &[i64],
    now: i64,
) {
    let Some(log) = st.stream.as_mut() else {
        return;
    };
    let sequence = log.next_sequence(now);
    let mut w = PlainBufferWriter::new();
    encode_pk(&mut w, def, key);
    let action = match op.kind {
        WriteKind::Put => pb::ActionType::PutRow,
        WriteKind::Update => pb::ActionType::UpdateRow,
        WriteKind::Delete => pb::ActionType::DeleteRow,
    };
    let mut incs = increments.iter().copied();
    for (name, ch) in &op.changes {
        match ch {
            Change::Put { value, ts } => {
                w.cell(name, Some(value.as_ref()), None, Some(ts.unwrap_or(now)));
            }
            Change::DeleteOne { ts } => {
                w.cell(name, None, Some(CellOp::DeleteOneVersion), Some(*ts));
            }
            Change::DeleteAll => {
                w.cell(name, None, Some(CellOp::DeleteAllVersions), None);
            }
            Change::Increment(_) => {
                let v = incs.next().unwrap_or_default();
                w.cell(name, Some(ValueRef::Integer(v)), None, Some(now));
            }
        }
    }
    if op.kind == WriteKind::Delete {
        w.delete_marker();
    }
    w.end_record(sequence);
    log.append(
        &key.0,
        Record {
            action,
            bytes: w.into_bytes(),
            timestamp_us: sequence.timestamp_us,
        },
    );
}

fn single_write(
    table: &Table,
    kind: WriteKind,
    row: &[u8],
    condition: &pb::Condition,
    rc: Option<&pb::ReturnContent>,
) -> ApiResult<WriteOutcome> {
    let op = prepare(&table.def, kind, row, condition, rc)?;
    let mut st = table.write();
    if let Some(log) = st.stream.as_mut() {
        log.begin_write();
    }
    apply(&table.def, &mut st, op, now_ms())
}

fn no_transactions(transaction_id: Option<&String>) -> ApiResult<()> {
    match transaction_id {
        // Local transactions are not emulated, so no transaction id is ever valid.
        Some(_) => Err(ApiError::param("TransactionID is invalid.")),
        None => Ok(()),
    }
}

impl Engine {
    pub(crate) fn put_row(&self, req: &pb::PutRowRequest) -> ApiResult<Reply> {
        no_transactions(req.transaction_id.as_ref())?;
        let table = self.table_for_write(&req.table_name)?;
        let out = single_write(
            &table,
            WriteKind::Put,
            &req.row,
            &req.condition,
            req.return_content.as_ref(),
        )?;
        let resp = pb::PutRowResponse {
            consumed: capacity(out.read_cu, out.write_cu),
            row: out.row.map(Into::into),
        };
        Ok(Reply::new(&resp, out.read_cu, out.write_cu))
    }

    pub(crate) fn update_row(&self, req: &pb::UpdateRowRequest) -> ApiResult<Reply> {
        no_transactions(req.transaction_id.as_ref())?;
        let table = self.table_for_write(&req.table_name)?;
        let out = single_write(
            &table,
            WriteKind::Update,
            &req.row_change,
            &req.condition,
            req.return_content.as_ref(),
        )?;
        let resp = pb::UpdateRowResponse {
            consumed: capacity(out.read_cu, out.write_cu),
            row: out.row.map(Into::into),
        };
        Ok(Reply::new(&resp, out.read_cu, out.write_cu))
    }

    pub(crate) fn delete_row(&self, req: &pb::DeleteRowRequest) -> ApiResult<Reply> {
        no_transactions(req.transaction_id.as_ref())?;
        let table = self.table_for_write(&req.table_name)?;
        let out = single_write(
            &table,
            WriteKind::Delete,
            &req.primary_key,
            &req.condition,
            req.return_content.as_ref(),
        )?;
        let resp = pb::DeleteRowResponse {
            consumed: capacity(out.read_cu, out.write_cu),
            row: out.row.map(Into::into),
        };
        Ok(Reply::new(&resp, out.read_cu, out.write_cu))
    }

    pub(crate) fn batch_write_row(
        &self,
        req: &pb::BatchWriteRowRequest,
        row_faults: RowFaults<'_>,
    ) -> ApiResult<Reply> {
        no_transactions(req.transaction_id.as_ref())?;
        if req.is_atomic == Some(true) {
            return Err(ApiError::param(
                "Atomic BatchWriteRow is not supported by the emulator.",
            ));
        }
        if req.tables.is_empty() {
            return Err(ApiError::param("No row is specified in BatchWriteRow."));
        }
        let mut total_rows = 0usize;
        let mut total_bytes = 0usize;
        let mut names = HashSet::new();
        for t in &req.tables {
            if t.rows.is_empty() {
                return Err(ApiError::param(format!(
                    "No operation is specified for table: '{}'.",
                    t.table_name
                )));
            }
            if !names.insert(t.table_name.as_str()) {
                return Err(ApiError::param(format!(
                    "Duplicated table name in BatchWriteRow: '{}'.",
                    t.table_name
                )));
            }
            total_rows += t.rows.len();
            total_bytes += t.rows.iter().map(|r| r.row_change.len()).sum::<usize>();
        }
        if total_rows > MAX_BATCH_WRITE_ROWS {
            return Err(ApiError::param(format!(
                "Rows count exceeds the upper limit: {MAX_BATCH_WRITE_ROWS}."
            )));
        }
        if total_bytes > MAX_BATCH_WRITE_BYTES {
            return Err(ApiError::param(format!(
                "The total data size of BatchWriteRow request exceeds the limit, limit size: {MAX_BATCH_WRITE_BYTES}, data size: {total_bytes}."
            )));
        }

        // Decode and validate every row first: request-level problems must fail the whole request
        // before any row is written.
        let mut prepared: Vec<PreparedTable> = Vec::with_capacity(req.tables.len());
        for t in &req.tables {
            let table = self.table_for_write(&t.table_name);
            let mut ops = Vec::with_capacity(t.rows.len());
            for r in &t.rows {
                let table = match &table {
                    Ok(table) => table,
                    Err(e) => {
                        ops.push(Err(e.clone()));
                        continue;
                    }
                };
                let kind = match pb::OperationType::try_from(r.r#type) {
                    Ok(pb::OperationType::Put) => WriteKind::Put,
                    Ok(pb::OperationType::Update) => WriteKind::Update,
                    Ok(pb::OperationType::Delete) => WriteKind::Delete,
                    Err(_) => {
                        return Err(ApiError::param(format!(
                            "Unknown operation type: {}.",
                            r.r#type
                        )));
                    }
                };
                let op = prepare(
                    &table.def,
                    kind,
                    &r.row_change,
                    &r.condition,
                    r.return_content.as_ref(),
                );
                if let Err(e) = &op
                    && e.message == ATTRIBUTE_MISSING
                {
                    return Err(e.clone());
                }
                ops.push(op);
            }
            // The same row twice is allowed only without conditions (fact sheet §5.7).
            let conditioned: HashSet<&[PkValue]> = ops
                .iter()
                .flatten()
                .filter(|op| op.has_condition())
                .map(|op| &op.pk[..])
                .collect();
            let mut seen: HashSet<&[PkValue]> = HashSet::new();
            for op in ops.iter().flatten() {
                if !op.uses_auto_increment()
                    && !seen.insert(&op.pk[..])
                    && conditioned.contains(&op.pk[..])
                {
                    return Err(ApiError::param(format!(
                        "The same row is written more than once with a condition in table: '{}'.",
                        t.table_name
                    )));
                }
            }
            prepared.push((table.ok(), ops));
        }

        // Injected failures are drawn only for rows that would otherwise be attempted.
        let valid: Vec<&[PkValue]> = prepared
            .iter()
            .flat_map(|(_, ops)| ops.iter().filter_map(|o| o.as_ref().ok()))
            .map(|op| op.pk.as_slice())
            .collect();
        let mut faults = row_faults(&valid).into_iter();
        let now = now_ms();
        let mut read_total = 0u64;
        let mut write_total = 0u64;
        let mut tables_out = Vec::with_capacity(req.tables.len());
        for (t, (table, ops)) in req.tables.iter().zip(prepared) {
            let mut rows_out = Vec::with_capacity(ops.len());
            let mut guard = table.as_ref().map(|t| t.write());
            // One write per table of the request: its rows share a timestamp, row_index 0, 1, ….
            if let Some(log) = guard.as_mut().and_then(|st| st.stream.as_mut()) {
                log.begin_write();
            }
            for op in ops {
                let fault = if op.is_ok() {
                    faults.next().flatten()
                } else {
                    None
                };
                let result = match (op, fault, table.as_ref(), guard.as_mut()) {
                    (Err(e), _, _, _) => Err(e),
                    // An injected row failure: the row is not written.
                    (Ok(_), Some(e), _, _) => Err(e),
                    (Ok(op), None, Some(table), Some(st)) => apply(&table.def, st, op, now),
                    (Ok(_), None, _, _) => Err(ApiError::table_not_exist()),
                };
                rows_out.push(match result {
                    Ok(out) => {
                        read_total += out.read_cu;
                        write_total += out.write_cu;
                        pb::RowInBatchWriteRowResponse {
                            is_ok: true,
                            error: None,
                            consumed: Some(capacity(out.read_cu, out.write_cu)),
                            row: out.row.map(Into::into),
                        }
                    }
                    Err(e) => {
                        // A failed condition still costs 1 read + 1 write (fact sheet §5.8).
                        if e.code == "OTSConditionCheckFail" {
                            read_total += 1;
                            write_total += 1;
                        }
                        pb::RowInBatchWriteRowResponse {
                            is_ok: false,
                            error: Some(e.to_pb()),
                            consumed: None,
                            row: None,
                        }
                    }
                });
            }
            drop(guard);
            tables_out.push(pb::TableInBatchWriteRowResponse {
                table_name: t.table_name.clone(),
                rows: rows_out,
            });
        }
        let resp = pb::BatchWriteRowResponse { tables: tables_out };
        Ok(Reply::new(&resp, read_total, write_total))
    }
}
