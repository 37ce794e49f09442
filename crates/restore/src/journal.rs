//! The restore's local journal: the checkpoint of finished files (what `--resume` skips); the
//! dead-letter file of rows that failed for good is [`crate::dead_letter`].
//!
//! The checkpoint records what it is a checkpoint *of*: the snapshot, the target table's identity
//! (endpoint, instance, table) and every row option. A resume with another target or other
//! options would skip files that were restored differently, so it is refused, naming each
//! difference, before anything is written.
//!
//! Both files are durable before a file counts as done: dead letters are appended and synced to
//! disk, then the checkpoint is written to a temporary file, synced, renamed over the old one, and
//! its folder synced, so a crash (or power loss) leaves either the old or the new checkpoint,
//! never a checkpoint naming a file whose failed rows were lost.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ots_scan::{KeyPart, KeyValue};
use ots_wire::types::PkColumn;
use serde::{Deserialize, Serialize};

use crate::config::RestoreConfig;
use crate::error::RestoreError;

/// Version of the checkpoint's JSON layout. Checkpoints without a `format` field are of the
/// first release, which recorded neither the target's identity nor the options.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// The table a restore writes into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetIdentity {
    pub endpoint: String,
    pub instance: String,
    pub table: String,
}

impl TargetIdentity {
    pub fn new(endpoint: &str, instance: &str, table: &str) -> Self {
        TargetIdentity {
            // `https://host/` and `https://host` are the same endpoint.
            endpoint: endpoint.trim_end_matches('/').to_string(),
            instance: instance.to_string(),
            table: table.to_string(),
        }
    }
}

/// Every option that decides what a restored row looks like, as the checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowOptions {
    /// `--columns`, sorted; `None` = every column.
    pub columns: Option<Vec<String>>,
    /// `--start-key` / `--end-key` over the whole primary key (missing columns are INF_MIN).
    pub start_key: Option<Vec<KeyPart>>,
    pub end_key: Option<Vec<KeyPart>>,
    /// `--partition`, as `key=value`, sorted.
    pub partitions: Vec<String>,
    /// `--mode`, `--timestamps`, `--auto-increment` as the CLI spells them.
    pub mode: String,
    pub timestamps: String,
    pub auto_increment: String,
}

impl RowOptions {
    pub fn of(cfg: &RestoreConfig) -> Self {
        let key = |k: &[PkColumn]| k.iter().map(KeyPart::from_column).collect::<Vec<_>>();
        let mut partitions: Vec<String> = cfg
            .partitions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        partitions.sort();
        partitions.dedup();
        RowOptions {
            columns: cfg.columns.as_ref().map(|c| c.iter().cloned().collect()),
            start_key: cfg.pk_range.as_ref().map(|(s, _)| key(s)),
            end_key: cfg.pk_range.as_ref().map(|(_, e)| key(e)),
            partitions,
            mode: cfg.write_mode().name().to_string(),
            timestamps: cfg.timestamps.name().to_string(),
            auto_increment: cfg.auto_increment.name().to_string(),
        }
    }
}

/// One way in which a resume differs from the restore that wrote the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionDifference {
    /// The option as the CLI spells it (`--columns`), or what it is (`target endpoint`).
    pub option: String,
    /// What the checkpoint recorded.
    pub recorded: String,
    /// What this run asks for.
    pub requested: String,
}

impl fmt::Display for OptionDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} was {}, now {}",
            self.option, self.recorded, self.requested
        )
    }
}

/// A key bound as the user typed it: `name=value,…`, trailing INF_MIN / INF_MAX columns left out.
fn key_text(key: &Option<Vec<KeyPart>>) -> String {
    let Some(parts) = key else {
        return "(none)".into();
    };
    let shown: Vec<String> = parts
        .iter()
        .take_while(|p| !matches!(p.value, KeyValue::InfMin | KeyValue::InfMax))
        .map(|p| {
            let v = match &p.value {
                KeyValue::Integer(i) => i.to_string(),
                KeyValue::String(s) => s.clone(),
                KeyValue::Binary(h) => h.clone(),
                KeyValue::InfMin | KeyValue::InfMax => String::new(),
            };
            format!("{}={v}", p.name)
        })
        .collect();
    if shown.is_empty() {
        "(none)".into()
    } else {
        format!("'{}'", shown.join(","))
    }
}

