//! The read-response encoder: PlainBuffer rows written straight from storage.
//!
//! Byte-identical to `ots_wire::plainbuffer::PlainBufferWriter` for read-shaped rows (tests below
//! compare the two), but each stored cell carries its checksum, computed once when it was written, so
//! a scan does not run CRC-8 over every byte it sends: that halves the cost of a GetRange page.

use ots_wire::plainbuffer::{HEADER, crc8, crc8_byte};
use ots_wire::types::{PkValueRef, ValueRef};

use crate::store::StoredCell;

const TAG_ROW_PK: u8 = 0x01;
const TAG_ROW_DATA: u8 = 0x02;
const TAG_CELL: u8 = 0x03;
const TAG_CELL_NAME: u8 = 0x04;
const TAG_CELL_VALUE: u8 = 0x05;
const TAG_CELL_TIMESTAMP: u8 = 0x07;
const TAG_ROW_CHECKSUM: u8 = 0x09;
const TAG_CELL_CHECKSUM: u8 = 0x0A;

const VT_INTEGER: u8 = 0x00;
const VT_DOUBLE: u8 = 0x01;
const VT_BOOLEAN: u8 = 0x02;
const VT_STRING: u8 = 0x03;
const VT_BLOB: u8 = 0x07;
const VT_INF_MIN: u8 = 0x09;
const VT_INF_MAX: u8 = 0x0A;
const VT_AUTO_INCREMENT: u8 = 0x0B;

/// The cell checksum of an attribute cell with a timestamp and no cell type (fact sheet §4.3).
pub fn attr_cell_crc(name: &str, value: ValueRef<'_>, ts: i64) -> u8 {
    let mut crc = crc8(0, name.as_bytes());
    crc = match value {
        ValueRef::Integer(v) => crc8(crc8_byte(crc, VT_INTEGER), &v.to_le_bytes()),
        ValueRef::Double(v) => crc8(crc8_byte(crc, VT_DOUBLE), &v.to_bits().to_le_bytes()),
        ValueRef::Boolean(v) => crc8_byte(crc8_byte(crc, VT_BOOLEAN), u8::from(v)),
        ValueRef::String(s) => crc8(
            crc8(crc8_byte(crc, VT_STRING), &(s.len() as u32).to_le_bytes()),
            s.as_bytes(),
        ),
        ValueRef::Binary(b) => crc8(
            crc8(crc8_byte(crc, VT_BLOB), &(b.len() as u32).to_le_bytes()),
            b,
        ),
    };
    crc8(crc, &ts.to_le_bytes())
}

/// Appends read-shaped rows to one buffer (one header, then rows).
pub struct RowsWriter {
    buf: Vec<u8>,
    row_crc: u8,
    in_data: bool,
}

