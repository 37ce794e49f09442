//! Typed Tablestore values and rows.
//!
//! Two families: owned types (`PkValue`, `Value`, `Row`, …) for building requests and storing data, and
//! borrowed `*Ref` types that the PlainBuffer decoder produces without copying strings or binaries out of
//! the response buffer. Every variant Tablestore can put on the wire is representable, so nothing is lost
//! between the wire and the rest of the pipeline.

use std::cmp::Ordering;
use std::fmt;

/// The type of a primary-key column, as declared in the table schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PkType {
    Integer,
    String,
    Binary,
}

/// The type of an attribute cell value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    Integer,
    Double,
    Boolean,
    String,
    Binary,
}

impl ValueType {
    /// Every type, in declaration order: `ALL[t as usize] == t`.
    pub const ALL: [ValueType; 5] = [
        ValueType::Integer,
        ValueType::Double,
        ValueType::Boolean,
        ValueType::String,
        ValueType::Binary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ValueType::Integer => "INTEGER",
            ValueType::Double => "DOUBLE",
            ValueType::Boolean => "BOOLEAN",
            ValueType::String => "STRING",
            ValueType::Binary => "BINARY",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A primary-key value. `InfMin`/`InfMax` only appear in range bounds; `AutoIncrement` only in writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PkValue {
    Integer(i64),
    String(String),
    Binary(Vec<u8>),
    InfMin,
    InfMax,
    AutoIncrement,
}

/// A borrowed primary-key value, as decoded from a PlainBuffer without copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PkValueRef<'a> {
    Integer(i64),
    String(&'a str),
    Binary(&'a [u8]),
    InfMin,
    InfMax,
    AutoIncrement,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Integer(i64),
    Double(f64),
    Boolean(bool),
    String(String),
    Binary(Vec<u8>),
}

/// A borrowed attribute value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    Integer(i64),
    Double(f64),
    Boolean(bool),
    String(&'a str),
    Binary(&'a [u8]),
}

/// What an UpdateRow cell does besides a plain put (PlainBuffer TAG_CELL_TYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellOp {
    DeleteAllVersions,
    DeleteOneVersion,
    Increment,
}

impl CellOp {
    pub fn wire_byte(self) -> u8 {
        match self {
            CellOp::DeleteAllVersions => 0x01,
            CellOp::DeleteOneVersion => 0x03,
            CellOp::Increment => 0x04,
        }
    }

    pub fn from_wire_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(CellOp::DeleteAllVersions),
            0x03 => Some(CellOp::DeleteOneVersion),
            0x04 => Some(CellOp::Increment),
            _ => None,
        }
    }
}

/// `s` into `slot`, in its allocation: for decoders that recycle rows.
pub fn assign_str(slot: &mut String, s: &str) {
    slot.clear();
    slot.push_str(s);
}

fn assign_bytes(slot: &mut Vec<u8>, b: &[u8]) {
    slot.clear();
    slot.extend_from_slice(b);
}

impl PkValue {
    /// Sets `self` to `v`, in `self`'s allocation when both are strings or both binaries.
    pub fn assign(&mut self, v: PkValueRef<'_>) {
        match (self, v) {
            (PkValue::String(s), PkValueRef::String(x)) => assign_str(s, x),
            (PkValue::Binary(b), PkValueRef::Binary(x)) => assign_bytes(b, x),
            (slot, v) => *slot = v.to_owned(),
        }
    }

    pub fn as_ref(&self) -> PkValueRef<'_> {
        match self {
            PkValue::Integer(v) => PkValueRef::Integer(*v),
            PkValue::String(s) => PkValueRef::String(s),
            PkValue::Binary(b) => PkValueRef::Binary(b),
            PkValue::InfMin => PkValueRef::InfMin,
            PkValue::InfMax => PkValueRef::InfMax,
            PkValue::AutoIncrement => PkValueRef::AutoIncrement,
        }
    }

