//! Shared by the CLI tests: an in-process emulator with the standard table, running the built
//! `otsarchive` binary against it, and the Python referees (DuckDB, pyarrow).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ots_datagen::{DatasetSpec, create_and_load, row};
use ots_emulator::{Emulator, EmulatorHandle, PageLimits};
use ots_wire::types::Row;
use ots_wire::{ClientConfig, Credentials, OtsClient};

pub const AK: &str = "cli-test-ak";
/// Distinctive, so that tests can assert it never appears in any output.
pub const SK: &str = "cli-test-SECRET-9f8e7d6c5b4a";
pub const INSTANCE: &str = "cliinst";

pub struct Env {
    pub emu: EmulatorHandle,
    pub client: OtsClient,
    pub spec: DatasetSpec,
}

impl Env {
    pub fn expected_rows(&self) -> Vec<Row> {
        (0..self.spec.rows).map(|i| row(&self.spec, i)).collect()
    }
}

pub async fn env_with_table(table: &str, rows: u64, limits: PageLimits) -> Env {
    let emu = Emulator::builder()
        .instance(INSTANCE)
        .credentials(AK, SK)
        .page_limits(limits)
        .start()
        .await
        .unwrap();
    let client = OtsClient::new(ClientConfig::new(
        emu.endpoint(),
        INSTANCE,
        Credentials::new(AK, SK),
    ))
    .unwrap();
    let spec = DatasetSpec::new(rows, 1234);
    create_and_load(&client, table, &spec, 4, Arc::new(AtomicU64::new(0)))
        .await
        .unwrap();
    Env { emu, client, spec }
}

pub fn otsarchive() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_otsarchive"));
    c.env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .env_remove("OTSARCHIVE_ENDPOINT")
        .env_remove("OTSARCHIVE_INSTANCE");
    c
}

/// Runs the binary (blocking, off the async runtime) and returns its output.
pub async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("otsarchive runs"))
        .await
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_no_secret(o: &Output) {
    assert!(
        !stdout(o).contains(SK) && !stderr(o).contains(SK),
        "secret leaked"
    );
}

/// The Python with DuckDB and pyarrow that `tests/run.sh` prepares.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("OTSARCHIVE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ));
    assert!(
        venv.exists(),
        "no Python referee: run the tests with `bash tests/run.sh` (or set OTSARCHIVE_TEST_PYTHON)"
    );
    venv
}

pub fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// Every row of a snapshot folder, read back through the snapshot layout, sorted by primary key.
pub fn snapshot_rows(snapshot_dir: &Path) -> Vec<Row> {
    let manifest: ots_manifest::Manifest = serde_json::from_slice(
        &std::fs::read(snapshot_dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest parses");
    let mut rows = Vec::new();
    for f in &manifest.files {
        let file = std::fs::File::open(snapshot_dir.join(&f.path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let rr = ots_schema::RowReader::new(&manifest.schema, &batch).unwrap();
            for r in rr.rows() {
                rows.push(r.unwrap());
            }
        }
    }
    rows.sort_by(|a, b| {
        ots_wire::types::cmp_primary_keys(
            a.primary_key.iter().map(|c| c.value.as_ref()),
            b.primary_key.iter().map(|c| c.value.as_ref()),
        )
    });
    rows
}

/// Puts cell versions into a row of `table` with one UpdateRow (the row's other cells stay).
pub async fn put_cells(
    client: &OtsClient,
    table: &str,
    pk: &[ots_wire::types::PkColumn],
    cells: &[ots_wire::types::Cell],
) {
    use ots_wire::pb;
    let req = pb::UpdateRowRequest {
        table_name: table.into(),
        row_change: bytes::Bytes::from(ots_wire::plainbuffer::encode_put_cells(pk, cells)),
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        ..Default::default()
    };
    client
        .update_row(&req, ots_wire::Idempotency::Idempotent)
        .await
        .unwrap();
}

/// The official SDK scans two tables (all versions) and says whether they hold the same rows.
pub const SDK_COMPARE: &str = r#"
import json, sys, tablestore
from tablestore import OTSClient, INF_MIN, INF_MAX
endpoint, ak, sk, inst, a, b = sys.argv[1:7]
c = OTSClient(endpoint, ak, sk, inst, retry_policy=tablestore.retry.NoRetryPolicy())
def norm(v):
    return {"bin": v.hex()} if isinstance(v, (bytes, bytearray)) else v
def scan(t):
    meta = c.describe_table(t).table_meta
    start = [(p[0], INF_MIN) for p in meta.schema_of_primary_key]
    end = [(p[0], INF_MAX) for p in meta.schema_of_primary_key]
    out, nxt = [], start
    while nxt:
        _, nxt, rows, _ = c.get_range(t, "FORWARD", nxt, end, max_version=100)
        for r in rows:
            out.append([[ [k, norm(v)] for k, v in r.primary_key ],
                        [ [col[0], norm(col[1]), col[2]] for col in r.attribute_columns ]])
    return out
ra, rb = scan(a), scan(b)
first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), None)
print(json.dumps({"equal": ra == rb, "rows_a": len(ra), "rows_b": len(rb),
                  "cells_a": sum(len(r[1]) for r in ra), "first_diff": first}))
"#;

/// Runs off the async runtime: the in-process emulator must keep serving while Python waits.
pub async fn sdk_compare(env: &Env, a: &str, b: &str) -> serde_json::Value {
    let (endpoint, a, b) = (env.emu.endpoint(), a.to_string(), b.to_string());
    tokio::task::spawn_blocking(move || {
        run_python(SDK_COMPARE, &[&endpoint, AK, SK, INSTANCE, &a, &b])
    })
    .await
    .unwrap()
}
