//! A snapshot against a live table, split by split: the snapshot's rows of a split are merged
//! with a GetRange scan of the same key range, and every row, cell, type, value and timestamp is
//! compared.
//!
//! By default the scan reads every version of every cell, whatever its timestamp, so anything
//! the table holds and the snapshot does not is reported — including versions written after the
//! snapshot time T. [`CompareOptions::as_of_snapshot`] limits the scan to the snapshot's time
//! range, for comparing with a live source that is still written to.
//!
//! Memory stays bounded whatever the split's size: every data file is sorted by primary key,
//! and the files of one partition of a split follow each other in key order, so each partition
//! is read as one chain of files, one record batch at a time, and the chains are merged by
//! primary key (a k-way merge over the partitions of the split). Memory is about one row group
//! (as fetched) per partition of the split, decoded batches within
//! [`CompareOptions::memory_bytes`] (sized by bytes per row, not by a row count), plus one
//! GetRange page — times [`CompareOptions::concurrency`], the splits compared at once (the
//! decoded-row budget is shared by them). Their reports are joined in split order, so the
//! differences listed are in key order as before.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use futures::{StreamExt, TryStreamExt};
use ots_manifest::{FileEntry, Manifest, ManifestError, Snapshot, TimeRange, display_columns};
use ots_scan::{KeyPart, ScanError, ScanOptions, SplitScanner};
use ots_schema::{RowReader, SnapshotSchema};
use ots_wire::OtsClient;
use ots_wire::types::{Cell, PkColumn, Row, RowRef, Value, cmp_pk_columns, cmp_primary_keys};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use serde::Serialize;

use crate::RestoreError;
use crate::chain::{Chain as SnapshotChain, resolve_chain};
use crate::image::{ChangedRows, RowChange, apply_changes, read_changes};
use crate::reader::{FilePin, FileSource, open_file};

#[derive(Clone, Debug, Serialize)]
pub struct RowDiff {
    pub primary_key: Vec<KeyPart>,
    /// `missing_in_table`, `extra_in_table` or `different`.
    pub kind: &'static str,
    pub detail: String,
    /// For `different`: the first cell that differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellDiff>,
}

/// The first version of a cell, in Tablestore's cell order (column name, then newest first),
/// where a snapshot row and the table's row differ.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellDiff {
    pub column: String,
    /// The version's timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// The snapshot's value; `None` when the snapshot has no such version.
    pub snapshot: Option<CellValue>,
    /// The table's value; `None` when the table has no such version.
    pub table: Option<CellValue>,
}

/// A cell value as text: numbers and booleans as written, strings JSON-quoted, binary as
/// `0x` hex (the first 32 bytes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellValue {
    #[serde(rename = "type")]
    pub value_type: &'static str,
    pub text: String,
}

