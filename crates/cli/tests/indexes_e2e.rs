//! Secondary indexes end to end: a table with defined columns and two indexes (one global, one
//! local) is backed up; the manifest keeps the indexes verbatim; `show` lists them; `restore
//! --create-table` recreates them (never copying index tables) and the rows round-trip; an
//! existing target without them gets a note.

mod support;

use std::path::Path;

use ots_emulator::PageLimits;
use ots_wire::Idempotency;
use ots_wire::pb;
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

fn index(name: &str, key: &[&str], defined: &[&str], local: bool) -> pb::IndexMeta {
    pb::IndexMeta {
        name: name.into(),
        primary_key: key.iter().map(|s| s.to_string()).collect(),
        defined_column: defined.iter().map(|s| s.to_string()).collect(),
        index_update_mode: if local {
            pb::IndexUpdateMode::IumSyncIndex as i32
        } else {
            pb::IndexUpdateMode::IumAsyncIndex as i32
        },
        index_type: if local {
            pb::IndexType::ItLocalIndex as i32
        } else {
            pb::IndexType::ItGlobalIndex as i32
        },
        index_sync_phase: None,
    }
}

fn indexes() -> Vec<pb::IndexMeta> {
    vec![
        index("people_by_city", &["city", "region", "id"], &["age"], false),
        index("people_local_age", &["region", "age"], &["city"], true),
    ]
}

/// `name(region STRING, id INTEGER)`, defined columns `city STRING`, `age INTEGER`, one version.
fn table_request(name: &str, with_indexes: bool) -> pb::CreateTableRequest {
    let mut req = ots_datagen::create_table_request(name);
    req.table_meta.primary_key = vec![
        pb::PrimaryKeySchema {
            name: "region".into(),
            r#type: pb::PrimaryKeyType::String as i32,
            option: None,
        },
        pb::PrimaryKeySchema {
            name: "id".into(),
            r#type: pb::PrimaryKeyType::Integer as i32,
            option: None,
        },
    ];
    req.table_meta.defined_column = vec![
        pb::DefinedColumnSchema {
            name: "city".into(),
            r#type: pb::DefinedColumnType::DctString as i32,
        },
        pb::DefinedColumnSchema {
            name: "age".into(),
            r#type: pb::DefinedColumnType::DctInteger as i32,
        },
    ];
    let o = req.table_options.get_or_insert_with(Default::default);
    o.max_versions = Some(1);
    o.time_to_live = Some(-1);
    req.index_metas = if with_indexes { indexes() } else { vec![] };
    req
}

async fn create_people(env: &Env) {
    env.client
        .create_table(&table_request("people", true))
        .await
        .unwrap();
    let base = ots_datagen::DatasetSpec::new(1, 1).base_ts_ms;
    let rows: Vec<Row> = (0..60i64)
        .map(|i| Row {
            primary_key: vec![
                PkColumn::new("region", PkValue::String(format!("r{}", i % 3))),
                PkColumn::new("id", PkValue::Integer(i)),
            ],
            cells: vec![
                Cell::new("city", Value::String(format!("city{}", i % 7)), Some(base)),
                Cell::new("age", Value::Integer(20 + i % 40), Some(base)),
                // Not a defined column: restored like any other.
                Cell::new("note", Value::String(format!("n{i}")), Some(base + i)),
            ],
        })
        .collect();
    let out = env
        .client
        .batch_write_row_retrying(
            &ots_datagen::put_batch_request("people", &rows),
            Idempotency::NotIdempotent,
        )
        .await
        .unwrap();
    assert_eq!(out.failures().count(), 0);
}

