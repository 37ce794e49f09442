//! The image of a chain of snapshots at its last link's consistency point, as `verify
//! --against-table` compares it with a table: the base's data rows with every captured change
//! applied in order, key by key, with Tablestore's semantics.
//!
//! A row is a set of cells keyed by (column, timestamp). PUT_ROW deletes every cell, then puts its
//! own; UPDATE_ROW applies its operations in order — a put sets the version (column, timestamp), a
//! delete of one version removes it, a delete of all versions removes every version of the column;
//! DELETE_ROW removes every cell. A put that leaves a column with more than the table's
//! `max_versions` versions drops the oldest at once: the table hides them from then on (and
//! purges them later), so a later delete of a newer version does not bring them back. A row
//! without a cell does not exist.
//!
//! The changes are held in memory, grouped by key ([`ChangedRows`]); their decoded size is
//! counted against the comparison's budget.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

use ots_format::change::ChangeOp;
use ots_wire::types::{Cell, ColumnUpdate, PkColumn, PkValue, Row, Value, cmp_pk_columns};

use crate::chain::Chain;
use crate::error::RestoreError;

/// One captured change of a key, as the image needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RowChange {
    pub op: ChangeOp,
    /// Checked by [`crate::replay::check_replayable`]: puts carry a timestamp, no increments.
    pub cells: Vec<ColumnUpdate>,
}

/// One column's versions, newest first (a version without a timestamp after every dated one).
type Versions = BTreeMap<Reverse<Option<i64>>, Value>;

/// The row `base` becomes after `changes`, applied in order; `None` when no cell is left.
/// `max_versions` (the table's, when known) bounds the versions a column keeps.
pub(crate) fn apply_changes(
    primary_key: Vec<PkColumn>,
    base: Option<Row>,
    changes: &[RowChange],
    max_versions: Option<usize>,
) -> Option<Row> {
    let mut columns: BTreeMap<String, Versions> = BTreeMap::new();
    for c in base.into_iter().flat_map(|r| r.cells) {
        columns
            .entry(c.name)
            .or_default()
            .insert(Reverse(c.timestamp), c.value);
    }
    let keep = max_versions.unwrap_or(usize::MAX).max(1);
    for change in changes {
        if change.op != ChangeOp::UpdateRow {
            // PUT_ROW replaces the row; DELETE_ROW removes it (and has no cells).
            columns.clear();
        }
        for op in &change.cells {
            match op {
                ColumnUpdate::Put {
                    name,
                    value,
                    timestamp,
                } => {
                    let versions = columns.entry(name.clone()).or_default();
                    versions.insert(Reverse(*timestamp), value.clone());
                    while versions.len() > keep {
                        versions.pop_last();
                    }
                }
                ColumnUpdate::DeleteOneVersion { name, timestamp } => {
                    if let Some(versions) = columns.get_mut(name) {
                        versions.remove(&Reverse(Some(*timestamp)));
                        if versions.is_empty() {
                            columns.remove(name);
                        }
                    }
                }
                ColumnUpdate::DeleteAllVersions { name } => {
                    columns.remove(name);
                }
                // Refused when the changes are read (`check_replayable`): the stream logs the
                // value an increment produced, never the increment.
                ColumnUpdate::Increment { .. } => {}
            }
        }
    }
    let cells: Vec<Cell> = columns
        .into_iter()
        .flat_map(|(name, versions)| {
            versions
                .into_iter()
                .take(keep)
                .map(move |(Reverse(ts), value)| Cell::new(name.clone(), value, ts))
        })
        .collect();
    (!cells.is_empty()).then_some(Row { primary_key, cells })
}

fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Binary(b) => b.len(),
        _ => 0,
    }
}

