//! The read path: GetRow, BatchGetRow, GetRange and ComputeSplitPointsBySize (fact sheet §5.2, §5.5,
//! §5.6, §5.8). Rows are encoded straight from storage into the response PlainBuffer.

use std::ops::Bound;

use ots_wire::pb;
use ots_wire::plainbuffer::decode_single_row;

use crate::encode::RowsWriter;
use crate::engine::{Engine, Reply, TableState, capacity, cu, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::filter::{ReadFilter, paginate_columns};
use crate::rows::pk_buffer;
use crate::schema::{MAX_COLUMNS_TO_GET, PkUse, TableDef, check_pk};
use crate::store::{Key, ReadView, StoredCell, StoredRow, pk_value_size};

const MAX_BATCH_GET_ROWS: usize = 100;
/// `split_size_unit_in_byte` when the request leaves it out: 100 MiB (fact sheet §5.6).
const DEFAULT_SPLIT_UNIT: i64 = 100 * 1024 * 1024;
/// Reported in ComputeSplitPointsBySize `locations`.
const LOCATION: &str = "ots-emulator";

/// The version, column and filter parameters shared by the three reads.
pub(crate) struct ReadSpec {
    /// Sorted, deduplicated attribute columns; `None` = all.
    columns: Option<Vec<String>>,
    /// `columns_to_get` named only PK columns: return each existing row's PK.
    pk_only: bool,
    start_ts: i64,
    end_ts: i64,
    max_versions: usize,
    filter: ReadFilter,
    start_column: Option<String>,
    end_column: Option<String>,
}

pub(crate) struct ReadParams<'a> {
    pub columns_to_get: &'a [String],
    pub time_range: Option<&'a pb::TimeRange>,
    pub max_versions: Option<i32>,
    pub filter: Option<&'a [u8]>,
    pub start_column: Option<&'a String>,
    pub end_column: Option<&'a String>,
    pub token: Option<&'a [u8]>,
}

impl ReadSpec {
    pub fn parse(def: &TableDef, p: ReadParams<'_>) -> ApiResult<Self> {
        if p.columns_to_get.len() > MAX_COLUMNS_TO_GET {
            return Err(ApiError::param(format!(
                "The number of columns to get exceeds the limit: {MAX_COLUMNS_TO_GET}."
            )));
        }
        if p.max_versions.is_none() && p.time_range.is_none() {
            return Err(ApiError::param(
                "No version condition is specified while querying row.",
            ));
        }
        let max_versions = match p.max_versions {
            None => usize::MAX,
            Some(v) if v > 0 => v as usize,
            Some(v) => {
                return Err(ApiError::param(format!(
                    "Invalid max versions: {v}. It must be greater than 0."
                )));
            }
        };
        let (start_ts, end_ts) = match p.time_range {
            None => (0, i64::MAX),
            Some(tr) => match tr.specific_time {
                Some(t) if t >= 0 => (t, t.saturating_add(1)),
                Some(t) => {
                    return Err(ApiError::param(format!("Invalid specific time: {t}.")));
                }
                None => {
                    let s = tr.start_time.unwrap_or(0);
                    let e = tr.end_time.unwrap_or(i64::MAX);
                    if s < 0 || s >= e {
                        return Err(ApiError::param(format!(
                            "Invalid time range: [{s}, {e}). The start must be non-negative and less than the end."
                        )));
                    }
                    (s, e)
                }
            },
        };
        if p.token.is_some_and(|t| !t.is_empty()) {
            // GetRow and BatchGetRow never answer with a next_token, so no valid token exists for
            // them; GetRange checks its own tokens (see `parse_wide_token`).
            return Err(invalid_token());
        }
        let mut attrs: Vec<String> = p
            .columns_to_get
            .iter()
            .filter(|c| !def.is_pk_name(c))
            .cloned()
            .collect();
        attrs.sort_unstable();
        attrs.dedup();
        let pk_only = !p.columns_to_get.is_empty() && attrs.is_empty();
        Ok(ReadSpec {
            columns: (!p.columns_to_get.is_empty()).then_some(attrs),
            pk_only,
            start_ts,
            end_ts,
            max_versions,
            filter: ReadFilter::parse(p.filter)?,
            start_column: p.start_column.cloned(),
            end_column: p.end_column.cloned(),
        })
    }