fn list_text(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        format!("'{}'", items.join(","))
    }
}

/// What the checkpoint file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub format: u32,
    pub snapshot_id: String,
    pub target: TargetIdentity,
    pub options: RowOptions,
    /// Paths (relative to the snapshot) of files whose rows are all acknowledged or recorded.
    pub files_done: BTreeSet<String>,
}

impl Checkpoint {
    pub fn new(snapshot_id: &str, target: TargetIdentity, options: RowOptions) -> Self {
        Checkpoint {
            format: CHECKPOINT_FORMAT,
            snapshot_id: snapshot_id.to_string(),
            target,
            options,
            files_done: BTreeSet::new(),
        }
    }

    /// How `self` (what this run asks for) differs from `recorded`.
    fn differences(&self, recorded: &Checkpoint) -> Vec<OptionDifference> {
        let mut out = Vec::new();
        let mut diff = |option: &str, was: String, now: String| {
            if was != now {
                out.push(OptionDifference {
                    option: option.to_string(),
                    recorded: was,
                    requested: now,
                });
            }
        };
        let quoted = |s: &str| format!("'{s}'");
        diff(
            "snapshot",
            quoted(&recorded.snapshot_id),
            quoted(&self.snapshot_id),
        );
        let (r, n) = (&recorded.target, &self.target);
        diff("target endpoint", quoted(&r.endpoint), quoted(&n.endpoint));
        diff("target instance", quoted(&r.instance), quoted(&n.instance));
        diff("target table (--table)", quoted(&r.table), quoted(&n.table));
        let (r, n) = (&recorded.options, &self.options);
        let cols = |c: &Option<Vec<String>>| match c {
            None => "every column".to_string(),
            Some(c) => list_text(c, "every column"),
        };
        diff("--columns", cols(&r.columns), cols(&n.columns));
        diff(
            "--start-key",
            key_text(&r.start_key),
            key_text(&n.start_key),
        );
        diff("--end-key", key_text(&r.end_key), key_text(&n.end_key));
        diff(
            "--partition",
            list_text(&r.partitions, "(none)"),
            list_text(&n.partitions, "(none)"),
        );
        diff("--mode", r.mode.clone(), n.mode.clone());
        diff("--timestamps", r.timestamps.clone(), n.timestamps.clone());
        diff(
            "--auto-increment",
            r.auto_increment.clone(),
            n.auto_increment.clone(),
        );
        out
    }

    /// The checkpoint to continue from: the one at `path` when it was written for exactly this
    /// snapshot, target and options (`self` describes them), else an error that says why not. A
    /// missing file is a fresh start.
    pub fn resume_from(self, path: &Path) -> Result<Checkpoint, RestoreError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => return Err(RestoreError::io("reading checkpoint", path, e)),
        };
        let damaged = |source| RestoreError::DamagedCheckpoint {
            path: path.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(damaged)?;
        match value.get("format").and_then(|f| f.as_u64()) {
            None => {
                return Err(RestoreError::OldCheckpoint {
                    path: path.to_path_buf(),
                });
            }
            Some(f) if f > u64::from(CHECKPOINT_FORMAT) => {
                return Err(RestoreError::Usage(format!(
                    "checkpoint {} has format {f}, newer than this otsarchive understands ({CHECKPOINT_FORMAT}); \
                     resume with the otsarchive that wrote it, or restart without --resume",
                    path.display()
                )));
            }
            Some(_) => {}
        }
        let recorded: Checkpoint = serde_json::from_value(value).map_err(damaged)?;
        let differences = self.differences(&recorded);
        if !differences.is_empty() {
            return Err(RestoreError::ResumeMismatch {
                checkpoint: path.to_path_buf(),
                differences,
            });
        }
        Ok(recorded)
    }

    /// Writes the checkpoint durably (see the module's documentation).
    pub async fn save(&self, path: &Path) -> Result<(), RestoreError> {
        let body =
            serde_json::to_vec_pretty(self).map_err(|source| RestoreError::EncodeCheckpoint {
                path: path.to_path_buf(),
                source,
            })?;
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_durably(&path, &body)).await?
    }
}

