//! What can go wrong in a restore or a comparison, and which kind of failure each one is.

use std::path::PathBuf;

use ots_manifest::ManifestError;
use ots_scan::ScanError;
use ots_wire::OtsError;

use crate::journal::OptionDifference;

/// The three kinds of failure a caller tells apart (the CLI's exit codes 2, 3 and 1).
pub use ots_format::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad options, or a target that cannot take the snapshot.
    #[error("{0}")]
    Usage(String),
    /// A pre-flight check failed: nothing was written.
    #[error("pre-flight check failed, nothing was written: {0}")]
    Preflight(String),
    /// `--resume` with options or a target other than those the checkpoint was written with.
    #[error(
        "cannot resume from checkpoint {}: it was written by a restore with different options or \
         another target, and resuming would mix two different restores. {}. Run the command again \
         with the original options, or restart without --resume (which starts over and replaces \
         the checkpoint)",
        checkpoint.display(),
        differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    ResumeMismatch {
        checkpoint: PathBuf,
        differences: Vec<OptionDifference>,
    },
    /// A checkpoint of an older otsarchive that does not record the restore's options.
    #[error(
        "checkpoint {} was written by an older otsarchive and does not record the restore's target \
         and options, so a resume cannot be checked against them. Restart without --resume (or \
         delete the checkpoint)",
        path.display()
    )]
    OldCheckpoint { path: PathBuf },
    /// A checkpoint that is not valid JSON of the expected shape.
    #[error(
        "checkpoint {} is damaged ({source}). Restart without --resume (or delete the checkpoint)",
        path.display()
    )]
    DamagedCheckpoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The snapshot does not verify; nothing was written.
    #[error(
        "snapshot {id} fails verification ({issues} problem(s); first: {first_path}: {first_problem}); \
         nothing was written. Run `otsarchive verify` for the full list"
    )]
    SnapshotInvalid {
        id: String,
        issues: usize,
        first_path: String,
        first_problem: String,
    },
    /// A data file is not the one verification checked: it was replaced or changed since, or
    /// its bytes do not hash to the manifest's SHA-256. No row of the file was written from the
    /// changed bytes.
    #[error(
        "{path} changed after the snapshot was verified ({detail}); the restore stopped and wrote no \
         row from the changed bytes. Find out who changed the snapshot, then run `otsarchive verify`"
    )]
    SnapshotChanged { path: String, detail: String },
    /// The table to compare with does not exist (`error` names it, its instance and endpoint).
    #[error("{error}")]
    TableNotFound { table: String, error: OtsError },
    #[error(transparent)]
    Ots(#[from] OtsError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("scanning '{table}': {source}")]
    Scan {
        table: String,
        #[source]
        source: ScanError,
    },
    #[error("decoding a page of '{table}': {source}")]
    DecodePage {
        table: String,
        #[source]
        source: ots_wire::plainbuffer::DecodeError,
    },
    /// Reading a snapshot file's Parquet (including the store errors underneath).
    #[error("reading {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An encrypted snapshot whose keys were not given, or a file whose data key the given
    /// keys do not unwrap.
    #[error("{path}: {source}")]
    Key {
        path: String,
        #[source]
        source: ots_crypto::CryptoError,
    },
    /// A snapshot file's object-store request.
    #[error("reading {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A record batch that does not hold rows of the snapshot's layout.
    #[error("reading rows of {path}: {source}")]
    Rows {
        path: String,
        #[source]
        source: ots_schema::ConvertError,
    },
    /// Snapshot files of one split, expected in primary-key order (FORMAT.md §7), are not.
    #[error("{path}: rows are not in primary-key order ({detail})")]
    Order { path: String, detail: String },
    /// A local file: the checkpoint, the dead-letter file, a spool file.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Encoding the checkpoint (cannot normally fail).
    #[error("encoding checkpoint {}: {source}", path.display())]
    EncodeCheckpoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Encoding a JSON document or line (cannot normally fail).
    #[error("encoding {what} for {}: {source}", path.display())]
    EncodeJson {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A fresh restore would append to the dead-letter file of an earlier run.
    #[error(
        "the dead-letter file {} already holds {lines} row(s) of an earlier restore, and a new \
         restore does not append to it. Replay those rows with `otsarchive restore \
         --retry-dead-letter {} --table {table}`, then move or delete the file (or choose another \
         one with --dead-letter); to continue the interrupted restore instead, add --resume",
        path.display(),
        path.display()
    )]
    DeadLetterExists {
        path: PathBuf,
        lines: u64,
        table: String,
    },
    /// A line of a dead-letter file given to `--retry-dead-letter` that cannot be replayed.
    #[error(
        "{}, line {line}: {detail}. Nothing was written; fix or remove that line and run again",
        path.display()
    )]
    DeadLetterLine {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    /// A captured change that cannot be replayed exactly (found before its call of
    /// `ChangeApplier::apply` wrote anything).
    #[error("change {ordinal} ({op} of key {key}) cannot be replayed: {detail}")]
    ChangeInvalid {
        ordinal: u64,
        op: &'static str,
        key: String,
        detail: String,
    },
    /// A captured change the table refused for good (after the retries of retryable errors).
    /// Its lane stopped there: later changes of its key were not applied. Replay is idempotent,
    /// so the replay can be run again from the start.
    #[error(
        "replaying change {ordinal} ({op} of key {key}) failed: {code}: {message}. The replay \
         stopped; later changes of this key were not applied"
    )]
    ChangeFailed {
        ordinal: u64,
        op: &'static str,
        key: String,
        code: String,
        message: String,
    },
    /// A reader or writer task panicked or could not be joined.
    #[error("a restore task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A chain of snapshots that cannot be restored: a link missing or uncommitted, windows that
    /// do not meet, another stream or base.
    #[error("cannot restore {id}: its chain is broken: {detail}")]
    ChainBroken { id: String, detail: String },
    /// A change file whose content is not what the format says.
    #[error("reading changes of {path}: {detail}")]
    Changes { path: String, detail: String },
    /// The writer tasks stopped before the readers were done (their own error is the cause).
    #[error("the writer tasks stopped")]
    WritersStopped,
    /// A lock was poisoned by a panicking task.
    #[error("internal state lock poisoned")]
    Poisoned,
}