    fn view<'a>(&'a self, st: &TableState, now: i64) -> ReadView<'a> {
        ReadView {
            vis: st.visibility(now),
            start_ts: self.start_ts,
            end_ts: self.end_ts,
            max_versions: self.max_versions,
            columns: self.columns.as_deref(),
            start_column: self.start_column.as_deref(),
            end_column: self.end_column.as_deref(),
        }
    }

    /// Selects what a read returns of `row` into `out`; false when the row is not returned (it has
    /// none of the requested cells, or the filter rejects it). The filter sees the projected cells.
    fn select<'r>(
        &self,
        row: &'r StoredRow,
        view: &ReadView<'_>,
        out: &mut Vec<&'r StoredCell>,
    ) -> bool {
        out.clear();
        if self.pk_only {
            if !row.exists(view.vis) {
                return false;
            }
        } else {
            row.select(view, out);
            if out.is_empty() {
                return false;
            }
        }
        if let Some(p) = &self.filter.predicate
            && !p.matches(out)
        {
            return false;
        }
        if let Some((offset, limit)) = self.filter.pagination {
            paginate_columns(out, offset, limit);
        }
        true
    }
}

fn invalid_token() -> ApiError {
    ApiError::param("The token is invalid.")
}

/// Marks a wide-row continuation token (wide-row mode only). Layout: this magic, the offset of the
/// next cell among the row's selected cells (u64 little-endian), then the row's primary key as a
/// PlainBuffer. Opaque to clients; checked against the request when it comes back.
const WIDE_TOKEN_MAGIC: &[u8; 8] = b"emuwide1";

fn wide_token(def: &TableDef, key: &Key, offset: usize) -> Vec<u8> {
    let pk = pk_buffer(def, key);
    let mut t = Vec::with_capacity(16 + pk.len());
    t.extend_from_slice(WIDE_TOKEN_MAGIC);
    t.extend_from_slice(&(offset as u64).to_le_bytes());
    t.extend_from_slice(&pk);
    t
}

/// The cell offset a GetRange `token` resumes `start` at. Only a token this emulator issued (in
/// wide-row mode) for exactly this start key is valid; anything else is "The token is invalid.".
fn parse_wide_token(
    def: &TableDef,
    token: &[u8],
    start: &Key,
    wide_mode: bool,
) -> ApiResult<usize> {
    if !wide_mode || token.len() < 16 || token[..8] != WIDE_TOKEN_MAGIC[..] {
        return Err(invalid_token());
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&token[8..16]);
    let offset = usize::try_from(u64::from_le_bytes(offset)).map_err(|_| invalid_token())?;
    let key = decode_key(def, &token[16..], "token", PkUse::Exact).map_err(|_| invalid_token())?;
    if offset == 0 || key != *start {
        return Err(invalid_token());
    }
    Ok(offset)
}

pub(crate) fn pk_size(def: &TableDef, key: &Key) -> usize {
    def.pk
        .iter()
        .zip(key.0.iter())
        .map(|(c, v)| c.name.len() + pk_value_size(v))
        .sum()
}

fn cells_size(cells: &[&StoredCell]) -> usize {
    cells.iter().map(|c| c.data_size()).sum()
}

/// Appends one read-shaped row: PK cells, then every selected cell with its timestamp. Never a cell
/// type (fact sheet §4.8: the SDK's decoders break on it).
fn encode_row(w: &mut RowsWriter, def: &TableDef, key: &Key, cells: &[&StoredCell]) {
    w.pk(def
        .pk
        .iter()
        .zip(key.0.iter())
        .map(|(col, v)| (col.name.as_str(), v.as_ref())));
    for c in cells {
        w.cell(c);
    }
    w.end_row();
}

fn decode_key(def: &TableDef, bytes: &[u8], field: &str, usage: PkUse) -> ApiResult<Key> {
    let row = decode_single_row(bytes)
        .map_err(|e| ApiError::plainbuffer(field, &e))?
        .unwrap_or_default();
    if !row.cells.is_empty() {
        return Err(ApiError::param(format!(
            "The {field} must hold only primary key columns."
        )));
    }
    Ok(Key(
        check_pk(def, &row.primary_key, usage)?.into_boxed_slice()
    ))
}

