//! `--metrics-addr HOST:PORT`: the counters of a running backup or restore in Prometheus' text
//! exposition format at `GET /metrics`, for a scraper beside a long run (a Kubernetes pod, a
//! cron host). A tiny HTTP/1.1 responder on tokio (one request per connection, then close): a
//! scrape needs nothing more, and it keeps a second HTTP stack out of the binary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::CliError;

/// Something that can describe itself as metrics (the whole exposition text).
pub trait MetricsSource: Send + Sync {
    fn render(&self) -> String;
}

/// A backup's counters.
pub struct BackupMetrics {
    pub progress: Arc<ots_backup::Progress>,
    pub client: ots_wire::OtsClient,
    pub table: String,
}

impl MetricsSource for BackupMetrics {
    fn render(&self) -> String {
        let p = &self.progress;
        let mut e = Exposition::new(&[("table", &self.table)]);
        e.gauge(
            "otsarchive_backup_splits",
            "Splits in the snapshot's plan.",
            load(&p.splits_total),
        );
        e.gauge(
            "otsarchive_backup_splits_done",
            "Splits with a record (scanned by this run or an earlier one).",
            load(&p.splits_done),
        );
        e.counter(
            "otsarchive_backup_rows_total",
            "Rows read from the table by this run.",
            load(&p.rows),
        );
        e.counter(
            "otsarchive_backup_cells_total",
            "Cells read from the table by this run.",
            load(&p.cells),
        );
        e.counter(
            "otsarchive_backup_read_bytes_total",
            "GetRange page bytes read by this run.",
            load(&p.bytes_scanned),
        );
        e.counter(
            "otsarchive_backup_files_total",
            "Data and change files written by this run.",
            load(&p.files),
        );
        e.counter(
            "otsarchive_backup_written_bytes_total",
            "Bytes of files written by this run.",
            load(&p.bytes_written),
        );
        e.counter(
            "otsarchive_backup_changes_total",
            "Changes captured from the table's stream by this run.",
            load(&p.changes),
        );
        e.counter(
            "otsarchive_backup_cells_after_t_total",
            "Cells dated after the snapshot time T found (not backed up with --time-range up-to-t).",
            load(&p.cells_after_t),
        );
        client_metrics(&mut e, &self.client);
        e.finish()
    }
}

/// A restore's counters.
pub struct RestoreMetrics {
    pub progress: Arc<ots_restore::RestoreProgress>,
    pub client: ots_wire::OtsClient,
    pub table: String,
}

impl MetricsSource for RestoreMetrics {
    fn render(&self) -> String {
        let p = &self.progress;
        let mut e = Exposition::new(&[("table", &self.table)]);
        e.gauge(
            "otsarchive_restore_files",
            "Files of the snapshot to restore.",
            load(&p.files_total),
        );
        e.gauge(
            "otsarchive_restore_files_done",
            "Files restored (by this run or, with --resume, the interrupted one).",
            load(&p.files_done),
        );
        e.counter(
            "otsarchive_restore_rows_read_total",
            "Rows read from the snapshot's files.",
            load(&p.rows_read),
        );
        e.counter(
            "otsarchive_restore_rows_written_total",
            "Rows written into the table.",
            load(&p.rows_written),
        );
        e.counter(
            "otsarchive_restore_rows_present_total",
            "Rows the table already had (--mode only-if-absent).",
            load(&p.rows_present),
        );
        e.counter(
            "otsarchive_restore_rows_failed_total",
            "Rows that failed for good (written to the dead-letter file).",
            load(&p.rows_failed),
        );
        e.counter(
            "otsarchive_restore_rows_filtered_total",
            "Rows left out by --start-key, --end-key or --columns.",
            load(&p.rows_filtered),
        );
        e.counter(
            "otsarchive_restore_row_retries_total",
            "Rows sent again after a retryable row error.",
            load(&p.row_retries),
        );
        e.counter(
            "otsarchive_restore_throttle_events_total",
            "Throttling signals that lowered the write rate.",
            load(&p.throttle_events),
        );
        e.counter(
            "otsarchive_restore_changes_read_total",
            "Changes read from a chain's change files.",
            load(&p.changes_read),
        );
        e.counter(
            "otsarchive_restore_changes_applied_total",
            "Changes replayed into the table (known once the replay ends).",
            load(&p.changes_applied),
        );
        client_metrics(&mut e, &self.client);
        e.finish()
    }
}

