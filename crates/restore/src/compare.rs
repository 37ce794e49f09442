//! A snapshot against a live table, split by split: the snapshot's rows of a split (sorted by
//! primary key) are merged with a GetRange scan of the same range and time range [0, T], and
//! every row, cell, type, value and timestamp is compared. Memory is bounded by one split.

use std::cmp::Ordering;

use futures::TryStreamExt;
use ots_manifest::{Manifest, SnapshotStore};
use ots_scan::{KeyPart, ScanOptions, SplitScanner};
use ots_schema::RowReader;
use ots_wire::OtsClient;
use ots_wire::types::{Row, cmp_primary_keys};
use serde::Serialize;

use crate::RestoreError;

#[derive(Clone, Debug, Serialize)]
pub struct RowDiff {
    pub primary_key: Vec<KeyPart>,
    /// `missing_in_table`, `extra_in_table` or `different`.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CompareReport {
    pub table: String,
    pub rows_in_snapshot: u64,
    pub rows_in_table: u64,
    pub rows_matching: u64,
    pub missing_in_table: u64,
    pub extra_in_table: u64,
    pub different: u64,
    /// The first differences, in primary-key order.
    pub first_differences: Vec<RowDiff>,
}

impl CompareReport {
    pub fn ok(&self) -> bool {
        self.missing_in_table == 0 && self.extra_in_table == 0 && self.different == 0
    }

    fn record(&mut self, row: &Row, kind: &'static str, detail: String, max: usize) {
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
            });
        }
    }
}

fn pk_order(a: &Row, b: &Row) -> Ordering {
    cmp_primary_keys(
        a.primary_key.iter().map(|c| c.value.as_ref()),
        b.primary_key.iter().map(|c| c.value.as_ref()),
    )
}

/// Describes the first difference between two rows with the same key.
fn row_difference(snapshot: &Row, table: &Row) -> Option<String> {
    if snapshot.cells == table.cells {
        return None;
    }
    for (i, (s, t)) in snapshot.cells.iter().zip(&table.cells).enumerate() {
        if s != t {
            return Some(format!(
                "cell {i}: snapshot has {}={:?}@{:?}, table has {}={:?}@{:?}",
                s.name, s.value, s.timestamp, t.name, t.value, t.timestamp
            ));
        }
    }
    Some(format!(
        "snapshot has {} cells, table has {}",
        snapshot.cells.len(),
        table.cells.len()
    ))
}

/// Compares snapshot `id` with `table`, reporting at most `max_differences` examples.
pub async fn compare_with_table(
    client: &OtsClient,
    store: &SnapshotStore,
    id: &str,
    manifest: &Manifest,
    table: &str,
    max_differences: usize,
) -> Result<CompareReport, RestoreError> {
    let mut report = CompareReport {
        table: table.to_string(),
        ..Default::default()
    };
    let options = ScanOptions {
        time_range: (manifest.time_range.start_ms, manifest.time_range.end_ms),
        ..ScanOptions::up_to(manifest.time_range.t_ms)
    };
    for split in manifest.splits.iter().map(|s| s.range()) {
        // The snapshot side of this split, sorted (partitioned files interleave keys).
        let mut expected: Vec<Row> = Vec::new();
        for f in manifest.files.iter().filter(|f| f.split == split.id) {
            let path = store.dest.path(&format!("{id}/{}", f.path));
            let mut stream =
                crate::reader::open_batches(store.dest.store.clone(), path, f.bytes, 4096)
                    .await
                    .map_err(|e| RestoreError::Read {
                        path: f.path.clone(),
                        detail: e.to_string(),
                    })?;
            while let Some(rb) = stream.try_next().await.map_err(|e| RestoreError::Read {
                path: f.path.clone(),
                detail: e.to_string(),
            })? {
                let rr = RowReader::new(&manifest.schema, &rb).map_err(|e| RestoreError::Read {
                    path: f.path.clone(),
                    detail: e.to_string(),
                })?;
                for r in rr.rows() {
                    expected.push(r.map_err(|e| RestoreError::Read {
                        path: f.path.clone(),
                        detail: e.to_string(),
                    })?);
                }
            }
        }
        expected.sort_by(pk_order);
        report.rows_in_snapshot += expected.len() as u64;

        let mut scanner = SplitScanner::new(client.clone(), table, split.clone(), options.clone())
            .map_err(|e| RestoreError::Io(e.to_string()))?;
        let mut want = expected.into_iter().peekable();
        while let Some(page) = scanner
            .next_page()
            .await
            .map_err(|e| RestoreError::Io(e.to_string()))?
        {
            let mut live: Vec<Row> = Vec::new();
            page.for_each_row::<ots_wire::plainbuffer::DecodeError>(|r| {
                live.push(r.to_row());
                Ok(())
            })
            .map_err(|e| RestoreError::Io(format!("decoding a page of '{table}': {e}")))?;
            for got in live {
                report.rows_in_table += 1;
                loop {
                    match want.peek().map(|w| pk_order(w, &got)) {
                        Some(Ordering::Less) => {
                            if let Some(w) = want.next() {
                                report.record(
                                    &w,
                                    "missing_in_table",
                                    "in the snapshot, not in the table".into(),
                                    max_differences,
                                );
                            }
                        }
                        Some(Ordering::Equal) => {
                            if let Some(w) = want.next() {
                                match row_difference(&w, &got) {
                                    None => report.rows_matching += 1,
                                    Some(d) => report.record(&w, "different", d, max_differences),
                                }
                            }
                            break;
                        }
                        _ => {
                            report.record(
                                &got,
                                "extra_in_table",
                                "in the table, not in the snapshot".into(),
                                max_differences,
                            );
                            break;
                        }
                    }
                }
            }
        }
        for w in want {
            report.record(
                &w,
                "missing_in_table",
                "in the snapshot, not in the table".into(),
                max_differences,
            );
        }
    }
    Ok(report)
}