/// One GetRow-shaped lookup: (row bytes, read CU). A missing row is empty bytes and costs 1.
fn lookup(def: &TableDef, st: &TableState, spec: &ReadSpec, key: &Key, now: i64) -> (Vec<u8>, u64) {
    let view = spec.view(st, now);
    let mut cells = Vec::new();
    match st.rows.get(key) {
        Some(row) if spec.select(row, &view, &mut cells) => {
            let mut w = RowsWriter::with_capacity(64 + cells_size(&cells) * 2);
            encode_row(&mut w, def, key, &cells);
            let read = cu(pk_size(def, key) + cells_size(&cells)).max(1);
            (w.into_bytes(), read)
        }
        _ => (Vec::new(), 1),
    }
}

impl Engine {
    pub(crate) fn get_row(&self, req: &pb::GetRowRequest) -> ApiResult<Reply> {
        if req.transaction_id.is_some() {
            return Err(ApiError::param("TransactionID is invalid."));
        }
        let table = self.table(&req.table_name)?;
        let def = &table.def;
        let spec = ReadSpec::parse(
            def,
            ReadParams {
                columns_to_get: &req.columns_to_get,
                time_range: req.time_range.as_ref(),
                max_versions: req.max_versions,
                filter: req.filter.as_deref(),
                start_column: req.start_column.as_ref(),
                end_column: req.end_column.as_ref(),
                token: req.token.as_deref(),
            },
        )?;
        let key = decode_key(def, &req.primary_key, "primary_key", PkUse::Exact)?;
        let (row, read) = lookup(def, &table.read(), &spec, &key, now_ms());
        let resp = pb::GetRowResponse {
            consumed: capacity(read, 0),
            row: row.into(),
            next_token: None,
        };
        Ok(Reply::new(&resp, read, 0))
    }

    pub(crate) fn batch_get_row(&self, req: &pb::BatchGetRowRequest) -> ApiResult<Reply> {
        if req.tables.is_empty() {
            return Err(ApiError::param(
                "No row specified in the request of BatchGetRow.",
            ));
        }
        let total: usize = req.tables.iter().map(|t| t.primary_key.len()).sum();
        if total > MAX_BATCH_GET_ROWS {
            return Err(ApiError::param(format!(
                "Rows count exceeds the upper limit: {MAX_BATCH_GET_ROWS}."
            )));
        }
        // Parameters of every table entry are checked before any row is read.
        let mut plans = Vec::with_capacity(req.tables.len());
        for t in &req.tables {
            match self.table(&t.table_name) {
                Ok(table) => {
                    let spec = ReadSpec::parse(
                        &table.def,
                        ReadParams {
                            columns_to_get: &t.columns_to_get,
                            time_range: t.time_range.as_ref(),
                            max_versions: t.max_versions,
                            filter: t.filter.as_deref(),
                            start_column: t.start_column.as_ref(),
                            end_column: t.end_column.as_ref(),
                            token: t.token.iter().find(|b| !b.is_empty()).map(|b| &b[..]),
                        },
                    )?;
                    plans.push(Some((table, spec)));
                }
                Err(_) => plans.push(None),
            }
        }
        let now = now_ms();
        let mut read_total = 0u64;
        let mut tables = Vec::with_capacity(req.tables.len());
        for (t, plan) in req.tables.iter().zip(plans) {
            let mut rows = Vec::with_capacity(t.primary_key.len());
            match plan {
                None => {
                    for _ in &t.primary_key {
                        rows.push(failed_get(ApiError::table_not_exist()));
                    }
                }
                Some((table, spec)) => {
                    let st = table.read();
                    for pk in &t.primary_key {
                        match decode_key(&table.def, pk, "primary_key", PkUse::Exact) {
                            Ok(key) => {
                                let (row, read) = lookup(&table.def, &st, &spec, &key, now);
                                read_total += read;
                                rows.push(pb::RowInBatchGetRowResponse {
                                    is_ok: true,
                                    error: None,
                                    consumed: Some(capacity(read, 0)),
                                    row: Some(row.into()),
                                    next_token: None,
                                });
                            }
                            Err(e) => rows.push(failed_get(e)),
                        }
                    }
                }
            }
            tables.push(pb::TableInBatchGetRowResponse {
                table_name: t.table_name.clone(),
                rows,
            });
        }
        Ok(Reply::new(
            &pb::BatchGetRowResponse { tables },
            read_total,
            0,
        ))
    }

