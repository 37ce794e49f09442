//! The row options: which files and rows are restored (key range, partitions), which columns,
//! with which timestamps and keys, and how a row is encoded for BatchWriteRow. [`select_files`]
//! refuses filters that select nothing, from the manifest alone, before anything is written.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use ots_manifest::{FileEntry, Manifest};
use ots_scan::KeyPart;
use ots_schema::{CellView, ConvertError, RowReader};
use ots_wire::pb;
use ots_wire::plainbuffer::PlainBufferWriter;
use ots_wire::types::{PkColumn, PkValue, PkValueRef, Row, cmp_pk_columns};
use serde::Serialize;

use crate::config::{AutoIncrementMode, RestoreConfig, TimestampMode, WriteMode};
use crate::error::RestoreError;

/// Files, rows, cells and bytes, as the manifest counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    pub files: u64,
    pub rows: u64,
    pub cells: u64,
    pub bytes: u64,
}

impl FileCounts {
    pub(crate) fn add(&mut self, f: &FileEntry) {
        self.files += 1;
        self.rows += f.rows;
        self.cells += f.cells;
        self.bytes += f.bytes;
    }
}

/// The files a restore reads, and those its file filters leave out.
#[derive(Debug)]
pub(crate) struct Selection<'a> {
    pub files: Vec<&'a FileEntry>,
    pub selected: FileCounts,
    /// Left out by `--partition`.
    pub skipped_by_partition: FileCounts,
    /// Left out by `--start-key`/`--end-key` (of the files the partitions selected).
    pub skipped_by_key_range: FileCounts,
}

/// At most this many values are named in a message.
const MAX_NAMED: usize = 20;

fn named_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    let mut text = items
        .iter()
        .take(MAX_NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_NAMED {
        text.push_str(&format!(", … ({} in all)", items.len()));
    }
    text
}

fn key_text(key: &[PkColumn]) -> String {
    ots_format::display_columns(key)
}

/// Which files the row options select, judged by the manifest alone (partitions, the files' PK
/// ranges, the columns' statistics). A filter that selects nothing is a
/// [`RestoreError::Usage`]: an unknown partition key or value, a key range that is empty or
/// holds no file of the snapshot, files without rows, a column the snapshot holds no cell of.
pub(crate) fn select_files<'a>(
    m: &'a Manifest,
    cfg: &RestoreConfig,
) -> Result<Selection<'a>, RestoreError> {
    let usage = |msg: String| Err(RestoreError::Usage(msg));
    if let Some(cols) = &cfg.columns {
        let holds = |name: &str| {
            m.stats
                .columns
                .get(name)
                .is_some_and(|c| c.cells_by_type.values().sum::<u64>() > 0)
        };
        if let Some(missing) = cols.iter().find(|c| !holds(c)) {
            let known: Vec<&str> = m
                .stats
                .columns
                .keys()
                .map(String::as_str)
                .filter(|c| holds(c))
                .collect();
            return usage(format!(
                "--columns: the snapshot has no column '{missing}' (no cell of it); its columns are: {}",
                named_list(known)
            ));
        }
    }
    // Every partition key=value must name a partition of the snapshot.
    for (k, v) in &cfg.partitions {
        let values: BTreeSet<&str> = m
            .files
            .iter()
            .filter_map(|f| f.partition.get(k).map(String::as_str))
            .collect();
        if values.is_empty() {
            return usage(format!(
                "--partition {k}={v}: the snapshot has no partition key '{k}' (partitioning: {})",
                serde_json::to_string(&m.partitioning).unwrap_or_default()
            ));
        }
        if !values.contains(v.as_str()) {
            return usage(format!(
                "--partition {k}={v}: the snapshot has no such partition; its values of '{k}' are: {}",
                named_list(values)
            ));
        }
    }
    let mut sel = Selection {
        files: Vec::new(),
        selected: FileCounts::default(),
        skipped_by_partition: FileCounts::default(),
        skipped_by_key_range: FileCounts::default(),
    };
    let mut in_partitions: Vec<&FileEntry> = Vec::new();
    for f in &m.files {
        if partition_selected(f, cfg) {
            in_partitions.push(f);
        } else {
            sel.skipped_by_partition.add(f);
        }
    }
    if in_partitions.is_empty() && !cfg.partitions.is_empty() {
        let given: Vec<String> = cfg
            .partitions
            .iter()
            .map(|(k, v)| format!("--partition {k}={v}"))
            .collect();
        return usage(format!(
            "{}: no file of the snapshot is in all of these partitions",
            given.join(" ")
        ));
    }
    if let Some((start, end)) = &cfg.pk_range
        && cmp_pk_columns(start, end) != Ordering::Less
    {
        return usage(format!(
            "--start-key {} and --end-key {}: the range is empty (the end is exclusive and must come after the start)",
            key_text(start),
            key_text(end)
        ));
    }
    for f in in_partitions.iter().copied() {
        if file_overlaps(f, &cfg.pk_range) {
            sel.files.push(f);
            sel.selected.add(f);
        } else {
            sel.skipped_by_key_range.add(f);
        }
    }
    if let Some((start, end)) = &cfg.pk_range
        && sel.files.is_empty()
        && !in_partitions.is_empty()
    {
        let lowest = in_partitions
            .iter()
            .map(|f| &f.pk_min)
            .min_by(|a, b| ots_format::cmp_keys(a, b));
        let highest = in_partitions
            .iter()
            .map(|f| &f.pk_max)
            .max_by(|a, b| ots_format::cmp_keys(a, b));
        let span = match (lowest, highest) {
            (Some(lo), Some(hi)) => format!(
                "; its keys{} run from {} to {}",
                if cfg.partitions.is_empty() {
                    ""
                } else {
                    " (in the partitions selected)"
                },
                ots_format::DisplayKey(lo),
                ots_format::DisplayKey(hi)
            ),
            _ => String::new(),
        };
        return usage(format!(
            "--start-key {} / --end-key {}: no file of the snapshot holds keys in this range{span}",
            key_text(start),
            key_text(end)
        ));
    }
    let filtered = !cfg.partitions.is_empty() || cfg.pk_range.is_some();
    if filtered && sel.selected.rows == 0 {
        return usage(format!(
            "the files that --partition / --start-key / --end-key select ({}) hold no rows",
            sel.selected.files
        ));
    }
    Ok(sel)
}

