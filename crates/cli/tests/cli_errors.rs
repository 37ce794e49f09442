//! Errors as a user meets them: a wrong endpoint fails at once with exit 2 and a hint; errors name
//! their object (table, instance, endpoint, folder) and their fix; refused credentials point at the
//! credential variables, never at the secret; retries are logged at the default level; logs carry
//! no colour codes off a terminal.

mod support;

use std::time::{Duration, Instant};

use ots_emulator::{FaultConfig, PageLimits};
use support::*;

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn backup_to(endpoint: &str, table: &str, to: &str) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", endpoint, "--instance", INSTANCE])
        .args(["backup", "--table", table, "--to", to]);
    c
}

#[tokio::test]
async fn backup_against_a_closed_port_exits_2_naming_host_and_port() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let started = Instant::now();
    let out = run(backup_to(&format!("http://127.0.0.1:{port}"), "t", to)).await;
    // A sanity bound only: before, this took about a minute of retries.
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to 127.0.0.1:{port} (connection refused): is the endpoint right? \
             (--endpoint http://HOST:PORT"
        )),
        "{err}"
    );
    assert!(!err.contains("gave up after"), "not retried: {err}");
    assert!(!err.contains("retrying"), "not retried: {err}");
}

#[tokio::test]
async fn https_against_the_plain_http_emulator_says_use_http() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let address = env.emu.endpoint().trim_start_matches("http://").to_string();
    let out = run(backup_to(
        &format!("https://{address}"),
        "orders",
        dir.path().to_str().unwrap(),
    ))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the server at {address} does not speak TLS: use http://{address}"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn missing_tables_are_named_with_their_instance() {
    let env = env_with_table("orders", 50, PageLimits::default()).await;
    let endpoint = env.emu.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let snaps = snaps.to_str().unwrap();
    let expected =
        format!("table 'nope' does not exist in instance '{INSTANCE}' (endpoint {endpoint}");

    let out = run(backup_to(&endpoint, "nope", snaps)).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));

    let mut c = otsarchive();
    c.args(["--endpoint", &endpoint, "--instance", INSTANCE])
        .args(["schema", "--table", "nope"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));

    // verify --against-table and restore name the instance too.
    let mut c = backup_to(&endpoint, "orders", snaps);
    c.arg("-q");
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).lines().last().unwrap().to_string();
    let mut c = otsarchive();
    c.args(["--endpoint", &endpoint, "--instance", INSTANCE])
        .args(["verify", &url, "--against-table", "nope"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let mut c = otsarchive();
    c.args(["--endpoint", &endpoint, "--instance", INSTANCE])
        .args(["restore", "--from", &url, "--table", "nope"])
        .current_dir(dir.path());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "table 'nope' does not exist in instance '{INSTANCE}'"
        )),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_wrong_secret_points_at_the_credential_variables_not_the_secret() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let endpoint = env.emu.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "WRONG-secret-4b3a2918";
    let mut c = backup_to(&endpoint, "orders", dir.path().to_str().unwrap());
    c.env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", wrong);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "check ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET \
             (and ALIBABA_CLOUD_SECURITY_TOKEN for STS); the server said: Signature mismatch"
        ),
        "{err}"
    );
    assert!(!err.contains(wrong) && !stdout(&out).contains(wrong));
    assert_no_secret(&out);

    // Credentials from a profile: the hint names the profile, not the environment.
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.p]\nendpoint = \"{endpoint}\"\ninstance = \"{INSTANCE}\"\n\
             access_key_id = \"{AK}\"\naccess_key_secret = \"{wrong}\"\n"
        ),
    )
    .unwrap();
    let mut c = otsarchive();
    c.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .args(["--config", config.to_str().unwrap(), "--profile", "p"])
        .args(["schema", "--table", "orders"]);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "check access_key_id / access_key_secret (and security_token for STS) of profile 'p' in {}",
            config.display()
        )),
        "{err}"
    );
    assert!(!err.contains(wrong) && !stdout(&out).contains(wrong));

    // A wrong instance says to check the instance.
    let mut c = otsarchive();
    c.args(["--endpoint", &endpoint, "--instance", "otherinst"])
        .args(["schema", "--table", "orders"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("check the instance name 'otherinst'"),
        "{}",
        stderr(&out)
    );
    assert_no_secret(&out);
}

#[tokio::test]
async fn an_unwritable_destination_exits_2_before_reading_the_table() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let endpoint = env.emu.endpoint();
    let before = env.emu.stats().requests;
    // A folder that cannot be created: below a file.
    let out = run(backup_to(&endpoint, "orders", "/dev/null/x")).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot create the folder /dev/null/x: "),
        "{err}"
    );
    // A folder that exists but takes no new files, even for root.
    #[cfg(target_os = "linux")]
    if std::path::Path::new("/sys").is_dir() {
        let out = run(backup_to(&endpoint, "orders", "/sys")).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot write in the folder /sys: "), "{err}");
    }
    assert_eq!(
        env.emu.stats().requests,
        before,
        "nothing was read from Tablestore"
    );
}

#[tokio::test]
async fn retries_are_logged_at_the_default_level_without_colour() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let endpoint = env.emu.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("snaps");
    let to = to.to_str().unwrap();

    // -vv off a terminal: log lines, no escape codes.
    let mut c = backup_to(&endpoint, "orders", to);
    c.arg("-vv");
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("DEBUG"), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));

    // Every request throttled: each retry says why, which attempt, and how long it waits.
    env.emu
        .set_faults(FaultConfig {
            throttle_rate: 1.0,
            seed: Some(7),
            ..Default::default()
        })
        .unwrap();
    let mut c = backup_to(&endpoint, "orders", to);
    c.args(["--retry-attempts", "3"]);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for attempt in 1..=2 {
        assert!(
            err.contains(&format!("DescribeTable: attempt {attempt} of 3 failed (")),
            "{err}"
        );
    }
    assert_eq!(err.matches("; retrying in ").count(), 2, "{err}");
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("gave up after 3 attempts"), "{err}");
}
