//! Arbitrary bytes into the PlainBuffer row decoder.
//!
//! The decoder must never panic. When a buffer decodes fully, re-encoding every row with
//! `PlainBufferWriter` must give back the input byte for byte: the decoder is strict (CRCs, exact
//! value lengths, fixed tag order), so anything it accepts is the canonical encoding of its rows.
//! Special cases: the empty input is a valid zero-row buffer without a header (the writer always
//! writes one), and the bare header `75 00 00 00` is zero rows too (the writer's own output for no
//! rows, so the byte check covers it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ots_wire::plainbuffer::{PlainBufferWriter, RowDecoder, decode_rows};
use ots_wire::types::RowRef;

fn write_row(w: &mut PlainBufferWriter, row: &RowRef<'_>) {
    for c in &row.primary_key {
        w.pk(c.name, c.value);
    }
    for c in &row.cells {
        w.cell(c.name, c.value, c.op, c.timestamp);
    }
    if row.delete_marker {
        w.delete_marker();
    }
    w.end_row();
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut dec) = RowDecoder::new(data) else {
        assert!(decode_rows(data).is_err());
        return;
    };
    let mut w = PlainBufferWriter::new();
    let mut row = RowRef::default();
    let mut rows = 0usize;
    let ok = loop {
        match dec.next_into(&mut row) {
            Ok(true) => {
                rows += 1;
                write_row(&mut w, &row);
            }
            Ok(false) => break true,
            Err(_) => break false,
        }
    };
    let reencoded = w.into_bytes();

    // The collecting API must agree with the streaming one (compared through the encoding, since
    // a NaN double is not equal to itself).
    match decode_rows(data) {
        Ok(v) => {
            assert!(ok, "decode_rows accepted what next_into rejected");
            assert_eq!(v.len(), rows);
            let mut w2 = PlainBufferWriter::new();
            for r in &v {
                write_row(&mut w2, r);
            }
            assert_eq!(w2.into_bytes(), reencoded);
        }
        Err(_) => assert!(!ok, "next_into accepted what decode_rows rejected"),
    }

    if !ok {
        return;
    }
    if data.is_empty() {
        assert_eq!(rows, 0);
        return;
    }
    if data.len() == 4 {
        assert_eq!(rows, 0, "a bare header holds no rows");
    }
    assert_eq!(
        reencoded, data,
        "decoded {rows} row(s) but the re-encoding differs from the input"
    );
});