/// The folder holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the folder's entries (a created or renamed file) durable. Only Unix can open and sync a
/// folder; elsewhere the rename itself is what the file system offers.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Temporary file, `sync_all`, rename over `path`, sync the folder.
fn write_durably(path: &Path, body: &[u8]) -> Result<(), RestoreError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()
    };
    write().map_err(|e| RestoreError::io("writing checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RestoreError::io("replacing checkpoint", path, e))?;
    let dir = parent_dir(path);
    sync_dir(dir).map_err(|e| RestoreError::io("syncing the folder of checkpoint", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TimestampMode, WriteMode};
    use ots_wire::types::PkValue;

    fn checkpoint(cfg: &RestoreConfig) -> Checkpoint {
        Checkpoint::new(
            "snap-1",
            TargetIdentity::new("http://127.0.0.1:1/", "inst", &cfg.table),
            RowOptions::of(cfg),
        )
    }

    #[tokio::test]
    async fn a_resume_with_the_same_options_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let cfg = RestoreConfig::new("t", "snap-1");
        let mut c = checkpoint(&cfg);
        c.files_done.insert("data/a.parquet".into());
        c.save(&path).await.unwrap();
        assert!(!dir.path().join("c.json.tmp").exists());
        let back = checkpoint(&cfg).resume_from(&path).unwrap();
        assert_eq!(back.files_done.len(), 1);
        // No checkpoint: a fresh start.
        let fresh = checkpoint(&cfg)
            .resume_from(&dir.path().join("none.json"))
            .unwrap();
        assert!(fresh.files_done.is_empty());
    }

    #[tokio::test]
    async fn a_resume_with_other_options_names_every_difference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let cfg = RestoreConfig::new("t", "snap-1");
        checkpoint(&cfg).save(&path).await.unwrap();
        let mut other = cfg.clone();
        other.mode = Some(WriteMode::OnlyIfAbsent);
        other.timestamps = TimestampMode::Now;
        other.columns = Some(["age".to_string(), "name".to_string()].into());
        other.partitions = vec![("dt".into(), "2026-01-01".into())];
        let key = |v: &str, last: PkValue| {
            vec![
                PkColumn::new("user", PkValue::String(v.into())),
                PkColumn::new("seq", last),
            ]
        };
        other.pk_range = Some((key("u1", PkValue::InfMin), key("u2", PkValue::InfMin)));
        let mut c = checkpoint(&other);
        c.target.instance = "other".into();
        let err = c.resume_from(&path).unwrap_err();
        let RestoreError::ResumeMismatch { differences, .. } = &err else {
            panic!("{err:?}");
        };
        let names: Vec<&str> = differences.iter().map(|d| d.option.as_str()).collect();
        assert_eq!(
            names,
            [
                "target instance",
                "--columns",
                "--start-key",
                "--end-key",
                "--partition",
                "--mode",
                "--timestamps"
            ]
        );
        let text = err.to_string();
        for part in [
            "--mode was overwrite, now only-if-absent",
            "--columns was every column, now 'age,name'",
            "--start-key was (none), now 'user=u1'",
            "--partition was (none), now 'dt=2026-01-01'",
            "target instance was 'inst', now 'other'",
            "without --resume",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
    }

    #[test]
    fn an_old_checkpoint_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(
            &path,
            r#"{"snapshot_id":"snap-1","table":"t","files_done":["data/a.parquet"]}"#,
        )
        .unwrap();
        let cfg = RestoreConfig::new("t", "snap-1");
        let err = checkpoint(&cfg).resume_from(&path).unwrap_err();
        assert!(matches!(err, RestoreError::OldCheckpoint { .. }), "{err:?}");
        assert!(err.to_string().contains("Restart without --resume"));
        std::fs::write(&path, b"{ not json").unwrap();
        let err = checkpoint(&cfg).resume_from(&path).unwrap_err();
        assert!(
            matches!(err, RestoreError::DamagedCheckpoint { .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
    }
}