/// Whether a file's partition matches every `--partition`.
fn partition_selected(f: &FileEntry, cfg: &RestoreConfig) -> bool {
    cfg.partitions
        .iter()
        .all(|(k, v)| f.partition.get(k) == Some(v))
}

/// Whether a file can hold rows of `[start, end)`, judged by its PK range.
fn file_overlaps(f: &FileEntry, range: &Option<(Vec<PkColumn>, Vec<PkColumn>)>) -> bool {
    let Some((start, end)) = range else {
        return true;
    };
    let to_cols = |parts: &[KeyPart]| -> Option<Vec<PkColumn>> {
        parts.iter().map(|p| p.to_column().ok()).collect()
    };
    let (Some(min), Some(max)) = (to_cols(&f.pk_min), to_cols(&f.pk_max)) else {
        return true;
    };
    cmp_pk_columns(&max, start) != Ordering::Less && cmp_pk_columns(&min, end) == Ordering::Less
}

/// The row-level options of one restore, applied to every row read.
#[derive(Clone, Debug)]
pub(crate) struct RowTransform {
    pk_range: Option<(Vec<PkColumn>, Vec<PkColumn>)>,
    columns: Option<BTreeSet<String>>,
    timestamps: TimestampMode,
    /// Positions of AUTO_INCREMENT key columns, when their values are regenerated.
    regenerate: Vec<usize>,
    /// The time of the restore (ms), for `TimestampMode::Now`.
    now: i64,
    op: pb::OperationType,
}

impl RowTransform {
    /// `auto_cols`: positions of the snapshot's AUTO_INCREMENT key columns.
    pub(crate) fn new(cfg: &RestoreConfig, auto_cols: &[usize], now: i64) -> Self {
        RowTransform {
            pk_range: cfg.pk_range.clone(),
            columns: cfg.columns.clone(),
            timestamps: cfg.timestamps,
            regenerate: if cfg.auto_increment == AutoIncrementMode::Regenerate {
                auto_cols.to_vec()
            } else {
                Vec::new()
            },
            now,
            op: operation(cfg),
        }
    }

