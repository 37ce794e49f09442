//! Progress on stderr: a bar with rows/s, bytes/s and ETA on a terminal; a plain line every few
//! seconds otherwise (CI logs); nothing with --quiet or --json.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ots_backup::Progress;

use crate::common::human_bytes;

pub struct Reporter {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(progress: Arc<Progress>, label: &'static str, enabled: bool) -> Reporter {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        if !enabled {
            return Reporter { stop, task: None };
        }
        let tty =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let bar = tty.then(|| {
                let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix} [{bar:30}] {pos}/{len} splits  {msg}  ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
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
                let line = status(&progress, start.elapsed());
                match &bar {
                    Some(b) => {
                        b.set_length(progress.splits_total.load(Ordering::Relaxed));
                        b.set_position(progress.splits_done.load(Ordering::Relaxed));
                        b.set_message(line);
                    }
                    None => eprintln!("{label}: {line}"),
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

pub fn status(p: &Progress, elapsed: Duration) -> String {
    let rows = p.rows.load(Ordering::Relaxed);
    let scanned = p.bytes_scanned.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{}/{} splits, {rows} rows ({:.0} rows/s), {} read ({}/s), {} files, {} written",
        p.splits_done.load(Ordering::Relaxed),
        p.splits_total.load(Ordering::Relaxed),
        rows as f64 / secs,
        human_bytes(scanned),
        human_bytes((scanned as f64 / secs) as u64),
        p.files.load(Ordering::Relaxed),
        human_bytes(p.bytes_written.load(Ordering::Relaxed)),
    )
}
