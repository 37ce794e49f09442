//! Encrypted snapshots (`--encryption-key-file`), refereed by pyarrow: pyarrow decrypts our
//! files with a test KMS client and reads the same rows, cannot read them without a key, and we
//! read files pyarrow encrypted the same way. An encrypted snapshot verifies (sizes and SHA-256
//! without the key, footers with it) and restores exactly; restore without the key or with
//! another one fails clearly (exit 2) before writing anything.

mod support;

use std::path::Path;
use std::sync::Arc;

use ots_emulator::PageLimits;
use support::*;

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args)
        .env_remove(ots_crypto::KEY_ENV)
        .env_remove(ots_crypto::KEY_FILE_ENV);
    c
}

async fn keygen(env: &Env, out: &Path) -> String {
    let o = run(cmd(
        env,
        &[
            "--json",
            "keygen",
            "--encryption",
            "--out",
            out.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["master_key_id"].as_str().unwrap().to_string()
}

/// A pyarrow KMS client that wraps data keys as FORMAT.md §12 says: base64(nonce ‖ AES-256-GCM
/// ciphertext ‖ tag) under the master key, the master key id as associated data.
const PYARROW_KMS: &str = r#"
import base64, json, os, sys
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS = {}

class TestKms(pe.KmsClient):
    def __init__(self, config):
        pe.KmsClient.__init__(self)
    def wrap_key(self, key_bytes, master_key_identifier):
        nonce = os.urandom(12)
        sealed = AESGCM(KEYS[master_key_identifier]).encrypt(
            nonce, key_bytes, master_key_identifier.encode())
        return base64.b64encode(nonce + sealed)
    def unwrap_key(self, wrapped_key, master_key_identifier):
        raw = base64.b64decode(wrapped_key)
        return AESGCM(KEYS[master_key_identifier]).decrypt(
            raw[:12], raw[12:], master_key_identifier.encode())

factory = pe.CryptoFactory(lambda config: TestKms(config))
kms = pe.KmsConnectionConfig()
"#;

/// Decrypts our file with the test KMS, writes its rows as plaintext Parquet (keeping the key
/// value metadata), and tries a read without any key.
const PYARROW_DECRYPT: &str = r#"
key_id, key_b64, src, plain_out = sys.argv[1:5]
KEYS[key_id] = base64.b64decode(key_b64)
meta_json = None
try:
    pq.read_table(src)
    no_key = "read without a key"
except Exception as e:
    no_key = str(e)
dec = factory.file_decryption_properties(kms, pe.DecryptionConfiguration())
f = pq.ParquetFile(src, decryption_properties=dec)
t = f.read()
pq.write_table(t, plain_out, compression="zstd")
kv = f.metadata.metadata or {}
print(json.dumps({"rows": t.num_rows, "no_key_error": no_key,
                  "footer_key_metadata_keys": sorted(k.decode() for k in kv)}))
"#;

/// Encrypts a plaintext file the way pyarrow's CryptoFactory does with double_wrapping=False.
const PYARROW_ENCRYPT: &str = r#"
key_id, key_b64, src, out, uniform = sys.argv[1:6]
KEYS[key_id] = base64.b64decode(key_b64)
t = pq.read_table(src)
if uniform == "1":
    cfg = pe.EncryptionConfiguration(footer_key=key_id, uniform_encryption=True,
                                     double_wrapping=False, data_key_length_bits=256)
else:
    # Per-column keys (under the same master key) for the first column; footer key for the rest.
    cfg = pe.EncryptionConfiguration(footer_key=key_id,
                                     column_keys={key_id: [t.schema.names[0]]},
                                     double_wrapping=False, data_key_length_bits=128)
props = factory.file_encryption_properties(kms, cfg)
pq.write_table(t, out, encryption_properties=props, compression="zstd")
print(json.dumps({"rows": t.num_rows}))
"#;

fn python(script: &str, args: &[&str]) -> serde_json::Value {
    run_python(&format!("{PYARROW_KMS}\n{script}"), args)
}

/// Rows of a Parquet file in the snapshot layout, decrypted with `keys` when given.
fn file_rows(
    manifest: &ots_manifest::Manifest,
    path: &Path,
    keys: Option<Arc<ots_crypto::LocalKeys>>,
) -> Result<Vec<ots_wire::types::Row>, String> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let file = std::fs::File::open(path).unwrap();
    let mut options = ArrowReaderOptions::new();
    if let Some(k) = keys {
        options = options.with_file_decryption_properties(
            ots_crypto::decryption_properties(k).map_err(|e| e.to_string())?,
        );
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| match ots_crypto::key_error(&e) {
            Some(k) => format!("key: {k}"),
            None => e.to_string(),
        })?
        .build()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let rr = ots_schema::RowReader::new(&manifest.schema, &batch).unwrap();
        for r in rr.rows() {
            rows.push(r.unwrap());
        }
    }
    Ok(rows)
}

fn local_keys(path: &Path) -> Arc<ots_crypto::LocalKeys> {
    Arc::new(ots_crypto::LocalKeys::new(vec![
        ots_crypto::MasterKey::from_file(path).unwrap(),
    ]))
}

#[tokio::test]
async fn encrypted_snapshots_interoperate_with_pyarrow_and_restore_exactly() {
    let env = env_with_table("orders", 300, PageLimits::default()).await;
    let keys = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let key_id = keygen(&env, &key_file).await;
    let key_b64 = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();

    let o = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            "orders",
            "--to",
            dest.path().to_str().unwrap(),
            "--encryption-key-file",
            key_file.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_secret(&o);
    let snap = stdout(&o).lines().last().unwrap().to_string();
    let dir = Path::new(&snap);
    let manifest: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let enc = manifest
        .encryption
        .clone()
        .expect("the manifest records encryption");
    assert_eq!(enc.master_key_id, key_id);
    assert_eq!(enc.scheme, ots_format::ENCRYPTION_SCHEME);
    assert_eq!(manifest.format_version, ots_format::FORMAT_VERSION);
    for f in ["manifest.json", "plan.json"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.contains(&key_b64), "{f} holds the key");
    }
    assert!(!manifest.files.is_empty());

    // pyarrow, with the test KMS, reads every data file; without a key it cannot.
    let mut pyarrow_rows = Vec::new();
    for (i, f) in manifest.files.iter().enumerate() {
        let data = dir.join(&f.path);
        let raw = std::fs::read(&data).unwrap();
        assert_eq!(
            &raw[raw.len() - 4..],
            b"PARE",
            "{}: encrypted footer",
            f.path
        );
        let plain = keys.path().join(format!("plain-{i}.parquet"));
        let v = python(
            PYARROW_DECRYPT,
            &[
                &key_id,
                &key_b64,
                data.to_str().unwrap(),
                plain.to_str().unwrap(),
            ],
        );
        assert_eq!(v["rows"], f.rows, "{v}");
        assert_ne!(v["no_key_error"], "read without a key", "{v}");
        assert!(
            v["footer_key_metadata_keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k.as_str().unwrap().contains("otsarchive")),
            "the encrypted footer's schema metadata is readable once decrypted: {v}"
        );
        pyarrow_rows.extend(file_rows(&manifest, &plain, None).unwrap());

        // We read what pyarrow encrypted: uniformly, and with a per-column key.
        for uniform in ["1", "0"] {
            let theirs = keys.path().join(format!("pyarrow-{i}-{uniform}.parquet"));
            python(
                PYARROW_ENCRYPT,
                &[
                    &key_id,
                    &key_b64,
                    plain.to_str().unwrap(),
                    theirs.to_str().unwrap(),
                    uniform,
                ],
            );
            let ours = file_rows(&manifest, &data, Some(local_keys(&key_file))).unwrap();
            let back = file_rows(&manifest, &theirs, Some(local_keys(&key_file))).unwrap();
            assert_eq!(
                back, ours,
                "pyarrow-encrypted copy of {} (uniform {uniform})",
                f.path
            );
            // Without the key pyarrow used: refused, naming the key.
            let other = keys.path().join("other-for-read.key");
            if !other.exists() {
                std::fs::write(
                    &other,
                    format!(
                        "{}\n",
                        ots_crypto::MasterKey::generate().unwrap().to_base64()
                    ),
                )
                .unwrap();
            }
            let e = file_rows(&manifest, &theirs, Some(local_keys(&other))).unwrap_err();
            assert!(e.contains(&key_id), "{e}");
        }
    }
    let mut expected = env.expected_rows();
    let by_key = |a: &ots_wire::types::Row, b: &ots_wire::types::Row| {
        ots_wire::types::cmp_primary_keys(
            a.primary_key.iter().map(|c| c.value.as_ref()),
            b.primary_key.iter().map(|c| c.value.as_ref()),
        )
    };
    expected.sort_by(by_key);
    pyarrow_rows.sort_by(by_key);
    assert_eq!(
        pyarrow_rows, expected,
        "pyarrow decrypted the rows we backed up"
    );

    // verify: without the key, sizes and SHA-256 only, said plainly; with it, everything.
    let o = run(cmd(&env, &["verify", &snap])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("need") || stdout(&o).contains("not checked"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&key_id), "{}", stdout(&o));
    let o = run(cmd(&env, &["--json", "verify", &snap])).await;
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["report"]["content_checks_skipped"].is_string(), "{v}");
    let o = run(cmd(
        &env,
        &[
            "--json",
            "verify",
            &snap,
            "--encryption-key-file",
            key_file.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["report"].get("content_checks_skipped").is_none(), "{v}");
    assert_eq!(v["report"]["rows_in_footers"], 300, "{v}");

    // schema --from: the manifest's schema; with the key, also the copy inside a data file.
    let o = run(cmd(&env, &["--json", "schema", "--from", &snap])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["schema"], serde_json::to_value(&manifest.schema).unwrap());
    assert!(v["checked_against_file"].is_null(), "{v}");
    let o = run(cmd(
        &env,
        &[
            "--json",
            "schema",
            "--from",
            &snap,
            "--encryption-key-file",
            key_file.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v["checked_against_file"],
        manifest.files[0].path.as_str(),
        "{v}"
    );

    // show names the scheme and key.
    let o = run(cmd(&env, &["show", &snap])).await;
    assert!(
        stdout(&o).contains(&format!("under master key {key_id}")),
        "{}",
        stdout(&o)
    );

    // Restore without the key, with another key: exit 2 naming the key, nothing created.
    let other = keys.path().join("other.key");
    let other_id = keygen(&env, &other).await;
    let o = run(cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "nokey",
            "--create-table",
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&key_id) && stderr(&o).contains("--encryption-key-file"),
        "{}",
        stderr(&o)
    );
    let o = run(cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "wrongkey",
            "--create-table",
            "--encryption-key-file",
            other.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&key_id) && stderr(&o).contains(&other_id),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let tables = env.client.list_table().await.unwrap();
    assert!(
        !tables.iter().any(|t| t == "nokey" || t == "wrongkey"),
        "a refused restore creates nothing: {tables:?}"
    );
    let o = run(cmd(
        &env,
        &[
            "verify",
            &snap,
            "--encryption-key-file",
            other.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // With the key (a rotated set: the new key first, the old one still readable), exactly.
    let o = run(cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &snap,
            "--table",
            "copy",
            "--create-table",
            "--encryption-key-file",
            other.to_str().unwrap(),
            "--encryption-key-file",
            key_file.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v = sdk_compare(&env, "orders", "copy").await;
    assert_eq!(v["equal"], true, "{v}");
    assert_eq!(v["rows_a"], 300, "{v}");

    // The environment carries a key too; a backup refuses two key files.
    let mut with_env = cmd(
        &env,
        &[
            "restore",
            "--from",
            &snap,
            "--table",
            "copy_env",
            "--create-table",
            "-q",
        ],
    );
    with_env.env(ots_crypto::KEY_ENV, &key_b64);
    let o = run(with_env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "orders",
            "--to",
            dest.path().to_str().unwrap(),
            "--encryption-key-file",
            key_file.to_str().unwrap(),
            "--encryption-key-file",
            other.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test]
async fn bad_key_files_are_refused_by_name() {
    let env = env_with_table("orders", 10, PageLimits::default()).await;
    let keys = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let short = keys.path().join("short.key");
    std::fs::write(&short, "AAAA\n").unwrap();
    for (path, words) in [
        (short.clone(), "holds 3 bytes"),
        (keys.path().join("absent.key"), "cannot be read"),
    ] {
        let o = run(cmd(
            &env,
            &[
                "backup",
                "--table",
                "orders",
                "--to",
                dest.path().to_str().unwrap(),
                "--encryption-key-file",
                path.to_str().unwrap(),
            ],
        ))
        .await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(words)
                && stderr(&o).contains(path.file_name().unwrap().to_str().unwrap()),
            "{}",
            stderr(&o)
        );
    }
    assert!(
        std::fs::read_dir(dest.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

/// A consistent full snapshot and an incremental, both encrypted: the change files are encrypted
/// too, the chain restores exactly with the key, and a link's key is checked before anything is
/// written. A backup resumed with another key is refused.
#[tokio::test]
async fn an_encrypted_chain_restores_exactly_and_resume_keeps_its_key() {
    use ots_wire::pb;
    let env = env_with_table("orders", 200, PageLimits::default()).await;
    env.client
        .update_table(&pb::UpdateTableRequest {
            table_name: "orders".into(),
            reserved_throughput: None,
            table_options: None,
            stream_spec: Some(pb::StreamSpecification {
                enable_stream: true,
                expiration_time: Some(24),
                columns_to_get: Vec::new(),
            }),
        })
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let key_id = keygen(&env, &key_file).await;
    let key = key_file.to_str().unwrap();
    let to = dest.path().to_str().unwrap();
    let backup = |extra: Vec<&str>| {
        let mut args = vec!["--json", "backup", "--table", "orders", "--to", to];
        args.extend(["--stream-settle-ms", "200", "--encryption-key-file", key]);
        args.extend(extra);
        cmd(&env, &args)
    };
    let o = run(backup(vec![])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let full: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let full_url = full["url"].as_str().unwrap().to_string();

    // Changes after the full snapshot: new versions of some rows and a deleted row.
    let expected = env.expected_rows();
    for r in expected.iter().take(20) {
        put_cells(
            &env.client,
            "orders",
            &r.primary_key,
            &[ots_wire::types::Cell {
                name: "note".into(),
                value: ots_wire::types::Value::String("changed".into()),
                timestamp: None,
            }],
        )
        .await;
    }
    let o = run(backup(vec!["--incremental-from", &full_url])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let inc: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let inc_url = inc["url"].as_str().unwrap().to_string();
    let m: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(Path::new(&inc_url).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m.encryption.as_ref().unwrap().master_key_id, key_id);
    let changes = m.changes.as_ref().unwrap();
    assert_eq!(changes.counts.update_row, 20, "{:?}", changes.counts);
    for f in &changes.files {
        let raw = std::fs::read(Path::new(&inc_url).join(&f.path)).unwrap();
        assert_eq!(&raw[raw.len() - 4..], b"PARE", "{} is encrypted", f.path);
    }

    // Without the key: refused before anything is written.
    let o = run(cmd(
        &env,
        &[
            "restore",
            "--from",
            &inc_url,
            "--table",
            "chain_nokey",
            "--create-table",
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&key_id), "{}", stderr(&o));
    assert!(
        !env.client
            .list_table()
            .await
            .unwrap()
            .contains(&"chain_nokey".to_string())
    );

    let o = run(cmd(
        &env,
        &[
            "-q",
            "restore",
            "--from",
            &inc_url,
            "--table",
            "chain_copy",
            "--create-table",
            "--encryption-key-file",
            key,
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v = sdk_compare(&env, "orders", "chain_copy").await;
    assert_eq!(v["equal"], true, "{v}");
    let o = run(cmd(
        &env,
        &[
            "verify",
            &inc_url,
            "--against-table",
            "orders",
            "--encryption-key-file",
            key,
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    // A backup planned under one key resumes only under it.
    let o = run(backup(vec!["--plan-only"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let planned: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    let id = planned["snapshot_id"]
        .as_str()
        .expect("plan-only names the snapshot")
        .to_string();
    let other = keys.path().join("other.key");
    let other_id = keygen(&env, &other).await;
    let o = run(cmd(
        &env,
        &[
            "backup",
            "--table",
            "orders",
            "--to",
            to,
            "--resume",
            &id,
            "--encryption-key-file",
            other.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&key_id) && stderr(&o).contains(&other_id),
        "{}",
        stderr(&o)
    );
    let o = run(cmd(
        &env,
        &["backup", "--table", "orders", "--to", to, "--resume", &id],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&key_id), "{}", stderr(&o));

    // The same snapshot by a worker and a commit: the commit writes the change files, so it
    // needs the key too, and encrypts them.
    let o = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            "orders",
            "--to",
            to,
            "--resume",
            &id,
            "--worker",
            "0/1",
            "--encryption-key-file",
            key,
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = format!("{to}/{id}");
    let o = run(cmd(&env, &["commit", &snap])).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&key_id), "{}", stderr(&o));
    let o = run(cmd(
        &env,
        &["-q", "commit", &snap, "--encryption-key-file", key],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let m: ots_manifest::Manifest =
        serde_json::from_slice(&std::fs::read(Path::new(&snap).join("manifest.json")).unwrap())
            .unwrap();
    let changes = m
        .changes
        .as_ref()
        .expect("a stream table's snapshot captures changes");
    for f in m.files.iter().chain(&changes.files) {
        let raw = std::fs::read(Path::new(&snap).join(&f.path)).unwrap();
        assert_eq!(&raw[raw.len() - 4..], b"PARE", "{} is encrypted", f.path);
    }
    let o = run(cmd(&env, &["verify", &snap, "--encryption-key-file", key])).await;
    assert!(o.status.success(), "{}", stderr(&o));

    // A plaintext file inside an encrypted snapshot is a verification failure.
    let plain_dir = tempfile::tempdir().unwrap();
    let o = run(cmd(
        &env,
        &[
            "-q",
            "backup",
            "--table",
            "orders",
            "--to",
            plain_dir.path().to_str().unwrap(),
            "--no-stream",
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let plain_snap = stdout(&o).lines().last().unwrap().to_string();
    let pm: ots_manifest::Manifest = serde_json::from_slice(
        &std::fs::read(Path::new(&plain_snap).join("manifest.json")).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        Path::new(&plain_snap).join(&pm.files[0].path),
        Path::new(&snap).join(&m.files[0].path),
    )
    .unwrap();
    // … even when the manifest lists its size and SHA-256 (as a commit without the key would
    // have written them).
    let manifest_path = Path::new(&snap).join("manifest.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (old, new) = (m.files[0].bytes, pm.files[0].bytes);
    doc["files"][0]["bytes"] = new.into();
    doc["files"][0]["sha256"] = pm.files[0].sha256.clone().into();
    doc["totals"]["bytes"] = (m.totals.bytes - old + new).into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let o = run(cmd(&env, &["verify", &snap])).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not encrypted, although the manifest records encryption"),
        "{}",
        stderr(&o)
    );
}
