//! A GetRange page and the one way to read its rows, [`PageRows`], which checks them as it decodes.
//!
//! The scanner checks what a response says about the scan (the next start key advances and stays
//! before the split end, the `next_token` rules) before it hands a page out. What the rows
//! themselves must satisfy (every checksum, a full primary key, strictly increasing keys inside
//! `[request start, next start key or split end)`) is checked here, in the same pass that decodes
//! them for the consumer: a page of whole rows is decoded once, not once to check and again to read
//! (a page joined from a row's `next_token` parts is also decoded by the scanner, which needs its
//! rows to join them). A page's bytes are private, so no row reaches a consumer unchecked; a page
//! that breaks a rule is a [`ScanError::Protocol`], from [`Page::rows`] (a bad header or bound) or
//! from [`PageRows::next_into`] at the row that breaks it.
//!
//! The scanner has moved on by then, so such an error cannot be retried in place: the split is
//! read again from its start (a backup stops with the error, having committed nothing of that
//! split, and `--resume` reads it again).

use std::cmp::Ordering as KeyOrder;

use bytes::Bytes;
use ots_wire::plainbuffer::RowDecoder;
use ots_wire::types::{PkCellRef, PkValueRef, RowRef, cmp_primary_keys};

use crate::split::ScanError;

/// One GetRange response's rows, still encoded; read them with [`Page::rows`] or
/// [`Page::for_each_row`].
#[derive(Clone, Debug)]
pub struct Page {
    pub split_id: u32,
    /// 0-based page number within the split.
    pub index: u64,
    /// Private: reading goes through [`PageRows`], which checks every row.
    data: Bytes,
    bounds: RowBounds,
}

/// The key range a page's rows must lie in.
#[derive(Clone, Debug)]
pub(crate) struct RowBounds {
    /// The request's inclusive start key (a primary-key-only PlainBuffer).
    pub start: Bytes,
    /// Every row is before this key.
    pub upper: Bytes,
    pub upper_is: UpperBound,
}

/// What a page's exclusive upper bound is, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpperBound {
    /// The response's next start key (already checked to be before the split end).
    NextStartKey,
    /// The split's end: the response had no next start key.
    SplitEnd,
}

impl Page {
    pub(crate) fn new(split_id: u32, index: u64, data: Bytes, bounds: RowBounds) -> Page {
        Page {
            split_id,
            index,
            data,
            bounds,
        }
    }

    /// The page's bytes as received (or as joined from a row's parts), for the scanner's tests.
    #[cfg(test)]
    pub(crate) fn data(&self) -> &Bytes {
        &self.data
    }

    /// The page's PlainBuffer bytes.
    pub fn encoded_len(&self) -> usize {
        self.data.len()
    }

    /// The page's rows, each checked as it is decoded (see the module docs).
    pub fn rows(&self) -> Result<PageRows<'_>, ScanError> {
        let protocol = |detail| ScanError::Protocol {
            split: self.split_id,
            detail,
        };
        let decoder = RowDecoder::new(&self.data)
            .map_err(|e| protocol(format!("the page's rows do not decode: {e}")))?;
        Ok(PageRows {
            split: self.split_id,
            decoder,
            start: decode_key(&self.bounds.start, "the request's start key").map_err(protocol)?,
            upper: decode_key(&self.bounds.upper, "the page's upper bound").map_err(protocol)?,
            upper_is: self.bounds.upper_is,
            last: Vec::new(),
            rows: 0,
            failed: None,
        })
    }

    /// Calls `f` with each row in turn, reusing one row buffer; returns the rows and cells read.
    pub fn for_each_row<E>(
        &self,
        mut f: impl FnMut(&RowRef<'_>) -> Result<(), E>,
    ) -> Result<(u64, u64), E>
    where
        E: From<ScanError>,
    {
        let mut rows = self.rows()?;
        let mut row = RowRef::default();
        let mut cells = 0u64;
        while rows.next_into(&mut row)? {
            cells += row.cells.len() as u64;
            f(&row)?;
        }
        Ok((rows.rows, cells))
    }
}

