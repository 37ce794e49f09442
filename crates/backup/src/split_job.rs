//! One split attempt: pull its GetRange pages (one page fetched ahead), route rows into partition
//! sinks, close every file, count the cells dated after T, then write the attempt's record
//! (create-once). A split ends only on an explicit end from its fetcher; a fetcher that dies is
//! an error (`ScanError::FetcherDied`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ots_format::time::rfc3339;
use ots_format::{CellsAfterT, Plan, Split, SplitRecord, TimeScope, random_token};
use ots_manifest::Snapshot;
use ots_scan::{RateLimiter, ScanOptions, SplitScanner};
use ots_schema::SnapshotSchema;
use ots_wire::OtsClient;

use crate::sink::{SinkLimits, Sinks};
use crate::{BackupError, PageError, Progress};

pub(crate) struct SplitJob {
    pub client: OtsClient,
    pub table: String,
    pub snapshot: Snapshot,
    pub plan: Arc<Plan>,
    pub schema: Arc<SnapshotSchema>,
    pub split: Split,
    pub options: ScanOptions,
    pub limits: SinkLimits,
    pub progress: Arc<Progress>,
    pub probe_limiter: Option<Arc<RateLimiter>>,
}

impl SplitJob {
    pub(crate) async fn run(self) -> Result<SplitRecord, BackupError> {
        let attempt = random_token();
        let scanner = SplitScanner::new(
            self.client.clone(),
            self.table.clone(),
            self.split.clone(),
            self.options.clone(),
        )?;
        let counters = scanner.counters();
        // One page fetched ahead; the split ends only on the scanner's explicit end.
        let mut pages = ots_scan::spawn_prefetch(scanner, 1);
        let mut sinks = Sinks::new(
            self.snapshot.clone(),
            self.schema.clone(),
            self.plan.partitioning.clone(),
            self.split.id,
            attempt.clone(),
            self.limits.clone(),
            self.progress.clone(),
        );
        while let Some(page) = pages.next().await? {
            self.progress
                .bytes_scanned
                .fetch_add(page.encoded_len() as u64, Ordering::Relaxed);
            // Rows are routed synchronously; full batches are written after the page.
            let mut full = Vec::new();
            let (rows, cells) = page
                .for_each_row::<PageError>(|row| {
                    if let Some(key) = sinks.route(row).map_err(PageError::Convert)?
                        && !full.contains(&key)
                    {
                        full.push(key);
                    }
                    Ok(())
                })
                .map_err(BackupError::from)?;
            counters.rows.fetch_add(rows, Ordering::Relaxed);
            counters.cells.fetch_add(cells, Ordering::Relaxed);
            self.progress.rows.fetch_add(rows, Ordering::Relaxed);
            self.progress.cells.fetch_add(cells, Ordering::Relaxed);
            sinks.after_page(full).await?;
        }
        let (files, stats) = sinks.finish().await?;
        let cells_after_t = self.probe_after_t().await?;
        let record = SplitRecord {
            format_version: self.plan.format_version,
            snapshot_id: self.plan.snapshot_id.clone(),
            split: self.split.clone(),
            attempt,
            files,
            stats,
            cells_after_t,
            committed_at: rfc3339(SystemTime::now()),
        };
        self.snapshot.create_record(&record).await?;
        self.progress.splits_done.fetch_add(1, Ordering::Relaxed);
        Ok(record)
    }

    /// Cells of this split dated after T, which a snapshot of scope `up_to_t` leaves out.
    async fn probe_after_t(&self) -> Result<CellsAfterT, BackupError> {
        if self.plan.time_range.scope != TimeScope::UpToT {
            return Ok(CellsAfterT::default());
        }
        let found = ots_scan::probe_cells_after(
            &self.client,
            &self.table,
            &self.split,
            self.plan.time_range.t_ms,
            self.probe_limiter.clone(),
        )
        .await?;
        if found.cells > 0 {
            self.progress
                .cells_after_t
                .fetch_add(found.cells, Ordering::Relaxed);
        }
        Ok(CellsAfterT {
            rows: found.rows,
            cells: found.cells,
            max_ts_ms: found.max_ts_ms,
        })
    }
}