/// Builds the text format: `# HELP`, `# TYPE`, then `name{labels} value` lines.
pub struct Exposition {
    text: String,
    labels: String,
}

impl Exposition {
    /// Every sample carries `labels` (e.g. `table="orders"`), escaped here.
    pub fn new(labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        Exposition {
            text: String::new(),
            labels,
        }
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.sample(name, "counter", help, value);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.sample(name, "gauge", help, value);
    }

    fn sample(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let _ = writeln!(self.text, "{name}{{{}}} {value}", self.labels);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The client's counters, common to every command that talks to Tablestore.
pub fn client_metrics(out: &mut Exposition, client: &ots_wire::OtsClient) {
    let s = client.stats();
    out.counter(
        "otsarchive_requests_total",
        "Tablestore requests sent, retries included.",
        s.requests,
    );
    out.counter(
        "otsarchive_retries_total",
        "Tablestore requests (and rows of BatchWriteRow) sent again after a retryable failure.",
        s.retries,
    );
    out.counter(
        "otsarchive_throttled_total",
        "Tablestore answers that were throttling signals.",
        s.throttled,
    );
    out.counter(
        "otsarchive_request_bytes_total",
        "Request bytes sent to Tablestore.",
        s.bytes_sent,
    );
    out.counter(
        "otsarchive_response_bytes_total",
        "Response bytes received from Tablestore.",
        s.bytes_received,
    );
}

pub fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Serves `source` at `addr` until the returned handle is dropped (the task is aborted). Binding
/// fails at once, before any work, with a usage error naming the address.
pub async fn serve(addr: &str, source: Arc<dyn MetricsSource>) -> Result<MetricsServer, CliError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::Usage(format!(
            "--metrics-addr {addr}: cannot listen there ({e}); give a free HOST:PORT such as 0.0.0.0:9464"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("--metrics-addr {addr}: {e}")))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let source = source.clone();
            tokio::spawn(async move {
                // A request line and headers fit in 8 KiB; a slow client gets 5 s.
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    while n < buf.len() {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let line = String::from_utf8_lossy(&buf[..n]);
                let first = line.lines().next().unwrap_or_default();
                let (status, body) =
                    if first.starts_with("GET /metrics ") || first.starts_with("GET /metrics?") {
                        ("200 OK", source.render())
                    } else {
                        ("404 Not Found", "metrics are at GET /metrics\n".to_string())
                    };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(MetricsServer { task, local })
}

/// `--metrics-addr`, when given: serves `source` there and says where on stderr (unless
/// `quiet`). The handle stops serving when dropped.
pub async fn serve_if_asked(
    addr: Option<&str>,
    source: impl FnOnce() -> Arc<dyn MetricsSource>,
    quiet: bool,
) -> Result<Option<MetricsServer>, CliError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let server = serve(addr, source()).await?;
    if !quiet {
        eprintln!("metrics: http://{}/metrics", server.local);
    }
    Ok(Some(server))
}

/// The metrics endpoint of a run; stops serving when dropped.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
    pub local: SocketAddr,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_help_type_and_escaped_labels() {
        let mut e = Exposition::new(&[("table", "a\"b\\c")]);
        e.counter("x_total", "Things.", 3);
        e.gauge("y", "Now.", 0);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{table=\"a\\\"b\\\\c\"} 3\n\
             # HELP y Now.\n# TYPE y gauge\ny{table=\"a\\\"b\\\\c\"} 0\n"
        );
    }
}
