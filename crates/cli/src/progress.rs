//! Progress on stderr while long work runs (backup, verify, restore, comparison): a bar with the
//! amount done, rates and ETA on a terminal, a spinner while the total is not known yet; a plain
//! line every 5 s otherwise (CI logs); nothing with --quiet or --json.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ots_backup::Progress;
use ots_manifest::verify::VerifyCounters;
use ots_restore::RestoreProgress;

use crate::common::human_bytes;
use crate::text::{count, per_sec, thousands};

/// What the amount done is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Things, named in the plural (`splits`, `files`, `rows`).
    Items(&'static str),
}

/// One look at the counters.
pub struct Frame {
    pub done: u64,
    /// `None` while the total is not known: a spinner, not a bar.
    pub total: Option<u64>,
    pub unit: Unit,
    /// The rest: rates, other counters, or what is happening while the total is unknown.
    pub message: String,
}

impl Frame {
    /// The amount done as words: `4 of 17 splits (23%)`, `12.3 MiB of 33.3 MiB (37%)`.
    fn amount(&self) -> Option<String> {
        let total = self.total?;
        let pct = (self.done.min(total) * 100)
            .checked_div(total)
            .unwrap_or(100);
        Some(match self.unit {
            Unit::Bytes => format!(
                "{} of {} ({pct}%)",
                human_bytes(self.done),
                human_bytes(total)
            ),
            Unit::Items(what) => format!(
                "{} of {} {what} ({pct}%)",
                thousands(self.done),
                thousands(total)
            ),
        })
    }

    /// The plain line: `label: amount, message`.
    fn line(&self, label: &str) -> String {
        match (self.amount(), self.message.is_empty()) {
            (Some(a), true) => format!("{label}: {a}"),
            (Some(a), false) => format!("{label}: {a}, {}", self.message),
            (None, _) => format!("{label}: {}", self.message),
        }
    }
}

/// Something that can be looked at for progress.
pub trait Source: Send + Sync + 'static {
    fn frame(&self, elapsed: Duration) -> Frame;
}

/// The bar style in use, to change it only when the kind of frame changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Spinner,
    Bar(Unit),
}

