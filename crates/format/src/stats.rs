//! Per-column statistics of a snapshot, as the manifest records them.

use std::collections::BTreeMap;

use ots_wire::types::ValueType;
use serde::{Deserialize, Serialize};

/// Statistics of one attribute column over everything converted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// Cells seen, per type (all versions).
    pub cells_by_type: BTreeMap<String, u64>,
    /// Rows whose latest version landed in the typed column.
    pub typed_values: u64,
    /// Rows where the typed column is null (absent, or the latest version had another type).
    pub typed_nulls: u64,
    /// Cells kept in `$cells` (older versions, type conflicts, or the column is not typed).
    pub overflow_cells: u64,
    /// Of those, latest versions whose type differs from the typed column's type.
    pub type_conflicts: u64,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    /// The most versions of this column that one row holds (0: no cell). `None` when unknown:
    /// statistics written before this field existed (it is absent from their JSON), and anything
    /// merged with them.
    #[serde(default)]
    pub max_versions_per_row: Option<u64>,
}

impl Default for ColumnStats {
    /// Nothing seen yet: every count 0, so the versions per row are known (0).
    fn default() -> Self {
        ColumnStats {
            cells_by_type: BTreeMap::new(),
            typed_values: 0,
            typed_nulls: 0,
            overflow_cells: 0,
            type_conflicts: 0,
            min_timestamp: None,
            max_timestamp: None,
            max_versions_per_row: Some(0),
        }
    }
}

impl ColumnStats {
    /// Counts one cell of type `t` with timestamp `ts`.
    pub fn observe_cell(&mut self, t: ValueType, ts: Option<i64>) {
        self.add_cells(t, 1);
        self.observe_timestamp(ts);
    }

    /// Counts `n` cells of type `t`.
    pub fn add_cells(&mut self, t: ValueType, n: u64) {
        // No String allocation per call.
        match self.cells_by_type.get_mut(t.name()) {
            Some(c) => *c += n,
            None => {
                self.cells_by_type.insert(t.name().to_string(), n);
            }
        }
    }

    /// Widens the timestamp range to `ts`.
    #[inline]
    pub fn observe_timestamp(&mut self, ts: Option<i64>) {
        if let Some(ts) = ts {
            self.min_timestamp = Some(self.min_timestamp.map_or(ts, |m| m.min(ts)));
            self.max_timestamp = Some(self.max_timestamp.map_or(ts, |m| m.max(ts)));
        }
    }

    /// Notes that one row holds (at least) `versions` versions of this column.
    pub fn observe_versions(&mut self, versions: u64) {
        if let Some(m) = &mut self.max_versions_per_row
            && versions > *m
        {
            *m = versions;
        }
    }

    pub fn merge(&mut self, other: &ColumnStats) {
        for (k, v) in &other.cells_by_type {
            *self.cells_by_type.entry(k.clone()).or_default() += v;
        }
        self.typed_values += other.typed_values;
        self.typed_nulls += other.typed_nulls;
        self.overflow_cells += other.overflow_cells;
        self.type_conflicts += other.type_conflicts;
        self.min_timestamp = min_opt(self.min_timestamp, other.min_timestamp);
        self.max_timestamp = max_opt(self.max_timestamp, other.max_timestamp);
        // Unknown on either side stays unknown: a maximum over part of the rows is no bound.
        self.max_versions_per_row = match (self.max_versions_per_row, other.max_versions_per_row) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Statistics of a whole conversion: rows, cells, and each column by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub rows: u64,
    pub cells: u64,
    pub overflow_cells: u64,
    pub columns: BTreeMap<String, ColumnStats>,
}

impl SnapshotStats {
    pub fn merge(&mut self, other: &SnapshotStats) {
        self.rows += other.rows;
        self.cells += other.cells;
        self.overflow_cells += other.overflow_cells;
        for (name, s) in &other.columns {
            self.columns.entry(name.clone()).or_default().merge(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_per_row_merge_as_a_maximum_and_unknown_stays_unknown() {
        let mut a = ColumnStats::default();
        a.observe_versions(2);
        a.observe_versions(1);
        let mut b = ColumnStats::default();
        b.observe_versions(3);
        let mut m = ColumnStats::default();
        m.merge(&a);
        assert_eq!(m.max_versions_per_row, Some(2));
        m.merge(&b);
        assert_eq!(m.max_versions_per_row, Some(3));
        // Statistics of an older writer do not record it: the merge cannot know it either.
        let old: ColumnStats = serde_json::from_str(
            r#"{"cells_by_type":{"INTEGER":4},"typed_values":2,"typed_nulls":0,"overflow_cells":2,
                "type_conflicts":0,"min_timestamp":1,"max_timestamp":9}"#,
        )
        .unwrap();
        assert_eq!(old.max_versions_per_row, None);
        m.merge(&old);
        assert_eq!(m.max_versions_per_row, None);
        // A new writer always emits it.
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["max_versions_per_row"], 3);
    }
}
