//! Paginated GetRange over one split, pulled page by page: a slow consumer simply pulls later, so
//! memory is bounded by (splits in flight) × (page size) whatever the table size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that tests can run the limiter on paused (virtual) time.
use tokio::time::Instant;

use bytes::Bytes;
use ots_wire::OtsClient;
use ots_wire::pb;
use ots_wire::plainbuffer::{DecodeError, RowDecoder, encode_primary_key};
use ots_wire::types::RowRef;
use tokio::sync::Mutex;

use crate::split::{ScanError, Split};

/// What to read.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Cell timestamps in `[start, end)` ms. A backup fixes `end = T + 1` at its start.
    pub time_range: (i64, i64),
    /// `None` reads every version in the time range; `Some(1)` only the latest.
    pub max_versions: Option<i32>,
    /// Column projection (empty = all columns). Rows with none of these columns are not returned.
    pub columns: Vec<String>,
    /// Rows per GetRange (the service caps pages at 5000 rows / ~4 MB anyway).
    pub page_limit: Option<i32>,
    /// Read capacity units per second across all scanners sharing the limiter.
    pub read_limiter: Option<Arc<RateLimiter>>,
}

impl ScanOptions {
    /// All versions of every column written up to and including `t_ms`.
    pub fn up_to(t_ms: i64) -> Self {
        ScanOptions {
            time_range: (0, t_ms.saturating_add(1)),
            max_versions: None,
            columns: Vec::new(),
            page_limit: None,
            read_limiter: None,
        }
    }
}

/// Progress counters for one split (cheap to share and read from a progress reporter).
#[derive(Debug, Default)]
pub struct SplitCounters {
    pub pages: AtomicU64,
    pub bytes: AtomicU64,
    pub rows: AtomicU64,
    pub cells: AtomicU64,
    pub read_cu: AtomicU64,
}

/// One GetRange response's rows, still encoded; decode with [`Page::rows`].
#[derive(Clone, Debug)]
pub struct Page {
    pub split_id: u32,
    /// 0-based page number within the split.
    pub index: u64,
    pub data: Bytes,
}

impl Page {
    /// Iterates the page's rows without copying, reusing one row buffer.
    pub fn for_each_row<E>(
        &self,
        mut f: impl FnMut(&RowRef<'_>) -> Result<(), E>,
    ) -> Result<(u64, u64), E>
    where
        E: From<DecodeError>,
    {
        let mut decoder = RowDecoder::new(&self.data)?;
        let mut row = RowRef::default();
        let (mut rows, mut cells) = (0u64, 0u64);
        while decoder.next_into(&mut row)? {
            rows += 1;
            cells += row.cells.len() as u64;
            f(&row)?;
        }
        Ok((rows, cells))
    }
}

/// Pulls the pages of one split in order.
pub struct SplitScanner {
    client: OtsClient,
    table: String,
    split: Split,
    options: ScanOptions,
    next_start: Option<Bytes>,
    end: Bytes,
    pages: u64,
    done: bool,
    counters: Arc<SplitCounters>,
}

impl SplitScanner {
    pub fn new(
        client: OtsClient,
        table: impl Into<String>,
        split: Split,
        options: ScanOptions,
    ) -> Result<Self, ScanError> {
        let start = Bytes::from(encode_primary_key(&split.start_columns()?));
        let end = Bytes::from(encode_primary_key(&split.end_columns()?));
        Ok(SplitScanner {
            client,
            table: table.into(),
            split,
            options,
            next_start: Some(start),
            end,
            pages: 0,
            done: false,
            counters: Arc::new(SplitCounters::default()),
        })
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    pub fn counters(&self) -> Arc<SplitCounters> {
        self.counters.clone()
    }

    /// The next non-empty page, or `None` when the split is exhausted. Empty pages that carry a
    /// next key (a filter or projection skipped everything scanned) are followed, not returned.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ScanError> {
        while !self.done {
            let Some(start) = self.next_start.take() else {
                self.done = true;
                break;
            };
            if let Some(limiter) = &self.options.read_limiter {
                limiter.wait().await;
            }
            let req = pb::GetRangeRequest {
                table_name: self.table.clone(),
                direction: pb::Direction::Forward as i32,
                columns_to_get: self.options.columns.clone(),
                time_range: Some(pb::TimeRange {
                    start_time: Some(self.options.time_range.0),
                    end_time: Some(self.options.time_range.1),
                    specific_time: None,
                }),
                max_versions: self.options.max_versions,
                limit: self.options.page_limit,
                inclusive_start_primary_key: start,
                exclusive_end_primary_key: self.end.clone(),
                ..Default::default()
            };
            let resp = self.client.get_range(&req).await?;
            // The service pages inside a row too wide for one response with `next_token`; reading
            // on would silently drop the rest of that row, so stop with a clear error instead.
            if resp.next_token.as_ref().is_some_and(|t| !t.is_empty()) {
                return Err(ScanError::Page {
                    split: self.split.id,
                    detail: "the service split a row too wide for one response (next_token); \
                             rows wider than one GetRange response are not supported yet"
                        .to_string(),
                });
            }
            let cu = resp.consumed.capacity_unit.read.unwrap_or(0).max(0) as u64;
            if let Some(limiter) = &self.options.read_limiter {
                limiter.spend(cu as f64).await;
            }
            self.counters.read_cu.fetch_add(cu, Ordering::Relaxed);
            self.next_start = resp.next_start_primary_key.filter(|k| !k.is_empty());
            if self.next_start.is_none() {
                self.done = true;
            }
            if resp.rows.is_empty() {
                continue;
            }
            let page = Page {
                split_id: self.split.id,
                index: self.pages,
                data: resp.rows,
            };
            self.pages += 1;
            self.counters.pages.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(page.data.len() as u64, Ordering::Relaxed);
            return Ok(Some(page));
        }
        Ok(None)
    }

