//! The stream-record vectors of `shared/reference/tablestore-stream.md` §3 (row bodies from the official
//! SDK's encoder, extension block inserted): our writer must produce them byte for byte and our decoder
//! must read back every field, with every CRC checked.

use ots_wire::plainbuffer::*;
use ots_wire::types::*;

/// The hex of the §3 table row whose first column is `action`, read from the fact sheet itself.
fn fact_sheet_vector(action: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/tablestore-stream.md"
    );
    let text = std::fs::read_to_string(path).expect("stream fact sheet beside the repo");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {action} |")))
        .unwrap_or_else(|| panic!("no {action} vector in the fact sheet"));
    // The hex is the line's last backticked span (a cells column may quote bytes too).
    let hex = line
        .rsplit('`')
        .nth(1)
        .unwrap_or_else(|| panic!("{action} line has no backticked hex"));
    hex::decode(hex).expect("vector is hex")
}

const T0: i64 = 1_700_000_000_000;

fn seq(timestamp_us: i64) -> RecordSequence {
    RecordSequence {
        epoch: 1,
        timestamp_us,
        row_index: 0,
    }
}

fn key(w: &mut PlainBufferWriter) {
    w.pk("pk1", PkValueRef::String("a"))
        .pk("pk2", PkValueRef::Integer(7));
}

#[test]
fn put_row_record_matches_the_fact_sheet() {
    let mut w = PlainBufferWriter::new();
    key(&mut w);
    w.cell("s", Some(ValueRef::String("x")), None, Some(T0))
        .cell("i", Some(ValueRef::Integer(-3)), None, Some(T0))
        .end_record(seq(1_700_000_000_000_123));
    let expected = fact_sheet_vector("PUT_ROW");
    assert_eq!(hex::encode(w.into_bytes()), hex::encode(&expected));

    let row = decode_single_row(&expected).unwrap().unwrap();
    assert_eq!(row.sequence, Some(seq(1_700_000_000_000_123)));
    assert!(!row.delete_marker);
    assert_eq!(row.primary_key.len(), 2);
    assert_eq!(row.cells.len(), 2);
    assert_eq!(row.cells[0].value, Some(ValueRef::String("x")));
    assert_eq!(row.cells[1].value, Some(ValueRef::Integer(-3)));
    assert_eq!(row.cells[1].timestamp, Some(T0));
}

#[test]
fn update_row_record_matches_the_fact_sheet() {
    let mut w = PlainBufferWriter::new();
    key(&mut w);
    w.cell("s", Some(ValueRef::String("y")), None, Some(T0 + 1))
        .cell("s", None, Some(CellOp::DeleteOneVersion), Some(T0))
        .cell("i", None, Some(CellOp::DeleteAllVersions), None)
        .end_record(seq(1_700_000_000_001_456));
    let expected = fact_sheet_vector("UPDATE_ROW");
    assert_eq!(hex::encode(w.into_bytes()), hex::encode(&expected));

    let row = decode_single_row(&expected).unwrap().unwrap();
    assert_eq!(row.sequence, Some(seq(1_700_000_000_001_456)));
    let ops: Vec<_> = row
        .cells
        .iter()
        .map(|c| (c.name, c.op, c.timestamp))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("s", None, Some(T0 + 1)),
            ("s", Some(CellOp::DeleteOneVersion), Some(T0)),
            ("i", Some(CellOp::DeleteAllVersions), None),
        ]
    );
}

#[test]
fn delete_row_record_matches_the_fact_sheet() {
    let mut w = PlainBufferWriter::new();
    key(&mut w);
    w.delete_marker().end_record(seq(1_700_000_000_002_789));
    let expected = fact_sheet_vector("DELETE_ROW");
    assert_eq!(hex::encode(w.into_bytes()), hex::encode(&expected));

    let row = decode_single_row(&expected).unwrap().unwrap();
    assert!(row.delete_marker);
    assert!(row.cells.is_empty());
    assert_eq!(row.sequence, Some(seq(1_700_000_000_002_789)));
}

#[test]
fn damaged_extension_is_an_error_not_a_panic() {
    let good = fact_sheet_vector("DELETE_ROW");
    // The extension starts after the delete marker: find 0x0B 0x18.
    let at = good
        .windows(2)
        .position(|w| w == [0x0B, 0x18])
        .expect("extension block");
    // A truncated extension length.
    let mut bad = good.clone();
    bad[at + 1] = 0x40;
    assert!(decode_single_row(&bad).is_err());
    // A wrong sub-tag inside the sequence block.
    let mut bad = good.clone();
    bad[at + 10] = 0x0E;
    assert!(decode_single_row(&bad).is_err());
    // Every single-byte truncation fails cleanly.
    for n in 0..good.len() {
        let _ = decode_single_row(&good[..n]);
    }
}