    pub(crate) fn get_range(&self, req: &pb::GetRangeRequest) -> ApiResult<Reply> {
        if req.transaction_id.is_some() {
            return Err(ApiError::param("TransactionID is invalid."));
        }
        let table = self.table(&req.table_name)?;
        let def = &table.def;
        let spec = ReadSpec::parse(
            def,
            ReadParams {
                columns_to_get: &req.columns_to_get,
                time_range: req.time_range.as_ref(),
                max_versions: req.max_versions,
                filter: req.filter.as_deref(),
                start_column: req.start_column.as_ref(),
                end_column: req.end_column.as_ref(),
                // Checked below, against the start key.
                token: None,
            },
        )?;
        let direction = pb::Direction::try_from(req.direction)
            .map_err(|_| ApiError::param(format!("Unknown direction: {}.", req.direction)))?;
        let limit = match req.limit {
            None => usize::MAX,
            Some(l) if l > 0 => l as usize,
            Some(_) => return Err(ApiError::param("The limit must be greater than 0.")),
        };
        let start = decode_key(
            def,
            &req.inclusive_start_primary_key,
            "inclusive_start_primary_key",
            PkUse::Bound,
        )?;
        let end = decode_key(
            def,
            &req.exclusive_end_primary_key,
            "exclusive_end_primary_key",
            PkUse::Bound,
        )?;
        // These checks also keep BTreeMap::range from panicking on an inverted range.
        match direction {
            pb::Direction::Forward if start >= end => {
                return Err(ApiError::param(
                    "Begin key must less than end key in FORWARD",
                ));
            }
            pb::Direction::Backward if start <= end => {
                return Err(ApiError::param(
                    "Begin key must more than end key in BACKWARD",
                ));
            }
            _ => {}
        }
        let resume = match req.token.as_deref() {
            Some(t) if !t.is_empty() => Some(parse_wide_token(
                def,
                t,
                &start,
                self.limits.wide_row_cells.is_some(),
            )?),
            _ => None,
        };

        let st = table.read();
        let view = spec.view(&st, now_ms());
        let scan = Scan {
            def,
            spec: &spec,
            view: &view,
            limit,
            max_rows: self.limits.max_rows.max(1),
            max_bytes: self.limits.max_bytes,
            wide_row_cells: self.limits.wide_row_cells.map(|n| n.max(1)),
            resume: resume.map(|offset| (&start, offset)),
        };
        let page = match direction {
            pb::Direction::Forward => scan.run(
                st.rows
                    .range((Bound::Included(&start), Bound::Excluded(&end))),
            ),
            pb::Direction::Backward => scan.run(
                st.rows
                    .range((Bound::Excluded(&end), Bound::Included(&start)))
                    .rev(),
            ),
        };
        drop(st);
        let read = cu(page.read_bytes).max(1);
        let resp = pb::GetRangeResponse {
            consumed: capacity(read, 0),
            rows: page.rows.into(),
            next_start_primary_key: page.next.map(Into::into),
            next_token: page.token.map(Into::into),
            data_block_type: Some(pb::DataBlockType::DbtPlainBuffer as i32),
            compress_type: None,
        };
        Ok(Reply::new(&resp, read, 0))
    }

