//! Restores refused before any loss, end to end against the in-process emulator: a target whose
//! `max_versions` would hide versions (`--allow-version-loss` accepts it), filters that select
//! nothing (refused before the table is created), an existing table holding rows without
//! `--mode`, and `--dry-run`, which writes nothing and says what it would write.

mod support;

use std::path::Path;

use bytes::Bytes;
use ots_emulator::PageLimits;
use ots_wire::pb;
use ots_wire::plainbuffer::{decode_rows, encode_primary_key};
use ots_wire::types::{PkColumn, PkValue};
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

async fn backup(env: &Env, table: &str, dest: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "-q",
        "backup",
        "--table",
        table,
        "--to",
        dest.to_str().unwrap(),
        "--split-size-mb",
        "48",
        "--split-unit-bytes",
        "1024",
    ];
    args.extend(extra);
    let out = run(cmd(env, &args)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap().to_string()
}

fn manifest(snap: &str) -> ots_manifest::Manifest {
    serde_json::from_slice(&std::fs::read(Path::new(snap).join("manifest.json")).unwrap()).unwrap()
}

/// CreateTable and BatchWriteRow requests the emulator has answered so far.
fn writes(env: &Env) -> (u64, u64) {
    let a = env.emu.stats().actions;
    let n = |k: &str| a.get(k).copied().unwrap_or(0);
    (n("CreateTable"), n("BatchWriteRow"))
}

async fn table_exists(env: &Env, table: &str) -> bool {
    match env.client.describe_table(table).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("DescribeTable {table}: {e}"),
    }
}

/// Rows of `table`, counted by a GetRange scan (one version of each cell is enough).
async fn row_count(env: &Env, table: &str) -> u64 {
    let key = |v: PkValue| {
        Bytes::from(encode_primary_key(&[
            PkColumn::new("user_id", v.clone()),
            PkColumn::new("seq", v),
        ]))
    };
    let (mut start, end) = (key(PkValue::InfMin), key(PkValue::InfMax));
    let mut n = 0;
    loop {
        let req = pb::GetRangeRequest {
            table_name: table.into(),
            direction: pb::Direction::Forward as i32,
            max_versions: Some(1),
            inclusive_start_primary_key: start,
            exclusive_end_primary_key: end.clone(),
            ..Default::default()
        };
        let resp = env.client.get_range(&req).await.unwrap();
        n += decode_rows(&resp.rows).unwrap().len() as u64;
        match resp.next_start_primary_key.filter(|k| !k.is_empty()) {
            Some(next) => start = next,
            None => return n,
        }
    }
}

/// The files a restore left in its working folder.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_target_keeping_fewer_versions_is_refused_unless_version_loss_is_allowed() {
    let env = env_with_table("t", 400, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path(), &[]).await;
    // The statistic the check uses: the most versions of `status` in one row.
    let most = manifest(&snap).stats.columns["status"]
        .max_versions_per_row
        .unwrap();
    assert!(most >= 2, "the dataset has rows with several versions");
    let mut req = ots_datagen::create_table_request("t_v1");
    req.table_options.as_mut().unwrap().max_versions = Some(1);
    env.client.create_table(&req).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let restore = |extra: &[&str]| {
        let mut c = cmd(&env, &["restore", "--from", &snap, "--table", "t_v1"]);
        c.args(extra).current_dir(work.path());
        c
    };
    let before = writes(&env);
    let out = run(restore(&[])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for want in [
        "nothing was written",
        "'t_v1' keeps max_versions = 1",
        &format!("up to {most} versions of one column ('status')"),
        "--allow-version-loss",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(writes(&env), before, "a refused restore wrote");
    assert_eq!(row_count(&env, "t_v1").await, 0);
    assert!(
        files_in(work.path()).is_empty(),
        "{:?}",
        files_in(work.path())
    );

    // Accepted with the flag (the table is empty: no --mode needed), and the loss is real.
    let out = run(restore(&["--allow-version-loss"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-version-loss: 't_v1' keeps max_versions = 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(row_count(&env, "t_v1").await, 400);
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "t_v1"])).await;
    assert_eq!(v.status.code(), Some(3), "{}", stderr(&v));

    // A target that keeps enough versions needs no flag.
    let mut req = ots_datagen::create_table_request("t_enough");
    req.table_options.as_mut().unwrap().max_versions = Some(most as i32);
    env.client.create_table(&req).await.unwrap();
    let out = run({
        let mut c = cmd(&env, &["restore", "--from", &snap, "--table", "t_enough"]);
        c.current_dir(work.path());
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "t_enough"])).await;
    assert!(v.status.success(), "{}", stderr(&v));
}

