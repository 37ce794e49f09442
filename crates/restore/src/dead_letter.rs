//! The dead-letter file: rows that failed for good, one JSON object per line, each holding the
//! whole row as it was to be written (every cell with its type, value and timestamp), so that
//! `otsarchive restore --retry-dead-letter FILE` can send exactly those rows again.
//!
//! A line (format 1; `docs/OPERATIONS.md`, *Dead letters*):
//!
//! ```json
//! {"format":1,"table":"orders_copy","operation":"put","mode":"overwrite",
//!  "primary_key":[{"name":"user_id","type":"STRING","value":"u001"},{"name":"seq","type":"INTEGER","value":12}],
//!  "cells":[{"name":"age","type":"INTEGER","value":31,"ts":1764000000000},
//!           {"name":"score","type":"DOUBLE","value":"0.1","ts":1764000000000},
//!           {"name":"blob","type":"BINARY","value":"AQI=","ts":1764000000000}],
//!  "code":"OTSParameterInvalid","message":"…","file":"data/split=0000/part-….parquet"}
//! ```
//!
//! Types are explicit. INTEGER is a JSON integer (exact for every i64); DOUBLE is a string in
//! Rust's shortest round-trip notation (parsing it gives back the very same bits); BINARY (values
//! and keys) is standard base64 with padding; STRING is a JSON string; BOOLEAN is `true`/`false`.
//! A key column whose value the service assigns (`--auto-increment regenerate`) has type
//! `AUTO_INCREMENT` and no value.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ots_wire::pb;
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
use serde::{Deserialize, Serialize};

use crate::config::WriteMode;
use crate::error::RestoreError;
use crate::journal::{parent_dir, sync_dir};

/// Version of the line layout. Lines without a `format` field are of older releases, which
/// recorded only the primary key: they cannot be replayed.
pub const DEAD_LETTER_FORMAT: u32 = 1;

/// One line of the dead-letter file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterLine {
    #[serde(default)]
    pub format: u32,
    /// The table the row was to be written into.
    #[serde(default)]
    pub table: String,
    /// `put` (PutRow, replaces the row) or `update` (UpdateRow of these versions).
    #[serde(default)]
    pub operation: String,
    /// `overwrite` or `only-if-absent`.
    #[serde(default)]
    pub mode: String,
    pub primary_key: Vec<TypedValue>,
    #[serde(default)]
    pub cells: Vec<TypedValue>,
    pub code: String,
    pub message: String,
    /// The snapshot file the row was read from (or, for a replay, the file it was first read from).
    pub file: String,
}

/// A key column or a cell, with an explicit type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypedValue {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub value: serde_json::Value,
    /// A cell's timestamp (ms); absent for key columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

fn key_json(c: &PkColumn) -> TypedValue {
    let (t, v) = match &c.value {
        PkValue::Integer(i) => ("INTEGER", serde_json::json!(i)),
        PkValue::String(s) => ("STRING", serde_json::json!(s)),
        PkValue::Binary(b) => ("BINARY", serde_json::json!(BASE64.encode(b))),
        PkValue::AutoIncrement => ("AUTO_INCREMENT", serde_json::Value::Null),
        PkValue::InfMin => ("INF_MIN", serde_json::Value::Null),
        PkValue::InfMax => ("INF_MAX", serde_json::Value::Null),
    };
    TypedValue {
        name: c.name.clone(),
        value_type: t.into(),
        value: v,
        ts: None,
    }
}

fn cell_json(c: &Cell) -> TypedValue {
    let (t, v) = match &c.value {
        Value::Integer(i) => ("INTEGER", serde_json::json!(i)),
        // `{:?}` is the shortest text that parses back to the same f64.
        Value::Double(d) => ("DOUBLE", serde_json::json!(format!("{d:?}"))),
        Value::Boolean(b) => ("BOOLEAN", serde_json::json!(b)),
        Value::String(s) => ("STRING", serde_json::json!(s)),
        Value::Binary(b) => ("BINARY", serde_json::json!(BASE64.encode(b))),
    };
    TypedValue {
        name: c.name.clone(),
        value_type: t.into(),
        value: v,
        ts: c.timestamp,
    }
}