/// Errors that mean the credentials, permissions or endpoint are wrong: the user must act.
fn is_auth(e: &OtsError) -> bool {
    e.is_access_denied() || e.is_unreachable()
}

impl RestoreError {
    /// The kind of failure, for exit codes: [`ErrorKind::Usage`] (2), [`ErrorKind::Mismatch`]
    /// (3), [`ErrorKind::Failure`] (1).
    pub fn kind(&self) -> ErrorKind {
        use RestoreError::*;
        match self {
            Usage(_)
            | Preflight(_)
            | ResumeMismatch { .. }
            | OldCheckpoint { .. }
            | DamagedCheckpoint { .. }
            | DeadLetterExists { .. }
            | DeadLetterLine { .. }
            | TableNotFound { .. } => ErrorKind::Usage,
            SnapshotInvalid { .. }
            | SnapshotChanged { .. }
            | Order { .. }
            | ChainBroken { .. }
            | Changes { .. }
            | ChangeInvalid { .. } => ErrorKind::Mismatch,
            Key {
                source:
                    ots_crypto::CryptoError::WrongKey { .. } | ots_crypto::CryptoError::KeyMaterial(_),
                ..
            } => ErrorKind::Mismatch,
            Key { .. } => ErrorKind::Usage,
            Ots(e) if is_auth(e) => ErrorKind::Usage,
            Scan {
                source: ScanError::Ots(e),
                ..
            } if is_auth(e) => ErrorKind::Usage,
            Manifest(ManifestError::NotFound { .. }) => ErrorKind::Usage,
            Manifest(ManifestError::Json { .. } | ManifestError::FormatVersion { .. }) => {
                ErrorKind::Mismatch
            }
            _ => ErrorKind::Failure,
        }
    }

    /// A Parquet error of `path`, told apart when its cause is a file that changed under us.
    pub(crate) fn parquet(path: &str, e: parquet::errors::ParquetError) -> Self {
        if let parquet::errors::ParquetError::External(inner) = e {
            let inner = match inner.downcast::<crate::reader::ObjectChanged>() {
                Ok(c) => {
                    return RestoreError::SnapshotChanged {
                        path: path.to_string(),
                        detail: c.detail,
                    };
                }
                Err(other) => other,
            };
            return match inner.downcast::<ots_crypto::CryptoError>() {
                Ok(k) => RestoreError::Key {
                    path: path.to_string(),
                    source: *k,
                },
                Err(other) => RestoreError::Parquet {
                    path: path.to_string(),
                    source: parquet::errors::ParquetError::External(other),
                },
            };
        }
        RestoreError::Parquet {
            path: path.to_string(),
            source: e,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RestoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
