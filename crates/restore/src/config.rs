//! What to restore and how: [`RestoreConfig`], its modes, and the checks of every option that
//! run before anything is read or written.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ots_wire::types::PkColumn;

use crate::error::RestoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoIncrementMode {
    /// Keep the original key values (an auto-increment column is created as plain INTEGER).
    Keep,
    /// Let the service assign new values (not idempotent: never resumed or repeated).
    Regenerate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampMode {
    Original,
    /// Rewrite timestamps to the time of the restore, keeping each column's version order.
    Now,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Overwrite,
    /// Rows already present in the target are left alone (and counted).
    OnlyIfAbsent,
}

impl AutoIncrementMode {
    /// The name of the mode as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            AutoIncrementMode::Keep => "keep",
            AutoIncrementMode::Regenerate => "regenerate",
        }
    }
}

impl TimestampMode {
    /// The name of the mode as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampMode::Original => "original",
            TimestampMode::Now => "now",
        }
    }
}

impl WriteMode {
    /// The name of the mode as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Overwrite => "overwrite",
            WriteMode::OnlyIfAbsent => "only-if-absent",
        }
    }
}

/// Bounds of the numeric options (inclusive).
pub const CONCURRENCY_RANGE: (usize, usize) = (1, 1024);
pub const FILE_CONCURRENCY_RANGE: (usize, usize) = (1, 256);
/// Rows per second: the limiter's granularity is one row per second, and a billion rows per
/// second is beyond any table.
pub const ROWS_PER_SEC_RANGE: (f64, f64) = (1.0, 1e9);
/// `--memory-mb`: the least is what one largest request (4 MB, held encoded and decoded) and one
/// file being read need; the most is 1 TiB.
pub const MEMORY_MB_RANGE: (usize, usize) = (32, 1 << 20);
/// `--memory-mb` when not given.
pub const DEFAULT_MEMORY_MB: usize = 256;

/// How `--memory-mb` is shared out (see [`RestoreConfig::memory_budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Reading: the row groups fetched and the decoded record batches of every file being read
    /// (each of the `file_concurrency` readers gets an equal share), and re-hashed file copies
    /// held in memory.
    pub read_bytes: usize,
    /// Writing: requests cut and queued for the writers and requests in flight, each counted
    /// as its encoded bytes plus its decoded rows.
    pub write_bytes: usize,
}

impl MemoryBudget {
    /// One reader's share of [`Self::read_bytes`].
    pub fn per_reader(&self, file_concurrency: usize) -> usize {
        self.read_bytes / file_concurrency.max(1)
    }
}

#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub table: String,
    pub create_table: bool,
    pub auto_increment: AutoIncrementMode,
    pub timestamps: TimestampMode,
    /// `None`: no mode was chosen. Rows are then put as with [`WriteMode::Overwrite`], but only
    /// into a table that `create_table` creates or that holds no rows: a table that holds rows
    /// is refused, so that its rows are never replaced without an explicit choice.
    pub mode: Option<WriteMode>,
    /// Accept a target whose `max_versions` is lower than the most versions of one column one
    /// row of the snapshot holds (the older versions are hidden by the service).
    pub allow_version_loss: bool,
    /// Accept cells older than the target's TTL (they expire as soon as they are written).
    pub allow_expiry: bool,
    /// Restore only rows with `start <= pk < end`.
    pub pk_range: Option<(Vec<PkColumn>, Vec<PkColumn>)>,
    /// Restore only these attribute columns.
    pub columns: Option<BTreeSet<String>>,
    /// Restore only files whose partition matches every `key=value` given.
    pub partitions: Vec<(String, String)>,
    /// BatchWriteRow requests in flight.
    pub concurrency: usize,
    /// Files read at once.
    pub file_concurrency: usize,
    pub rows_per_sec: Option<f64>,
    pub dead_letter: PathBuf,
    pub checkpoint: PathBuf,
    pub resume: bool,
    /// Skip the integrity check of the snapshot before writing.
    pub skip_verify: bool,
    /// The memory the restore's data may hold, in MiB (`--memory-mb`), shared out by
    /// [`Self::memory_budget`].
    pub memory_mb: usize,
    /// Restore the chain to this instant (µs since the epoch; `--as-of`): changes logged after it
    /// are not replayed.
    pub as_of_us: Option<i64>,
    /// Appended to the name of every secondary index a `create_table` creates (index names are
    /// unique in an instance, so a copy beside the source needs other names).
    pub index_suffix: Option<String>,
    /// Restore only this worker's share of the files (`--worker K/N`): several processes restore
    /// one snapshot side by side, each with its own checkpoint.
    pub worker: Option<ots_format::WorkerSlot>,
}

impl RestoreConfig {
    pub fn new(table: impl Into<String>, snapshot_id: &str) -> Self {
        let table = table.into();
        RestoreConfig {
            dead_letter: PathBuf::from(format!(
                "otsarchive-restore-{snapshot_id}-{table}.dead-letter.jsonl"
            )),
            checkpoint: PathBuf::from(format!(
                "otsarchive-restore-{snapshot_id}-{table}.checkpoint.json"
            )),
            table,
            create_table: false,
            auto_increment: AutoIncrementMode::Keep,
            timestamps: TimestampMode::Original,
            mode: None,
            allow_version_loss: false,
            allow_expiry: false,
            pk_range: None,
            columns: None,
            partitions: Vec::new(),
            concurrency: 8,
            file_concurrency: 2,
            rows_per_sec: None,
            resume: false,
            skip_verify: false,
            memory_mb: DEFAULT_MEMORY_MB,
            as_of_us: None,
            index_suffix: None,
            worker: None,
        }
    }