fn bad(what: &str, v: &TypedValue) -> String {
    format!(
        "{what} '{}' of type {} has an invalid value {}",
        v.name, v.value_type, v.value
    )
}

fn key_value(v: &TypedValue) -> Result<PkValue, String> {
    Ok(match (v.value_type.as_str(), &v.value) {
        ("INTEGER", j) => PkValue::Integer(j.as_i64().ok_or_else(|| bad("key column", v))?),
        ("STRING", serde_json::Value::String(s)) => PkValue::String(s.clone()),
        ("BINARY", serde_json::Value::String(s)) => {
            PkValue::Binary(BASE64.decode(s).map_err(|_| bad("key column", v))?)
        }
        ("AUTO_INCREMENT", _) => PkValue::AutoIncrement,
        ("STRING" | "BINARY", _) => return Err(bad("key column", v)),
        (t, _) => {
            return Err(format!(
                "key column '{}' has type {t}; expected STRING, INTEGER, BINARY or AUTO_INCREMENT",
                v.name
            ));
        }
    })
}

fn cell_value(v: &TypedValue) -> Result<Value, String> {
    Ok(match (v.value_type.as_str(), &v.value) {
        ("INTEGER", j) => Value::Integer(j.as_i64().ok_or_else(|| bad("cell", v))?),
        ("DOUBLE", serde_json::Value::String(s)) => {
            let d: f64 = s.parse().map_err(|_| bad("cell", v))?;
            if !d.is_finite() {
                return Err(bad("cell", v));
            }
            Value::Double(d)
        }
        ("BOOLEAN", serde_json::Value::Bool(b)) => Value::Boolean(*b),
        ("STRING", serde_json::Value::String(s)) => Value::String(s.clone()),
        ("BINARY", serde_json::Value::String(s)) => {
            Value::Binary(BASE64.decode(s).map_err(|_| bad("cell", v))?)
        }
        ("DOUBLE" | "BOOLEAN" | "STRING" | "BINARY", _) => return Err(bad("cell", v)),
        (t, _) => {
            return Err(format!(
                "cell '{}' has type {t}; expected STRING, INTEGER, DOUBLE, BOOLEAN or BINARY",
                v.name
            ));
        }
    })
}

/// How a row was to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteKind {
    pub op: pb::OperationType,
    pub mode: WriteMode,
}

impl WriteKind {
    fn op_name(self) -> &'static str {
        match self.op {
            pb::OperationType::Update => "update",
            _ => "put",
        }
    }
}

impl DeadLetterLine {
    pub fn new(
        table: &str,
        kind: WriteKind,
        row: &Row,
        code: &str,
        message: &str,
        file: &str,
    ) -> Self {
        DeadLetterLine {
            format: DEAD_LETTER_FORMAT,
            table: table.to_string(),
            operation: kind.op_name().into(),
            mode: kind.mode.name().into(),
            primary_key: row.primary_key.iter().map(key_json).collect(),
            cells: row.cells.iter().map(cell_json).collect(),
            code: code.to_string(),
            message: message.to_string(),
            file: file.to_string(),
        }
    }