impl CellValue {
    fn of(v: &Value) -> Self {
        let text = match v {
            Value::Integer(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| s.clone()),
            Value::Binary(b) if b.len() > 32 => {
                format!("0x{}… ({} bytes)", hex::encode(&b[..32]), b.len())
            }
            Value::Binary(b) => format!("0x{}", hex::encode(b)),
        };
        CellValue {
            value_type: v.value_type().name(),
            text,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CompareReport {
    pub table: String,
    /// The snapshots whose image was compared, base first: the snapshot alone when it captured no
    /// changes, else its chain (the base's data files with every link's changes applied, the table
    /// as of the last link's consistency point).
    pub chain: Vec<String>,
    /// Whether only the snapshot's time range was compared (`--as-of-snapshot`).
    pub as_of_snapshot: bool,
    /// Cell timestamps compared, `[start, end)` ms; `None` = every cell, whatever its timestamp.
    pub time_range_ms: Option<(i64, i64)>,
    pub rows_in_snapshot: u64,
    pub rows_in_table: u64,
    pub rows_matching: u64,
    pub missing_in_table: u64,
    pub extra_in_table: u64,
    pub different: u64,
    /// The first differences, in primary-key order within each split.
    pub first_differences: Vec<RowDiff>,
}

impl CompareReport {
    pub fn ok(&self) -> bool {
        self.missing_in_table == 0 && self.extra_in_table == 0 && self.different == 0
    }

    /// Adds the counts of a split compared on its own, and its differences while fewer than `max`
    /// are listed (splits are absorbed in order, so the list stays in key order).
    fn absorb(&mut self, split: CompareReport, max: usize) {
        self.rows_in_snapshot += split.rows_in_snapshot;
        self.rows_in_table += split.rows_in_table;
        self.rows_matching += split.rows_matching;
        self.missing_in_table += split.missing_in_table;
        self.extra_in_table += split.extra_in_table;
        self.different += split.different;
        let room = max.saturating_sub(self.first_differences.len());
        self.first_differences
            .extend(split.first_differences.into_iter().take(room));
    }

    fn record(
        &mut self,
        row: &Row,
        kind: &'static str,
        detail: String,
        cell: Option<CellDiff>,
        max: usize,
    ) {
        match kind {
            "missing_in_table" => self.missing_in_table += 1,
            "extra_in_table" => self.extra_in_table += 1,
            _ => self.different += 1,
        }
        if self.first_differences.len() < max {
            self.first_differences.push(RowDiff {
                primary_key: row.primary_key.iter().map(KeyPart::from_column).collect(),
                kind,
                detail,
                cell,
            });
        }
    }
}

/// How to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Differences to keep as examples in the report.
    pub max_differences: usize,
    /// Compare only cells inside the snapshot's time range (versions written later are not
    /// looked at); by default every cell of the table is.
    pub as_of_snapshot: bool,
    /// Most rows per record batch read from a snapshot file (fewer when rows are large, see
    /// `memory_bytes`).
    pub batch_rows: usize,
    /// The bytes the snapshot side of the merge may hold in decoded rows: half of it is shared
    /// by the splits compared at once (`concurrency`) and the chains (partitions) of each, each
    /// chain decoding batches of at most its share (by its row groups' uncompressed bytes per
    /// row, at least one row). The table side holds one GetRange page (≤ 4 MB, the service's
    /// page limit) per split compared.
    pub memory_bytes: usize,
    /// Counts the snapshot's rows compared so far, for a progress display.
    pub rows_compared: Option<Arc<AtomicU64>>,
    /// Splits compared at once (at least 1): their pages arrive while others' rows are compared,
    /// and their MD5s are checked side by side. `memory_bytes` is shared by them.
    pub concurrency: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            max_differences: 10,
            as_of_snapshot: false,
            batch_rows: 1024,
            memory_bytes: 256 * 1024 * 1024,
            rows_compared: None,
            concurrency: 4,
        }
    }
}

fn pk_order(a: &Row, b: &Row) -> Ordering {
    cmp_pk_columns(&a.primary_key, &b.primary_key)
}

/// [`pk_order`] of a snapshot row and a table row as decoded from its page.
fn pk_order_live(a: &Row, b: &RowRef<'_>) -> Ordering {
    cmp_primary_keys(
        a.primary_key.iter().map(|c| c.value.as_ref()),
        b.primary_key.iter().map(|c| c.value),
    )
}

/// Whether a snapshot row and a table row (with the same key) hold the same cells, without an
/// owned copy of the table's row: most rows match, and copying every one of them cost a quarter
/// of the comparison's CPU.
fn same_cells(snapshot: &Row, table: &RowRef<'_>) -> bool {
    snapshot.cells.len() == table.cells.len()
        && snapshot.cells.iter().zip(&table.cells).all(|(s, t)| {
            s.name == t.name
                && s.timestamp == t.timestamp
                && t.op.is_none()
                && t.value == Some(s.value.as_ref())
        })
}

/// The first cell where two rows with the same key differ, walking both cell lists in
/// Tablestore's order (column name, then newest version first), and that difference in words.
fn row_difference(snapshot: &Row, table: &Row) -> Option<(String, Option<CellDiff>)> {
    if snapshot.cells == table.cells {
        return None;
    }
    let order = |a: &Cell, b: &Cell| {
        a.name
            .cmp(&b.name)
            .then_with(|| b.timestamp.cmp(&a.timestamp))
    };
    let diff = |c: &Cell, s: Option<&Cell>, t: Option<&Cell>| CellDiff {
        column: c.name.clone(),
        timestamp_ms: c.timestamp,
        snapshot: s.map(|c| CellValue::of(&c.value)),
        table: t.map(|c| CellValue::of(&c.value)),
    };
    let (mut i, mut j) = (0, 0);
    let cell = loop {
        match (snapshot.cells.get(i), table.cells.get(j)) {
            (None, None) => break None,
            (Some(s), None) => break Some(diff(s, Some(s), None)),
            (None, Some(t)) => break Some(diff(t, None, Some(t))),
            (Some(s), Some(t)) => match order(s, t) {
                Ordering::Less => break Some(diff(s, Some(s), None)),
                Ordering::Greater => break Some(diff(t, None, Some(t))),
                Ordering::Equal if s.value != t.value => break Some(diff(s, Some(s), Some(t))),
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            },
        }
    };
    let side = |v: &Option<CellValue>| match v {
        Some(v) => format!("has {} ({})", v.text, v.value_type),
        None => "has no such version".to_string(),
    };
    let detail = match &cell {
        Some(c) => format!(
            "{}@{}: snapshot {}, table {}",
            c.column,
            c.timestamp_ms.map_or("-".to_string(), |t| t.to_string()),
            side(&c.snapshot),
            side(&c.table)
        ),
        None => format!(
            "the cells differ (snapshot {} cells, table {})",
            snapshot.cells.len(),
            table.cells.len()
        ),
    };
    Some((detail, cell))
}