    /// The BatchWriteRow operation rows are written with.
    pub(crate) fn operation(&self) -> pb::OperationType {
        self.op
    }

    /// Whether rows go out as read (every row, every cell, original timestamps and keys, as
    /// PutRows): then a row can be encoded straight from the record batch ([`encode_put_direct`]).
    pub(crate) fn is_identity(&self) -> bool {
        self.pk_range.is_none()
            && self.columns.is_none()
            && self.timestamps == TimestampMode::Original
            && self.regenerate.is_empty()
            && self.op == pb::OperationType::Put
    }

    /// Applies the row-level options; `None` when nothing of the row is to be written.
    pub(crate) fn apply(&self, mut row: Row) -> Option<Row> {
        if let Some((start, end)) = &self.pk_range
            && (cmp_pk_columns(&row.primary_key, start) == Ordering::Less
                || cmp_pk_columns(&row.primary_key, end) != Ordering::Less)
        {
            return None;
        }
        if let Some(cols) = &self.columns {
            row.cells.retain(|c| cols.contains(&c.name));
        }
        // The service refuses a put without attribute columns; such a row has nothing to restore.
        if row.cells.is_empty() {
            return None;
        }
        if self.timestamps == TimestampMode::Now {
            // Versions of a column stay distinct and in order: newest = now, then now-1, …
            let mut k = 0i64;
            let mut prev: Option<String> = None;
            for c in &mut row.cells {
                if prev.as_deref() != Some(c.name.as_str()) {
                    k = 0;
                    prev = Some(c.name.clone());
                }
                c.timestamp = Some(self.now - k);
                k += 1;
            }
        }
        for &i in &self.regenerate {
            if let Some(c) = row.primary_key.get_mut(i) {
                c.value = PkValue::AutoIncrement;
            }
        }
        Some(row)
    }
}

/// Row `i` of `rows` as a PutRow, encoded straight from the record batch's arrays: the bytes
/// [`encode_row`] makes of [`RowReader::row`], without an owned copy of every name and value
/// (the allocator was the largest cost of a restore). `cells` is scratch space. The encoding is
/// appended to `out` (the rows of a batch share one buffer); returns the row's cell count, or
/// `None`, with nothing appended, for a row without cells (nothing to write).
pub(crate) fn encode_put_direct<'a>(
    rows: &RowReader<'a>,
    i: usize,
    cells: &mut Vec<CellView<'a>>,
    out: &mut Vec<u8>,
) -> Result<Option<usize>, ConvertError> {
    rows.cells_into(i, cells)?;
    if cells.is_empty() {
        return Ok(None);
    }
    // The same size estimate encode_put_row makes: one allocation for the output.
    let mut size = 8;
    for (name, v) in rows.primary_key_refs(i) {
        size += 20
            + name.len()
            + match v {
                PkValueRef::String(s) => s.len(),
                PkValueRef::Binary(b) => b.len(),
                _ => 8,
            };
    }
    size += cells
        .iter()
        .map(|c| 30 + c.name.as_str().len() + c.value.data_size())
        .sum::<usize>();
    let mut w = PlainBufferWriter::append_to(std::mem::take(out));
    w.reserve(size);
    for (name, v) in rows.primary_key_refs(i) {
        w.pk(name, v);
    }
    for c in cells.iter() {
        w.named_cell(c.name, Some(c.value), None, c.timestamp);
    }
    w.end_row();
    *out = w.into_bytes();
    Ok(Some(cells.len()))
}

