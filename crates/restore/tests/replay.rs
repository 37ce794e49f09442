//! Replaying captured changes makes a table equal to its source, cell for cell and version for
//! version: a source table is changed with the client's single-row writes (puts, updates with
//! explicit timestamps, deletes of one version and of all versions, row deletes, a put replacing a
//! row of several versions), the same operations are recorded by hand as `Change`s, and they are
//! replayed onto a second table holding the "before" image. Also: replaying twice changes nothing,
//! `as_of_us` stops at the intermediate state, many changes of one key keep their order, a 6 MB
//! row and an UPDATE_ROW of 1,500 cells go in several writes, and a change the table refuses is an
//! error naming its key and ordinal.

use ots_emulator::{Emulator, EmulatorHandle};
use ots_format::change::{Change, ChangeOp};
use ots_restore::{ChangeApplier, ErrorKind, ReplayOptions, ReplayStats, RestoreError};
use ots_scan::{KeyPart, KeyValue, ScanOptions, Split, SplitScanner};
use ots_wire::plainbuffer::{encode_delete_row, encode_put_row, encode_update_row};
use ots_wire::types::*;
use ots_wire::{ClientConfig, Credentials, Idempotency, OtsClient, pb};

const AK: &str = "replay-test-ak";
const SK: &str = "replay-test-sk";
const INSTANCE: &str = "replayinst";

struct World {
    _emu: EmulatorHandle,
    client: OtsClient,
    /// Cell timestamps of the test (ms), an hour ago: within the table's deviation.
    base_ms: i64,
}

async fn world() -> World {
    let emu = Emulator::builder()
        .instance(INSTANCE)
        .credentials(AK, SK)
        .start()
        .await
        .unwrap();
    let client = OtsClient::new(ClientConfig::new(
        emu.endpoint(),
        INSTANCE,
        Credentials::new(AK, SK),
    ))
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    World {
        _emu: emu,
        client,
        base_ms: now - 3_600_000,
    }
}

impl World {
    async fn create(&self, table: &str) {
        let mut req = ots_datagen::create_table_request(table);
        if let Some(o) = req.table_options.as_mut() {
            o.max_versions = Some(10_000);
        }
        self.client.create_table(&req).await.unwrap();
    }

    /// Every row of `table`, every version; a row the service returns in parts is joined.
    async fn rows(&self, table: &str) -> Vec<Row> {
        let bound = |v: KeyValue| {
            ["user_id", "seq"]
                .iter()
                .map(|n| KeyPart {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect::<Vec<_>>()
        };
        let split = Split {
            id: 0,
            start: bound(KeyValue::InfMin),
            end: bound(KeyValue::InfMax),
        };
        let mut scanner = SplitScanner::new(
            self.client.clone(),
            table,
            split,
            ScanOptions::up_to(ots_manifest::TimeRange::MAX_END_MS - 1),
        )
        .unwrap();
        let mut rows: Vec<Row> = Vec::new();
        while let Some(page) = scanner.next_page().await.unwrap() {
            page.for_each_row::<ots_scan::ScanError>(|r| {
                let r = r.to_row();
                match rows.last_mut() {
                    Some(last) if last.primary_key == r.primary_key => last.cells.extend(r.cells),
                    _ => rows.push(r),
                }
                Ok(())
            })
            .unwrap();
        }
        rows
    }

    /// Applies `change` to `table` with one single-row write, as a client of the source did.
    async fn write_directly(&self, table: &str, change: &Change) {
        let condition = || pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        };
        match change.op {
            ChangeOp::PutRow => {
                let row = Row {
                    primary_key: change.primary_key.clone(),
                    cells: change
                        .cells
                        .iter()
                        .map(|c| match c {
                            ColumnUpdate::Put {
                                name,
                                value,
                                timestamp,
                            } => Cell::new(name, value.clone(), *timestamp),
                            other => panic!("not a put: {other:?}"),
                        })
                        .collect(),
                };
                let req = pb::PutRowRequest {
                    table_name: table.into(),
                    row: encode_put_row(&row).into(),
                    condition: condition(),
                    ..Default::default()
                };
                self.client
                    .put_row(&req, Idempotency::Idempotent)
                    .await
                    .unwrap();
            }
            // The service refuses an UpdateRow without cells ("Attribute column is missing."):
            // such a change did nothing, and replay writes nothing for it.
            ChangeOp::UpdateRow if change.cells.is_empty() => {}
            ChangeOp::UpdateRow => {
                let req = pb::UpdateRowRequest {
                    table_name: table.into(),
                    row_change: encode_update_row(&change.primary_key, &change.cells).into(),
                    condition: condition(),
                    ..Default::default()
                };
                self.client
                    .update_row(&req, Idempotency::Idempotent)
                    .await
                    .unwrap();
            }
            ChangeOp::DeleteRow => {
                let req = pb::DeleteRowRequest {
                    table_name: table.into(),
                    primary_key: encode_delete_row(&change.primary_key).into(),
                    condition: condition(),
                    ..Default::default()
                };
                self.client
                    .delete_row(&req, Idempotency::Idempotent)
                    .await
                    .unwrap();
            }
        }
    }

    async fn replay(
        &self,
        table: &str,
        changes: &[Change],
        chunk: usize,
        as_of_us: Option<i64>,
    ) -> Result<ReplayStats, RestoreError> {
        let mut opts = ReplayOptions::new(table);
        opts.concurrency = 4;
        opts.as_of_us = as_of_us;
        let mut applier = ChangeApplier::new(&self.client, opts)?;
        for c in changes.chunks(chunk) {
            applier.apply(c.to_vec()).await?;
        }
        applier.finish().await
    }
}

fn key(user: &str, seq: i64) -> Vec<PkColumn> {
    vec![
        PkColumn::new("user_id", PkValue::String(user.into())),
        PkColumn::new("seq", PkValue::Integer(seq)),
    ]
}

fn put(name: &str, value: Value, ts: i64) -> ColumnUpdate {
    ColumnUpdate::Put {
        name: name.into(),
        value,
        timestamp: Some(ts),
    }
}

/// Records changes with consecutive ordinals and write times 1 ms apart.
struct Recorder {
    changes: Vec<Change>,
    base_us: i64,
}

impl Recorder {
    fn new(base_ms: i64) -> Self {
        Recorder {
            changes: Vec::new(),
            base_us: base_ms * 1000,
        }
    }