    /// The row and how it was to be written; an error says what is wrong with the line.
    pub fn to_row(&self) -> Result<(Row, WriteKind), String> {
        if self.format == 0 {
            return Err(
                "the line holds only the primary key (written by an older otsarchive) and cannot \
                 be replayed; restore that row from the snapshot with --start-key/--end-key"
                    .into(),
            );
        }
        if self.format > DEAD_LETTER_FORMAT {
            return Err(format!(
                "the line is of format {} and this otsarchive reads format {DEAD_LETTER_FORMAT}; \
                 use a newer otsarchive",
                self.format
            ));
        }
        let primary_key = self
            .primary_key
            .iter()
            .map(|k| Ok(PkColumn::new(&k.name, key_value(k)?)))
            .collect::<Result<Vec<_>, String>>()?;
        if primary_key.is_empty() {
            return Err("the line has no primary key".into());
        }
        let cells = self
            .cells
            .iter()
            .map(|c| Ok(Cell::new(&c.name, cell_value(c)?, c.ts)))
            .collect::<Result<Vec<_>, String>>()?;
        if cells.is_empty() {
            return Err(
                "the line has no cells (a row without attribute cells is never written)".into(),
            );
        }
        let op = match self.operation.as_str() {
            "put" => pb::OperationType::Put,
            "update" => pb::OperationType::Update,
            other => return Err(format!("unknown operation '{other}' (put or update)")),
        };
        let mode = match self.mode.as_str() {
            "overwrite" => WriteMode::Overwrite,
            "only-if-absent" => WriteMode::OnlyIfAbsent,
            other => {
                return Err(format!(
                    "unknown mode '{other}' (overwrite or only-if-absent)"
                ));
            }
        };
        Ok((Row { primary_key, cells }, WriteKind { op, mode }))
    }
}

/// Rows that failed for good, as JSON lines, appended (a resume adds to the same file).
pub(crate) struct DeadLetter {
    path: PathBuf,
    table: String,
    file: Option<File>,
    /// Lines written since the last sync.
    unsynced: bool,
}

impl DeadLetter {
    pub fn new(path: PathBuf, table: &str) -> Self {
        DeadLetter {
            path,
            table: table.to_string(),
            file: None,
            unsynced: false,
        }
    }

    pub fn record(
        &mut self,
        row: &Row,
        kind: WriteKind,
        code: &str,
        message: &str,
        source_file: &str,
    ) -> Result<(), RestoreError> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let existed = self.path.exists();
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| RestoreError::io("opening the dead-letter file", &self.path, e))?;
                if !existed {
                    let dir = parent_dir(&self.path);
                    sync_dir(dir).map_err(|e| {
                        RestoreError::io("syncing the folder of the dead-letter file", dir, e)
                    })?;
                }
                self.file.insert(f)
            }
        };
        let line = DeadLetterLine::new(&self.table, kind, row, code, message, source_file);
        let mut text = serde_json::to_string(&line).map_err(|source| RestoreError::EncodeJson {
            what: "a dead-letter line",
            path: self.path.clone(),
            source,
        })?;
        text.push('\n');
        // One write per line, so a crash cuts at most the last line.
        file.write_all(text.as_bytes())
            .map_err(|e| RestoreError::io("writing the dead-letter file", &self.path, e))?;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every line recorded so far durable.
    pub fn sync(&mut self) -> Result<(), RestoreError> {
        if let (Some(f), true) = (&self.file, self.unsynced) {
            f.sync_data()
                .map_err(|e| RestoreError::io("syncing the dead-letter file", &self.path, e))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// How many lines an existing dead-letter file holds; `None` when it is absent, empty or blank.
pub fn existing_lines(path: &Path) -> Result<Option<u64>, RestoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RestoreError::io("looking at the dead-letter file", path, e)),
    };
    if meta.len() == 0 {
        return Ok(None);
    }
    let f =
        File::open(path).map_err(|e| RestoreError::io("reading the dead-letter file", path, e))?;
    let mut n = 0u64;
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| RestoreError::io("reading the dead-letter file", path, e))?;
        if !line.iter().all(u8::is_ascii_whitespace) {
            n += 1;
        }
    }
    // Only blank lines: nothing to replay or to lose.
    Ok((n > 0).then_some(n))
}

/// One replayable row of a dead-letter file.
#[derive(Clone, Debug)]
pub struct DeadRow {
    /// 1-based line number.
    pub line: usize,
    pub row: Row,
    pub kind: WriteKind,
    pub file: String,
    pub table: String,
}

