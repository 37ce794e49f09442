//! Signed manifests: `keygen`, `backup --sign-key-file`, and `verify --sign-key-file` failing (exit
//! 3) on an edited manifest — one that every other check still accepts —, a missing signature and
//! another key; bad key files refused (exit 2).

mod support;

use std::path::Path;

use ots_emulator::PageLimits;
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

async fn keygen(env: &Env, out: &Path) -> String {
    let o = run(cmd(
        env,
        &["--json", "keygen", "--out", out.to_str().unwrap()],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["key_id"].as_str().unwrap().to_string()
}

async fn backup(env: &Env, dest: &Path, key: Option<&Path>) -> String {
    let mut args = vec![
        "-q",
        "backup",
        "--table",
        "orders",
        "--to",
        dest.to_str().unwrap(),
    ];
    if let Some(k) = key {
        args.extend(["--sign-key-file", k.to_str().unwrap()]);
    }
    let o = run(cmd(env, &args)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().last().unwrap().to_string()
}

async fn verify(env: &Env, snap: &str, key: &Path) -> std::process::Output {
    run(cmd(
        env,
        &["verify", snap, "--sign-key-file", key.to_str().unwrap()],
    ))
    .await
}

#[tokio::test]
async fn signed_manifests_verify_and_any_edit_or_missing_signature_fails() {
    let env = env_with_table("orders", 200, PageLimits::default()).await;
    let keys = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let seed = keys.path().join("backup.key");
    let key_id = keygen(&env, &seed).await;
    let public = keys.path().join("backup.key.pub");
    assert!(public.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&seed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the seed is its owner's only");
    }
    // keygen never overwrites.
    let o = run(cmd(&env, &["keygen", "--out", seed.to_str().unwrap()])).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let snap = backup(&env, dest.path(), Some(&seed)).await;
    let dir = Path::new(&snap);
    assert!(dir.join("manifest.json.sig").exists() && dir.join("plan.json.sig").exists());
    for key in [&seed, &public] {
        let o = verify(&env, &snap, key).await;
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("signed by key {key_id}")),
            "{}",
            stdout(&o)
        );
    }
    assert_no_secret(&run(cmd(&env, &["verify", &snap])).await);
    let seed_text = std::fs::read_to_string(&seed).unwrap();
    for f in ["manifest.json.sig", "plan.json.sig", "manifest.json"] {
        let body = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!body.contains(seed_text.trim()), "{f} holds the seed");
    }

    // Another key: refused.
    let other = keys.path().join("other.key");
    keygen(&env, &other).await;
    let o = verify(&env, &snap, &other).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("manifest.json.sig"), "{}", stderr(&o));

    // An edit that every other check accepts (the finish time): only the signature catches it.
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let finished = m["finished_at"].as_str().unwrap().to_string();
    let edited = text.replace(&finished, "2020-01-01T00:00:00.000Z");
    assert_ne!(edited, text);
    std::fs::write(&manifest, edited).unwrap();
    let o = run(cmd(&env, &["verify", &snap])).await;
    assert!(
        o.status.success(),
        "without a key the edit passes: {}",
        stderr(&o)
    );
    let o = verify(&env, &snap, &public).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("manifest.json.sig") && stderr(&o).contains("does not verify"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&manifest, &text).unwrap();
    assert!(verify(&env, &snap, &public).await.status.success());

    // An unsigned snapshot: a missing signature fails.
    let unsigned = backup(&env, dest.path(), None).await;
    let o = verify(&env, &unsigned, &public).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));

    // Bad key files: exit 2, naming the file.
    let bad = keys.path().join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let o = verify(&env, &snap, &bad).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.key"), "{}", stderr(&o));
    let o = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "orders",
            "--to",
            dest.path().to_str().unwrap(),
            "--sign-key-file",
            keys.path().join("absent.key").to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
