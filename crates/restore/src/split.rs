//! Rows one write cannot carry: more than [`MAX_CELLS_PER_WRITE`] cells, or an encoding over
//! [`MAX_WRITE_BYTES`]. A Tablestore row has no size or column limit of its own; only each write
//! is limited (fact sheet §5.1: PutRow and UpdateRow ≤ 4 MB each, ≤ 1024 attribute columns
//! written per request). Such a row grows through several writes, and it is restored the same way:
//! a first part written with the restore's own operation (PutRow, which replaces the row, or
//! UpdateRow for `--columns` in overwrite mode) and the mode's condition, then UpdateRows of the
//! remaining cells (puts of those versions, condition IGNORE), each part within both limits, every
//! cell with its own timestamp. Repeating the whole sequence converges: the first PutRow replaces
//! whatever an earlier, interrupted attempt left.
//!
//! The emulator counts every cell version against the column limit (and so does this module);
//! counting versions is never less than counting distinct columns, so a part it accepts is within
//! the service's limit whichever way the service counts.

use std::ops::Range;

use bytes::Bytes;
use ots_wire::pb;
use ots_wire::plainbuffer::{encode_primary_key, encode_put_cells, encode_update_row};
use ots_wire::types::{Cell, ColumnUpdate, Row, Value};

/// One PutRow / UpdateRow (and one BatchWriteRow row) carries at most this many bytes.
pub const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;
/// One write carries at most this many attribute cells (the emulator counts versions).
pub const MAX_CELLS_PER_WRITE: usize = 1024;
/// Allowance per row for the request's framing around the encoded row (BatchWriteRow entry,
/// operation type, condition).
pub const ROW_OVERHEAD: usize = 64;
/// The most encoded bytes one part may hold.
pub const MAX_PART_BYTES: usize = MAX_WRITE_BYTES - ROW_OVERHEAD;

/// Per cell, at most this many bytes of PlainBuffer framing around the name and the value (tags,
/// lengths, type, timestamp, checksum: 1 + 4 + 1 + 4 + 1 + 4 + 1 + 8 + 2 = 26).
const CELL_FRAMING: usize = 32;
/// Per row, the framing around the key and the cells (row tags and checksum).
const ROW_FRAMING: usize = 16;

/// Whether a row must be split: too many cells or too many bytes for one write.
pub fn needs_split(row: &Row, encoded_len: usize) -> bool {
    needs_split_counts(row.cells.len(), encoded_len)
}

/// [`needs_split`] of a row of `cells` cells encoded in `encoded_len` bytes.
pub fn needs_split_counts(cells: usize, encoded_len: usize) -> bool {
    cells > MAX_CELLS_PER_WRITE || encoded_len > MAX_PART_BYTES
}

/// An upper bound of a cell's encoded size.
fn cell_bound(c: &Cell) -> usize {
    let value = match &c.value {
        Value::Integer(_) | Value::Double(_) => 8,
        Value::Boolean(_) => 1,
        Value::String(s) => s.len(),
        Value::Binary(b) => b.len(),
    };
    c.name.len() + value + CELL_FRAMING
}

/// One write of a split row.
#[derive(Clone, Debug)]
pub struct RowPart {
    /// `Put` only for the first part of a row restored with PutRow; `Update` otherwise.
    pub op: pb::OperationType,
    pub encoded: Bytes,
    /// The cells of the row (indexes into `row.cells`) this part carries.
    pub cells: Range<usize>,
}

/// A row that cannot be written in parts either.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// One cell (with the key) is over the limit of one write. Tablestore keeps values of at
    /// most 2 MB per version, so a snapshot of a real table never holds one.
    #[error(
        "cell '{column}' (timestamp {timestamp:?}) alone encodes to about {bytes} bytes with the \
         primary key; one write carries at most {MAX_PART_BYTES}, so no sequence of writes can \
         restore it (Tablestore keeps at most 2 MB per value: the snapshot holds a value the \
         service would not have)"
    )]
    CellTooLarge {
        column: String,
        timestamp: Option<i64>,
        bytes: usize,
    },
}

