//! The CLI as a newcomer meets it: the demo, help with examples, `ls`, `show`, `schema`, config
//! profiles, documented exit codes on bad input, and no secret in any output, log or file.

mod support;

use std::path::Path;

use ots_emulator::PageLimits;
use support::*;

fn all_files_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_demo_runs_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = otsarchive();
    c.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .args([
            "demo",
            "--rows",
            "6000",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("6,000 rows identical to the snapshot"),
        "{text}"
    );
    assert!(text.contains("python3 -c 'import duckdb"), "{text}");
    assert!(
        stderr(&out).contains("==> backing up"),
        "progress steps are shown"
    );
    // The snapshot it leaves verifies and reads back through DuckDB.
    let snap = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v = run({
        let mut c = otsarchive();
        c.args(["verify", snap.to_str().unwrap()]);
        c
    })
    .await;
    assert!(v.status.success(), "{}", stderr(&v));
    let r = run_python(
        "import duckdb, json, sys; print(json.dumps(duckdb.sql(f\"SELECT count(*) FROM read_parquet('{sys.argv[1]}/data/**/*.parquet')\").fetchall()[0][0]))",
        &[snap.to_str().unwrap()],
    );
    assert_eq!(r, 6000);
}

#[tokio::test]
async fn help_shows_real_examples() {
    for args in [
        vec!["--help"],
        vec!["backup", "--help"],
        vec!["restore", "--help"],
        vec!["verify", "--help"],
        vec!["demo", "--help"],
    ] {
        let mut c = otsarchive();
        c.args(&args);
        let out = run(c).await;
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(text.contains("EXAMPLES"), "{args:?}: {text}");
        assert!(text.contains("otsarchive "), "{args:?}");
    }
    let mut c = otsarchive();
    c.arg("--help");
    let text = stdout(&run(c).await);
    assert!(text.contains(
        "EXIT CODES: 0 success, 1 failure, 2 bad usage or input, 3 verification mismatch"
    ));
}