    /// The declared type this value satisfies, or `None` for the INF/AUTO_INCREMENT markers.
    pub fn pk_type(&self) -> Option<PkType> {
        self.as_ref().pk_type()
    }
}

impl<'a> PkValueRef<'a> {
    pub fn to_owned(self) -> PkValue {
        match self {
            PkValueRef::Integer(v) => PkValue::Integer(v),
            PkValueRef::String(s) => PkValue::String(s.to_owned()),
            PkValueRef::Binary(b) => PkValue::Binary(b.to_vec()),
            PkValueRef::InfMin => PkValue::InfMin,
            PkValueRef::InfMax => PkValue::InfMax,
            PkValueRef::AutoIncrement => PkValue::AutoIncrement,
        }
    }

    pub fn pk_type(self) -> Option<PkType> {
        match self {
            PkValueRef::Integer(_) => Some(PkType::Integer),
            PkValueRef::String(_) => Some(PkType::String),
            PkValueRef::Binary(_) => Some(PkType::Binary),
            _ => None,
        }
    }

    /// Tablestore's primary-key order: INF_MIN < every value < INF_MAX; integers as signed i64;
    /// strings and binaries bytewise, shorter first on a common prefix. Values of different concrete
    /// types never meet in a valid table; they are ordered by type so that the order stays total.
    pub fn cmp_pk(self, other: PkValueRef<'_>) -> Ordering {
        fn rank(v: PkValueRef<'_>) -> u8 {
            match v {
                PkValueRef::InfMin => 0,
                PkValueRef::Integer(_) => 1,
                PkValueRef::String(_) => 2,
                PkValueRef::Binary(_) => 3,
                PkValueRef::AutoIncrement => 4,
                PkValueRef::InfMax => 5,
            }
        }
        match (self, other) {
            (PkValueRef::Integer(a), PkValueRef::Integer(b)) => a.cmp(&b),
            (PkValueRef::String(a), PkValueRef::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (PkValueRef::Binary(a), PkValueRef::Binary(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

impl Value {
    /// Sets `self` to `v`, in `self`'s allocation when both are strings or both binaries.
    pub fn assign(&mut self, v: ValueRef<'_>) {
        match (self, v) {
            (Value::String(s), ValueRef::String(x)) => assign_str(s, x),
            (Value::Binary(b), ValueRef::Binary(x)) => assign_bytes(b, x),
            (slot, v) => *slot = v.to_owned(),
        }
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Integer(v) => ValueRef::Integer(*v),
            Value::Double(v) => ValueRef::Double(*v),
            Value::Boolean(v) => ValueRef::Boolean(*v),
            Value::String(s) => ValueRef::String(s),
            Value::Binary(b) => ValueRef::Binary(b),
        }
    }

    pub fn value_type(&self) -> ValueType {
        self.as_ref().value_type()
    }
}

impl<'a> ValueRef<'a> {
    pub fn to_owned(self) -> Value {
        match self {
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Double(v) => Value::Double(v),
            ValueRef::Boolean(v) => Value::Boolean(v),
            ValueRef::String(s) => Value::String(s.to_owned()),
            ValueRef::Binary(b) => Value::Binary(b.to_vec()),
        }
    }

    pub fn value_type(self) -> ValueType {
        match self {
            ValueRef::Integer(_) => ValueType::Integer,
            ValueRef::Double(_) => ValueType::Double,
            ValueRef::Boolean(_) => ValueType::Boolean,
            ValueRef::String(_) => ValueType::String,
            ValueRef::Binary(_) => ValueType::Binary,
        }
    }

    /// Bytes the value counts for in capacity-unit accounting (fact sheet §5.8).
    pub fn data_size(self) -> usize {
        match self {
            ValueRef::Integer(_) | ValueRef::Double(_) => 8,
            ValueRef::Boolean(_) => 1,
            ValueRef::String(s) => s.len(),
            ValueRef::Binary(b) => b.len(),
        }
    }
}

/// One primary-key column of a row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PkColumn {
    pub name: String,
    pub value: PkValue,
}

impl PkColumn {
    pub fn new(name: impl Into<String>, value: PkValue) -> Self {
        PkColumn {
            name: name.into(),
            value,
        }
    }
}

/// One version of one attribute column. A column with several versions is several cells with the
/// same name, newest first (the order the service returns them in).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub name: String,
    pub value: Value,
    /// Milliseconds since the epoch; `None` lets the server assign the time of the write.
    pub timestamp: Option<i64>,
}

impl Cell {
    pub fn new(name: impl Into<String>, value: Value, timestamp: Option<i64>) -> Self {
        Cell {
            name: name.into(),
            value,
            timestamp,
        }
    }
}

/// A whole row: primary key in schema order, then attribute cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub primary_key: Vec<PkColumn>,
    pub cells: Vec<Cell>,
}

/// One operation of an UpdateRow.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnUpdate {
    Put {
        name: String,
        value: Value,
        timestamp: Option<i64>,
    },
    DeleteOneVersion {
        name: String,
        timestamp: i64,
    },
    DeleteAllVersions {
        name: String,
    },
    Increment {
        name: String,
        delta: i64,
    },
}

/// A borrowed primary-key cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PkCellRef<'a> {
    pub name: &'a str,
    pub value: PkValueRef<'a>,
}

