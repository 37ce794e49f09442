//! `otsarchive expire` end to end on a folder of real snapshots: two tables (a plain one with
//! three scans; one with a stream holding two chains, F1 ← I1 and F2 ← I2 ← I3) and an abandoned
//! snapshot. `--dry-run` deletes nothing and says what would go and why; the real run deletes
//! exactly that; `ls` shows exactly what was kept; the kept incremental still verifies, restores,
//! and the restored table matches its chain. Bad policies are usage errors.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ots_datagen::{DatasetSpec, create_table_request, load_rows, row};
use ots_emulator::PageLimits;
use ots_wire::pb;
use support::*;

const LIVE: &str = "live";
const PLAIN: &str = "plain";

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

async fn write(env: &Env, rows: u64, seed: u64) {
    let spec = DatasetSpec::new(rows, seed);
    load_rows(
        &env.client,
        LIVE,
        (0..rows).map(move |i| row(&spec, i)),
        2,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
}

/// A backup through the CLI; returns the snapshot's id.
async fn backup(env: &Env, dest: &Path, table: &str, parent: Option<&str>) -> String {
    let d = dest.to_str().unwrap();
    let mut args = vec!["--json", "backup", "--table", table, "--to", d];
    let parent_ref;
    if let Some(p) = parent {
        // Named: ids made within one second do not sort by time, so `latest` could pick another.
        parent_ref = p.to_string();
        args.extend(["--incremental-from", parent_ref.as_str()]);
    }
    if table == LIVE {
        args.extend(["--stream-settle-ms", "100"]);
    }
    let out = run(cmd(env, &args)).await;
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let o: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    o["snapshot_id"].as_str().unwrap().to_string()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn expire_keeps_exactly_what_the_policy_says_and_never_breaks_a_chain() {
    let env = env_with_table(PLAIN, 40, PageLimits::default()).await;
    let mut req = create_table_request(LIVE);
    req.stream_spec = Some(pb::StreamSpecification {
        enable_stream: true,
        expiration_time: Some(24),
        columns_to_get: Vec::new(),
    });
    env.client.create_table(&req).await.unwrap();
    write(&env, 60, 1).await;

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("backups");
    let d = dest.to_str().unwrap().to_string();
    let p1 = backup(&env, &dest, PLAIN, None).await;
    let f1 = backup(&env, &dest, LIVE, None).await;
    write(&env, 10, 2).await;
    let i1 = backup(&env, &dest, LIVE, Some(&f1)).await;
    let p2 = backup(&env, &dest, PLAIN, None).await;
    let f2 = backup(&env, &dest, LIVE, None).await;
    write(&env, 10, 3).await;
    let i2 = backup(&env, &dest, LIVE, Some(&f2)).await;
    write(&env, 10, 4).await;
    let i3 = backup(&env, &dest, LIVE, Some(&i2)).await;
    let p3 = backup(&env, &dest, PLAIN, None).await;
    // An abandoned snapshot: a plan and nothing else, never committed.
    let abandoned = "20200101T000000Z-0badf00d";
    std::fs::create_dir_all(dest.join(abandoned)).unwrap();
    std::fs::copy(
        dest.join(&p1).join("plan.json"),
        dest.join(abandoned).join("plan.json"),
    )
    .unwrap();
    let before = files(&dest);

    // The dry run: a table of what stays and what goes, and why; nothing is deleted.
    let out = run(cmd(
        &env,
        &[
            "expire",
            &d,
            "--keep-last",
            "2",
            "--incomplete-grace",
            "0s",
            "--dry-run",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    eprintln!("--- expire --dry-run ---\n{text}");
    assert!(text.contains("dry run: nothing is deleted"), "{text}");
    assert!(text.contains("nothing was deleted (--dry-run)"), "{text}");
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{text}"))
            .to_string()
    };
    for id in [&i3, &i2, &p3, &p2] {
        assert!(line(id).contains("keep-last 2"), "{}", line(id));
    }
    assert!(
        line(&f2).contains(&format!("parent of kept {i2}")),
        "{text}"
    );
    for id in [&i1, &f1, &p1] {
        assert!(line(id).contains("would delete"), "{}", line(id));
        assert!(line(id).contains("no policy keeps it"), "{}", line(id));
    }
    assert!(line(abandoned).contains("never committed"), "{text}");
    assert_eq!(files(&dest), before, "a dry run deletes nothing");

    // The same as JSON.
    let out = run(cmd(
        &env,
        &[
            "--json",
            "expire",
            &d,
            "--keep-last",
            "2",
            "--incomplete-grace",
            "0s",
            "--dry-run",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let ids = |key: &str| -> Vec<String> {
        sorted(
            plan[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["snapshot_id"].as_str().unwrap().to_string())
                .collect(),
        )
    };
    let kept = sorted(vec![
        i3.clone(),
        i2.clone(),
        f2.clone(),
        p3.clone(),
        p2.clone(),
    ]);
    let doomed = sorted(vec![
        i1.clone(),
        f1.clone(),
        p1.clone(),
        abandoned.to_string(),
    ]);
    assert_eq!(ids("kept"), kept);
    assert_eq!(ids("deleted"), doomed);
    assert_eq!(plan["dry_run"], true);
    assert!(plan["failed"].as_array().unwrap().is_empty());
    let f2_kept = plan["kept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["snapshot_id"] == f2.as_str())
        .unwrap();
    assert_eq!(f2_kept["reason"], format!("parent of kept {i2}").as_str());
    assert_eq!(f2_kept["table"], LIVE);
    assert!(plan["bytes_deleted"].as_u64().unwrap() > 0);
    // I1 goes before F1, its parent.
    let order: Vec<&str> = plan["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["snapshot_id"].as_str().unwrap())
        .collect();
    let pos = |id: &str| order.iter().position(|o| *o == id).unwrap();
    assert!(pos(&i1) < pos(&f1), "{order:?}");
    assert_eq!(files(&dest), before);

    // The real run deletes exactly that.
    let out = run(cmd(
        &env,
        &[
            "--json",
            "expire",
            &d,
            "--keep-last",
            "2",
            "--incomplete-grace",
            "0s",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(
        done["bytes_deleted"], plan["bytes_deleted"],
        "the dry run said how much would go"
    );
    let out = run(cmd(&env, &["--json", "ls", &d])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let left = sorted(
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["snapshot_id"].as_str().unwrap().to_string())
            .collect(),
    );
    assert_eq!(left, kept);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "committed")
    );
    for id in &doomed {
        assert!(!dest.join(id).exists(), "{id} still has a folder");
    }

    // The kept incremental still verifies and restores; the restored table is its chain's image.
    let i3_url = format!("{d}/{i3}");
    let out = run(cmd(&env, &["verify", &i3_url])).await;
    assert!(out.status.success(), "verify: {}", stderr(&out));
    let out = run(cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &i3_url,
            "--table",
            "copy",
            "--create-table",
        ],
    ))
    .await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let out = run(cmd(&env, &["verify", &i3_url, "--against-table", "copy"])).await;
    assert!(
        out.status.success(),
        "verify --against-table: {}",
        stderr(&out)
    );

    // Run again: nothing more goes.
    let out = run(cmd(&env, &["--json", "expire", &d, "--keep-last", "2"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(again["deleted"].as_array().unwrap().is_empty(), "{again}");

    // --table limits expire to one table; --keep-within keeps what is recent.
    let out = run(cmd(
        &env,
        &[
            "--json",
            "expire",
            &d,
            "--table",
            PLAIN,
            "--keep-last",
            "1",
            "--dry-run",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let one: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let gone: Vec<&str> = one["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["snapshot_id"].as_str().unwrap())
        .collect();
    assert_eq!(gone, [p2.as_str()]);
    assert!(
        one["kept"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["table"] == PLAIN)
    );
    let out = run(cmd(
        &env,
        &["--json", "expire", &d, "--keep-within", "1h", "--dry-run"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recent: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(recent["deleted"].as_array().unwrap().is_empty(), "{recent}");
}

#[tokio::test]
async fn expire_refuses_a_missing_or_empty_policy() {
    let work = tempfile::tempdir().unwrap();
    let d = work.path().to_str().unwrap();
    for (args, says) in [
        (vec!["expire", d], "needs a retention policy"),
        (
            vec!["expire", d, "--keep-last", "0"],
            "not a retention policy",
        ),
        (
            vec!["expire", d, "--keep-daily", "0"],
            "not a retention policy",
        ),
        (vec!["expire", d, "--keep-within", "0d"], "above zero"),
        (vec!["expire", d, "--keep-within", "soon"], "not a duration"),
        (
            vec!["expire", d, "--keep-last", "1", "--incomplete-grace", "1y"],
            "not a duration",
        ),
    ] {
        let mut c = otsarchive();
        c.args(&args);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
