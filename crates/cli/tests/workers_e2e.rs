//! One snapshot, three machines: `backup --plan-only`, three `backup --resume ID --worker K/3`
//! processes (one killed with SIGKILL mid-way), `commit` refused naming the missing splits and
//! their worker, the killed worker run again, `commit`, `status`, `verify`, and a restore the
//! official SDK finds identical to the source.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use ots_emulator::{FaultConfig, PageLimits};
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

fn worker(env: &Env, dest: &str, id: &str, k: u32) -> Child {
    cmd(
        env,
        &[
            "--json",
            "backup",
            "--table",
            "orders",
            "--to",
            dest,
            "--resume",
            id,
            "--worker",
            &format!("{k}/3"),
            "--concurrency",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// Splits of `id` with a record, by split id.
fn recorded(dest: &std::path::Path, id: &str) -> Vec<u32> {
    let Ok(dirs) = std::fs::read_dir(dest.join(id).join("splits")) else {
        return Vec::new();
    };
    dirs.filter_map(|d| {
        let d = d.ok()?;
        let has = std::fs::read_dir(d.path())
            .ok()?
            .any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".json")));
        has.then(|| d.file_name().to_string_lossy().parse().ok())?
    })
    .collect()
}

#[tokio::test]
async fn three_workers_one_killed_then_rerun_commit_and_restore_identical() {
    let env = env_with_table(
        "orders",
        3000,
        PageLimits {
            max_rows: 40,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap();

    // The plan alone: nothing scanned.
    let out = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "orders",
            "--to",
            d,
            "--plan-only",
            "--split-size-mb",
            "48",
            "--split-unit-bytes",
            "1024",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).lines().last().unwrap().to_string();
    let id = url.rsplit('/').next().unwrap().to_string();
    assert!(recorded(dest.path(), &id).is_empty());
    assert!(!dest.path().join(&id).join("data").exists());
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.path().join(&id).join("plan.json")).unwrap())
            .unwrap();
    let splits = plan["splits"].as_array().unwrap().len() as u32;
    assert!(splits >= 12, "enough splits to share: {splits}");

    // Three workers; the emulator slowed so that worker 1 can be killed mid-way.
    env.emu
        .set_faults(FaultConfig {
            latency: Duration::from_millis(25),
            ..FaultConfig::default()
        })
        .unwrap();
    let w0 = worker(&env, d, &id, 0);
    let mut w1 = worker(&env, d, &id, 1);
    let w2 = worker(&env, d, &id, 2);
    loop {
        if recorded(dest.path(), &id).iter().any(|s| s % 3 == 1) {
            break;
        }
        assert!(w1.try_wait().unwrap().is_none(), "worker 1 ended too soon");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w1.kill().unwrap();
    w1.wait().unwrap();
    for w in [w0, w2] {
        let out = tokio::task::spawn_blocking(move || w.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(o["splits_scanned"], o["splits_assigned"], "{o}");
    }
    env.emu.set_faults(FaultConfig::default()).unwrap();
    let done = recorded(dest.path(), &id);
    let missing: Vec<u32> = (0..splits).filter(|s| !done.contains(s)).collect();
    assert!(
        !missing.is_empty(),
        "worker 1 was killed before its last split"
    );
    assert!(missing.iter().all(|s| s % 3 == 1), "{missing:?}");

    // Commit refuses, naming the missing splits and their worker; nothing is committed.
    let out = run(cmd(&env, &["commit", &url])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} (worker 1/3)", missing[0])),
        "{err}"
    );
    assert!(!dest.path().join(&id).join("manifest.json").exists());

    // Status from any machine: worker 1 gone, the others finished.
    let out = run(cmd(&env, &["--json", "status", &url])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(s["workers"], 3, "{s}");
    let states: Vec<&str> = s["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["finished", "gone", "finished"], "{s}");
    assert_eq!(
        s["splits_done"].as_u64().unwrap(),
        u64::from(splits) - missing.len() as u64
    );

    // Worker 1 again: only its unfinished splits.
    let out = run(cmd(
        &env,
        &[
            "--json", "backup", "--table", "orders", "--to", d, "--resume", &id, "--worker", "1/3",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(o["splits_scanned"], missing.len(), "{o}");

    let out = run(cmd(&env, &["commit", &url])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(cmd(&env, &["verify", &url])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Committing again is harmless.
    let out = run(cmd(&env, &["commit", &url])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already committed"),
        "{}",
        stderr(&out)
    );
    // A worker started after the commit has nothing to do.
    let out = run(cmd(
        &env,
        &[
            "backup", "--table", "orders", "--to", d, "--resume", &id, "--worker", "0/3",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("committed already"),
        "{}",
        stderr(&out)
    );

    // Three restore workers at once, each creating the table if it is absent.
    let work = tempfile::tempdir().unwrap();
    let restorers: Vec<Child> = (0..3)
        .map(|k| {
            cmd(
                &env,
                &[
                    "--json",
                    "restore",
                    "--from",
                    &url,
                    "--table",
                    "orders_copy",
                    "--create-table",
                    "--worker",
                    &format!("{k}/3"),
                ],
            )
            .current_dir(work.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut files = 0;
    for r in restorers {
        let out = tokio::task::spawn_blocking(move || r.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        files += o["files"].as_u64().unwrap();
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dest.path().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        files,
        manifest["files"].as_array().unwrap().len() as u64,
        "every file restored by exactly one worker"
    );
    // Each worker keeps its own journal (removed when it finishes): the dry run names it.
    let out = run(cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &url,
            "--table",
            "orders_copy",
            "--mode",
            "overwrite",
            "--dry-run",
            "--worker",
            "1/3",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        p["checkpoint"].as_str().unwrap().contains("worker-1-of-3"),
        "{p}"
    );
    assert!(p["skipped_by_worker"]["files"].as_u64().unwrap() > 0, "{p}");
    let cmp = sdk_compare(&env, "orders", "orders_copy").await;
    assert_eq!(cmp["equal"], true, "{cmp}");
    assert_eq!(cmp["rows_a"], 3000);
}

#[tokio::test]
async fn worker_flags_are_checked() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--worker", "3/3", "--resume", "20261206T000000Z-00000000"],
            "--worker",
        ),
        (vec!["--worker", "0/3"], "--resume"),
        (
            vec!["--plan-only", "--resume", "20261206T000000Z-00000000"],
            "--resume",
        ),
    ] {
        let mut all = vec!["backup", "--table", "orders", "--to", d];
        all.extend(args);
        let out = run(cmd(&env, &all)).await;
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{all:?}: {}", stderr(&out));
    }
}