/// A page's rows, decoded without copying and checked one by one: see [`PageRows::next_into`].
pub struct PageRows<'a> {
    split: u32,
    decoder: RowDecoder<'a>,
    start: Vec<PkCellRef<'a>>,
    upper: Vec<PkCellRef<'a>>,
    upper_is: UpperBound,
    /// The primary key of the row read last.
    last: Vec<PkCellRef<'a>>,
    rows: u64,
    /// Why the page failed, once it did: every later call fails the same way.
    failed: Option<String>,
}

impl<'a> PageRows<'a> {
    /// Decodes the next row into `row` (reusing its allocations); `false` after the last row.
    /// After an error every further call returns it again.
    ///
    /// Before returning a row it checks every checksum and length in it, that it has the table's
    /// number of primary-key columns, that it comes strictly after the row before it (the first:
    /// not before the request's start) and that it is before the page's upper bound.
    pub fn next_into(&mut self, row: &mut RowRef<'a>) -> Result<bool, ScanError> {
        if let Some(detail) = &self.failed {
            return Err(ScanError::Protocol {
                split: self.split,
                detail: detail.clone(),
            });
        }
        let checked = self.check_next(row);
        if let Err(detail) = &checked {
            self.failed = Some(detail.clone());
        }
        checked.map_err(|detail| ScanError::Protocol {
            split: self.split,
            detail,
        })
    }

    fn check_next(&mut self, row: &mut RowRef<'a>) -> Result<bool, String> {
        let n = self.rows;
        let found = self
            .decoder
            .next_into(row)
            .map_err(|e| format!("row {n} of the page does not decode: {e}"))?;
        if !found {
            return Ok(false);
        }
        let key = &row.primary_key;
        check_row_key(n, key, &self.start, (n > 0).then_some(&self.last))?;
        if cmp_keys(key, &self.upper) != KeyOrder::Less {
            return Err(match self.upper_is {
                UpperBound::NextStartKey => format!(
                    "the service returned a next start key that does not advance: {} is not \
                     after the page's row {n} {}",
                    show_key(&self.upper),
                    show_key(key)
                ),
                UpperBound::SplitEnd => format!(
                    "row {n} of the page {} is not before the split's end {}",
                    show_key(key),
                    show_key(&self.upper)
                ),
            });
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.rows += 1;
        Ok(true)
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }
}

/// The key rules of row `n` of a page: the table's number of key columns (`start`'s), and strictly
/// after the row before it (`prev`), or, for the first row, not before the request's `start`.
pub(crate) fn check_row_key(
    n: u64,
    key: &[PkCellRef<'_>],
    start: &[PkCellRef<'_>],
    prev: Option<&[PkCellRef<'_>]>,
) -> Result<(), String> {
    if key.len() != start.len() {
        return Err(format!(
            "row {n} of the page has {} primary-key columns, the table has {}",
            key.len(),
            start.len()
        ));
    }
    match prev {
        None if cmp_keys(key, start) == KeyOrder::Less => Err(format!(
            "the page's first row {} is before the request's start {}",
            show_key(key),
            show_key(start)
        )),
        Some(prev) if cmp_keys(key, prev) != KeyOrder::Greater => Err(format!(
            "rows out of order: row {n} of the page {} is not after the row before it {}",
            show_key(key),
            show_key(prev)
        )),
        _ => Ok(()),
    }
}

/// A PK-only PlainBuffer (a request bound or a next start key), borrowed.
pub(crate) fn decode_key<'a>(buf: &'a [u8], what: &str) -> Result<Vec<PkCellRef<'a>>, String> {
    let mut decoder = RowDecoder::new(buf).map_err(|e| format!("{what} does not decode: {e}"))?;
    let mut row = RowRef::default();
    let found = decoder
        .next_into(&mut row)
        .map_err(|e| format!("{what} does not decode: {e}"))?;
    if !found || row.primary_key.is_empty() || !row.cells.is_empty() || !decoder.is_done() {
        return Err(format!("{what} is not a primary key alone"));
    }
    Ok(row.primary_key)
}

pub(crate) fn cmp_keys(a: &[PkCellRef<'_>], b: &[PkCellRef<'_>]) -> KeyOrder {
    cmp_primary_keys(a.iter().map(|c| c.value), b.iter().map(|c| c.value))
}

/// `(user_id="u1", seq=7)`: a key for an error message.
pub(crate) fn show_key(key: &[PkCellRef<'_>]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|c| {
            let v = match c.value {
                PkValueRef::Integer(i) => i.to_string(),
                PkValueRef::String(s) => format!("{s:?}"),
                PkValueRef::Binary(b) => format!("0x{}", hex::encode(b)),
                PkValueRef::InfMin => "INF_MIN".to_string(),
                PkValueRef::InfMax => "INF_MAX".to_string(),
                PkValueRef::AutoIncrement => "AUTO_INCREMENT".to_string(),
            };
            format!("{}={v}", c.name)
        })
        .collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use ots_wire::plainbuffer::{encode_primary_key, encode_rows};
    use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};