    pub(crate) fn compute_split_points(
        &self,
        req: &pb::ComputeSplitPointsBySizeRequest,
    ) -> ApiResult<Reply> {
        let table = self.table(&req.table_name)?;
        let def = &table.def;
        if req.split_size <= 0 {
            return Err(ApiError::param(format!(
                "Invalid split size: {}. It must be greater than 0.",
                req.split_size
            )));
        }
        let unit = req.split_size_unit_in_byte.unwrap_or(DEFAULT_SPLIT_UNIT);
        if unit <= 0 {
            return Err(ApiError::param(format!(
                "Invalid split size unit: {unit}. It must be greater than 0."
            )));
        }
        let split_bytes = u64::try_from(req.split_size.saturating_mul(unit)).unwrap_or(u64::MAX);
        let mut points: Vec<Vec<u8>> = Vec::new();
        {
            let st = table.read();
            let mut acc = 0u64;
            let mut iter = st.rows.iter().peekable();
            while let Some((key, row)) = iter.next() {
                debug_assert_eq!(row.split_size(), pk_size(def, key) + row.data_size());
                acc += row.split_size() as u64;
                if acc >= split_bytes
                    && let Some((next, _)) = iter.peek()
                {
                    points.push(pk_buffer(def, next));
                    acc = 0;
                }
            }
        }
        if let Some(limit) = req.split_point_limit.filter(|l| *l > 0)
            && points.len() > limit as usize
        {
            // Keep `limit` points spread evenly over the candidates, still in increasing order.
            let n = points.len();
            let limit = limit as usize;
            points = (0..limit)
                .map(|j| std::mem::take(&mut points[(j * n) / limit]))
                .collect();
        }
        let resp = pb::ComputeSplitPointsBySizeResponse {
            consumed: capacity(1, 0),
            schema: def.pk_schema_pb(),
            locations: vec![pb::SplitLocation {
                location: LOCATION.to_string(),
                repeat: points.len() as i64 + 1,
            }],
            split_points: points.into_iter().map(Into::into).collect(),
        };
        Ok(Reply::new(&resp, 1, 0))
    }
}

fn failed_get(e: ApiError) -> pb::RowInBatchGetRowResponse {
    pb::RowInBatchGetRowResponse {
        is_ok: false,
        error: Some(e.to_pb()),
        consumed: None,
        row: None,
        next_token: None,
    }
}

struct Scan<'a> {
    def: &'a TableDef,
    spec: &'a ReadSpec,
    view: &'a ReadView<'a>,
    limit: usize,
    max_rows: usize,
    max_bytes: usize,
    /// Wide-row mode: at most this many cells of one row per response (see [`PageLimits`]).
    ///
    /// [`PageLimits`]: crate::engine::PageLimits
    wide_row_cells: Option<usize>,
    /// A request carrying a wide-row token: the row at this key resumes at this cell offset.
    resume: Option<(&'a Key, usize)>,
}

struct Page {
    rows: Vec<u8>,
    next: Option<Vec<u8>>,
    /// Set when the page's last row is a part of a wider row (wide-row mode).
    token: Option<Vec<u8>>,
    read_bytes: usize,
}

impl Scan<'_> {
    /// Reads one page: stops at `limit` returned rows, `max_rows` scanned rows, or `max_bytes`; the
    /// next key is the first row not read (absent when the range is exhausted).
    ///
    /// In wide-row mode a row with more than `wide_row_cells` cells left ends the page with its next
    /// `wide_row_cells` cells; the next key is then that row's own key, with a token for the rest.
    fn run<'r>(&self, iter: impl Iterator<Item = (&'r Key, &'r StoredRow)>) -> Page {
        let mut w = RowsWriter::with_capacity(256 * 1024);
        let mut cells: Vec<&StoredCell> = Vec::with_capacity(32);
        let mut returned = 0usize;
        let mut rejected_bytes = 0usize;
        let mut read_bytes = 0usize;
        let mut next = None;
        let mut token = None;
        for (scanned, (key, row)) in iter.enumerate() {
            if returned >= self.limit
                || scanned >= self.max_rows
                // At least one row per page, so that paging always progresses.
                || (scanned > 0 && w.len() + rejected_bytes >= self.max_bytes)
            {
                next = Some(pk_buffer(self.def, key));
                break;
            }
            let pk_bytes = pk_size(self.def, key);
            if !self.spec.select(row, self.view, &mut cells) {
                rejected_bytes += pk_bytes + row.data_size();
                read_bytes += pk_bytes;
                continue;
            }
            // A token resumes the row at the start key (if it is still there) after the cells
            // already returned; a row that has since lost cells may have none left.
            let skip = match self.resume {
                Some((start, offset)) if scanned == 0 && key == start => offset.min(cells.len()),
                _ => 0,
            };
            let rest = &cells[skip..];
            if skip > 0 && rest.is_empty() {
                read_bytes += pk_bytes;
                continue;
            }
            if let Some(part) = self.wide_row_cells
                && rest.len() > part
            {
                let rest = &rest[..part];
                encode_row(&mut w, self.def, key, rest);
                returned += 1;
                read_bytes += pk_bytes + cells_size(rest);
                next = Some(pk_buffer(self.def, key));
                token = Some(wide_token(self.def, key, skip + part));
                break;
            }
            encode_row(&mut w, self.def, key, rest);
            returned += 1;
            read_bytes += pk_bytes + cells_size(rest);
        }
        Page {
            // No rows is zero-length bytes, not a bare header (fact sheet §4.8).
            rows: if returned == 0 {
                Vec::new()
            } else {
                w.into_bytes()
            },
            next,
            token,
            read_bytes,
        }
    }
}

