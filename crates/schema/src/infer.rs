//! Schema inference from a bounded sample of rows.
//!
//! Each attribute column becomes a typed column of the type most of its latest versions have.
//! Tables with thousands of sparse columns keep only the `max_typed_columns` most frequent ones
//! typed; the rest still arrive losslessly in `$cells`.

use std::collections::BTreeMap;

use ots_wire::types::{RowRef, ValueType};
use serde::{Deserialize, Serialize};

use crate::layout::{ColumnSchema, PkColumnSchema, SchemaError, SnapshotSchema};

/// Default cap on typed columns; Parquet readers handle this many comfortably.
pub const DEFAULT_MAX_TYPED_COLUMNS: usize = 1000;

/// What the sample showed about one attribute column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnObservation {
    /// Rows in which the column appears.
    pub rows: u64,
    /// Latest versions per type.
    pub latest_by_type: BTreeMap<String, u64>,
    /// Most versions seen in one row.
    pub max_versions: u64,
    /// Largest value seen, in bytes.
    pub max_value_bytes: u64,
    pub total_value_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SchemaInferrer {
    rows: u64,
    columns: BTreeMap<String, ColumnObservation>,
}

impl SchemaInferrer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows observed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn observations(&self) -> &BTreeMap<String, ColumnObservation> {
        &self.columns
    }

    /// Observes one row as the service returns it (cells grouped by column, newest first).
    pub fn observe(&mut self, row: &RowRef<'_>) {
        self.rows += 1;
        let mut i = 0;
        while i < row.cells.len() {
            let name = row.cells[i].name;
            let mut j = i;
            while j < row.cells.len() && row.cells[j].name == name {
                j += 1;
            }
            let obs = self.columns.entry(name.to_string()).or_default();
            obs.rows += 1;
            obs.max_versions = obs.max_versions.max((j - i) as u64);
            if let Some(v) = row.cells[i].value {
                *obs.latest_by_type
                    .entry(v.value_type().name().to_string())
                    .or_default() += 1;
            }
            for c in &row.cells[i..j] {
                if let Some(v) = c.value {
                    let size = v.data_size() as u64;
                    obs.max_value_bytes = obs.max_value_bytes.max(size);
                    obs.total_value_bytes += size;
                }
            }
            i = j;
        }
    }

    pub fn merge(&mut self, other: SchemaInferrer) {
        self.rows += other.rows;
        for (name, o) in other.columns {
            let e = self.columns.entry(name).or_default();
            e.rows += o.rows;
            for (t, n) in o.latest_by_type {
                *e.latest_by_type.entry(t).or_default() += n;
            }
            e.max_versions = e.max_versions.max(o.max_versions);
            e.max_value_bytes = e.max_value_bytes.max(o.max_value_bytes);
            e.total_value_bytes += o.total_value_bytes;
        }
    }

    /// The schema: the `max_typed_columns` most frequent columns, typed by majority, sorted by name.
    pub fn finish(
        &self,
        primary_key: Vec<PkColumnSchema>,
        max_typed_columns: usize,
    ) -> Result<SnapshotSchema, SchemaError> {
        let mut candidates: Vec<(&String, &ColumnObservation)> = self
            .columns
            .iter()
            .filter(|(name, o)| {
                !o.latest_by_type.is_empty() && !primary_key.iter().any(|p| &&p.name == name)
            })
            .collect();
        candidates.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then_with(|| a.0.cmp(b.0)));
        candidates.truncate(max_typed_columns);
        let mut columns: Vec<ColumnSchema> = candidates
            .into_iter()
            .map(|(name, o)| ColumnSchema {
                name: name.clone(),
                value_type: majority_type(o),
            })
            .collect();
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        SnapshotSchema::new(primary_key, columns)
    }
}

/// The type most latest versions had; ties go to the type that loses least when others overflow
/// (STRING, then BINARY, DOUBLE, INTEGER, BOOLEAN) so the choice is deterministic.
fn majority_type(o: &ColumnObservation) -> ValueType {
    const PREFERENCE: [ValueType; 5] = [
        ValueType::String,
        ValueType::Binary,
        ValueType::Double,
        ValueType::Integer,
        ValueType::Boolean,
    ];
    let count = |t: ValueType| o.latest_by_type.get(t.name()).copied().unwrap_or(0);
    let mut best = PREFERENCE[0];
    for t in PREFERENCE {
        if count(t) > count(best) {
            best = t;
        }
    }
    best
}