/// Cuts `row`'s cells (in their order) into ranges, each within [`MAX_CELLS_PER_WRITE`] cells and
/// [`MAX_PART_BYTES`] bytes with the primary key. Greedy: a part is closed when the next cell
/// would not fit.
pub fn plan_parts(row: &Row) -> Result<Vec<Range<usize>>, SplitError> {
    let base = encode_primary_key(&row.primary_key).len() + ROW_FRAMING;
    let mut parts = Vec::new();
    let mut start = 0usize;
    let mut bytes = base;
    for (i, c) in row.cells.iter().enumerate() {
        let size = cell_bound(c);
        if base + size > MAX_PART_BYTES {
            return Err(SplitError::CellTooLarge {
                column: c.name.clone(),
                timestamp: c.timestamp,
                bytes: base + size,
            });
        }
        if i > start && (i - start >= MAX_CELLS_PER_WRITE || bytes + size > MAX_PART_BYTES) {
            parts.push(start..i);
            start = i;
            bytes = base;
        }
        bytes += size;
    }
    if start < row.cells.len() || parts.is_empty() {
        parts.push(start..row.cells.len());
    }
    Ok(parts)
}

/// An upper bound of an update operation's encoded size (an increment counts as an integer).
fn update_bound(u: &ColumnUpdate) -> usize {
    let (name, value) = match u {
        ColumnUpdate::Put { name, value, .. } => (
            name,
            match value {
                Value::Integer(_) | Value::Double(_) => 8,
                Value::Boolean(_) => 1,
                Value::String(s) => s.len(),
                Value::Binary(b) => b.len(),
            },
        ),
        ColumnUpdate::Increment { name, .. } => (name, 8),
        ColumnUpdate::DeleteOneVersion { name, .. } | ColumnUpdate::DeleteAllVersions { name } => {
            (name, 0)
        }
    };
    name.len() + value + CELL_FRAMING
}

/// Whether an UpdateRow of `updates` must be split: too many cell operations or too many bytes.
pub fn update_needs_split(updates: &[ColumnUpdate], encoded_len: usize) -> bool {
    updates.len() > MAX_CELLS_PER_WRITE || encoded_len > MAX_PART_BYTES
}

/// An UpdateRow of `updates` as several UpdateRows, in order, each within both limits: applying
/// them one after the other does what the single UpdateRow would (each operation is an
/// assignment applied in request order).
pub fn split_updates(
    pk: &[ots_wire::types::PkColumn],
    updates: &[ColumnUpdate],
) -> Result<Vec<RowPart>, SplitError> {
    let base = encode_primary_key(pk).len() + ROW_FRAMING;
    let mut ranges = Vec::new();
    let mut start = 0usize;
    let mut bytes = base;
    for (i, u) in updates.iter().enumerate() {
        let size = update_bound(u);
        if base + size > MAX_PART_BYTES {
            let (column, timestamp) = match u {
                ColumnUpdate::Put {
                    name, timestamp, ..
                } => (name.clone(), *timestamp),
                ColumnUpdate::DeleteOneVersion { name, timestamp } => {
                    (name.clone(), Some(*timestamp))
                }
                ColumnUpdate::DeleteAllVersions { name } | ColumnUpdate::Increment { name, .. } => {
                    (name.clone(), None)
                }
            };
            return Err(SplitError::CellTooLarge {
                column,
                timestamp,
                bytes: base + size,
            });
        }
        if i > start && (i - start >= MAX_CELLS_PER_WRITE || bytes + size > MAX_PART_BYTES) {
            ranges.push(start..i);
            start = i;
            bytes = base;
        }
        bytes += size;
    }
    if start < updates.len() || ranges.is_empty() {
        ranges.push(start..updates.len());
    }
    Ok(ranges
        .into_iter()
        .map(|cells| RowPart {
            op: pb::OperationType::Update,
            encoded: Bytes::from(encode_update_row(
                pk,
                updates.get(cells.clone()).unwrap_or_default(),
            )),
            cells,
        })
        .collect())
}