/// The rows of one partition's files of a split, in key order, one record batch at a time.
struct Chain {
    files: VecDeque<FileEntry>,
    current: Option<(String, ParquetRecordBatchStream<FileSource>)>,
    rows: VecDeque<Row>,
    /// The last row's key and file, to check the order the merge relies on.
    last: Option<(Vec<PkColumn>, String)>,
}

/// Everything a chain needs to open and decode its files.
struct Files<'a> {
    snapshot: &'a Snapshot,
    schema: &'a SnapshotSchema,
    batch_rows: usize,
    /// The merge's decoded-row budget; each chain gets `decoded_budget / chains`.
    decoded_budget: usize,
    /// Set by [`Merge::new`]: one chain's share.
    per_chain: usize,
}

impl Chain {
    /// The next row, or `None` when every file of the chain is read. Rows are decoded into
    /// `spare` ones (rows the comparison is done with) while there are any.
    async fn next(
        &mut self,
        f: &Files<'_>,
        spare: &mut Vec<Row>,
    ) -> Result<Option<Row>, RestoreError> {
        loop {
            if let Some(row) = self.rows.pop_front() {
                return Ok(Some(row));
            }
            let Some((name, stream)) = &mut self.current else {
                let Some(file) = self.files.pop_front() else {
                    return Ok(None);
                };
                let (store, path) = f.snapshot.object(&file.path);
                let source = open_file(
                    store,
                    path,
                    &file.path,
                    file.bytes,
                    &file.sha256,
                    &FilePin::FirstRead,
                )
                .await?
                .with_decryption(f.snapshot.decryption());
                let (stream, _plan) = source
                    .batches_within(f.per_chain, f.batch_rows)
                    .await
                    .map_err(|e| RestoreError::parquet(&file.path, e))?;
                self.current = Some((file.path, stream));
                continue;
            };
            match stream
                .try_next()
                .await
                .map_err(|e| RestoreError::parquet(name, e))?
            {
                Some(rb) => {
                    let rows =
                        RowReader::new(f.schema, &rb).map_err(|source| RestoreError::Rows {
                            path: name.clone(),
                            source,
                        })?;
                    // The merge relies on key order: each row must follow the one before it,
                    // in this batch or (for its first row) the chain's last row so far.
                    let mut cells = Vec::new();
                    for i in 0..rows.len() {
                        let mut row = spare.pop().unwrap_or_default();
                        rows.row_into(i, &mut row, &mut cells).map_err(|source| {
                            RestoreError::Rows {
                                path: name.clone(),
                                source,
                            }
                        })?;
                        let previous = match self.rows.back() {
                            Some(p) => Some((&p.primary_key, name.as_str())),
                            None => self.last.as_ref().map(|(k, p)| (k, p.as_str())),
                        };
                        if let Some((last, last_path)) = previous
                            && cmp_pk_columns(last, &row.primary_key) != Ordering::Less
                        {
                            return Err(RestoreError::Order {
                                path: name.clone(),
                                detail: format!(
                                    "key {} follows key {} of {last_path}",
                                    display_columns(&row.primary_key),
                                    display_columns(last)
                                ),
                            });
                        }
                        self.rows.push_back(row);
                    }
                    if let Some(last) = self.rows.back() {
                        self.last = Some((last.primary_key.clone(), name.clone()));
                    }
                }
                None => self.current = None,
            }
        }
    }
}

/// A chain's current row in the merge heap, smallest key first.
struct Head {
    row: Row,
    chain: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse, so the smallest key is on top.
        pk_order(&other.row, &self.row).then(other.chain.cmp(&self.chain))
    }
}

