//! A backup killed (SIGKILL, a real process kill) after some splits committed, then resumed with
//! `--resume`, gives a snapshot whose data equals an uninterrupted backup's.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ots_emulator::{FaultConfig, PageLimits};
use support::*;

fn committed_splits(dest: &Path) -> (Option<String>, usize) {
    let Ok(entries) = std::fs::read_dir(dest) else {
        return (None, 0);
    };
    // The destination holds exactly one snapshot folder.
    match entries.flatten().next() {
        Some(e) => {
            // A split is done once it has a record (`splits/<split>/<attempt>.json`); its folder
            // appears earlier, with the store's staging file, so folders alone overcount.
            let has_record = |dir: &Path| {
                std::fs::read_dir(dir).is_ok_and(|files| {
                    files
                        .flatten()
                        .any(|f| f.file_name().to_string_lossy().ends_with(".json"))
                })
            };
            let n = std::fs::read_dir(e.path().join("splits"))
                .map(|d| d.flatten().filter(|s| has_record(&s.path())).count())
                .unwrap_or(0);
            (Some(e.file_name().to_string_lossy().into_owned()), n)
        }
        None => (None, 0),
    }
}

#[tokio::test]
async fn a_killed_backup_resumes_to_the_same_content() {
    let env = env_with_table(
        "big",
        3000,
        PageLimits {
            max_rows: 50,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    // Slow every request down so the kill lands mid-backup.
    env.emu
        .set_faults(FaultConfig {
            latency: Duration::from_millis(15),
            ..FaultConfig::default()
        })
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let args = |to: &Path| {
        let mut c = otsarchive();
        c.args([
            "--endpoint",
            &env.emu.endpoint(),
            "--instance",
            INSTANCE,
            "-q",
            "backup",
        ])
        .args(["--table", "big", "--to", to.to_str().unwrap()])
        .args([
            "--split-size-mb",
            "24",
            "--split-unit-bytes",
            "1024",
            "--concurrency",
            "1",
        ]);
        c
    };
    let mut child = args(dest.path()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let (id, n) = committed_splits(dest.path());
        if n >= 3 {
            break id.unwrap();
        }
        assert!(Instant::now() < deadline, "backup never committed 3 splits");
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    let snap = dest.path().join(&id);
    assert!(
        !snap.join("manifest.json").exists(),
        "killed run must not have committed"
    );
    let (_, committed_before) = committed_splits(dest.path());
    let total_splits = {
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(snap.join("plan.json")).unwrap()).unwrap();
        plan["splits"].as_array().unwrap().len()
    };
    assert!(
        committed_before < total_splits,
        "kill came too late to test anything"
    );

    // `ls` shows the interrupted snapshot as incomplete.
    let ls = run({
        let mut c = otsarchive();
        c.args(["ls", dest.path().to_str().unwrap()]);
        c
    })
    .await;
    assert!(ls.status.success());
    assert!(stdout(&ls).contains("incomplete"), "{}", stdout(&ls));

    env.emu.set_faults(FaultConfig::default()).unwrap();
    let mut resume = args(dest.path());
    resume.args(["--resume", &id, "--json"]);
    let out = run(resume).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["snapshot_id"], id.as_str());
    assert!(summary["splits_resumed"].as_u64().unwrap() >= committed_before as u64);
    assert_eq!(summary["rows"], 3000);

    // The same content as an uninterrupted run, and as the table.
    let fresh = tempfile::tempdir().unwrap();
    let out = run(args(fresh.path())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh_url = stdout(&out).lines().last().unwrap().to_string();
    let resumed_rows = snapshot_rows(&snap);
    assert_eq!(resumed_rows, snapshot_rows(Path::new(&fresh_url)));
    assert_eq!(resumed_rows, env.expected_rows());

    // The resumed snapshot verifies; files of the killed attempt are not part of it.
    let v = run({
        let mut c = otsarchive();
        c.args(["verify", "--json", snap.to_str().unwrap()]);
        c
    })
    .await;
    assert!(v.status.success(), "{}", stderr(&v));
    let report: serde_json::Value = serde_json::from_str(stdout(&v).trim()).unwrap();
    assert_eq!(report["ok"], true);

    // Resuming a committed snapshot is refused with exit 2.
    let mut again = args(dest.path());
    again.args(["--resume", &id]);
    let out = run(again).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already committed"),
        "{}",
        stderr(&out)
    );
}