#[tokio::test]
async fn documented_exit_codes_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let absent_snapshot = format!("{}/20260101T000000Z-deadbeef", dir.path().display());
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--no-such-flag"], 2, "unexpected argument"),
        (vec!["frobnicate"], 2, "unrecognized subcommand"),
        (vec!["ls", missing.to_str().unwrap()], 2, "no such folder"),
        (vec!["show", "not-a-snapshot-url"], 2, "not a snapshot URL"),
        (vec!["verify", &absent_snapshot], 2, "not found"),
        (
            vec!["backup", "--table", "t", "--to", "/tmp/x"],
            2,
            "--endpoint is required",
        ),
        (
            vec![
                "--endpoint",
                "ftp://x",
                "--instance",
                "i",
                "backup",
                "--table",
                "t",
                "--to",
                "/tmp/x",
            ],
            2,
            "must start with https:// or http://",
        ),
        (
            vec![
                "--retry-attempts",
                "0",
                "--endpoint",
                "http://127.0.0.1:1",
                "--instance",
                "i",
                "backup",
                "--table",
                "t",
                "--to",
                "/tmp/x",
            ],
            2,
            "at least 1",
        ),
        (
            vec![
                "--profile",
                "nope",
                "--config",
                "/nonexistent.toml",
                "ls",
                "/tmp",
            ],
            2,
            "cannot read the config file",
        ),
    ];
    for (args, code, message) in cases {
        let mut c = otsarchive();
        c.args(&args);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    // An endpoint that never answered is bad input (2), named clearly, not retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = otsarchive();
    c.args([
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--instance",
        "i",
        "--retry-attempts",
        "2",
    ])
    .args([
        "backup",
        "--table",
        "t",
        "--to",
        dir.path().to_str().unwrap(),
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn ls_show_and_schema_describe_snapshots_and_tables() {
    let env = env_with_table("orders", 800, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let endpoint = env.emu.endpoint();
    let base = ["--endpoint", endpoint.as_str(), "--instance", INSTANCE];

    // schema: JSON that can be edited and pinned.
    let out = run({
        let mut c = otsarchive();
        c.args(base).args(["schema", "--table", "orders"]);
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let schema: ots_schema::SnapshotSchema =
        ots_schema::SnapshotSchema::from_json(&stdout(&out)).unwrap();
    let types: Vec<(String, &str)> = schema
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.value_type.name()))
        .collect();
    assert!(
        types.contains(&("level".to_string(), "INTEGER")),
        "{types:?}"
    );
    assert!(
        types.contains(&("digest".to_string(), "BINARY")),
        "{types:?}"
    );
    // Pin an edited schema without `bio`: its cells must go to $cells, nothing lost.
    let mut edited = schema.clone();
    edited.columns.retain(|c| c.name != "bio");
    let pinned = dest.path().join("schema.json");
    std::fs::write(&pinned, edited.to_json()).unwrap();
    let out = run({
        let mut c = otsarchive();
        c.args(base)
            .args(["-q", "backup", "--table", "orders", "--to"])
            .arg(dest.path().join("snaps"))
            .args(["--schema", pinned.to_str().unwrap()]);
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).lines().last().unwrap().to_string();
    assert_eq!(snapshot_rows(Path::new(&url)), env.expected_rows());

    // ls
    let out = run({
        let mut c = otsarchive();
        c.arg("ls").arg(dest.path().join("snaps"));
        c
    })
    .await;
    assert!(out.status.success());
    let text = stdout(&out);
    let id = Path::new(&url)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("committed") && line.contains("orders") && line.contains(" 800 "),
        "{line}"
    );
    let out = run({
        let mut c = otsarchive();
        c.args(["--json", "ls"]).arg(dest.path().join("snaps"));
        c
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v[0]["rows"], 800);

    // show
    let out = run({
        let mut c = otsarchive();
        c.args(["show", &url]);
        c
    })
    .await;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("800 rows"), "{text}");
    let bio = text.lines().find(|l| l.starts_with("bio ")).unwrap();
    assert!(
        bio.contains(" - "),
        "bio is not typed in the pinned schema: {bio}"
    );
    let level = text.lines().find(|l| l.starts_with("level ")).unwrap();
    assert!(
        level.contains("INTEGER") && level.contains("STRING:"),
        "{level}"
    );
    assert!(text.contains("in $cells"), "{text}");
    let out = run({
        let mut c = otsarchive();
        c.args(["--json", "show", &url]);
        c
    })
    .await;
    let m: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(m["stats"]["columns"]["bio"]["typed_values"], 0);
    assert_eq!(m["stats"]["columns"]["bio"]["overflow_cells"], 800);
}

#[tokio::test]
async fn profiles_supply_endpoint_destination_and_credentials() {
    let env = env_with_table("orders", 300, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.local]\nendpoint = \"{}\"\ninstance = \"{INSTANCE}\"\nto = \"{}\"\naccess_key_id = \"{AK}\"\naccess_key_secret = \"{SK}\"\n",
            env.emu.endpoint(),
            dir.path().join("snaps").display()
        ),
    )
    .unwrap();
    let with_profile = |args: &[&str]| {
        let mut c = otsarchive();
        // No credentials in the environment: they come from the profile.
        c.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .args(["--config", config.to_str().unwrap(), "--profile", "local"])
            .args(args);
        c
    };
    let out = run(with_profile(&["-q", "backup", "--table", "orders"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out);
    let out = run(with_profile(&["ls"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("committed"));
    // Flags win over the profile.
    let out = run(with_profile(&[
        "--instance",
        "wrong-instance",
        "backup",
        "--table",
        "orders",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("OTSAuthFailed"), "{}", stderr(&out));
    // An unknown profile names the ones that exist.
    let mut c = with_profile(&["ls"]);
    c.args(["--profile", "prod"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("profile 'prod' is not in") && stderr(&out).contains("local"));
}

#[tokio::test]
async fn no_secret_reaches_any_output_log_or_file() {
    let env = env_with_table("orders", 400, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let endpoint = env.emu.endpoint();
    let base = [
        "--endpoint",
        endpoint.as_str(),
        "--instance",
        INSTANCE,
        "-vvv",
    ];
    let snaps = dir.path().join("snaps");
    let out = run({
        let mut c = otsarchive();
        c.args(base).args([
            "backup",
            "--table",
            "orders",
            "--to",
            snaps.to_str().unwrap(),
        ]);
        c
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out);
    let url = stdout(&out).lines().last().unwrap().to_string();
    for args in [
        vec!["ls", snaps.to_str().unwrap()],
        vec!["show", &url],
        vec!["--json", "show", &url],
        vec!["verify", &url, "--against-table", "orders"],
        vec![
            "restore",
            "--from",
            &url,
            "--table",
            "copy",
            "--create-table",
        ],
        vec!["schema", "--table", "orders"],
    ] {
        let mut c = otsarchive();
        c.args(base).args(&args).current_dir(work.path());
        let out = run(c).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_no_secret(&out);
    }
    // A wrong secret: the error names the problem, not the secret.
    let mut c = otsarchive();
    c.env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "WRONG-secret-123456")
        .args(base)
        .args([
            "backup",
            "--table",
            "orders",
            "--to",
            snaps.to_str().unwrap(),
        ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("OTSAuthFailed"));
    assert!(!stderr(&out).contains("WRONG-secret-123456"));
    // Nothing written anywhere holds it: manifest, plan, split records, data, checkpoints.
    let everything = all_files_text(dir.path()) + &all_files_text(work.path());
    assert!(!everything.contains(SK), "a secret was written to disk");
    assert!(everything.contains(AK) || !everything.contains(SK));
}