#[tokio::test]
async fn filters_that_select_nothing_are_refused_before_the_table_exists() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path(), &["--partition-by", "column:city"]).await;
    let work = tempfile::tempdir().unwrap();
    let before = writes(&env);
    for (args, wants) in [
        (
            vec!["--partition", "city=Atlantis"],
            vec![
                "--partition city=Atlantis: the snapshot has no such partition",
                "Shanghai",
            ],
        ),
        (
            vec!["--partition", "dt=2026-01-01"],
            vec!["no partition key 'dt'"],
        ),
        (
            vec!["--partition", "city=Shanghai", "--partition", "city=Wuhan"],
            vec!["no file of the snapshot is in all of these partitions"],
        ),
        (
            vec!["--start-key", "user_id=zzz"],
            vec![
                "no file of the snapshot holds keys in this range",
                "its keys run from user_id=",
            ],
        ),
        (
            vec![
                "--start-key",
                "user_id=user-00000000020",
                "--end-key",
                "user_id=user-00000000010",
            ],
            vec!["the range is empty"],
        ),
        (
            vec!["--columns", "age,nope"],
            vec!["no column 'nope'", "its columns are: active, age"],
        ),
    ] {
        let mut c = cmd(
            &env,
            &[
                "restore",
                "--from",
                &snap,
                "--table",
                "copy",
                "--create-table",
            ],
        );
        c.args(&args).current_dir(work.path());
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        for w in wants {
            assert!(stderr(&out).contains(w), "{args:?}: {}", stderr(&out));
        }
        assert!(
            !table_exists(&env, "copy").await,
            "{args:?} created the table"
        );
    }
    assert_eq!(writes(&env), before);
    assert!(
        files_in(work.path()).is_empty(),
        "{:?}",
        files_in(work.path())
    );

    // A partition that exists restores exactly its rows.
    let m = manifest(&snap);
    let shanghai: u64 = m
        .files
        .iter()
        .filter(|f| f.partition.get("city").map(String::as_str) == Some("Shanghai"))
        .map(|f| f.rows)
        .sum();
    assert!(shanghai > 0);
    let mut c = cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &snap,
            "--table",
            "copy",
            "--create-table",
            "--partition",
            "city=Shanghai",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_written"], shanghai, "{o}");
}

#[tokio::test]
async fn an_existing_table_holding_rows_needs_an_explicit_mode() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path(), &[]).await;
    let work = tempfile::tempdir().unwrap();
    let restore = |extra: &[&str]| {
        let mut c = cmd(
            &env,
            &["--json", "restore", "--from", &snap, "--table", "t"],
        );
        c.args(extra).current_dir(work.path());
        c
    };
    // The live source itself, without --mode: refused, naming the table and the choices.
    let before = writes(&env);
    let out = run(restore(&[])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for want in [
        "table 't' already holds rows (the first is user_id=user-00000000000,seq=0)",
        "--mode overwrite",
        "--mode only-if-absent",
        "--create-table",
    ] {
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    assert_eq!(writes(&env), before);
    assert!(files_in(work.path()).is_empty());
    // With --create-table too: the table exists, so it is the same refusal.
    let out = run(restore(&["--create-table"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds rows"));

    // An explicit mode is accepted.
    let out = run(restore(&["--mode", "only-if-absent"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_present"], 300, "{o}");
    assert_eq!(o["rows_written"], 0, "{o}");
    let out = run(restore(&["--mode", "overwrite"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["rows_written"], 300, "{o}");
    let v = run(cmd(&env, &["verify", &snap, "--against-table", "t"])).await;
    assert!(v.status.success(), "{}", stderr(&v));

    // An existing table without rows needs no mode.
    env.client
        .create_table(&ots_datagen::create_table_request("empty"))
        .await
        .unwrap();
    let mut c = cmd(
        &env,
        &["-q", "restore", "--from", &snap, "--table", "empty"],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(row_count(&env, "empty").await, 300);
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_says_what_it_would_write() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let snap = backup(&env, "t", dest.path(), &["--partition-by", "column:city"]).await;
    let m = manifest(&snap);
    let (files, rows, cells) = (
        m.files.len() as u64,
        m.files.iter().map(|f| f.rows).sum::<u64>(),
        m.files.iter().map(|f| f.cells).sum::<u64>(),
    );
    let work = tempfile::tempdir().unwrap();
    let dry = |extra: &[&str]| {
        let mut c = cmd(&env, &["restore", "--from", &snap, "--dry-run"]);
        c.args(extra).current_dir(work.path());
        c
    };
    let before = writes(&env);

    // Into a new table.
    let out = run(dry(&["--table", "fresh", "--create-table"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "nothing was written",
        "create: table 'fresh' with primary key (user_id STRING, seq INTEGER); max_versions 3, time_to_live -1",
        &format!("write: {files} files, {rows} rows, {cells} cells"),
        "PutRow",
        "snapshot verification",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // The same as one JSON object, with a filter.
    let out = run({
        let mut c = dry(&[
            "--table",
            "fresh",
            "--create-table",
            "--partition",
            "city=Wuhan",
        ]);
        c.arg("--json");
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let wuhan: Vec<_> = m
        .files
        .iter()
        .filter(|f| f.partition.get("city").map(String::as_str) == Some("Wuhan"))
        .collect();
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["target"]["create"], true);
    assert_eq!(p["target"]["exists"], false);
    assert_eq!(p["target"]["max_versions"], 3);
    assert_eq!(p["mode"], "overwrite");
    assert_eq!(p["mode_given"], false);
    assert_eq!(p["write"]["files"], wuhan.len());
    assert_eq!(
        p["write"]["rows"],
        wuhan.iter().map(|f| f.rows).sum::<u64>()
    );
    assert_eq!(
        p["skipped_by_partition"]["files"],
        files - wuhan.len() as u64
    );
    assert_eq!(
        p["skipped_by_partition"]["rows"].as_u64().unwrap() + p["write"]["rows"].as_u64().unwrap(),
        rows
    );
    assert!(!table_exists(&env, "fresh").await);

    // Into the existing source: the same refusal as a restore without --mode …
    let out = run(dry(&["--table", "t"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds rows"),
        "{}",
        stderr(&out)
    );
    // … and with a mode, the plan for an existing table.
    let out = run(dry(&[
        "--table",
        "t",
        "--mode",
        "overwrite",
        "--columns",
        "age",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "target: table 't' exists",
        "UpdateRow",
        "filter: --columns age",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    assert_eq!(writes(&env), before, "a dry run wrote");
    assert!(
        files_in(work.path()).is_empty(),
        "a dry run left files: {:?}",
        files_in(work.path())
    );
}
