//! The `ots-emulator` binary: ready line, serving, clean exit on SIGTERM, secrets never printed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

#[tokio::test]
async fn binary_prints_ready_line_serves_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ots-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--instance",
            INSTANCE,
            "--access-key-id",
            AK,
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let endpoint = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("ready line: {line:?}"))
        .to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(!endpoint.ends_with(":0"));

    let mut cfg = ClientConfig::new(endpoint, INSTANCE, Credentials::new(AK, SK));
    cfg.retry = RetryPolicy::none();
    let c = OtsClient::new(cfg).unwrap();
    create_two_pk_table(&c, "t", 1).await;
    assert_eq!(c.list_table().await.unwrap(), vec!["t"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(waited < 100, "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    };
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
    assert!(
        !err.contains(SK) && !line.contains(SK),
        "the secret is never printed"
    );
}

#[test]
fn binary_refuses_a_bad_instance_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_ots-emulator"))
        .args(["--instance=ab", "--access-key-id", AK])
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid instance name"), "{err}");
    assert!(!err.contains(SK));
}