/// The writes that restore `row` when one cannot: the first with `first_op` (PutRow replaces the
/// row; UpdateRow keeps the row's other columns), the others UpdateRows putting the remaining
/// versions, every cell with its timestamp.
pub fn split_row(row: &Row, first_op: pb::OperationType) -> Result<Vec<RowPart>, SplitError> {
    let ranges = plan_parts(row)?;
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, cells)| {
            let slice = row.cells.get(cells.clone()).unwrap_or_default();
            // The part's cells encode the same as a PutRow and as an UpdateRow putting them.
            let op = if i == 0 && first_op == pb::OperationType::Put {
                pb::OperationType::Put
            } else {
                pb::OperationType::Update
            };
            let encoded = encode_put_cells(&row.primary_key, slice);
            RowPart {
                op,
                encoded: Bytes::from(encoded),
                cells,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_wire::plainbuffer::decode_single_row;
    use ots_wire::plainbuffer::encode_put_row;
    use ots_wire::types::{PkColumn, PkValue};

    fn pk() -> Vec<PkColumn> {
        vec![
            PkColumn::new("user_id", PkValue::String("u042".into())),
            PkColumn::new("seq", PkValue::Integer(42)),
        ]
    }

    /// Decodes every part and checks the limits; returns the cells in the order written.
    fn check_parts(row: &Row, parts: &[RowPart], first: pb::OperationType) -> Vec<Cell> {
        assert!(!parts.is_empty());
        assert_eq!(
            parts[0].op, first,
            "the first part uses the restore's operation"
        );
        let mut cells = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                assert_eq!(p.op, pb::OperationType::Update, "part {i}");
            }
            assert!(
                p.encoded.len() + ROW_OVERHEAD <= MAX_WRITE_BYTES,
                "part {i}: {} bytes",
                p.encoded.len()
            );
            let decoded = decode_single_row(&p.encoded).unwrap().unwrap();
            assert!(decoded.cells.len() <= MAX_CELLS_PER_WRITE, "part {i}");
            assert!(!decoded.cells.is_empty(), "part {i} is empty");
            let owned = decoded.to_row();
            assert_eq!(owned.primary_key, row.primary_key);
            for c in decoded.cells {
                assert!(c.op.is_none(), "only puts");
                cells.push(Cell::new(c.name, c.value.unwrap().to_owned(), c.timestamp));
            }
        }
        cells
    }

    #[test]
    fn a_five_megabyte_row_of_three_cells_goes_in_two_writes() {
        let big = |c: char| Value::String(c.to_string().repeat(1_700_000));
        let row = Row {
            primary_key: pk(),
            cells: vec![
                Cell::new("a", big('a'), Some(1000)),
                Cell::new("b", big('b'), Some(2000)),
                Cell::new("c", big('c'), Some(3000)),
            ],
        };
        let whole = encode_put_row(&row).len();
        assert!(whole > MAX_WRITE_BYTES && needs_split(&row, whole));
        let parts = split_row(&row, pb::OperationType::Put).unwrap();
        // Two 1.7 MB cells fit in one 4 MB write, three do not.
        assert_eq!(
            parts.len(),
            2,
            "{:?}",
            parts.iter().map(|p| p.cells.clone()).collect::<Vec<_>>()
        );
        let cells = check_parts(&row, &parts, pb::OperationType::Put);
        assert_eq!(
            cells, row.cells,
            "every cell once, in order, timestamps kept"
        );
    }

    #[test]
    fn fifteen_hundred_cells_of_three_hundred_columns_by_five_versions() {
        let mut cells = Vec::new();
        for col in 0..300 {
            for v in 0..5i64 {
                cells.push(Cell::new(
                    format!("col{col:03}"),
                    if v % 2 == 0 {
                        Value::Integer(col * 10 + v)
                    } else {
                        Value::Double(col as f64 + v as f64 / 7.0)
                    },
                    Some(10_000 - v),
                ));
            }
        }
        let row = Row {
            primary_key: pk(),
            cells,
        };
        let whole = encode_put_row(&row).len();
        assert!(whole < MAX_WRITE_BYTES, "small in bytes");
        assert!(needs_split(&row, whole), "but over the cell limit");
        let parts = split_row(&row, pb::OperationType::Put).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].cells, 0..1024);
        assert_eq!(parts[1].cells, 1024..1500);
        let written = check_parts(&row, &parts, pb::OperationType::Put);
        assert_eq!(written, row.cells);
    }

    #[test]
    fn an_update_restore_starts_with_an_update_and_mixed_rows_stay_within_both_limits() {
        // Many small cells and some large ones, interleaved.
        let mut cells = Vec::new();
        for i in 0..3000 {
            let value = if i % 500 == 7 {
                Value::Binary(vec![i as u8; 1_500_000])
            } else {
                Value::String(format!("v{i}"))
            };
            cells.push(Cell::new(
                format!("c{:04}", i / 3),
                value,
                Some(5000 - (i % 3)),
            ));
        }
        let row = Row {
            primary_key: pk(),
            cells,
        };
        let parts = split_row(&row, pb::OperationType::Update).unwrap();
        assert!(parts.len() >= 3);
        let written = check_parts(&row, &parts, pb::OperationType::Update);
        assert_eq!(written, row.cells);
        // Consecutive, covering every cell exactly once.
        let mut next = 0;
        for p in &parts {
            assert_eq!(p.cells.start, next);
            next = p.cells.end;
        }
        assert_eq!(next, row.cells.len());
    }

    #[test]
    fn a_large_update_is_cut_into_updates_in_order_within_both_limits() {
        let mut updates: Vec<ColumnUpdate> = (0..2500)
            .map(|i| ColumnUpdate::Put {
                name: format!("c{i:04}"),
                value: if i % 700 == 3 {
                    Value::Binary(vec![1; 1_500_000])
                } else {
                    Value::Integer(i)
                },
                timestamp: Some(1000 + i),
            })
            .collect();
        updates.push(ColumnUpdate::DeleteOneVersion {
            name: "c0001".into(),
            timestamp: 1001,
        });
        updates.push(ColumnUpdate::DeleteAllVersions {
            name: "c0002".into(),
        });
        let whole = encode_update_row(&pk(), &updates).len();
        assert!(update_needs_split(&updates, whole));
        let parts = split_updates(&pk(), &updates).unwrap();
        assert!(parts.len() >= 3, "{}", parts.len());
        let mut next = 0;
        let mut ops = 0;
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.op, pb::OperationType::Update);
            assert_eq!(p.cells.start, next, "part {i}");
            next = p.cells.end;
            assert!(
                p.encoded.len() + ROW_OVERHEAD <= MAX_WRITE_BYTES,
                "part {i}"
            );
            let decoded = decode_single_row(&p.encoded).unwrap().unwrap();
            assert!(decoded.cells.len() <= MAX_CELLS_PER_WRITE, "part {i}");
            ops += decoded.cells.len();
        }
        assert_eq!(next, updates.len());
        assert_eq!(ops, updates.len());
        let small = &updates[..2];
        assert!(!update_needs_split(
            small,
            encode_update_row(&pk(), small).len()
        ));
        assert_eq!(split_updates(&pk(), small).unwrap().len(), 1);
    }

    #[test]
    fn a_small_row_is_one_part_and_a_cell_over_the_limit_is_an_error_not_a_panic() {
        let row = Row {
            primary_key: pk(),
            cells: vec![Cell::new("a", Value::Integer(1), Some(1))],
        };
        assert!(!needs_split(&row, encode_put_row(&row).len()));
        let parts = split_row(&row, pb::OperationType::Put).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].cells, 0..1);

        let huge = Row {
            primary_key: pk(),
            cells: vec![
                Cell::new("a", Value::Integer(1), Some(1)),
                Cell::new("b", Value::Binary(vec![0; MAX_WRITE_BYTES]), Some(7)),
            ],
        };
        match split_row(&huge, pb::OperationType::Put) {
            Err(SplitError::CellTooLarge {
                column, timestamp, ..
            }) => {
                assert_eq!(column, "b");
                assert_eq!(timestamp, Some(7));
            }
            other => panic!("expected CellTooLarge, got {other:?}"),
        }
    }
}
