//! Which columns skip the dictionary, judged from the first batch a file receives: top-level
//! columns, and the fields of a list of structs (a snapshot's `$cells`, a change file's `cells`).
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

/// A column whose sampled values were mostly distinct: its Parquet column path (a top-level
/// column's name; `[list, "list", item, field]` for a field of a list of structs, as arrow-rs
/// names them) and its Arrow type (integers are delta-packed instead, strings and doubles stay
/// PLAIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MostlyDistinct {
    pub path: Vec<String>,
    pub data_type: DataType,
}

/// Columns of `batch` (64-bit integers, doubles and strings, top-level or fields of a list of
/// structs) in which more than half of a strided sample of non-null values are distinct.
pub(crate) fn mostly_distinct_columns(batch: &RecordBatch) -> Vec<MostlyDistinct> {
    let schema = batch.schema();
    let mut out = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if let DataType::List(item) = field.data_type()
            && let DataType::Struct(fields) = item.data_type()
        {
            // The fields' values of every row, one after another.
            let structs = column.as_list::<i32>().values().as_struct();
            for (f, values) in fields.iter().zip(structs.columns()) {
                let path = [name, "list", item.name(), f.name()];
                if mostly_distinct(f.data_type(), values.as_ref()) {
                    out.push(MostlyDistinct {
                        path: path.map(String::from).to_vec(),
                        data_type: f.data_type().clone(),
                    });
                }
            }
        } else if mostly_distinct(field.data_type(), column.as_ref()) {
            out.push(MostlyDistinct {
                path: vec![name.clone()],
                data_type: field.data_type().clone(),
            });
        }
    }
    out
}

/// Whether more than half of a sample of `column`'s non-null values are distinct (only 64-bit
/// integers, doubles and strings are judged).
fn mostly_distinct(data_type: &DataType, column: &dyn Array) -> bool {
    let distinct = match data_type {
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
    distinct.is_some_and(|(distinct, sampled)| distinct * 2 > sampled)
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

    fn names(cols: &[MostlyDistinct]) -> Vec<String> {
        cols.iter().map(|c| c.path.join(".")).collect()
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

    /// A list of structs (a change file's `cells`): each field is judged over every row's values,
    /// and named by its Parquet path.
    #[test]
    fn fields_of_a_list_of_structs_are_judged_too() {
        let b = cells_batch(5000);
        assert_eq!(
            names(&mostly_distinct_columns(&b)),
            ["cells.list.item.string", "cells.list.item.integer"]
        );
    }

    /// The paths name the columns parquet-rs writes: in a file written with
    /// `ParquetOptions::properties_for`, the distinct fields of the list have no dictionary and
    /// the repeating ones keep it.
    #[test]
    fn the_paths_reach_the_written_columns() {
        use parquet::basic::Encoding;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let b = cells_batch(5000);
        let props = crate::ParquetOptions::default().properties_for(&b).unwrap();
        let mut out = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut out, b.schema(), Some(props)).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(out)).unwrap();
        let group = reader.metadata().row_group(0);
        let dictionary = |path: &str| {
            let c = group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .unwrap_or_else(|| panic!("no column {path}"));
            c.encodings()
                .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
        };
        assert!(!dictionary("cells.list.item.string"));
        assert!(!dictionary("cells.list.item.integer"));
        assert!(dictionary("cells.list.item.name"));
        assert!(dictionary("cells.list.item.type"));
    }

    /// `n` rows, two cells each: a repeating name, a distinct string, a distinct integer, a
    /// repeating type.
    pub(crate) fn cells_batch(n: usize) -> RecordBatch {
        use arrow_array::{ListArray, StructArray};
        use arrow_schema::Fields;
        let fields = Fields::from(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("string", DataType::Utf8, true),
            Field::new("integer", DataType::Int64, true),
            Field::new("type", DataType::Utf8, true),
        ]);
        let values = StructArray::new(
            fields.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..2 * n).map(|i| ["a", "b"][i % 2]),
                )) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    (0..2 * n).map(|i| format!("s{i}")),
                )),
                Arc::new(Int64Array::from_iter_values((0..2 * n).map(|i| i as i64))),
                Arc::new(StringArray::from_iter_values((0..2 * n).map(|_| "string"))),
            ],
            None,
        );
        let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
        let list = ListArray::new(
            item,
            arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(2, n)),
            Arc::new(values),
            None,
        );
        batch(vec![("cells", Arc::new(list) as ArrayRef)])
    }
}