#[cfg(test)]
mod bench {
    use std::time::Instant;

    use ots_wire::pb;
    use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
    use prost::Message;

    use crate::engine::{Engine, PageLimits};
    use crate::rows::{WriteKind, apply, prepare};

    /// Server-side cost of a full scan, without HTTP (run in release with --ignored --nocapture).
    #[test]
    #[ignore = "throughput measurement"]
    fn server_side_scan() {
        let e = Engine::new(PageLimits::default(), None);
        let pk = |n: &str, t: pb::PrimaryKeyType| pb::PrimaryKeySchema {
            name: n.into(),
            r#type: t as i32,
            option: None,
        };
        let create = pb::CreateTableRequest {
            table_meta: pb::TableMeta {
                table_name: "big".into(),
                primary_key: vec![
                    pk("pk1", pb::PrimaryKeyType::String),
                    pk("pk2", pb::PrimaryKeyType::Integer),
                ],
                ..Default::default()
            },
            ..Default::default()
        };
        let none = |_: &[&[ots_wire::types::PkValue]]| Vec::new();
        e.dispatch("CreateTable", &create.encode_to_vec(), &none)
            .unwrap();
        let t = e.table("big").unwrap();
        let ignore = pb::Condition::default();
        {
            let mut st = t.write();
            for i in 0..1_000_000i64 {
                let row = Row {
                    primary_key: vec![
                        PkColumn::new("pk1", PkValue::String(format!("user{:04}", i % 1000))),
                        PkColumn::new("pk2", PkValue::Integer(i)),
                    ],
                    cells: (0..10)
                        .map(|c| {
                            let v = match c % 3 {
                                0 => Value::Integer(i * c),
                                1 => Value::String(format!("v{i}")),
                                _ => Value::Double(i as f64 / 3.0),
                            };
                            Cell::new(format!("c{c}"), v, None)
                        })
                        .collect(),
                };
                let b = ots_wire::plainbuffer::encode_put_row(&row);
                let op = prepare(&t.def, WriteKind::Put, &b, &ignore, None).unwrap();
                apply(&t.def, &mut st, op, 1).unwrap();
            }
        }
        let inf = |v: PkValue| {
            ots_wire::plainbuffer::encode_primary_key(&[
                PkColumn::new("pk1", v.clone()),
                PkColumn::new("pk2", v),
            ])
        };
        let mut req = pb::GetRangeRequest {
            table_name: "big".into(),
            max_versions: Some(1),
            inclusive_start_primary_key: inf(PkValue::InfMin).into(),
            exclusive_end_primary_key: inf(PkValue::InfMax).into(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let (mut bytes, mut md5_time, mut pages) = (0usize, 0f64, 0);
        loop {
            let reply = e.dispatch("GetRange", &req.encode_to_vec(), &none).unwrap();
            let m0 = Instant::now();
            std::hint::black_box(ots_wire::auth::content_md5(&reply.body));
            md5_time += m0.elapsed().as_secs_f64();
            bytes += reply.body.len();
            pages += 1;
            let resp = pb::GetRangeResponse::decode(&reply.body[..]).unwrap();
            match resp.next_start_primary_key {
                Some(k) => req.inclusive_start_primary_key = k,
                None => break,
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        eprintln!(
            "{pages} pages, {:.1} MB, {dt:.2}s total ({:.0} rows/s), of which MD5 {md5_time:.2}s",
            bytes as f64 / 1e6,
            1e6 / dt
        );
    }
}