/// The snapshot's rows of one split, in primary-key order, merged from its partitions' chains.
struct Merge<'a> {
    files: Files<'a>,
    chains: Vec<Chain>,
    heads: BinaryHeap<Head>,
    /// Rows the comparison is done with, decoded into again ([`Merge::recycle`]); at most a
    /// batch's worth, so they hold no more than one decoded batch did.
    spare: Vec<Row>,
}

impl<'a> Merge<'a> {
    async fn new(files: Files<'a>, split_files: Vec<&FileEntry>) -> Result<Self, RestoreError> {
        let mut by_partition: BTreeMap<&BTreeMap<String, String>, Vec<FileEntry>> = BTreeMap::new();
        for f in split_files {
            by_partition
                .entry(&f.partition)
                .or_default()
                .push(f.clone());
        }
        let mut chains = Vec::new();
        for (_, mut fs) in by_partition {
            // Files of one partition follow each other in key order: order them by first key.
            let first_key = |f: &FileEntry| -> Option<Vec<PkColumn>> {
                f.pk_min.iter().map(|p| p.to_column().ok()).collect()
            };
            fs.sort_by(|a, b| match (first_key(a), first_key(b)) {
                (Some(x), Some(y)) => cmp_pk_columns(&x, &y).then_with(|| a.path.cmp(&b.path)),
                _ => a.path.cmp(&b.path),
            });
            chains.push(Chain {
                files: fs.into(),
                current: None,
                rows: VecDeque::new(),
                last: None,
            });
        }
        let mut files = files;
        files.per_chain = (files.decoded_budget / chains.len().max(1)).max(1);
        let mut merge = Merge {
            files,
            chains,
            heads: BinaryHeap::new(),
            spare: Vec::new(),
        };
        for i in 0..merge.chains.len() {
            merge.advance(i).await?;
        }
        Ok(merge)
    }

    async fn advance(&mut self, chain: usize) -> Result<(), RestoreError> {
        if let Some(row) = self.chains[chain]
            .next(&self.files, &mut self.spare)
            .await?
        {
            self.heads.push(Head { row, chain });
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Row> {
        self.heads.peek().map(|h| &h.row)
    }

    async fn next(&mut self) -> Result<Option<Row>, RestoreError> {
        let Some(Head { row, chain }) = self.heads.pop() else {
            return Ok(None);
        };
        self.advance(chain).await?;
        Ok(Some(row))
    }

    /// Takes back a row the comparison is done with, to decode a later one into.
    fn recycle(&mut self, row: Row) {
        if self.spare.len() < self.files.batch_rows {
            self.spare.push(row);
        }
    }
}

/// The rows a split of the table should hold, in key order: the data files' rows (the merge),
/// with the changed keys of the split (none without captured changes) applied to them.
struct Expected<'a> {
    merge: Merge<'a>,
    changed: std::iter::Peekable<std::vec::IntoIter<(Vec<PkColumn>, Vec<RowChange>)>>,
    max_versions: Option<usize>,
    /// The next row, once computed.
    head: Option<Row>,
}

impl<'a> Expected<'a> {
    fn new(
        merge: Merge<'a>,
        changed: Vec<(Vec<PkColumn>, Vec<RowChange>)>,
        max_versions: Option<usize>,
    ) -> Self {
        Expected {
            merge,
            changed: changed.into_iter().peekable(),
            max_versions,
            head: None,
        }
    }

    /// Computes the next row into `head`, unless it is there or every row was taken.
    async fn fill(&mut self) -> Result<(), RestoreError> {
        while self.head.is_none() {
            let order = match (self.merge.peek(), self.changed.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(row), Some((key, _))) => cmp_pk_columns(&row.primary_key, key),
            };
            if order == Ordering::Less {
                self.head = self.merge.next().await?;
                continue;
            }
            let base = match order {
                Ordering::Equal => self.merge.next().await?,
                _ => None,
            };
            if let Some((key, changes)) = self.changed.next() {
                self.head = apply_changes(key, base, &changes, self.max_versions);
            }
        }
        Ok(())
    }

    async fn peek(&mut self) -> Result<Option<&Row>, RestoreError> {
        self.fill().await?;
        Ok(self.head.as_ref())
    }

    async fn next(&mut self) -> Result<Option<Row>, RestoreError> {
        self.fill().await?;
        Ok(self.head.take())
    }

    /// Takes back a row taken with `next`, once compared.
    fn recycle(&mut self, row: Row) {
        self.merge.recycle(row);
    }
}

