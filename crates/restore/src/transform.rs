//! The row options: which files and rows are restored (key range, partitions), which columns,
//! with which timestamps and keys, and how a row is encoded for BatchWriteRow.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use ots_manifest::FileEntry;
use ots_scan::KeyPart;
use ots_wire::pb;
use ots_wire::plainbuffer::{encode_put_row, encode_update_row};
use ots_wire::types::{ColumnUpdate, PkColumn, PkValue, Row, cmp_primary_keys};

use crate::config::{AutoIncrementMode, RestoreConfig, TimestampMode, WriteMode};

fn cmp_keys(a: &[PkColumn], b: &[PkColumn]) -> Ordering {
    cmp_primary_keys(
        a.iter().map(|c| c.value.as_ref()),
        b.iter().map(|c| c.value.as_ref()),
    )
}

/// Whether a file is to be read at all: its partition matches every `--partition`, and its PK
/// range can hold rows of `[start, end)`.
pub(crate) fn file_selected(f: &FileEntry, cfg: &RestoreConfig) -> bool {
    cfg.partitions
        .iter()
        .all(|(k, v)| f.partition.get(k) == Some(v))
        && file_overlaps(f, &cfg.pk_range)
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
    cmp_keys(&max, start) != Ordering::Less && cmp_keys(&min, end) == Ordering::Less
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

    /// Applies the row-level options; `None` when nothing of the row is to be written.
    pub(crate) fn apply(&self, mut row: Row) -> Option<Row> {
        if let Some((start, end)) = &self.pk_range
            && (cmp_keys(&row.primary_key, start) == Ordering::Less
                || cmp_keys(&row.primary_key, end) != Ordering::Less)
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

    /// The row as BatchWriteRow carries it.
    pub(crate) fn encode(&self, row: &Row) -> Vec<u8> {
        match self.op {
            pb::OperationType::Update => {
                let puts: Vec<ColumnUpdate> = row
                    .cells
                    .iter()
                    .map(|c| ColumnUpdate::Put {
                        name: c.name.clone(),
                        value: c.value.clone(),
                        timestamp: c.timestamp,
                    })
                    .collect();
                encode_update_row(&row.primary_key, &puts)
            }
            _ => encode_put_row(row),
        }
    }
}

/// A restore of some columns into an existing row must not wipe the row's other columns: it is an
/// UpdateRow (puts of the restored versions) instead of a PutRow, which replaces the whole row.
fn operation(cfg: &RestoreConfig) -> pb::OperationType {
    if cfg.columns.is_some() && cfg.mode == WriteMode::Overwrite {
        pb::OperationType::Update
    } else {
        pb::OperationType::Put
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_wire::types::{Cell, Value};

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