    /// The mode rows are written with: the one chosen, else overwrite (see [`Self::mode`]).
    pub fn write_mode(&self) -> WriteMode {
        self.mode.unwrap_or(WriteMode::Overwrite)
    }

    /// `--memory-mb` shared out: half for reading, half for writing.
    pub fn memory_budget(&self) -> MemoryBudget {
        let total = self.memory_mb.saturating_mul(1024 * 1024);
        MemoryBudget {
            read_bytes: total / 2,
            write_bytes: total - total / 2,
        }
    }

    /// Checks every option on its own (nothing is read): counts in range, rates positive and
    /// finite, no combination that cannot work. A failure is [`RestoreError::Usage`] naming the
    /// option as the CLI spells it.
    pub fn validate(&self) -> Result<(), RestoreError> {
        let usage = |m: String| Err(RestoreError::Usage(m));
        if self.table.is_empty() {
            return usage("--table: the target table name is empty".into());
        }
        if let Some(suffix) = &self.index_suffix
            && (suffix.is_empty()
                || !suffix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return usage(format!(
                "--index-suffix '{suffix}': index names take letters, digits and '_' only"
            ));
        }
        if self.index_suffix.is_some() && !self.create_table {
            return usage(
                "--index-suffix names the indexes --create-table creates; add --create-table"
                    .into(),
            );
        }
        let (lo, hi) = CONCURRENCY_RANGE;
        if !(lo..=hi).contains(&self.concurrency) {
            return usage(format!(
                "--concurrency {}: must be between {lo} and {hi} (BatchWriteRow requests in flight)",
                self.concurrency
            ));
        }
        let (lo, hi) = FILE_CONCURRENCY_RANGE;
        if !(lo..=hi).contains(&self.file_concurrency) {
            return usage(format!(
                "--file-concurrency {}: must be between {lo} and {hi} (files read at once)",
                self.file_concurrency
            ));
        }
        if let Some(r) = self.rows_per_sec {
            let (lo, hi) = ROWS_PER_SEC_RANGE;
            // NaN fails both comparisons, infinities the upper bound.
            if !(r >= lo && r <= hi) {
                return usage(format!(
                    "--rows-per-sec {r}: must be a number from {lo} to {hi:e} (omit it for no cap)"
                ));
            }
        }
        let (lo, hi) = MEMORY_MB_RANGE;
        if !(lo..=hi).contains(&self.memory_mb) {
            return usage(format!(
                "--memory-mb {}: must be between {lo} and {hi} (MiB the restore's data may hold; \
                 one 4 MB request and one file being read need at least {lo})",
                self.memory_mb
            ));
        }
        if self.auto_increment == AutoIncrementMode::Regenerate && self.resume {
            return usage(
                "--resume cannot be combined with --auto-increment regenerate: rows written before the crash \
                 would be written again under new keys"
                    .into(),
            );
        }
        if self.columns.as_ref().is_some_and(BTreeSet::is_empty) {
            return usage("--columns: name at least one column".into());
        }
        for (k, _) in &self.partitions {
            if k.is_empty() {
                return usage("--partition: the key of key=value is empty".into());
            }
        }
        if let Some((start, end)) = &self.pk_range
            && start.len() != end.len()
        {
            return usage(format!(
                "--start-key has {} columns and --end-key {}: give both over the whole primary key",
                start.len(),
                end.len()
            ));
        }
        if self.dead_letter.as_os_str().is_empty() {
            return usage("--dead-letter: the path is empty".into());
        }
        if self.checkpoint.as_os_str().is_empty() {
            return usage("--checkpoint: the path is empty".into());
        }
        if self.checkpoint == self.dead_letter {
            return usage(format!(
                "--checkpoint and --dead-letter are the same file ({})",
                self.checkpoint.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RestoreConfig {
        RestoreConfig::new("t", "snap")
    }

    fn message(c: &RestoreConfig) -> String {
        match c.validate() {
            Err(RestoreError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn rows_per_sec_must_be_positive_and_finite() {
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
            1e-300,
            2e9,
        ] {
            let mut c = cfg();
            c.rows_per_sec = Some(bad);
            assert!(message(&c).contains("--rows-per-sec"), "{bad}");
        }
        for good in [1.0, 2000.0, 1e9] {
            let mut c = cfg();
            c.rows_per_sec = Some(good);
            c.validate().unwrap();
        }
    }

    #[test]
    fn concurrencies_must_be_in_range() {
        for bad in [0, 1025, usize::MAX] {
            let mut c = cfg();
            c.concurrency = bad;
            assert!(message(&c).contains("--concurrency"), "{bad}");
        }
        for bad in [0, 257, usize::MAX] {
            let mut c = cfg();
            c.file_concurrency = bad;
            assert!(message(&c).contains("--file-concurrency"), "{bad}");
        }
        for bad in [0, 31, (1 << 20) + 1, usize::MAX] {
            let mut c = cfg();
            c.memory_mb = bad;
            assert!(message(&c).contains("--memory-mb"), "{bad}");
        }
        let mut c = cfg();
        c.memory_mb = 32;
        c.validate().unwrap();
        let b = c.memory_budget();
        assert_eq!(b.read_bytes + b.write_bytes, 32 << 20);
        assert_eq!(b.per_reader(2), 8 << 20);
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let mut c = cfg();
        c.resume = true;
        c.auto_increment = AutoIncrementMode::Regenerate;
        assert!(message(&c).contains("--resume"));
        let mut c = cfg();
        c.checkpoint = c.dead_letter.clone();
        assert!(message(&c).contains("same file"));
        let mut c = cfg();
        c.columns = Some(BTreeSet::new());
        assert!(message(&c).contains("--columns"));
    }
}