fn scan_error(table: &str, e: ScanError) -> RestoreError {
    match e {
        ScanError::Ots(o) if o.is_not_found() => RestoreError::TableNotFound {
            table: table.to_string(),
            error: o,
        },
        source => RestoreError::Scan {
            table: table.to_string(),
            source,
        },
    }
}

/// Compares snapshot `id` with `table` over every cell of the table, reporting at most
/// `max_differences` examples (see [`compare_with_options`]).
pub async fn compare_with_table(
    client: &OtsClient,
    snapshot: &Snapshot,
    manifest: &Manifest,
    table: &str,
    max_differences: usize,
) -> Result<CompareReport, RestoreError> {
    let options = CompareOptions {
        max_differences,
        ..CompareOptions::default()
    };
    compare_with_options(client, snapshot, manifest, table, &options).await
}

/// Compares snapshot `id` with `table` as `options` say. A snapshot that captured changes is
/// compared as the image of its chain ([`compare_chain`]).
pub async fn compare_with_options(
    client: &OtsClient,
    snapshot: &Snapshot,
    manifest: &Manifest,
    table: &str,
    options: &CompareOptions,
) -> Result<CompareReport, RestoreError> {
    if manifest.changes.is_some() {
        let chain = resolve_chain(snapshot, manifest.clone()).await?;
        return compare_chain(client, &chain, table, options).await;
    }
    crate::chain::check_keys(snapshot, manifest)?;
    let image = Image {
        snapshot,
        manifest,
        chain: vec![snapshot.id().to_string()],
        changed: ChangedRows::default(),
        max_versions: None,
    };
    compare_image(client, image, table, options).await
}

/// Why `--as-of-snapshot` does not apply to a chain.
pub fn as_of_snapshot_with_changes(id: &str) -> RestoreError {
    RestoreError::Usage(format!(
        "--as-of-snapshot does not apply to snapshot {id}: it captured changes, so its image (its \
         chain's data with every change up to its consistency point) is exact and every cell of \
         the table is compared with it. Leave out --as-of-snapshot; a table written to after the \
         consistency point shows those writes as differences"
    ))
}

/// Compares the image of `chain` — the base's data files with every change of every link applied
/// in order, the table as of the last link's consistency point — with `table`, every cell.
///
/// The changes are read first and held in memory grouped by key, within half of
/// [`CompareOptions::memory_bytes`] (a usage error beyond it); the data files are merged split by
/// split as for a single snapshot, each changed key applied where it falls. The versions a column
/// keeps are bounded by the table's `max_versions` as the last link (else the base) recorded it.
/// `as_of_snapshot` is refused: the image is exact, there is no time range to cut it to.
pub async fn compare_chain(
    client: &OtsClient,
    chain: &SnapshotChain,
    table: &str,
    options: &CompareOptions,
) -> Result<CompareReport, RestoreError> {
    // Without the keys of an encrypted link, say so before reading anything.
    chain.check_keys()?;
    if options.as_of_snapshot && chain.has_changes() {
        return Err(as_of_snapshot_with_changes(chain.last().id()));
    }
    let changed = read_changes(chain, options.memory_bytes / 2).await?;
    let max_versions = [chain.last(), chain.base()]
        .iter()
        .find_map(|l| l.manifest.source.table.max_versions)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0);
    let base = chain.base();
    let image = Image {
        snapshot: &base.snapshot,
        manifest: &base.manifest,
        chain: chain.links.iter().map(|l| l.id().to_string()).collect(),
        changed,
        max_versions,
    };
    compare_image(client, image, table, options).await
}

/// What a table is compared with: the data files of `manifest` (the chain's base) and the changed
/// keys (none for a snapshot without captured changes).
struct Image<'a> {
    snapshot: &'a Snapshot,
    manifest: &'a Manifest,
    chain: Vec<String>,
    changed: ChangedRows,
    max_versions: Option<usize>,
}