    fn add(&mut self, op: ChangeOp, pk: Vec<PkColumn>, cells: Vec<ColumnUpdate>) {
        let n = self.changes.len() as u64;
        self.changes.push(Change {
            ordinal: n,
            shard: format!("shard-{}", n % 3).into(),
            sequence: RecordSequence {
                epoch: 1,
                timestamp_us: self.base_us + n as i64 * 1000,
                row_index: 0,
            },
            op,
            primary_key: pk,
            cells,
        });
    }
}

/// The "before" image both tables start from: rows with several versions.
fn before_rows(b: i64) -> Vec<Change> {
    let mut r = Recorder::new(b);
    r.add(
        ChangeOp::PutRow,
        key("a", 1),
        vec![
            put("x", Value::Integer(1), b - 100),
            put("x", Value::Integer(2), b - 90),
            put("y", Value::String("old".into()), b - 100),
        ],
    );
    r.add(
        ChangeOp::PutRow,
        key("a", 2),
        vec![
            put("v", Value::Double(0.5), b - 100),
            put("v", Value::Double(1.5), b - 80),
            put("w", Value::Boolean(false), b - 100),
        ],
    );
    r.add(
        ChangeOp::PutRow,
        key("b", 1),
        vec![put("z", Value::Binary(vec![1, 2, 3]), b - 100)],
    );
    r.add(
        ChangeOp::PutRow,
        key("c", 7),
        vec![
            put("p", Value::Integer(7), b - 100),
            put("q", Value::Integer(8), b - 70),
        ],
    );
    r.changes
}

/// The changes made to the source after the "before" image, in order.
fn later_changes(b: i64) -> Vec<Change> {
    let mut r = Recorder::new(b);
    // An update with explicit timestamps: a new version and a new column.
    r.add(
        ChangeOp::UpdateRow,
        key("a", 1),
        vec![
            put("x", Value::Integer(3), b + 1),
            put("z", Value::Double(3.25), b + 1),
        ],
    );
    // Delete one version of a column that has several.
    r.add(
        ChangeOp::UpdateRow,
        key("a", 1),
        vec![ColumnUpdate::DeleteOneVersion {
            name: "x".into(),
            timestamp: b - 90,
        }],
    );
    // Delete all versions of a column.
    r.add(
        ChangeOp::UpdateRow,
        key("a", 2),
        vec![ColumnUpdate::DeleteAllVersions { name: "v".into() }],
    );
    // Delete a row.
    r.add(ChangeOp::DeleteRow, key("b", 1), vec![]);
    // Replace a row of several versions with another of several versions.
    r.add(
        ChangeOp::PutRow,
        key("a", 1),
        vec![
            put("n", Value::String("first".into()), b + 5),
            put("n", Value::String("second".into()), b + 6),
            put("x", Value::Integer(9), b + 5),
        ],
    );
    // A new row from an update mixing every operation, in order.
    r.add(
        ChangeOp::UpdateRow,
        key("d", 4),
        vec![
            put("a", Value::Integer(1), b + 7),
            put("a", Value::Integer(2), b + 8),
            ColumnUpdate::DeleteOneVersion {
                name: "a".into(),
                timestamp: b + 7,
            },
            put("s", Value::String("kept".into()), b + 8),
            ColumnUpdate::DeleteAllVersions { name: "s".into() },
            put("s", Value::String("again".into()), b + 9),
        ],
    );
    // A row deleted and written again.
    r.add(ChangeOp::DeleteRow, key("c", 7), vec![]);
    r.add(
        ChangeOp::PutRow,
        key("c", 7),
        vec![put("p", Value::Integer(70), b + 10)],
    );
    // An update overwriting a version in place (same timestamp, other value).
    r.add(
        ChangeOp::UpdateRow,
        key("a", 2),
        vec![put("w", Value::Boolean(true), b - 100)],
    );
    // An update of a row that is deleted later, and its key written again by an update.
    r.add(
        ChangeOp::UpdateRow,
        key("e", 5),
        vec![put("t", Value::Integer(1), b + 11)],
    );
    r.add(ChangeOp::DeleteRow, key("e", 5), vec![]);
    r.add(
        ChangeOp::UpdateRow,
        key("e", 5),
        vec![put("t", Value::Integer(2), b + 12)],
    );
    // A row put twice in a row (the second replaces the first).
    r.add(
        ChangeOp::PutRow,
        key("f", 6),
        vec![put("u", Value::Integer(1), b + 13)],
    );
    r.add(
        ChangeOp::PutRow,
        key("f", 6),
        vec![put("v", Value::Integer(2), b + 14)],
    );
    // An update without cell operations changes nothing.
    r.add(ChangeOp::UpdateRow, key("a", 2), vec![]);
    r.changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_changes_make_the_target_equal_the_source_and_replaying_again_changes_nothing() {
    let w = world().await;
    let b = w.base_ms;
    for t in ["src", "dst", "dst_mid"] {
        w.create(t).await;
        for c in before_rows(b) {
            w.write_directly(t, &c).await;
        }
    }
    let before = w.rows("src").await;
    assert_eq!(before.len(), 4);
    assert_eq!(w.rows("dst").await, before);

    let changes = later_changes(b);
    let cut = changes.len() / 2;
    let mut mid = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        w.write_directly("src", c).await;
        if i + 1 == cut {
            mid = w.rows("src").await;
        }
    }
    let end = w.rows("src").await;
    assert_ne!(end, before);
    assert_ne!(mid, end);

    // Several calls of a few changes each, over four lanes.
    let stats = w.replay("dst", &changes, 3, None).await.unwrap();
    assert_eq!(w.rows("dst").await, end, "the target equals the source");
    let by_op = |op| changes.iter().filter(|c| c.op == op).count() as u64;
    assert_eq!(stats.put_row, by_op(ChangeOp::PutRow));
    assert_eq!(stats.update_row, by_op(ChangeOp::UpdateRow));
    assert_eq!(stats.delete_row, by_op(ChangeOp::DeleteRow));
    assert_eq!(stats.skipped_as_of, 0);
    assert!(
        stats.requests > 0 && stats.requests < changes.len() as u64,
        "{stats:?}"
    );

    // Idempotence: everything again, then everything twice in one call.
    w.replay("dst", &changes, 5, None).await.unwrap();
    assert_eq!(w.rows("dst").await, end, "replaying again changes nothing");
    let twice: Vec<Change> = changes.iter().chain(changes.iter()).cloned().collect();
    w.replay("dst", &twice, twice.len(), None).await.unwrap();
    assert_eq!(
        w.rows("dst").await,
        end,
        "replaying twice in a row changes nothing"
    );

    // as_of_us cutting in the middle: the intermediate state.
    let as_of = changes[cut - 1].sequence.timestamp_us;
    let stats = w.replay("dst_mid", &changes, 4, Some(as_of)).await.unwrap();
    assert_eq!(stats.applied(), cut as u64);
    assert_eq!(stats.skipped_as_of, (changes.len() - cut) as u64);
    assert_eq!(w.rows("dst_mid").await, mid, "the state as of the cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_changes_of_one_key_in_one_call_keep_their_order() {
    let w = world().await;
    let b = w.base_ms;
    w.create("src").await;
    w.create("dst").await;
    let mut r = Recorder::new(b);
    for i in 0..500i64 {
        // The hot key alternates between a put and a delete; other keys share the requests.
        if i % 2 == 0 {
            r.add(
                ChangeOp::PutRow,
                key("hot", 0),
                vec![put("n", Value::Integer(i), b + i)],
            );
        } else {
            r.add(ChangeOp::DeleteRow, key("hot", 0), vec![]);
        }
        r.add(
            ChangeOp::UpdateRow,
            key("cold", i % 7),
            vec![put("n", Value::Integer(i), b + i)],
        );
    }
    // The last word on the hot key is a put.
    r.add(
        ChangeOp::UpdateRow,
        key("hot", 0),
        vec![put("last", Value::Integer(1), b + 600)],
    );
    for c in &r.changes {
        w.write_directly("src", c).await;
    }
    let stats = w
        .replay("dst", &r.changes, r.changes.len(), None)
        .await
        .unwrap();
    let src = w.rows("src").await;
    assert_eq!(w.rows("dst").await, src);
    let hot = src
        .iter()
        .find(|row| row.primary_key == key("hot", 0))
        .unwrap();
    assert_eq!(
        hot.cells,
        vec![Cell::new("last", Value::Integer(1), Some(b + 600))]
    );
    assert_eq!(stats.applied(), r.changes.len() as u64);
    // One request per change of the hot key at least: it never shares a request with itself.
    assert!(stats.requests >= 501, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_megabyte_row_and_an_update_of_1500_cells_go_in_several_writes() {
    let w = world().await;
    let b = w.base_ms;
    w.create("dst").await;
    let big = |c: u8| Value::Binary(vec![c; 2 * 1024 * 1024 - 64]);
    let mut r = Recorder::new(b);
    // The row is first something else, which the big PUT_ROW replaces.
    r.add(
        ChangeOp::PutRow,
        key("big", 1),
        vec![put("old", Value::Integer(1), b)],
    );
    r.add(
        ChangeOp::PutRow,
        key("big", 1),
        vec![
            put("a", big(b'a'), b + 1),
            put("b", big(b'b'), b + 1),
            put("c", big(b'c'), b + 1),
        ],
    );
    let mut updates: Vec<ColumnUpdate> = (0..1500)
        .map(|i| put(&format!("c{i:04}"), Value::Integer(i), b + 2))
        .collect();
    // The last operation depends on order: it deletes a column an earlier part wrote.
    updates.push(ColumnUpdate::DeleteAllVersions {
        name: "c0000".into(),
    });
    r.add(ChangeOp::UpdateRow, key("wide", 2), updates);
    let stats = w.replay("dst", &r.changes, 1, None).await.unwrap();
    assert_eq!(stats.split_changes, 2, "{stats:?}");
    assert_eq!(stats.applied(), 3);

    let rows = w.rows("dst").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].primary_key, key("big", 1));
    assert_eq!(
        rows[0].cells,
        vec![
            Cell::new("a", big(b'a'), Some(b + 1)),
            Cell::new("b", big(b'b'), Some(b + 1)),
            Cell::new("c", big(b'c'), Some(b + 1)),
        ]
    );
    assert_eq!(rows[1].primary_key, key("wide", 2));
    let expected: Vec<Cell> = (1..1500)
        .map(|i| Cell::new(format!("c{i:04}"), Value::Integer(i), Some(b + 2)))
        .collect();
    assert_eq!(rows[1].cells, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_table_refuses_is_an_error_naming_its_key_and_ordinal() {
    let w = world().await;
    let b = w.base_ms;
    w.create("dst").await;
    let mut r = Recorder::new(b);
    r.add(
        ChangeOp::PutRow,
        key("ok", 1),
        vec![put("a", Value::Integer(1), b)],
    );
    // Ten days old: outside the table's one-day deviation, refused for good.
    r.add(
        ChangeOp::UpdateRow,
        key("late", 2),
        vec![put("a", Value::Integer(1), b - 10 * 86_400_000)],
    );
    let err = w.replay("dst", &r.changes, 10, None).await.unwrap_err();
    match &err {
        RestoreError::ChangeFailed {
            ordinal, key, op, ..
        } => {
            assert_eq!(*ordinal, 1);
            assert_eq!(*op, "UPDATE_ROW");
            assert!(key.contains("late"), "{key}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Failure);

    // A change that cannot be replayed exactly is refused before anything of its call is sent.
    let mut bad = r.changes.clone();
    bad[1].cells = vec![ColumnUpdate::Put {
        name: "a".into(),
        value: Value::Integer(1),
        timestamp: None,
    }];
    w.create("other").await;
    let err = w.replay("other", &bad, 10, None).await.unwrap_err();
    assert!(
        matches!(err, RestoreError::ChangeInvalid { ordinal: 1, .. }),
        "{err:?}"
    );
    assert!(w.rows("other").await.is_empty(), "nothing was written");
}