    use super::*;

    fn whole_table() -> RowBounds {
        let inf = |v: PkValue| Bytes::from(encode_primary_key(&[PkColumn::new("id", v)]));
        RowBounds {
            start: inf(PkValue::InfMin),
            upper: inf(PkValue::InfMax),
            upper_is: UpperBound::SplitEnd,
        }
    }

    fn row(key: Vec<PkColumn>) -> Row {
        Row {
            primary_key: key,
            cells: vec![Cell::new("v", Value::String("x".into()), Some(5))],
        }
    }

    fn read(data: Vec<u8>) -> Result<u64, String> {
        Page::new(4, 0, Bytes::from(data), whole_table())
            .for_each_row::<ScanError>(|_| Ok(()))
            .map(|(rows, _)| rows)
            .map_err(|e| match e {
                ScanError::Protocol { split: 4, detail } => detail,
                other => panic!("not a protocol error of split 4: {other}"),
            })
    }

    /// Every checksum is verified as the rows are read, and a row with the wrong number of key
    /// columns is refused; each error names the row.
    #[test]
    fn reading_checks_checksums_and_key_columns() {
        let id = |i| vec![PkColumn::new("id", PkValue::Integer(i))];
        let good = encode_rows(&[row(id(1)), row(id(2))]);
        assert_eq!(read(good.clone()), Ok(2));
        // The last byte is the second row's checksum.
        let mut damaged = good;
        *damaged.last_mut().unwrap() ^= 0x11;
        let e = read(damaged).unwrap_err();
        assert!(e.contains("row 1 of the page does not decode"), "{e}");
        assert!(e.contains("row checksum"), "{e}");

        let two = vec![
            PkColumn::new("id", PkValue::Integer(3)),
            PkColumn::new("b", PkValue::Integer(0)),
        ];
        let e = read(encode_rows(&[row(id(1)), row(two)])).unwrap_err();
        assert!(
            e.contains("row 1 of the page has 2 primary-key columns"),
            "{e}"
        );
        assert!(
            read(b"junk".to_vec())
                .unwrap_err()
                .contains("do not decode")
        );
    }

    /// Once a row fails, reading on gives the same error: the rows after it are not handed out.
    #[test]
    fn a_failed_page_stays_failed() {
        let id = |i| vec![PkColumn::new("id", PkValue::Integer(i))];
        let data = encode_rows(&[row(id(2)), row(id(1)), row(id(3))]);
        let page = Page::new(4, 0, Bytes::from(data), whole_table());
        let mut rows = page.rows().unwrap();
        let mut r = RowRef::default();
        assert!(rows.next_into(&mut r).unwrap());
        let first = rows.next_into(&mut r).unwrap_err().to_string();
        assert!(first.contains("rows out of order"), "{first}");
        assert_eq!(rows.next_into(&mut r).unwrap_err().to_string(), first);
        assert_eq!(rows.rows_read(), 1);
    }
}