fn style(shape: Shape) -> ProgressStyle {
    let template = match shape {
        Shape::Spinner => "{spinner} {prefix}: {msg}".to_string(),
        Shape::Bar(Unit::Bytes) => {
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes}  {msg}  ETA {eta}".to_string()
        }
        Shape::Bar(Unit::Items(what)) => {
            format!(
                "{{spinner}} {{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {what}  {{msg}}  ETA {{eta}}"
            )
        }
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

pub struct Reporter {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    /// Shows `source` under `label` until [`Reporter::finish`]; does nothing unless `enabled`.
    pub fn start(label: &'static str, enabled: bool, source: Arc<dyn Source>) -> Reporter {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        if !enabled {
            return Reporter { stop, task: None };
        }
        let tty =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut shape = Some(Shape::Spinner);
            let bar = tty.then(|| {
                let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                b.set_style(style(Shape::Spinner));
                b.set_prefix(label);
                b
            });
            let interval = if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => break,
                }
                let frame = source.frame(start.elapsed());
                let Some(b) = &bar else {
                    eprintln!("{}", frame.line(label));
                    continue;
                };
                let now = match frame.total {
                    None => Shape::Spinner,
                    Some(_) => Shape::Bar(frame.unit),
                };
                // A new shape: update unseen, then draw once in the new style.
                let reshape = shape != Some(now);
                if reshape {
                    b.set_draw_target(ProgressDrawTarget::hidden());
                }
                b.set_message(frame.message);
                b.set_length(frame.total.unwrap_or(0));
                b.set_position(frame.done);
                if reshape {
                    b.set_style(style(now));
                    b.reset_eta();
                    b.set_draw_target(ProgressDrawTarget::stderr());
                    shape = Some(now);
                }
                if now == Shape::Spinner {
                    b.tick();
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Reporter {
            stop,
            task: Some(task),
        }
    }

    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A backup: splits done of the plan's splits (a spinner while planning), with rows and bytes.
pub struct BackupSource(pub Arc<Progress>);

impl Source for BackupSource {
    fn frame(&self, elapsed: Duration) -> Frame {
        let p = &self.0;
        let total = load(&p.splits_total);
        let rows = load(&p.rows);
        let read = load(&p.bytes_scanned);
        let secs = elapsed.as_secs_f64();
        let mut message = format!(
            "{} ({} rows/s), {} read ({}/s), {}, {} written",
            count(rows, "row"),
            per_sec(rows, secs),
            human_bytes(read),
            human_bytes((read as f64 / secs.max(0.001)) as u64),
            count(load(&p.files), "file"),
            human_bytes(load(&p.bytes_written)),
        );
        let after_t = load(&p.cells_after_t);
        if after_t > 0 {
            message.push_str(&format!(", {} dated after T", count(after_t, "cell")));
        }
        let changes = load(&p.changes);
        if p.capturing.load(Ordering::Relaxed) {
            // After the scans (or, for an incremental, instead of them): the stream.
            return Frame {
                done: changes,
                total: None,
                unit: Unit::Items("changes"),
                message: format!(
                    "capturing changes from the stream up to the consistency point: {}, {} written",
                    count(changes, "change"),
                    human_bytes(load(&p.bytes_written)),
                ),
            };
        }
        if total == 0 {
            return Frame {
                done: 0,
                total: None,
                unit: Unit::Items("splits"),
                message: "planning: the table's meta, split points and a schema sample".into(),
            };
        }
        Frame {
            done: load(&p.splits_done),
            total: Some(total),
            unit: Unit::Items("splits"),
            message,
        }
    }
}

/// A verification: bytes read and hashed of the manifest's total, and files.
pub struct VerifySource(pub Arc<VerifyCounters>);

impl VerifySource {
    fn frame_of(v: &VerifyCounters, elapsed: Duration) -> Frame {
        if !v.started.load(Ordering::Acquire) {
            return Frame {
                done: 0,
                total: None,
                unit: Unit::Bytes,
                message: "checking the manifest against the plan and the split records".into(),
            };
        }
        let done = load(&v.bytes_done);
        Frame {
            done,
            total: Some(load(&v.bytes_total)),
            unit: Unit::Bytes,
            message: format!(
                "{} of {} files, {}/s",
                thousands(load(&v.files_done)),
                thousands(load(&v.files_total)),
                human_bytes((done as f64 / elapsed.as_secs_f64().max(0.001)) as u64)
            ),
        }
    }
}

impl Source for VerifySource {
    fn frame(&self, elapsed: Duration) -> Frame {
        VerifySource::frame_of(&self.0, elapsed)
    }
}

/// A count against a known total, e.g. rows compared of the snapshot's rows.
pub struct CountSource {
    pub done: Arc<AtomicU64>,
    pub total: u64,
    pub unit: &'static str,
}

impl Source for CountSource {
    fn frame(&self, elapsed: Duration) -> Frame {
        let done = load(&self.done);
        Frame {
            done,
            total: Some(self.total),
            unit: Unit::Items(self.unit),
            message: format!("{} {}/s", per_sec(done, elapsed.as_secs_f64()), self.unit),
        }
    }
}

/// A restore: its verification first (bytes), then files written, with rows.
pub struct RestoreSource {
    progress: Arc<RestoreProgress>,
    /// When writing was first seen, and the rows written then: rates count from there, not from
    /// the start of the verification.
    writing_since: Mutex<Option<(Duration, u64)>>,
}

impl RestoreSource {
    pub fn new(progress: Arc<RestoreProgress>) -> Self {
        RestoreSource {
            progress,
            writing_since: Mutex::new(None),
        }
    }
}

impl Source for RestoreSource {
    fn frame(&self, elapsed: Duration) -> Frame {
        let p = &self.progress;
        let files_total = load(&p.files_total);
        if files_total == 0 {
            let v = &p.verify;
            let verifying =
                v.started.load(Ordering::Acquire) && load(&v.files_done) < load(&v.files_total);
            if verifying {
                let mut f = VerifySource::frame_of(v, elapsed);
                f.message = format!("verifying the snapshot: {}", f.message);
                return f;
            }
            return Frame {
                done: 0,
                total: None,
                unit: Unit::Items("files"),
                message: "preparing: the manifest, the snapshot's verification, the target table"
                    .into(),
            };
        }
        let changes = load(&p.changes_read);
        if changes > 0 {
            // After the data files: a chain's changes, replayed in order.
            return Frame {
                done: changes,
                total: None,
                unit: Unit::Items("changes"),
                message: format!(
                    "replaying changes: {} read ({}/s), {} rows of data files written before",
                    count(changes, "change"),
                    per_sec(changes, elapsed.as_secs_f64()),
                    thousands(load(&p.rows_written)),
                ),
            };
        }
        let written = load(&p.rows_written);
        let (since, base) = *self
            .writing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert((elapsed, written));
        let secs = elapsed.saturating_sub(since).as_secs_f64();
        // Until a second of writing has been seen, the rate over the whole run (a lower bound).
        let rate = if secs >= 1.0 {
            per_sec(written - base, secs)
        } else {
            per_sec(written, elapsed.as_secs_f64())
        };
        let mut message = format!(
            "{} written ({rate} rows/s), {} failed, {}",
            count(written, "row"),
            thousands(load(&p.rows_failed)),
            count(load(&p.throttle_events), "throttling event"),
        );
        let present = load(&p.rows_present);
        if present > 0 {
            message.push_str(&format!(", {} already present", thousands(present)));
        }
        Frame {
            done: load(&p.files_done),
            total: Some(files_total),
            unit: Unit::Items("files"),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_line_names_splits_once_and_spins_while_planning() {
        let p = Arc::new(Progress::default());
        let s = BackupSource(p.clone());
        let f = s.frame(Duration::from_secs(1));
        assert_eq!(f.total, None);
        assert!(
            f.line("backup").starts_with("backup: planning"),
            "{}",
            f.line("backup")
        );
        p.splits_total.store(17, Ordering::Relaxed);
        p.splits_done.store(4, Ordering::Relaxed);
        p.rows.store(79260, Ordering::Relaxed);
        p.files.store(1, Ordering::Relaxed);
        let line = s.frame(Duration::from_secs(2)).line("backup");
        assert!(
            line.starts_with("backup: 4 of 17 splits (23%), 79,260 rows (39,630 rows/s)"),
            "{line}"
        );
        assert!(line.contains(", 1 file,"), "{line}");
        assert_eq!(line.matches("splits").count(), 1, "{line}");
    }

    #[test]
    fn a_restore_shows_its_verification_then_its_files() {
        let p = Arc::new(RestoreProgress::default());
        let s = RestoreSource::new(p.clone());
        assert!(
            s.frame(Duration::ZERO)
                .line("restore")
                .starts_with("restore: preparing")
        );
        ots_manifest::VerifyProgress::started(&p.verify, 13, 2048);
        ots_manifest::VerifyProgress::bytes_read(&p.verify, 1024);
        let line = s.frame(Duration::from_secs(1)).line("restore");
        assert!(
            line.starts_with(
                "restore: 1.0 KiB of 2.0 KiB (50%), verifying the snapshot: 0 of 13 files"
            ),
            "{line}"
        );
        p.files_total.store(13, Ordering::Relaxed);
        p.files_done.store(1, Ordering::Relaxed);
        p.rows_written.store(5000, Ordering::Relaxed);
        let line = s.frame(Duration::from_secs(2)).line("restore");
        // Writing first seen: the rate over the whole run, not 5,000 rows in no time.
        assert!(
            line.starts_with("restore: 1 of 13 files (7%), 5,000 rows written (2,500 rows/s)"),
            "{line}"
        );
        p.rows_written.store(25000, Ordering::Relaxed);
        let line = s.frame(Duration::from_secs(4)).line("restore");
        assert!(
            line.contains("25,000 rows written (10,000 rows/s)"),
            "{line}"
        );
    }
}