/// A restore of some columns into an existing row must not wipe the row's other columns: it is an
/// UpdateRow (puts of the restored versions) instead of a PutRow, which replaces the whole row.
pub(crate) fn operation(cfg: &RestoreConfig) -> pb::OperationType {
    if cfg.columns.is_some() && cfg.write_mode() == WriteMode::Overwrite {
        pb::OperationType::Update
    } else {
        pb::OperationType::Put
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_wire::plainbuffer::encode_put_row;
    use ots_wire::types::{Cell, Value};

    /// The direct encoding is byte for byte the encoding of the owned row, for every row of the
    /// standard table (every type, versions, a type conflict, cells in `$cells`) under schemas
    /// with all, some and none of its columns typed.
    #[test]
    fn direct_encoding_equals_the_owned_rows_encoding() {
        use ots_schema::{BatchBuilder, PkColumnSchema, SchemaInferrer};
        use ots_wire::plainbuffer::decode_single_row;
        use ots_wire::types::PkType;
        let spec = ots_datagen::DatasetSpec::new(400, 11);
        let rows: Vec<Row> = (0..400).map(|i| ots_datagen::row(&spec, i)).collect();
        let encoded: Vec<Vec<u8>> = rows.iter().map(encode_put_row).collect();
        let refs: Vec<_> = encoded
            .iter()
            .map(|e| decode_single_row(e).unwrap().unwrap())
            .collect();
        let pk: Vec<PkColumnSchema> = rows[0]
            .primary_key
            .iter()
            .map(|c| PkColumnSchema {
                name: c.name.clone(),
                pk_type: match c.value {
                    PkValue::Integer(_) => PkType::Integer,
                    PkValue::Binary(_) => PkType::Binary,
                    _ => PkType::String,
                },
                auto_increment: false,
            })
            .collect();
        let mut inferrer = SchemaInferrer::new();
        refs.iter().for_each(|r| inferrer.observe(r));
        for typed in [0, 3, 1000] {
            let schema = std::sync::Arc::new(inferrer.finish(pk.clone(), typed).unwrap());
            let mut b = BatchBuilder::new(schema.clone());
            refs.iter().for_each(|r| b.push_row(r).unwrap());
            let batch = b.finish().unwrap();
            let reader = RowReader::new(&schema, &batch).unwrap();
            let mut cells = Vec::new();
            // Rows appended one after another to one buffer, as the restore pipeline does.
            let mut out = b"earlier rows".to_vec();
            for (i, row) in rows.iter().enumerate() {
                let start = out.len();
                let n = encode_put_direct(&reader, i, &mut cells, &mut out)
                    .unwrap()
                    .expect("every row has cells");
                assert_eq!(n, row.cells.len());
                let direct = &out[start..];
                assert_eq!(direct, encode_put_row(&reader.row(i).unwrap()), "row {i}");
                assert_eq!(&reader.row(i).unwrap(), row, "row {i}");
            }
            assert!(out.starts_with(b"earlier rows"));
        }
    }

    fn row(user: &str) -> Row {
        Row {
            primary_key: vec![
                PkColumn::new("user", PkValue::String(user.into())),
                PkColumn::new("id", PkValue::Integer(7)),
            ],
            cells: vec![
                Cell::new("a", Value::Integer(1), Some(100)),
                Cell::new("b", Value::Integer(2), Some(300)),
                Cell::new("b", Value::Integer(1), Some(200)),
            ],
        }
    }

    fn key(user: &str, id: PkValue) -> Vec<PkColumn> {
        vec![
            PkColumn::new("user", PkValue::String(user.into())),
            PkColumn::new("id", id),
        ]
    }

    #[test]
    fn key_range_is_half_open() {
        let mut cfg = RestoreConfig::new("t", "s");
        cfg.pk_range = Some((key("b", PkValue::InfMin), key("d", PkValue::InfMin)));
        let t = RowTransform::new(&cfg, &[], 0);
        assert!(t.apply(row("a")).is_none());
        assert!(t.apply(row("b")).is_some());
        assert!(t.apply(row("c")).is_some());
        assert!(t.apply(row("d")).is_none());
    }

    #[test]
    fn columns_timestamps_and_regenerated_keys() {
        let mut cfg = RestoreConfig::new("t", "s");
        cfg.columns = Some(["b".to_string()].into());
        cfg.timestamps = TimestampMode::Now;
        cfg.auto_increment = AutoIncrementMode::Regenerate;
        let t = RowTransform::new(&cfg, &[1], 5000);
        assert_eq!(t.operation(), pb::OperationType::Update);
        let r = t.apply(row("a")).unwrap();
        let ts: Vec<_> = r
            .cells
            .iter()
            .map(|c| (c.name.as_str(), c.timestamp))
            .collect();
        assert_eq!(ts, [("b", Some(5000)), ("b", Some(4999))]);
        assert_eq!(r.primary_key[1].value, PkValue::AutoIncrement);
        cfg.columns = Some(["zzz".to_string()].into());
        let t = RowTransform::new(&cfg, &[1], 5000);
        assert!(t.apply(row("a")).is_none(), "a row left without cells");
    }
}
