//! In-memory row storage: an ordered map keyed by the primary key in Tablestore order, each row a flat
//! list of cell versions sorted by (column name, timestamp descending).

use std::cmp::Ordering;
use std::sync::Arc;

use ots_wire::types::{PkValue, Value, ValueRef, cmp_primary_keys};

/// An owned primary key (or a range bound, which may hold INF_MIN/INF_MAX), ordered as Tablestore
/// orders rows. Stored keys never hold markers, so a bound compares correctly against every row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub Box<[PkValue]>);

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_primary_keys(
            self.0.iter().map(PkValue::as_ref),
            other.0.iter().map(PkValue::as_ref),
        )
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bytes a PK value counts for in capacity and split accounting (fact sheet §5.8).
pub fn pk_value_size(v: &PkValue) -> usize {
    match v {
        PkValue::Integer(_) => 8,
        PkValue::String(s) => s.len(),
        PkValue::Binary(b) => b.len(),
        _ => 1,
    }
}

/// One version of one attribute column.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCell {
    /// Interned per table: rows share one allocation per column name.
    pub name: Arc<str>,
    pub ts: i64,
    pub value: Value,
    /// The PlainBuffer cell checksum of this cell as a read returns it, computed once at write time.
    pub crc: u8,
}

impl StoredCell {
    pub fn new(name: Arc<str>, ts: i64, value: Value) -> Self {
        let crc = crate::encode::attr_cell_crc(&name, value.as_ref(), ts);
        StoredCell {
            name,
            ts,
            value,
            crc,
        }
    }

    pub fn data_size(&self) -> usize {
        self.name.len() + self.value.as_ref().data_size()
    }
}

/// Cells sorted by (name ascending, timestamp descending), at most one cell per (name, ts).
/// No `Default`: a row is made with its key's size (`StoredRow::new`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRow {
    cells: Vec<StoredCell>,
    /// The sum of the cells' `data_size`, kept up to date by every change, and the size of the
    /// row's key, set when the row is made: ComputeSplitPointsBySize sums both over the whole
    /// table, and reading every key and cell made that walk cost ~190 ms per million rows, where
    /// the service answers from its metadata.
    data_bytes: usize,
    key_bytes: usize,
}

/// Which versions of a row are visible: the table's max_versions and TTL always apply (versions beyond
/// them are invisible at once, whether or not they are purged yet).
#[derive(Clone, Copy, Debug)]
pub struct Visibility {
    pub table_max_versions: usize,
    /// Cells with a timestamp below this (ms) have expired; `i64::MIN` when the TTL is forever.
    pub ttl_cutoff_ms: i64,
}

/// What a read asks for on top of visibility.
#[derive(Clone, Debug)]
pub struct ReadView<'a> {
    pub vis: Visibility,
    /// [start, end) in ms.
    pub start_ts: i64,
    pub end_ts: i64,
    pub max_versions: usize,
    /// Sorted, deduplicated attribute names to return; `None` = every column.
    pub columns: Option<&'a [String]>,
    /// Optional [start_column, end_column) name range (wide-row paging parameters).
    pub start_column: Option<&'a str>,
    pub end_column: Option<&'a str>,
}

impl StoredRow {
    /// An empty row whose key takes `key_bytes` (`read::pk_size`), with room for `cells`.
    pub fn new(key_bytes: usize, cells: usize) -> Self {
        StoredRow {
            cells: Vec::with_capacity(cells),
            data_bytes: 0,
            key_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn position(&self, name: &str, ts: i64) -> Result<usize, usize> {
        self.cells
            .binary_search_by(|c| (*c.name).cmp(name).then_with(|| ts.cmp(&c.ts)))
    }

    /// Index range of the versions of `name`.
    fn group(&self, name: &str) -> std::ops::Range<usize> {
        let start = self.cells.partition_point(|c| (*c.name) < *name);
        let end = start + self.cells[start..].partition_point(|c| (*c.name) == *name);
        start..end
    }

    /// Writes one version, replacing a version with the same timestamp, then drops versions beyond
    /// `max_versions` (they would be invisible anyway; purging keeps memory bounded).
    pub fn put(&mut self, name: Arc<str>, ts: i64, value: Value, max_versions: usize) {
        match self.position(&name, ts) {
            Ok(i) => {
                let cell = StoredCell::new(name, ts, value);
                self.data_bytes = self.data_bytes - self.cells[i].data_size() + cell.data_size();
                self.cells[i] = cell;
            }
            Err(i) => {
                let cell = StoredCell::new(name, ts, value);
                self.data_bytes += cell.data_size();
                self.cells.insert(i, cell);
                let g = self.group(&self.cells[i].name.clone());
                if g.len() > max_versions {
                    self.remove_cells(g.start + max_versions..g.end);
                }
            }
        }
    }

    pub fn delete_all_versions(&mut self, name: &str) {
        let g = self.group(name);
        self.remove_cells(g);
    }

    pub fn delete_one_version(&mut self, name: &str, ts: i64) {
        if let Ok(i) = self.position(name, ts) {
            self.remove_cells(i..i + 1);
        }
    }

    fn remove_cells(&mut self, range: std::ops::Range<usize>) {
        for cell in self.cells.drain(range) {
            self.data_bytes -= cell.data_size();
        }
    }

    /// The newest visible version of `name`.
    pub fn latest(&self, name: &str, vis: Visibility) -> Option<&StoredCell> {
        let g = self.group(name);
        self.cells[g]
            .iter()
            .take(vis.table_max_versions)
            .find(|c| c.ts >= vis.ttl_cutoff_ms)
    }

    /// A row exists while it has at least one visible cell.
    pub fn exists(&self, vis: Visibility) -> bool {
        let mut i = 0;
        while i < self.cells.len() {
            let name = &self.cells[i].name;
            let mut j = i;
            while j < self.cells.len() && self.cells[j].name == *name {
                if j - i < vis.table_max_versions && self.cells[j].ts >= vis.ttl_cutoff_ms {
                    return true;
                }
                j += 1;
            }
            i = j;
        }
        false
    }

    /// Every visible version, newest first per column (what conditions are evaluated on).
    pub fn visible<'r>(&'r self, vis: Visibility, out: &mut Vec<&'r StoredCell>) {
        let view = ReadView {
            vis,
            start_ts: i64::MIN,
            end_ts: i64::MAX,
            max_versions: usize::MAX,
            columns: None,
            start_column: None,
            end_column: None,
        };
        self.select(&view, out);
    }

    /// Appends the cells a read returns, in name order and newest first within a column.
    pub fn select<'r>(&'r self, view: &ReadView<'_>, out: &mut Vec<&'r StoredCell>) {
        let cells = &self.cells;
        let mut i = 0;
        while i < cells.len() {
            let name: &str = &cells[i].name;
            let mut j = i + 1;
            while j < cells.len() && *cells[j].name == *name {
                j += 1;
            }
            let wanted = view
                .columns
                .is_none_or(|cols| cols.binary_search_by(|c| c.as_str().cmp(name)).is_ok())
                && view.start_column.is_none_or(|s| name >= s)
                && view.end_column.is_none_or(|e| name < e);
            if wanted {
                let mut taken = 0;
                for c in cells[i..j].iter().take(view.vis.table_max_versions) {
                    if taken >= view.max_versions {
                        break;
                    }
                    if c.ts >= view.vis.ttl_cutoff_ms && c.ts >= view.start_ts && c.ts < view.end_ts
                    {
                        out.push(c);
                        taken += 1;
                    }
                }
            }
            i = j;
        }
    }