async fn backup(env: &Env, table: &str, dest: &Path) -> String {
    let out = run(cmd(
        env,
        &[
            "-q",
            "backup",
            "--table",
            table,
            "--to",
            dest.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap().to_string()
}

/// Fields 1–5 of the indexes DescribeTable reports for `table`.
async fn described_indexes(env: &Env, table: &str) -> Vec<pb::IndexMeta> {
    let d = env.client.describe_table(table).await.unwrap();
    d.index_metas
        .into_iter()
        .map(|m| pb::IndexMeta {
            index_sync_phase: None,
            ..m
        })
        .collect()
}

/// The official SDK's view of `table`: defined columns and secondary indexes.
const SDK_DESCRIBE: &str = r#"
import json, sys, tablestore
from tablestore import OTSClient
endpoint, ak, sk, inst, t = sys.argv[1:6]
c = OTSClient(endpoint, ak, sk, inst, retry_policy=tablestore.retry.NoRetryPolicy())
d = c.describe_table(t)
print(json.dumps({
    "defined_columns": d.table_meta.defined_columns,
    "indexes": [[i.index_name, i.primary_key_names, i.defined_column_names, int(i.index_type.value)]
                for i in d.secondary_indexes],
}))
"#;

#[tokio::test]
async fn indexes_are_kept_in_the_manifest_and_recreated_by_create_table() {
    let env = env_with_table("unused", 1, PageLimits::default()).await;
    create_people(&env).await;
    let dest = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let snap = backup(&env, "people", dest.path()).await;

    // The manifest holds IndexMeta fields 1–5 verbatim, enums by name, and the defined columns.
    let out = run(cmd(&env, &["--json", "show", &snap])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let t = &m["source"]["table"];
    assert_eq!(
        t["indexes"],
        serde_json::json!([
            {"name": "people_by_city", "primary_key": ["city", "region", "id"],
             "defined_columns": ["age"], "update_mode": "IUM_ASYNC_INDEX",
             "index_type": "IT_GLOBAL_INDEX"},
            {"name": "people_local_age", "primary_key": ["region", "age"],
             "defined_columns": ["city"], "update_mode": "IUM_SYNC_INDEX",
             "index_type": "IT_LOCAL_INDEX"},
        ])
    );
    assert_eq!(
        t["defined_columns"],
        serde_json::json!([{"name": "city", "type": "STRING"}, {"name": "age", "type": "INTEGER"}])
    );
    let out = run(cmd(&env, &["show", &snap])).await;
    let text = stdout(&out);
    assert!(
        text.contains("people_by_city (city, region, id) + [age] IT_GLOBAL_INDEX IUM_ASYNC_INDEX")
            && text
                .contains("people_local_age (region, age) + [city] IT_LOCAL_INDEX IUM_SYNC_INDEX")
            && text.contains("defined columns city STRING, age INTEGER"),
        "{text}"
    );

    // An existing target without the indexes: the rows restore, and a note says what it lacks.
    env.client
        .create_table(&table_request("plain", false))
        .await
        .unwrap();
    let mut c = cmd(&env, &["restore", "--from", &snap, "--table", "plain"]);
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for name in ["people_by_city", "people_local_age"] {
        assert!(
            err.contains(&format!(
                "note: the snapshot's table had secondary index {name} ("
            )) && err.contains("which 'plain' lacks"),
            "{err}"
        );
    }
    assert!(described_indexes(&env, "plain").await.is_empty());

    // Beside the source, the index names are taken: the CreateTable is refused and nothing is
    // written; --index-suffix gives the copy's indexes their own names.
    let mut c = cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "people_copy",
            "--create-table",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--index-suffix"), "{}", stderr(&out));
    assert!(
        env.client.describe_table("people_copy").await.is_err(),
        "no table was created"
    );
    let mut c = cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "people_copy",
            "--create-table",
            "--index-suffix",
            "_copy",
            "--dead-letter",
            "copy.dead-letter.jsonl",
            "--checkpoint",
            "copy.checkpoint.json",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let copy: Vec<String> = described_indexes(&env, "people_copy")
        .await
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(copy, ["people_by_city_copy", "people_local_age_copy"]);
    env.client.delete_table("people_copy").await.unwrap();

    // Index names are the instance's: recreate the table where its indexes are free (the
    // source dropped, as after a loss). The dry run names what it would create.
    env.client.delete_table("people").await.unwrap();
    let mut c = cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "people",
            "--create-table",
            "--dry-run",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("defined columns: city STRING, age INTEGER")
            && text.contains("index: people_by_city (city, region, id) + [age] IT_GLOBAL_INDEX")
            && text.contains("index: people_local_age"),
        "{text}"
    );
    let mut c = cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "people",
            "--create-table",
            "--json",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (o["table_created"].clone(), o["rows_written"].clone()),
        (true.into(), 60.into())
    );

    // The new table has the defined columns and the indexes, fields 1–5 as the source had them …
    assert_eq!(described_indexes(&env, "people").await, indexes());
    let d = env.client.describe_table("people").await.unwrap();
    assert_eq!(
        d.table_meta.defined_column,
        table_request("p", true).table_meta.defined_column
    );
    // … the official SDK agrees …
    let endpoint = env.emu.endpoint();
    let sdk = tokio::task::spawn_blocking(move || {
        run_python(SDK_DESCRIBE, &[&endpoint, AK, SK, INSTANCE, "people"])
    })
    .await
    .unwrap();
    assert_eq!(
        sdk,
        serde_json::json!({
            "defined_columns": [["city", "STRING"], ["age", "INTEGER"]],
            "indexes": [["people_by_city", ["city", "region", "id"], ["age"], 0],
                        ["people_local_age", ["region", "age"], ["city"], 1]],
        })
    );
    // … no index table became a table, and every cell is back.
    let mut names = env.client.list_table().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["people", "plain", "unused"]);
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "people"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(
        stdout(&v).contains("table 'people' (every cell): OK"),
        "{}",
        stdout(&v)
    );
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "plain"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
}