    /// Records rows and cells the consumer decoded from a page (for progress).
    pub fn record_rows(&self, rows: u64, cells: u64) {
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters.cells.fetch_add(cells, Ordering::Relaxed);
    }
}

/// A token bucket in capacity units per second. Reads cost what the service reports they consumed,
/// so the bucket is charged after each response and a request waits while the balance is negative.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            per_second: per_second.max(0.001),
            // Start with one second of budget so the first requests do not wait.
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    fn refill(&self, st: &mut (f64, Instant)) {
        let now = Instant::now();
        st.0 =
            (st.0 + now.duration_since(st.1).as_secs_f64() * self.per_second).min(self.per_second);
        st.1 = now;
    }

    /// Waits until the balance is non-negative.
    pub async fn wait(&self) {
        loop {
            let deficit = {
                let mut st = self.state.lock().await;
                self.refill(&mut st);
                if st.0 >= 0.0 {
                    return;
                }
                -st.0
            };
            tokio::time::sleep(Duration::from_secs_f64(deficit / self.per_second)).await;
        }
    }

    pub async fn spend(&self, units: f64) {
        let mut st = self.state.lock().await;
        self.refill(&mut st);
        st.0 -= units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On paused time: spending past the budget makes the next request wait for the refill.
    #[tokio::test(start_paused = true)]
    async fn the_read_limiter_holds_requests_to_the_rate() {
        let limiter = RateLimiter::new(100.0);
        let start = Instant::now();
        // One second of budget is there from the start.
        limiter.wait().await;
        limiter.spend(100.0).await;
        limiter.wait().await;
        assert!(start.elapsed() < Duration::from_millis(10));
        // 300 CU more puts the balance at -300: the next request waits ~3 s at 100 CU/s.
        limiter.spend(300.0).await;
        limiter.wait().await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(2990) && waited < Duration::from_millis(3200),
            "{waited:?}"
        );
        // 10 pages of 50 CU over a 100 CU/s budget take ~5 s in all (minus the first second's budget).
        let t = Instant::now();
        for _ in 0..10 {
            limiter.wait().await;
            limiter.spend(50.0).await;
        }
        limiter.wait().await;
        let spent = t.elapsed();
        assert!(spent >= Duration::from_millis(3900), "{spent:?}");
    }
}