/// A borrowed attribute cell exactly as it was on the wire: value, op and timestamp are each optional
/// because write requests use every combination (a delete has no value, a server-timed put no timestamp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellRef<'a> {
    pub name: &'a str,
    pub value: Option<ValueRef<'a>>,
    pub op: Option<CellOp>,
    pub timestamp: Option<i64>,
}

/// A borrowed row. Reuse one across `RowDecoder::next_into` calls to decode without allocating.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowRef<'a> {
    pub primary_key: Vec<PkCellRef<'a>>,
    pub cells: Vec<CellRef<'a>>,
    pub delete_marker: bool,
    /// The extension block of a stream record (stream fact sheet §3); `None` in every other row.
    pub sequence: Option<RecordSequence>,
}

/// Where a stream record sits in its shard: (epoch, timestamp_us, row_index) orders the records of
/// one shard. `timestamp_us` is the write time in microseconds; `row_index` orders the rows of one
/// write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordSequence {
    pub epoch: u32,
    pub timestamp_us: i64,
    pub row_index: u32,
}

impl<'a> RowRef<'a> {
    pub fn clear(&mut self) {
        self.primary_key.clear();
        self.cells.clear();
        self.delete_marker = false;
        self.sequence = None;
    }

    /// Copies a read-shaped row (every cell has a value) into an owned `Row`. Cells without a value
    /// (deletes in write requests) are skipped: they carry no data.
    pub fn to_row(&self) -> Row {
        Row {
            primary_key: self
                .primary_key
                .iter()
                .map(|c| PkColumn::new(c.name, c.value.to_owned()))
                .collect(),
            cells: self
                .cells
                .iter()
                .filter_map(|c| {
                    c.value
                        .map(|v| Cell::new(c.name, v.to_owned(), c.timestamp))
                })
                .collect(),
        }
    }
}

/// [`cmp_primary_keys`] of two owned keys.
pub fn cmp_pk_columns(a: &[PkColumn], b: &[PkColumn]) -> Ordering {
    cmp_primary_keys(
        a.iter().map(|c| c.value.as_ref()),
        b.iter().map(|c| c.value.as_ref()),
    )
}

/// Compares two primary keys column by column in Tablestore's order.
pub fn cmp_primary_keys<'a, 'b>(
    a: impl IntoIterator<Item = PkValueRef<'a>>,
    b: impl IntoIterator<Item = PkValueRef<'b>>,
) -> Ordering {
    let mut a = a.into_iter();
    let mut b = b.into_iter();
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) => match x.cmp_pk(y) {
                Ordering::Equal => continue,
                other => return other,
            },
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
        }
    }
}
