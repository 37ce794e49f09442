//! Property tests of the PlainBuffer codec: any row round-trips, and any single damaged byte is
//! either detected or changes what the buffer means — never a panic, never a silent identical decode.

use ots_wire::plainbuffer::*;
use ots_wire::types::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}"
}

/// Strings with NUL bytes, unicode from every plane, and empties.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,40}",
        prop::collection::vec(any::<char>(), 0..20).prop_map(|c| c.into_iter().collect()),
        "[a\\x00\u{1F600}]{0,8}",
    ]
}

fn pk_value() -> impl Strategy<Value = PkValue> {
    prop_oneof![
        any::<i64>().prop_map(PkValue::Integer),
        text().prop_map(PkValue::String),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(PkValue::Binary),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        text().prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    let pk = prop::collection::vec((name(), pk_value()), 1..=4);
    // Columns with 1–4 versions each, timestamps present or absent.
    let cells = prop::collection::vec(
        (
            name(),
            prop::collection::vec((value(), prop::option::of(0i64..i64::MAX / 1000)), 1..=4),
        ),
        0..8,
    );
    (pk, cells).prop_map(|(pk, cols)| Row {
        primary_key: pk.into_iter().map(|(n, v)| PkColumn::new(n, v)).collect(),
        cells: cols
            .into_iter()
            .flat_map(|(n, versions)| {
                versions
                    .into_iter()
                    .map(move |(v, ts)| Cell::new(n.clone(), v, ts))
            })
            .collect(),
    })
}

/// Rows naming their columns from one small pool, as a table's rows do: the decoder's name cache
/// is hit, missed (absent, extra and reordered columns) and found again within one buffer.
fn pooled_row() -> impl Strategy<Value = Row> {
    const POOL: [&str; 6] = ["a", "age", "b\u{e9}", "city", "ci", "z"];
    let pk = prop::collection::vec((0..POOL.len(), pk_value()), 1..=2);
    let cells = prop::collection::vec(
        (
            0..POOL.len(),
            prop::collection::vec((value(), prop::option::of(0i64..1000)), 1..=3),
        ),
        0..6,
    );
    (pk, cells).prop_map(|(pk, cols)| Row {
        primary_key: pk
            .into_iter()
            .map(|(n, v)| PkColumn::new(POOL[n], v))
            .collect(),
        cells: cols
            .into_iter()
            .flat_map(|(n, versions)| {
                versions
                    .into_iter()
                    .map(move |(v, ts)| Cell::new(POOL[n], v, ts))
            })
            .collect(),
    })
}

/// Damages each byte of `original` in turn with `mask`: every damaged buffer is refused or decodes
/// to another meaning.
fn check_every_damage(original: &[u8], mask: u8) -> Result<(), TestCaseError> {
    for pos in 0..original.len() {
        let mut damaged = original.to_vec();
        damaged[pos] ^= mask;
        if let Ok(decoded) = decode_rows(&damaged) {
            prop_assert_ne!(
                reencode(&decoded),
                original.to_vec(),
                "byte {} ^ {:#x} decoded to the original meaning",
                pos,
                mask
            );
        }
    }
    Ok(())
}

/// Writes decoded rows back exactly as they were (ops, missing values, delete markers included).
fn reencode(rows: &[RowRef<'_>]) -> Vec<u8> {
    let mut w = PlainBufferWriter::new();
    for r in rows {
        for c in &r.primary_key {
            w.pk(c.name, c.value);
        }
        for c in &r.cells {
            w.cell(c.name, c.value, c.op, c.timestamp);
        }
        if r.delete_marker {
            w.delete_marker();
        }
        w.end_row();
    }
    w.into_bytes()
}

/// A mix of write shapes in one buffer: puts, updates with every op, deletes.
fn write_shapes(rows: &[Row]) -> Vec<u8> {
    let mut w = PlainBufferWriter::new();
    for (i, r) in rows.iter().enumerate() {
        for c in &r.primary_key {
            w.pk(&c.name, c.value.as_ref());
        }
        for (j, c) in r.cells.iter().enumerate() {
            match (i + j) % 4 {
                0 => w.cell(&c.name, Some(c.value.as_ref()), None, c.timestamp),
                1 => w.cell(&c.name, None, Some(CellOp::DeleteAllVersions), None),
                2 => w.cell(&c.name, None, Some(CellOp::DeleteOneVersion), Some(7)),
                _ => w.cell(
                    &c.name,
                    Some(ValueRef::Integer(3)),
                    Some(CellOp::Increment),
                    None,
                ),
            };
        }
        if i % 3 == 2 {
            w.delete_marker();
        }
        w.end_row();
    }
    w.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_rows_round_trip(rows in prop::collection::vec(row(), 1..5)) {
        let bytes = encode_rows(&rows);
        let decoded = decode_rows(&bytes).unwrap();
        let owned: Vec<Row> = decoded.iter().map(RowRef::to_row).collect();
        prop_assert_eq!(&owned, &rows);
        prop_assert_eq!(reencode(&decoded), bytes);
    }

    #[test]
    fn rows_sharing_names_round_trip(rows in prop::collection::vec(pooled_row(), 1..12)) {
        let bytes = encode_rows(&rows);
        let decoded = decode_rows(&bytes).unwrap();
        let owned: Vec<Row> = decoded.iter().map(RowRef::to_row).collect();
        prop_assert_eq!(&owned, &rows);
        prop_assert_eq!(reencode(&decoded), bytes);
    }

    /// Damage to a name that an earlier row already carried: detected, or a different meaning.
    #[test]
    fn damage_to_rows_sharing_names_is_detected_or_visible(
        rows in prop::collection::vec(pooled_row(), 2..5),
        mask in 1u8..=255,
    ) {
        check_every_damage(&encode_rows(&rows), mask)?;
    }

    #[test]
    fn put_row_round_trips(row in row()) {
        let bytes = encode_put_row(&row);
        let decoded = decode_single_row(&bytes).unwrap().unwrap();
        prop_assert_eq!(decoded.to_row(), row);
    }

    #[test]
    fn write_shapes_round_trip(rows in prop::collection::vec(row(), 1..4)) {
        let bytes = write_shapes(&rows);
        let decoded = decode_rows(&bytes).unwrap();
        prop_assert_eq!(reencode(&decoded), bytes);
    }

    /// Every position, one random damage each: detected, or a different meaning.
    #[test]
    fn every_single_byte_damage_is_detected_or_visible(
        rows in prop::collection::vec(row(), 1..3),
        mask in 1u8..=255,
        shapes in any::<bool>(),
    ) {
        let original = if shapes { write_shapes(&rows) } else { encode_rows(&rows) };
        check_every_damage(&original, mask)?;
    }

    /// Truncation anywhere is an error, never a panic or a shorter valid buffer that reads the same.
    #[test]
    fn truncation_is_detected(row in row()) {
        let bytes = encode_rows(std::slice::from_ref(&row));
        for len in 5..bytes.len() {
            prop_assert!(decode_rows(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut with_header = vec![0x75, 0, 0, 0];
        with_header.extend_from_slice(&bytes);
        let _ = decode_rows(&bytes);
        let _ = decode_rows(&with_header);
        let _ = decode_bare_value(&bytes);
    }
}

#[test]
fn max_size_cells_round_trip() {
    // 2 MB per version is the service's limit for STRING and BINARY values.
    let big_string: String = "é\u{0}x".repeat(2 * 1024 * 1024 / 4);
    let big_binary: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let row = Row {
        primary_key: vec![PkColumn::new("k", PkValue::Binary(vec![0xff; 1024]))],
        cells: vec![
            Cell::new("s", Value::String(big_string), Some(1)),
            Cell::new("b", Value::Binary(big_binary), None),
        ],
    };
    let bytes = encode_put_row(&row);
    assert!(bytes.len() > 4 * 1024 * 1024 - 1024);
    assert_eq!(decode_single_row(&bytes).unwrap().unwrap().to_row(), row);
}

#[test]
fn nan_and_signed_zero_keep_their_bits() {
    for bits in [
        f64::NAN.to_bits(),
        0x7ff8_dead_beef_0001,
        (-0.0f64).to_bits(),
    ] {
        let row = Row {
            primary_key: vec![PkColumn::new("k", PkValue::Integer(1))],
            cells: vec![Cell::new("d", Value::Double(f64::from_bits(bits)), None)],
        };
        let bytes = encode_put_row(&row);
        let decoded = decode_single_row(&bytes).unwrap().unwrap();
        match decoded.cells[0].value {
            Some(ValueRef::Double(d)) => assert_eq!(d.to_bits(), bits),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn decoder_reuses_row_allocations() {
    let rows: Vec<Row> = (0..100)
        .map(|i| Row {
            primary_key: vec![PkColumn::new("k", PkValue::Integer(i))],
            cells: vec![Cell::new("v", Value::String(format!("v{i}")), Some(i))],
        })
        .collect();
    let bytes = encode_rows(&rows);
    let mut decoder = RowDecoder::new(&bytes).unwrap();
    let mut row = RowRef::default();
    let mut n = 0;
    while decoder.next_into(&mut row).unwrap() {
        // Strings borrow from the input buffer: no copy per cell.
        if let Some(ValueRef::String(s)) = row.cells[0].value {
            let range = bytes.as_ptr_range();
            assert!(range.contains(&s.as_ptr()));
        }
        n += 1;
    }
    assert_eq!(n, 100);
    assert!(row.cells.capacity() >= 1);
}
