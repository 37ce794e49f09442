//! `--metrics-addr`: a backup and a restore serve their counters in Prometheus' text format while
//! they run; an address that cannot be listened on is refused before any work.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ots_emulator::{FaultConfig, PageLimits};
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The value of the sample `name{table="T"}` in a scrape.
fn sample(body: &str, name: &str, table: &str) -> Option<u64> {
    let prefix = format!("{name}{{table=\"{table}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes `port` while `child` runs: the last successful scrape with `want` above 0.
async fn scrape_while_running(
    port: u16,
    mut child: std::process::Child,
    want: &str,
    table: &str,
) -> (String, std::process::ExitStatus) {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let body =
                last.unwrap_or_else(|| panic!("no scrape with {want} > 0 before the run ended"));
            return (body, status);
        }
        if let Some(r) = tokio::task::spawn_blocking(move || get(port, "/metrics"))
            .await
            .unwrap()
            && sample(&r, want, table).is_some_and(|v| v > 0)
        {
            last = Some(r);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn backup_and_restore_serve_prometheus_metrics_while_they_run() {
    let env = env_with_table(
        "orders",
        1500,
        PageLimits {
            max_rows: 50,
            max_bytes: 4 << 20,
            ..PageLimits::default()
        },
    )
    .await;
    // Slow enough to be scraped mid-run.
    env.emu
        .set_faults(FaultConfig {
            latency: Duration::from_millis(30),
            ..FaultConfig::default()
        })
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = cmd(
        &env,
        &[
            "backup",
            "--table",
            "orders",
            "--to",
            dest.path().to_str().unwrap(),
            "--concurrency",
            "1",
            "--metrics-addr",
            &addr,
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let (body, status) =
        scrape_while_running(port, child, "otsarchive_backup_rows_total", "orders").await;
    assert!(status.success());
    for (name, kind) in [
        ("otsarchive_backup_rows_total", "counter"),
        ("otsarchive_backup_splits", "gauge"),
        ("otsarchive_backup_splits_done", "gauge"),
        ("otsarchive_backup_written_bytes_total", "counter"),
        ("otsarchive_requests_total", "counter"),
        ("otsarchive_retries_total", "counter"),
        ("otsarchive_throttled_total", "counter"),
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {body}"
        );
        assert!(sample(&body, name, "orders").is_some(), "{name}: {body}");
    }
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(body.contains("Content-Type: text/plain; version=0.0.4"));
    let rows = sample(&body, "otsarchive_backup_rows_total", "orders").unwrap();
    assert!(rows > 0 && rows <= 1500, "mid-run rows {rows}");
    // The endpoint is gone with the process.
    assert!(get(port, "/metrics").is_none());

    let snap = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("manifest.json").exists())
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = cmd(
        &env,
        &[
            "restore",
            "--from",
            snap.to_str().unwrap(),
            "--table",
            "orders_copy",
            "--create-table",
            "--concurrency",
            "1",
            "--metrics-addr",
            &addr,
        ],
    )
    .current_dir(work.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let (body, status) = scrape_while_running(
        port,
        child,
        "otsarchive_restore_rows_written_total",
        "orders_copy",
    )
    .await;
    assert!(status.success());
    for name in [
        "otsarchive_restore_files",
        "otsarchive_restore_rows_failed_total",
        "otsarchive_restore_throttle_events_total",
        "otsarchive_requests_total",
    ] {
        assert!(
            sample(&body, name, "orders_copy").is_some(),
            "{name}: {body}"
        );
    }
}

#[tokio::test]
async fn an_address_that_cannot_be_listened_on_is_refused_before_any_work() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let dest = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for bad in [addr.as_str(), "not-an-address"] {
        let out = run(cmd(
            &env,
            &[
                "backup",
                "--table",
                "orders",
                "--to",
                dest.path().to_str().unwrap(),
                "--metrics-addr",
                bad,
            ],
        ))
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--metrics-addr"), "{}", stderr(&out));
    }
    let started = std::fs::read_dir(dest.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("plan.json").exists())
        .count();
    assert_eq!(started, 0, "no snapshot was started");
}
