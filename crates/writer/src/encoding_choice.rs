//! Which top-level columns skip the dictionary, judged from the first batch a file receives.
//!
//! parquet-rs interns every value of a dictionary-enabled column in a hash table until the
//! dictionary page overflows (1 MiB), so a column of (nearly) unique values pays for hashing and
//! table growth and then gets no dictionary anyway. Measured on the benchmark table, that interning
//! was ~5% of a backup's CPU. A strided sample of the first batch is enough to tell the two apart:
//! a dictionary pays off when values repeat, and a column whose sample is mostly distinct will not
//! repeat enough in a row group to win.

use std::collections::HashSet;
use std::hash::Hash;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

/// Values looked at per column: enough to separate "repeats" from "mostly distinct", cheap
/// enough to do once per file.
const SAMPLE: usize = 1024;
/// Below this many non-null sampled values the default (dictionary) stays.
const MIN_SAMPLE: usize = 64;

/// A top-level column whose sampled values were mostly distinct, with its Arrow type (integers
/// are delta-packed instead, strings and doubles stay PLAIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MostlyDistinct {
    pub name: String,
    pub data_type: DataType,
}

/// Columns of `batch` (top-level 64-bit integers, doubles and strings) in which more than half of
/// a strided sample of non-null values are distinct.
pub(crate) fn mostly_distinct_columns(batch: &RecordBatch) -> Vec<MostlyDistinct> {
    let schema = batch.schema();
    let mut out = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let column = column.as_ref();
        let distinct = match field.data_type() {
            DataType::Int64 => {
                let values = column.as_primitive::<Int64Type>();
                distinct_share(column, |i| values.value(i))
            }
            DataType::Float64 => {
                let values = column.as_primitive::<Float64Type>();
                distinct_share(column, |i| values.value(i).to_bits())
            }
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                distinct_share(column, |i| values.value(i))
            }
            _ => None,
        };
        if distinct.is_some_and(|(distinct, sampled)| distinct * 2 > sampled) {
            out.push(MostlyDistinct {
                name: field.name().clone(),
                data_type: field.data_type().clone(),
            });
        }
    }
    out
}

/// (distinct, sampled) over up to [`SAMPLE`] non-null values spread evenly over the column;
/// `None` when fewer than [`MIN_SAMPLE`] are non-null.
fn distinct_share<T: Hash + Eq>(
    column: &dyn Array,
    value: impl Fn(usize) -> T,
) -> Option<(usize, usize)> {
    let len = column.len();
    let step = (len / SAMPLE).max(1);
    let mut seen = HashSet::with_capacity(SAMPLE.min(len));
    let mut sampled = 0usize;
    for i in (0..len).step_by(step).take(SAMPLE) {
        if column.is_valid(i) {
            sampled += 1;
            seen.insert(value(i));
        }
    }
    (sampled >= MIN_SAMPLE).then_some((seen.len(), sampled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn names(cols: &[MostlyDistinct]) -> Vec<&str> {
        cols.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn unique_columns_are_found_and_repeating_ones_keep_the_dictionary() {
        let n = 5000;
        let b = batch(vec![
            (
                "seq",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "age",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 90))),
            ),
            (
                "score",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 7.0),
                )),
            ),
            (
                "ratio",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| (i % 10) as f64),
                )),
            ),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("n{i}")),
                )),
            ),
            (
                "city",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["a", "b"][i as usize % 2]),
                )),
            ),
            // Binary already skips the dictionary for every file; it is not judged here.
            (
                "digest",
                Arc::new(BinaryArray::from_iter_values(
                    (0..n).map(|i| i.to_le_bytes()),
                )),
            ),
        ]);
        let found = mostly_distinct_columns(&b);
        assert_eq!(names(&found), ["seq", "score", "name"]);
        assert_eq!(found[0].data_type, DataType::Int64);
    }

    #[test]
    fn nulls_do_not_count_and_a_small_sample_keeps_the_default() {
        // 10 distinct values among mostly nulls: too few to judge.
        let sparse: Int64Array = (0..5000).map(|i| (i % 500 == 0).then_some(i)).collect();
        // Distinct non-null values, two rows in three null: the nulls must not dilute the share.
        let half: Int64Array = (0..5000).map(|i| (i % 3 == 0).then_some(i)).collect();
        let short = Int64Array::from_iter_values(0..10);
        let b = batch(vec![
            ("sparse", Arc::new(sparse) as ArrayRef),
            ("half", Arc::new(half)),
        ]);
        assert_eq!(names(&mostly_distinct_columns(&b)), ["half"]);
        let b = batch(vec![("short", Arc::new(short) as ArrayRef)]);
        assert!(mostly_distinct_columns(&b).is_empty());
    }
}