    /// Bytes the row occupies for split planning: its key and every stored version, names
    /// included.
    pub fn split_size(&self) -> usize {
        self.key_bytes + self.data_size()
    }

    /// Bytes of every stored version, names included.
    pub fn data_size(&self) -> usize {
        debug_assert_eq!(
            self.data_bytes,
            self.cells.iter().map(StoredCell::data_size).sum::<usize>()
        );
        self.data_bytes
    }
}

/// The versions of `name` among selected cells (sorted by name), newest first.
pub fn versions_of<'c, 'r>(cells: &'c [&'r StoredCell], name: &str) -> &'c [&'r StoredCell] {
    let start = cells.partition_point(|c| (*c.name) < *name);
    let len = cells[start..].partition_point(|c| (*c.name) == *name);
    &cells[start..start + len]
}

/// Total order on attribute values of the same type; `None` when the types differ.
pub fn cmp_values(a: ValueRef<'_>, b: ValueRef<'_>) -> Option<Ordering> {
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => Some(x.cmp(&y)),
        (ValueRef::Double(x), ValueRef::Double(y)) => x.partial_cmp(&y),
        (ValueRef::Boolean(x), ValueRef::Boolean(y)) => Some(x.cmp(&y)),
        (ValueRef::String(x), ValueRef::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (ValueRef::Binary(x), ValueRef::Binary(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vis(max: usize) -> Visibility {
        Visibility {
            table_max_versions: max,
            ttl_cutoff_ms: i64::MIN,
        }
    }

    #[test]
    fn put_orders_and_trims_versions() {
        let mut r = StoredRow::new(0, 0);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        r.put(b.clone(), 5, Value::Integer(1), 2);
        r.put(a.clone(), 1, Value::Integer(1), 2);
        r.put(a.clone(), 3, Value::Integer(3), 2);
        r.put(a.clone(), 2, Value::Integer(2), 2);
        let got: Vec<(&str, i64)> = r.cells.iter().map(|c| (&*c.name, c.ts)).collect();
        assert_eq!(got, vec![("a", 3), ("a", 2), ("b", 5)]);
        // The (a, 1) put beyond two versions was dropped: 3 cells of 1 + 8 bytes.
        assert_eq!(r.data_size(), 27);
        r.put(a.clone(), 3, Value::Integer(30), 2);
        assert_eq!(
            r.latest("a", vis(2)).map(|c| &c.value),
            Some(&Value::Integer(30))
        );
        r.put(b.clone(), 5, Value::String("twelve bytes".into()), 2);
        assert_eq!(r.data_size(), 18 + 1 + 12);
        r.delete_one_version("a", 3);
        assert_eq!(r.latest("a", vis(2)).map(|c| c.ts), Some(2));
        assert_eq!(r.data_size(), 9 + 13);
        r.delete_all_versions("a");
        assert!(r.latest("a", vis(2)).is_none());
        assert!(r.exists(vis(2)));
        assert_eq!(r.data_size(), 13);
        r.delete_all_versions("b");
        assert!(!r.exists(vis(2)));
        assert_eq!(r.data_size(), 0);
    }

    #[test]
    fn select_applies_ttl_range_and_max_versions() {
        let mut r = StoredRow::new(0, 0);
        let a: Arc<str> = Arc::from("a");
        for ts in 1..=5 {
            r.put(a.clone(), ts, Value::Integer(ts), 10);
        }
        let mut out = Vec::new();
        let view = ReadView {
            vis: Visibility {
                table_max_versions: 4,
                ttl_cutoff_ms: 3,
            },
            start_ts: 0,
            end_ts: 5,
            max_versions: 10,
            columns: None,
            start_column: None,
            end_column: None,
        };
        r.select(&view, &mut out);
        // versions 5,4,3,2 are within max_versions 4; 2 expired; 5 outside [0,5).
        let ts: Vec<i64> = out.iter().map(|c| c.ts).collect();
        assert_eq!(ts, vec![4, 3]);
    }
}