fn key_bytes(pk: &[PkColumn]) -> usize {
    pk.iter()
        .map(|c| {
            std::mem::size_of::<PkColumn>()
                + c.name.len()
                + match &c.value {
                    PkValue::String(s) => s.len(),
                    PkValue::Binary(b) => b.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// The decoded bytes `change` takes in memory (its key counted separately).
fn change_bytes(change: &RowChange) -> usize {
    std::mem::size_of::<RowChange>()
        + change
            .cells
            .iter()
            .map(|c| {
                std::mem::size_of::<ColumnUpdate>()
                    + match c {
                        ColumnUpdate::Put { name, value, .. } => name.len() + value_bytes(value),
                        ColumnUpdate::DeleteOneVersion { name, .. }
                        | ColumnUpdate::DeleteAllVersions { name }
                        | ColumnUpdate::Increment { name, .. } => name.len(),
                    }
            })
            .sum::<usize>()
}

/// Every changed key of a chain with its changes in replay order, keys in primary-key order.
#[derive(Debug, Default)]
pub(crate) struct ChangedRows {
    keys: Vec<(Vec<PkColumn>, Vec<RowChange>)>,
    /// Changes read, over all keys.
    pub changes: u64,
    /// Their decoded size, as counted against the budget.
    pub bytes: usize,
}

impl ChangedRows {
    /// Groups `changes` (in replay order) by key; an error once their decoded size exceeds
    /// `budget` bytes.
    #[cfg(test)]
    fn build(
        changes: impl IntoIterator<Item = (Vec<PkColumn>, RowChange)>,
        budget: usize,
    ) -> Result<Self, RestoreError> {
        let mut by_key: HashMap<Vec<PkColumn>, Vec<RowChange>> = HashMap::new();
        let mut out = ChangedRows::default();
        for (key, change) in changes {
            out.add(&mut by_key, key, change, budget)?;
        }
        out.finish(by_key);
        Ok(out)
    }

    fn add(
        &mut self,
        by_key: &mut HashMap<Vec<PkColumn>, Vec<RowChange>>,
        key: Vec<PkColumn>,
        change: RowChange,
        budget: usize,
    ) -> Result<(), RestoreError> {
        self.bytes += change_bytes(&change);
        self.changes += 1;
        match by_key.get_mut(&key) {
            Some(list) => list.push(change),
            None => {
                self.bytes +=
                    key_bytes(&key) + std::mem::size_of::<(Vec<PkColumn>, Vec<RowChange>)>();
                by_key.insert(key, vec![change]);
            }
        }
        if self.bytes > budget {
            return Err(RestoreError::Usage(format!(
                "the chain's captured changes take more than {:.1} MiB decoded ({} changes of {} keys \
                 read so far), over half of the comparison's memory (--memory-mb {}): the comparison \
                 holds every change of the chain in memory, grouped by key; raise --memory-mb",
                budget as f64 / f64::from(1 << 20),
                self.changes,
                by_key.len(),
                budget.saturating_mul(2) >> 20
            )));
        }
        Ok(())
    }

    fn finish(&mut self, by_key: HashMap<Vec<PkColumn>, Vec<RowChange>>) {
        let mut keys: Vec<_> = by_key.into_iter().collect();
        keys.sort_by(|a, b| cmp_pk_columns(&a.0, &b.0));
        self.keys = keys;
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Takes the changed keys in `[start, end)` (range markers allowed), in key order: they leave
    /// this set, so the ranges of every split can be taken up front without holding the keys twice.
    pub fn take_range(
        &mut self,
        start: &[PkColumn],
        end: &[PkColumn],
    ) -> Vec<(Vec<PkColumn>, Vec<RowChange>)> {
        let lo = self
            .keys
            .partition_point(|(k, _)| cmp_pk_columns(k, start) == Ordering::Less);
        let hi = self
            .keys
            .partition_point(|(k, _)| cmp_pk_columns(k, end) == Ordering::Less)
            .max(lo);
        self.keys
            .drain(lo..hi)
            .filter(|(_, changes)| !changes.is_empty())
            .collect()
    }

    /// A changed key no range taken so far covered.
    pub fn first_left(&self) -> Option<&[PkColumn]> {
        self.keys
            .iter()
            .find(|(_, c)| !c.is_empty())
            .map(|(k, _)| k.as_slice())
    }
}

/// Reads every change of every link of `chain`, link by link in order, and groups them by key
/// within `budget` decoded bytes.
pub(crate) async fn read_changes(
    chain: &Chain,
    budget: usize,
) -> Result<ChangedRows, RestoreError> {
    let mut by_key: HashMap<Vec<PkColumn>, Vec<RowChange>> = HashMap::new();
    let mut out = ChangedRows::default();
    let mut changes = crate::chain::ChainChanges::new(chain, None, budget);
    while let Some(mut batch) = changes.next().await? {
        // Replay order within a link (files are listed in it; this makes sure).
        batch.sort_by_key(|c| c.ordinal);
        for change in batch {
            crate::replay::check_replayable(&change)?;
            let row_change = RowChange {
                op: change.op,
                cells: change.cells,
            };
            out.add(&mut by_key, change.primary_key, row_change, budget)?;
        }
    }
    out.finish(by_key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(k: i64) -> Vec<PkColumn> {
        vec![PkColumn::new("k", PkValue::Integer(k))]
    }

    fn row(cells: &[(&str, i64, i64)]) -> Row {
        Row {
            primary_key: pk(1),
            cells: cells
                .iter()
                .map(|(n, v, ts)| Cell::new(*n, Value::Integer(*v), Some(*ts)))
                .collect(),
        }
    }

    fn put(name: &str, v: i64, ts: i64) -> ColumnUpdate {
        ColumnUpdate::Put {
            name: name.into(),
            value: Value::Integer(v),
            timestamp: Some(ts),
        }
    }

    fn ch(op: ChangeOp, cells: Vec<ColumnUpdate>) -> RowChange {
        RowChange { op, cells }
    }

    fn apply(base: Option<Row>, changes: &[RowChange], max: Option<usize>) -> Option<Row> {
        apply_changes(pk(1), base, changes, max)
    }

    #[test]
    fn put_row_replaces_the_whole_row() {
        let base = row(&[("a", 1, 10), ("b", 2, 10)]);
        let got = apply(
            Some(base),
            &[ch(ChangeOp::PutRow, vec![put("c", 3, 20), put("c", 4, 30)])],
            None,
        );
        // Newest version first.
        assert_eq!(got, Some(row(&[("c", 4, 30), ("c", 3, 20)])));
        // Onto nothing: the row appears.
        let got = apply(None, &[ch(ChangeOp::PutRow, vec![put("a", 1, 5)])], None);
        assert_eq!(got, Some(row(&[("a", 1, 5)])));
    }

    #[test]
    fn update_row_applies_its_operations_in_order_to_the_existing_cells() {
        let base = row(&[("a", 1, 10), ("a", 0, 5), ("b", 2, 10), ("c", 3, 10)]);
        let update = ch(
            ChangeOp::UpdateRow,
            vec![
                // A new version, and one that overwrites an existing version.
                put("a", 7, 20),
                put("b", 9, 10),
                ColumnUpdate::DeleteOneVersion {
                    name: "a".into(),
                    timestamp: 5,
                },
                // A version that is not there: nothing happens.
                ColumnUpdate::DeleteOneVersion {
                    name: "a".into(),
                    timestamp: 6,
                },
                ColumnUpdate::DeleteAllVersions { name: "c".into() },
                // Put after a delete of all versions: only the new one.
                put("d", 4, 1),
                ColumnUpdate::DeleteAllVersions { name: "d".into() },
                put("d", 5, 2),
            ],
        );
        let got = apply(Some(base), &[update], None);
        assert_eq!(
            got,
            Some(row(&[
                ("a", 7, 20),
                ("a", 1, 10),
                ("b", 9, 10),
                ("d", 5, 2)
            ]))
        );
    }

    #[test]
    fn delete_row_removes_everything_and_later_changes_start_from_nothing() {
        let base = row(&[("a", 1, 10)]);
        assert_eq!(
            apply(Some(base.clone()), &[ch(ChangeOp::DeleteRow, vec![])], None),
            None
        );
        let got = apply(
            Some(base),
            &[
                ch(ChangeOp::DeleteRow, vec![]),
                ch(ChangeOp::UpdateRow, vec![put("b", 2, 30)]),
            ],
            None,
        );
        assert_eq!(got, Some(row(&[("b", 2, 30)])));
    }

    #[test]
    fn a_row_whose_last_cell_is_deleted_does_not_exist() {
        let base = row(&[("a", 1, 10)]);
        let deletes = [ch(
            ChangeOp::UpdateRow,
            vec![ColumnUpdate::DeleteOneVersion {
                name: "a".into(),
                timestamp: 10,
            }],
        )];
        assert_eq!(apply(Some(base), &deletes, None), None);
        // An update of a missing row that deletes only: still nothing.
        assert_eq!(apply(None, &deletes, None), None);
        // An empty update changes nothing.
        let base = row(&[("a", 1, 10)]);
        assert_eq!(
            apply(Some(base.clone()), &[ch(ChangeOp::UpdateRow, vec![])], None),
            Some(base)
        );
    }

    #[test]
    fn versions_beyond_max_versions_are_dropped_as_puts_push_them_out() {
        let base = row(&[("a", 2, 20), ("a", 1, 10)]);
        // A third version pushes out the oldest; deleting the newest does not bring it back.
        let changes = [
            ch(ChangeOp::UpdateRow, vec![put("a", 3, 30)]),
            ch(
                ChangeOp::UpdateRow,
                vec![ColumnUpdate::DeleteOneVersion {
                    name: "a".into(),
                    timestamp: 30,
                }],
            ),
        ];
        assert_eq!(
            apply(Some(base.clone()), &changes, Some(2)),
            Some(row(&[("a", 2, 20)]))
        );
        // A put older than every kept version is hidden at once.
        let got = apply(
            Some(base.clone()),
            &[ch(ChangeOp::UpdateRow, vec![put("a", 0, 5)])],
            Some(2),
        );
        assert_eq!(got, Some(row(&[("a", 2, 20), ("a", 1, 10)])));
        // The base itself is trimmed when the table keeps fewer versions.
        assert_eq!(
            apply(Some(base.clone()), &[], Some(1)),
            Some(row(&[("a", 2, 20)]))
        );
        // Unknown max_versions: every version is kept.
        assert_eq!(
            apply(
                Some(base),
                &[ch(ChangeOp::UpdateRow, vec![put("a", 3, 30)])],
                None
            ),
            Some(row(&[("a", 3, 30), ("a", 2, 20), ("a", 1, 10)]))
        );
    }

    #[test]
    fn changed_rows_are_grouped_by_key_in_key_order_and_taken_by_range() {
        let changes = vec![
            (pk(5), ch(ChangeOp::PutRow, vec![put("a", 1, 1)])),
            (pk(2), ch(ChangeOp::DeleteRow, vec![])),
            (pk(5), ch(ChangeOp::UpdateRow, vec![put("a", 2, 2)])),
            (pk(9), ch(ChangeOp::DeleteRow, vec![])),
        ];
        let mut rows = ChangedRows::build(changes, 1 << 20).unwrap();
        assert_eq!((rows.keys(), rows.changes), (3, 4));
        let inf = |v| vec![PkColumn::new("k", v)];
        let first = rows.take_range(&inf(PkValue::InfMin), &pk(5));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, pk(2));
        let second = rows.take_range(&pk(5), &pk(9));
        assert_eq!(second[0].0, pk(5));
        assert_eq!(second[0].1.len(), 2);
        assert_eq!(second[0].1[1].op, ChangeOp::UpdateRow, "replay order kept");
        assert_eq!(rows.first_left(), Some(pk(9).as_slice()));
        assert_eq!(rows.keys(), 1, "taken keys leave the set");
        assert_eq!(rows.take_range(&pk(9), &inf(PkValue::InfMax)).len(), 1);
        assert_eq!(rows.first_left(), None);
    }

    #[test]
    fn changes_over_the_budget_are_a_usage_error_naming_memory_mb() {
        let changes = (0..100).map(|i| (pk(i), ch(ChangeOp::PutRow, vec![put("a", i, 1)])));
        let err = ChangedRows::build(changes, 1000).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        assert!(err.to_string().contains("--memory-mb"), "{err}");
    }
}