async fn compare_image(
    client: &OtsClient,
    image: Image<'_>,
    table: &str,
    options: &CompareOptions,
) -> Result<CompareReport, RestoreError> {
    let Image {
        snapshot,
        manifest,
        chain,
        mut changed,
        max_versions,
    } = image;
    let time_range = if options.as_of_snapshot {
        (manifest.time_range.start_ms, manifest.time_range.end_ms)
    } else {
        // Every cell, however dated: the end of Tablestore's timestamp range.
        (0, TimeRange::MAX_END_MS)
    };
    let mut report = CompareReport {
        table: table.to_string(),
        chain,
        as_of_snapshot: options.as_of_snapshot,
        time_range_ms: options.as_of_snapshot.then_some(time_range),
        ..Default::default()
    };
    let max = options.max_differences;
    let scan = ScanOptions {
        time_range,
        ..ScanOptions::up_to(manifest.time_range.t_ms)
    };
    let bad_split = |e: ots_format::KeyError| {
        RestoreError::Manifest(ManifestError::Invalid {
            url: snapshot.url_of("manifest.json"),
            detail: format!("a split's key range: {e}"),
        })
    };
    // Each split's changed keys, taken in split order before any split is compared.
    let mut splits = Vec::with_capacity(manifest.splits.len());
    for split in manifest.splits.iter().map(|s| s.range()) {
        let split_changes = if changed.keys() == 0 {
            Vec::new()
        } else {
            changed.take_range(
                &split.start_columns().map_err(bad_split)?,
                &split.end_columns().map_err(bad_split)?,
            )
        };
        splits.push((split, split_changes));
    }
    if let Some(key) = changed.first_left() {
        return Err(RestoreError::Manifest(ManifestError::Invalid {
            url: snapshot.url_of("manifest.json"),
            detail: format!(
                "changed key {} lies in none of the splits, which must cover every key",
                display_columns(key)
            ),
        }));
    }
    let at_once = options.concurrency.clamp(1, splits.len().max(1));
    let each = SplitComparison {
        client,
        snapshot,
        manifest,
        table,
        options,
        scan,
        max_versions,
        decoded_budget: options.memory_bytes / 2 / at_once,
    };
    // In split order, `at_once` at a time: the reports are absorbed in key order.
    let mut compared = futures::stream::iter(splits)
        .map(|(split, split_changes)| each.compare(split, split_changes))
        .buffered(at_once);
    while let Some(split) = compared.try_next().await? {
        report.absorb(split, max);
    }
    Ok(report)
}

/// What comparing one split needs; shared by the splits compared at once.
struct SplitComparison<'a> {
    client: &'a OtsClient,
    snapshot: &'a Snapshot,
    manifest: &'a Manifest,
    table: &'a str,
    options: &'a CompareOptions,
    scan: ScanOptions,
    max_versions: Option<usize>,
    /// One split's share of the decoded-row budget.
    decoded_budget: usize,
}