/// Reads a dead-letter file line by line (memory holds one line at a time).
pub struct DeadLetterReader {
    path: PathBuf,
    lines: std::io::Split<BufReader<File>>,
    line: usize,
    /// Whether the file ends with a newline (a last line without one may be cut by a crash).
    ends_with_newline: bool,
    /// A last line cut short by a crash, skipped: its number.
    pub skipped_last: Option<usize>,
}

impl DeadLetterReader {
    pub fn open(path: &Path) -> Result<Self, RestoreError> {
        let io = |e| RestoreError::io("reading the dead-letter file", path, e);
        let mut f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let ends_with_newline = if len == 0 {
            true
        } else {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::End(-1)).map_err(io)?;
            let mut b = [0u8; 1];
            f.read_exact(&mut b).map_err(io)?;
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            b[0] == b'\n'
        };
        Ok(DeadLetterReader {
            path: path.to_path_buf(),
            lines: BufReader::new(f).split(b'\n'),
            line: 0,
            ends_with_newline,
            skipped_last: None,
        })
    }

    /// The next row; a line that cannot be replayed is [`RestoreError::DeadLetterLine`], except
    /// a last line without its newline that does not parse (cut by a crash): it is skipped and
    /// noted in [`Self::skipped_last`].
    pub fn next_row(&mut self) -> Result<Option<DeadRow>, RestoreError> {
        loop {
            let Some(bytes) = self.lines.next() else {
                return Ok(None);
            };
            let bytes = bytes
                .map_err(|e| RestoreError::io("reading the dead-letter file", &self.path, e))?;
            self.line += 1;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (path, line) = (self.path.clone(), self.line);
            let err = move |detail: String| RestoreError::DeadLetterLine { path, line, detail };
            let parsed: DeadLetterLine = match serde_json::from_slice(&bytes) {
                Ok(l) => l,
                Err(e) => {
                    // The last line, without its newline: a crash cut it while it was written.
                    if !self.ends_with_newline && self.lines_left_is_zero() {
                        self.skipped_last = Some(self.line);
                        return Ok(None);
                    }
                    return Err(err(format!("not a dead-letter line ({e})")));
                }
            };
            let (row, kind) = parsed.to_row().map_err(err)?;
            return Ok(Some(DeadRow {
                line: self.line,
                row,
                kind,
                file: parsed.file,
                table: parsed.table,
            }));
        }
    }

    /// Whether the line just read was the last one.
    fn lines_left_is_zero(&mut self) -> bool {
        // `split` yields nothing after the last segment; peeking consumes, so only use this on
        // the error path, where reading stops anyway.
        self.lines.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            primary_key: vec![
                PkColumn::new("k", PkValue::String("a\u{0}é".into())),
                PkColumn::new("n", PkValue::Integer(i64::MIN)),
                PkColumn::new("b", PkValue::Binary(vec![0, 255, 7])),
            ],
            cells: vec![
                Cell::new("bin", Value::Binary(vec![1, 2, 3, 0, 255]), Some(5)),
                Cell::new("bool", Value::Boolean(false), Some(6)),
                Cell::new("d", Value::Double(0.1 + 0.2), Some(i64::MAX / 1000 - 1)),
                Cell::new("d", Value::Double(-0.0), Some(1)),
                Cell::new("d", Value::Double(f64::MIN_POSITIVE / 3.0), Some(0)),
                Cell::new("d", Value::Double(1e300), Some(2)),
                Cell::new("i", Value::Integer(i64::MAX), Some(7)),
                Cell::new("s", Value::String("line\nbreak \"q\" 😀".into()), Some(8)),
            ],
        }
    }

    const KIND: WriteKind = WriteKind {
        op: pb::OperationType::Put,
        mode: WriteMode::Overwrite,
    };

    #[test]
    fn a_line_holds_the_whole_row_losslessly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let mut d = DeadLetter::new(path.clone(), "t");
        d.sync().unwrap();
        assert!(!path.exists(), "no file until a row fails");
        d.record(&row(), KIND, "OTSX", "m", "data/f.parquet")
            .unwrap();
        d.sync().unwrap();
        let update = WriteKind {
            op: pb::OperationType::Update,
            mode: WriteMode::OnlyIfAbsent,
        };
        let mut d = DeadLetter::new(path.clone(), "t");
        d.record(&row(), update, "OTSY", "m2", "data/g.parquet")
            .unwrap();
        d.sync().unwrap();
        assert_eq!(existing_lines(&path).unwrap(), Some(2));
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["primary_key"][2]["type"], "BINARY");
        assert_eq!(first["primary_key"][2]["value"], "AP8H");
        assert_eq!(first["cells"][2]["type"], "DOUBLE");
        assert_eq!(first["cells"][2]["value"], "0.30000000000000004");

        let mut r = DeadLetterReader::open(&path).unwrap();
        let a = r.next_row().unwrap().unwrap();
        assert_eq!(a.row, row());
        assert_eq!(a.kind, KIND);
        assert_eq!(
            (a.line, a.file.as_str(), a.table.as_str()),
            (1, "data/f.parquet", "t")
        );
        // Bits, not just values: -0.0 stays negative.
        let bits = |r: &Row| -> Vec<u64> {
            r.cells
                .iter()
                .filter_map(|c| match c.value {
                    Value::Double(d) => Some(d.to_bits()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(bits(&a.row), bits(&row()));
        let b = r.next_row().unwrap().unwrap();
        assert_eq!(b.kind, update);
        assert!(r.next_row().unwrap().is_none());
    }

    #[test]
    fn bad_old_and_cut_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let good =
            serde_json::to_string(&DeadLetterLine::new("t", KIND, &row(), "c", "m", "f")).unwrap();
        // A line cut by a crash at the end is skipped and noted.
        std::fs::write(&path, format!("{good}\n{}", &good[..40])).unwrap();
        let mut r = DeadLetterReader::open(&path).unwrap();
        assert!(r.next_row().unwrap().is_some());
        assert!(r.next_row().unwrap().is_none());
        assert_eq!(r.skipped_last, Some(2));
        // The same damage in the middle is an error naming the line.
        std::fs::write(&path, format!("{}\n{good}\n", &good[..40])).unwrap();
        let err = DeadLetterReader::open(&path)
            .unwrap()
            .next_row()
            .unwrap_err();
        assert!(
            matches!(err, RestoreError::DeadLetterLine { line: 1, .. }),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        // A line of an older release (the key only).
        std::fs::write(
            &path,
            "{\"primary_key\":[{\"name\":\"k\",\"value\":{\"integer\":1}}],\"code\":\"c\",\"message\":\"m\",\"file\":\"f\"}\n",
        )
        .unwrap();
        let err = DeadLetterReader::open(&path)
            .unwrap()
            .next_row()
            .unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        // Wrong types are errors, never panics.
        for (t, v) in [
            ("INTEGER", "\"1\""),
            ("DOUBLE", "\"NaN\""),
            ("DOUBLE", "1.5"),
            ("BINARY", "\"***\""),
            ("BOOLEAN", "1"),
            ("FLOAT", "1"),
        ] {
            let line = good.replacen(
                "{\"name\":\"bool\",\"type\":\"BOOLEAN\",\"value\":false",
                &format!("{{\"name\":\"bool\",\"type\":\"{t}\",\"value\":{v}"),
                1,
            );
            assert_ne!(line, good);
            std::fs::write(&path, format!("{line}\n")).unwrap();
            let err = DeadLetterReader::open(&path)
                .unwrap()
                .next_row()
                .unwrap_err();
            assert!(err.to_string().contains("'bool'"), "{t} {v}: {err}");
        }
        assert_eq!(existing_lines(&dir.path().join("none")).unwrap(), None);
        std::fs::write(&path, "\n \n").unwrap();
        assert_eq!(existing_lines(&path).unwrap(), None, "blank lines only");
    }
}