impl RowsWriter {
    pub fn with_capacity(cap: usize) -> Self {
        let mut buf = Vec::with_capacity(cap.max(16));
        buf.extend_from_slice(&HEADER.to_le_bytes());
        RowsWriter {
            buf,
            row_crc: 0,
            in_data: false,
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Starts a row with its primary key.
    pub fn pk<'a>(&mut self, cells: impl Iterator<Item = (&'a str, PkValueRef<'a>)>) {
        self.buf.push(TAG_ROW_PK);
        self.row_crc = 0;
        self.in_data = false;
        for (name, v) in cells {
            let b = &mut self.buf;
            b.extend_from_slice(&[TAG_CELL, TAG_CELL_NAME]);
            b.extend_from_slice(&(name.len() as u32).to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            b.push(TAG_CELL_VALUE);
            let start = b.len() + 4;
            b.extend_from_slice(&[0; 4]);
            match v {
                PkValueRef::Integer(i) => {
                    b.push(VT_INTEGER);
                    b.extend_from_slice(&i.to_le_bytes());
                }
                PkValueRef::String(s) => {
                    b.push(VT_STRING);
                    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    b.extend_from_slice(s.as_bytes());
                }
                PkValueRef::Binary(x) => {
                    b.push(VT_BLOB);
                    b.extend_from_slice(&(x.len() as u32).to_le_bytes());
                    b.extend_from_slice(x);
                }
                PkValueRef::InfMin => b.push(VT_INF_MIN),
                PkValueRef::InfMax => b.push(VT_INF_MAX),
                PkValueRef::AutoIncrement => b.push(VT_AUTO_INCREMENT),
            }
            let len = (b.len() - start) as u32;
            b[start - 4..start].copy_from_slice(&len.to_le_bytes());
            let crc = crc8(crc8(0, name.as_bytes()), &b[start..]);
            b.extend_from_slice(&[TAG_CELL_CHECKSUM, crc]);
            self.row_crc = crc8_byte(self.row_crc, crc);
        }
    }

    /// Appends a stored cell with its timestamp and its cached checksum.
    pub fn cell(&mut self, c: &StoredCell) {
        let b = &mut self.buf;
        if !self.in_data {
            b.push(TAG_ROW_DATA);
            self.in_data = true;
        }
        let name = c.name.as_bytes();
        b.extend_from_slice(&[TAG_CELL, TAG_CELL_NAME]);
        b.extend_from_slice(&(name.len() as u32).to_le_bytes());
        b.extend_from_slice(name);
        b.push(TAG_CELL_VALUE);
        match c.value.as_ref() {
            ValueRef::Integer(v) => {
                b.extend_from_slice(&[9, 0, 0, 0, VT_INTEGER]);
                b.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Double(v) => {
                b.extend_from_slice(&[9, 0, 0, 0, VT_DOUBLE]);
                b.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            ValueRef::Boolean(v) => b.extend_from_slice(&[2, 0, 0, 0, VT_BOOLEAN, u8::from(v)]),
            ValueRef::String(s) => {
                b.extend_from_slice(&(s.len() as u32 + 5).to_le_bytes());
                b.push(VT_STRING);
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }
            ValueRef::Binary(x) => {
                b.extend_from_slice(&(x.len() as u32 + 5).to_le_bytes());
                b.push(VT_BLOB);
                b.extend_from_slice(&(x.len() as u32).to_le_bytes());
                b.extend_from_slice(x);
            }
        }
        b.push(TAG_CELL_TIMESTAMP);
        b.extend_from_slice(&c.ts.to_le_bytes());
        b.extend_from_slice(&[TAG_CELL_CHECKSUM, c.crc]);
        self.row_crc = crc8_byte(self.row_crc, c.crc);
    }

    /// Closes the row (read rows never carry the delete marker).
    pub fn end_row(&mut self) {
        let crc = crc8_byte(self.row_crc, 0);
        self.buf.extend_from_slice(&[TAG_ROW_CHECKSUM, crc]);
        self.row_crc = 0;
        self.in_data = false;
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ots_wire::plainbuffer::{PlainBufferWriter, decode_rows};
    use ots_wire::types::Value;

    use super::*;

    fn stored(name: &str, ts: i64, value: Value) -> StoredCell {
        StoredCell::new(Arc::from(name), ts, value)
    }

    #[test]
    fn identical_to_the_wire_writer() {
        type TestRow<'a> = (Vec<(&'a str, PkValueRef<'a>)>, Vec<StoredCell>);
        let rows: Vec<TestRow<'_>> = vec![
            (
                vec![
                    ("pk1", PkValueRef::String("a")),
                    ("pk2", PkValueRef::Integer(7)),
                ],
                vec![
                    stored("b", 1, Value::Boolean(true)),
                    stored("bin", 2, Value::Binary(vec![0, 1, 2])),
                    stored("d", 3, Value::Double(-1.5)),
                    stored("i", -4, Value::Integer(i64::MIN)),
                    stored("s", 1_700_000_000_000, Value::String("héllo".into())),
                    stored("z", 0, Value::Boolean(false)),
                    stored("zz", 0, Value::String(String::new())),
                ],
            ),
            (vec![("k", PkValueRef::Binary(&[9, 8]))], vec![]),
            (
                vec![("k", PkValueRef::InfMax)],
                vec![stored("only", 5, Value::Binary(vec![]))],
            ),
        ];
        let mut ours = RowsWriter::with_capacity(0);
        let mut theirs = PlainBufferWriter::new();
        for (pk, cells) in &rows {
            ours.pk(pk.iter().copied());
            for (n, v) in pk {
                theirs.pk(n, *v);
            }
            for c in cells {
                ours.cell(c);
                theirs.cell(&c.name, Some(c.value.as_ref()), None, Some(c.ts));
            }
            ours.end_row();
            theirs.end_row();
        }
        let ours = ours.into_bytes();
        assert_eq!(ours, theirs.into_bytes());
        assert_eq!(decode_rows(&ours).unwrap().len(), 3);
    }
}