impl SplitComparison<'_> {
    /// Merges the split's snapshot rows (with `split_changes` applied) with a scan of the table
    /// over its key range: a report of this split alone.
    async fn compare(
        &self,
        split: ots_scan::Split,
        split_changes: Vec<(Vec<PkColumn>, Vec<RowChange>)>,
    ) -> Result<CompareReport, RestoreError> {
        let (table, max) = (self.table, self.options.max_differences);
        let mut report = CompareReport::default();
        let files = Files {
            snapshot: self.snapshot,
            schema: &self.manifest.schema,
            batch_rows: self.options.batch_rows,
            decoded_budget: self.decoded_budget,
            per_chain: 0,
        };
        let split_files: Vec<&FileEntry> = self
            .manifest
            .files
            .iter()
            .filter(|f| f.split == split.id)
            .collect();
        let merge = Merge::new(files, split_files).await?;
        let mut want = Expected::new(merge, split_changes, self.max_versions);
        let mut scanner = SplitScanner::new(self.client.clone(), table, split, self.scan.clone())
            .map_err(|e| scan_error(table, e))?;
        // Rows of this split already counted in `rows_compared`.
        let mut counted = 0;
        let count = |report: &CompareReport, counted: &mut u64| {
            if let Some(n) = &self.options.rows_compared {
                n.fetch_add(report.rows_in_snapshot - *counted, AtomicOrdering::Relaxed);
                *counted = report.rows_in_snapshot;
            }
        };
        // Pages are received here, between pages of this split and others' comparisons. A scan
        // task a page ahead per split was 15–25% faster unpinned, but held 239 MiB on 1 MB rows.
        while let Some(page) = scanner
            .next_page()
            .await
            .map_err(|e| scan_error(table, e))?
        {
            count(&report, &mut counted);
            // The table's rows are compared as decoded (and checked), borrowing from the page.
            let mut rows = page.rows().map_err(|e| scan_error(table, e))?;
            let mut got = RowRef::default();
            while rows.next_into(&mut got).map_err(|e| scan_error(table, e))? {
                report.rows_in_table += 1;
                loop {
                    match want.peek().await?.map(|w| pk_order_live(w, &got)) {
                        Some(Ordering::Less) => {
                            if let Some(w) = want.next().await? {
                                report.rows_in_snapshot += 1;
                                report.record(
                                    &w,
                                    "missing_in_table",
                                    "in the snapshot, not in the table".into(),
                                    None,
                                    max,
                                );
                                want.recycle(w);
                            }
                        }
                        Some(Ordering::Equal) => {
                            if let Some(w) = want.next().await? {
                                report.rows_in_snapshot += 1;
                                let difference = if same_cells(&w, &got) {
                                    None
                                } else {
                                    row_difference(&w, &got.to_row())
                                };
                                match difference {
                                    None => report.rows_matching += 1,
                                    Some((d, cell)) => report.record(&w, "different", d, cell, max),
                                }
                                want.recycle(w);
                            }
                            break;
                        }
                        _ => {
                            report.record(
                                &got.to_row(),
                                "extra_in_table",
                                "in the table, not in the snapshot".into(),
                                None,
                                max,
                            );
                            break;
                        }
                    }
                }
            }
        }
        while let Some(w) = want.next().await? {
            report.rows_in_snapshot += 1;
            report.record(
                &w,
                "missing_in_table",
                "in the snapshot, not in the table".into(),
                None,
                max,
            );
        }
        count(&report, &mut counted);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use ots_schema::layout::{LAYOUT_VERSION, PkColumnSchema};
    use ots_schema::{BatchBuilder, SnapshotSchema};
    use ots_wire::plainbuffer::{RowDecoder, encode_rows};
    use ots_wire::types::{Cell, PkType, PkValue, RowRef, Value};
    use std::sync::Arc;

    fn schema() -> SnapshotSchema {
        SnapshotSchema {
            layout_version: LAYOUT_VERSION,
            primary_key: vec![PkColumnSchema {
                name: "k".into(),
                pk_type: PkType::Integer,
                auto_increment: false,
            }],
            columns: Vec::new(),
        }
    }

    fn row(k: i64) -> Row {
        Row {
            primary_key: vec![PkColumn::new("k", PkValue::Integer(k))],
            cells: vec![Cell::new("v", Value::Integer(k * 10), Some(1000))],
        }
    }

    /// A snapshot file of `keys`, one row group per two rows, stored under `name`.
    async fn file(snap: &Snapshot, name: &str, partition: &str, keys: &[i64]) -> FileEntry {
        let rows: Vec<Row> = keys.iter().map(|&k| row(k)).collect();
        let encoded = encode_rows(&rows);
        let mut builder = BatchBuilder::new(Arc::new(schema()));
        let mut decoder = RowDecoder::new(&encoded).unwrap();
        let mut r = RowRef::default();
        while decoder.next_into(&mut r).unwrap() {
            builder.push_row(&r).unwrap();
        }
        let batch = builder.finish().unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut bytes = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let path = format!("data/p={partition}/{name}.parquet");
        let (store, object) = snap.object(&path);
        store
            .put(&object, PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        let kp = |k: i64| {
            vec![KeyPart::from_column(&PkColumn::new(
                "k",
                PkValue::Integer(k),
            ))]
        };
        FileEntry {
            path,
            split: 0,
            partition: [("p".to_string(), partition.to_string())].into(),
            rows: keys.len() as u64,
            cells: keys.len() as u64,
            bytes: bytes.len() as u64,
            sha256: String::new(),
            pk_min: kp(keys[0]),
            pk_max: kp(*keys.last().unwrap()),
        }
    }

    fn store() -> Snapshot {
        let dest = ots_writer::Destination::from_store(
            Arc::new(InMemory::new()),
            Path::from("dest"),
            "memory://dest",
            true,
        );
        Snapshot::new(dest, "snap")
    }

    async fn merged(store: &Snapshot, files: &[FileEntry]) -> Result<Vec<i64>, RestoreError> {
        let schema = schema();
        let f = Files {
            snapshot: store,
            schema: &schema,
            batch_rows: 1,
            decoded_budget: 1 << 20,
            per_chain: 0,
        };
        let mut m = Merge::new(f, files.iter().collect()).await?;
        let mut keys = Vec::new();
        while let Some(r) = m.next().await? {
            let PkValue::Integer(k) = r.primary_key[0].value else {
                panic!("{r:?}");
            };
            keys.push(k);
        }
        Ok(keys)
    }

    #[tokio::test]
    async fn partitions_interleave_and_merge_in_key_order() {
        let s = store();
        // Listed out of order on purpose: chains are ordered by each file's first key.
        let files = vec![
            file(&s, "a2", "a", &[7, 9]).await,
            file(&s, "b1", "b", &[2, 3, 6]).await,
            file(&s, "a1", "a", &[1, 4, 5]).await,
            file(&s, "c1", "c", &[8]).await,
        ];
        assert_eq!(
            merged(&s, &files).await.unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
    }

    #[test]
    fn the_first_differing_cell_is_named() {
        let cells = |c: &[(&str, i64, i64)]| Row {
            primary_key: vec![PkColumn::new("k", PkValue::Integer(1))],
            cells: c
                .iter()
                .map(|(n, v, ts)| Cell::new(*n, Value::Integer(*v), Some(*ts)))
                .collect(),
        };
        let snap = cells(&[("a", 1, 10), ("b", 2, 10)]);
        assert_eq!(row_difference(&snap, &snap.clone()), None);
        // A changed value.
        let (detail, cell) = row_difference(&snap, &cells(&[("a", 1, 10), ("b", 3, 10)])).unwrap();
        let cell = cell.unwrap();
        assert_eq!((cell.column.as_str(), cell.timestamp_ms), ("b", Some(10)));
        assert_eq!(cell.snapshot.unwrap().text, "2");
        assert_eq!(cell.table.unwrap().text, "3");
        assert_eq!(
            detail,
            "b@10: snapshot has 2 (INTEGER), table has 3 (INTEGER)"
        );
        // A newer version in the table comes first in cell order.
        let (_, cell) =
            row_difference(&snap, &cells(&[("a", 5, 20), ("a", 1, 10), ("b", 2, 10)])).unwrap();
        let cell = cell.unwrap();
        assert_eq!((cell.column.as_str(), cell.timestamp_ms), ("a", Some(20)));
        assert!(cell.snapshot.is_none());
        // A column the table lacks.
        let (_, cell) = row_difference(&snap, &cells(&[("a", 1, 10)])).unwrap();
        let cell = cell.unwrap();
        assert_eq!(cell.column, "b");
        assert!(cell.table.is_none());
    }

    /// The fast check on a table row as decoded from its page agrees with the full comparison.
    #[test]
    fn same_cells_on_a_decoded_row_agrees_with_the_full_comparison() {
        let row = |c: &[(&str, Value, i64)]| Row {
            primary_key: vec![PkColumn::new("k", PkValue::Integer(1))],
            cells: c
                .iter()
                .map(|(n, v, ts)| Cell::new(*n, v.clone(), Some(*ts)))
                .collect(),
        };
        let snap = row(&[
            ("a", Value::Integer(1), 10),
            ("b", Value::String("x".into()), 10),
        ]);
        let tables = [
            snap.clone(),
            row(&[
                ("a", Value::Integer(1), 10),
                ("b", Value::String("y".into()), 10),
            ]),
            row(&[
                ("a", Value::Integer(1), 10),
                ("b", Value::Binary(b"x".to_vec()), 10),
            ]),
            row(&[
                ("a", Value::Integer(1), 11),
                ("b", Value::String("x".into()), 10),
            ]),
            row(&[
                ("a", Value::Integer(1), 10),
                ("c", Value::String("x".into()), 10),
            ]),
            row(&[("a", Value::Integer(1), 10)]),
            row(&[
                ("a", Value::Integer(1), 10),
                ("b", Value::String("x".into()), 10),
                ("b", Value::String("x".into()), 9),
            ]),
        ];
        for (i, table) in tables.iter().enumerate() {
            let bytes = encode_rows(std::slice::from_ref(table));
            let mut decoder = RowDecoder::new(&bytes).unwrap();
            let mut live = RowRef::default();
            assert!(decoder.next_into(&mut live).unwrap());
            assert_eq!(
                same_cells(&snap, &live),
                row_difference(&snap, table).is_none(),
                "table row {i}"
            );
            assert_eq!(same_cells(&snap, &live), i == 0, "table row {i}");
        }
    }

    #[tokio::test]
    async fn files_of_a_partition_out_of_key_order_are_an_error() {
        let s = store();
        let files = vec![
            file(&s, "a1", "a", &[1, 4, 5]).await,
            file(&s, "a2", "a", &[3, 9]).await,
        ];
        let err = merged(&s, &files).await.unwrap_err();
        assert!(matches!(err, RestoreError::Order { .. }), "{err:?}");
        assert!(err.to_string().contains("a2"), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Mismatch);
    }
}
