//! Paginated GetRange over one split, pulled page by page: a slow consumer simply pulls later, so
//! memory is bounded by (splits in flight) × (page size) whatever the table size.
//!
//! Every response is checked: what it says about the scan (a next start key that advances and stays
//! before the split end, the `next_token` rules) before its page is handed out, and its rows (every
//! checksum, strictly increasing PK order inside `[request start, next start key or split end)`) as
//! the page is read, in the one pass that decodes them (see [`crate::page`]). So a misbehaving
//! service can neither loop the scan nor end a split early unnoticed, and no row reaches a consumer
//! unchecked.
//!
//! Pages hold whole rows only. The service answers whole rows by default, however wide (a single row
//! larger than the ~4 MB page budget comes back whole, alone on its page). If a response carries a
//! `next_token` instead, its last row is only a part: the scanner asks again from that row's key with
//! the token, appends the continuation's cells to the part it holds (over as many responses as it
//! takes) and hands the row out once it is complete. That one row is held whole in memory, whatever
//! its size: the one exception to the per-page memory bound, since one Parquet row needs all its
//! cells.

use std::cmp::Ordering as KeyOrder;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that tests can run the limiter and the empty-page backoff on paused time.
use tokio::time::Instant;

use bytes::Bytes;
use ots_wire::plainbuffer::{DecodeError, PlainBufferWriter, RowDecoder, encode_primary_key};
use ots_wire::types::{CellRef, PkCellRef, RowRef};
use ots_wire::{OtsClient, OtsError, pb};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::page::{Page, RowBounds, UpperBound, check_row_key, cmp_keys, decode_key, show_key};
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

/// Consecutive empty pages (each with a next key) followed at full speed before backing off.
const EMPTY_PAGES_BEFORE_BACKOFF: u32 = 3;
/// The first pause once empty pages keep coming; it doubles with each further empty page.
const EMPTY_PAGE_BACKOFF_START: Duration = Duration::from_millis(50);
const EMPTY_PAGE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The pause before the next request after `empty_run` consecutive empty pages: none for the first
/// [`EMPTY_PAGES_BEFORE_BACKOFF`] - 1, then 50 ms, 100 ms, 200 ms, … up to 2 s.
fn empty_page_backoff(empty_run: u32) -> Option<Duration> {
    let doublings = empty_run.checked_sub(EMPTY_PAGES_BEFORE_BACKOFF)?;
    let factor = 1u32 << doublings.min(16);
    Some(
        EMPTY_PAGE_BACKOFF_START
            .saturating_mul(factor)
            .min(EMPTY_PAGE_BACKOFF_MAX),
    )
}

/// Where GetRange requests go: the service, or (in unit tests) a scripted function.
enum RangeSource {
    Service(OtsClient),
    #[cfg(test)]
    Scripted(ScriptFn),
}

#[cfg(test)]
type ScriptFn =
    Box<dyn FnMut(&pb::GetRangeRequest) -> Result<pb::GetRangeResponse, OtsError> + Send>;

impl RangeSource {
    async fn get_range(
        &mut self,
        req: &pb::GetRangeRequest,
    ) -> Result<pb::GetRangeResponse, OtsError> {
        match self {
            RangeSource::Service(client) => client.get_range(req).await,
            #[cfg(test)]
            RangeSource::Scripted(script) => script(req),
        }
    }
}

/// Pulls the pages of one split in order.
///
/// An error of [`next_page`](Self::next_page) leaves the scanner where it was: calling it again
/// repeats the request that failed, it never skips ahead or reports the end. (A page whose rows
/// break a rule errors when it is read, after the scanner moved on: the caller fails, and reading
/// the split again means a new scanner from its start, as `backup --resume` does.)
pub struct SplitScanner {
    source: RangeSource,
    table: String,
    split: Split,
    options: ScanOptions,
    /// The start of the next request: the split start, then each validated next start key.
    next_start: Bytes,
    end: Bytes,
    pages: u64,
    /// Set only when a validated response carried no next start key.
    done: bool,
    /// Consecutive empty pages with a next key since the last non-empty one.
    empty_run: u32,
    /// Pause on runs of empty pages (off only where they are the expected case, see the probe).
    backoff_on_empty_pages: bool,
    /// The `next_token` to send with `next_start`: the service split the row at that key.
    token: Option<Bytes>,
    /// The row the service is sending in parts (set exactly when `token` is).
    partial: Option<PartialRow>,
    counters: Arc<SplitCounters>,
}

/// A row received in parts so far, re-encoded: PlainBuffer header, primary key and every cell
/// received, the row not yet closed.
struct PartialRow {
    writer: PlainBufferWriter,
    /// The last cell appended: a continuation must go on after it.
    last_cell: Option<(String, Option<i64>)>,
    parts: u32,
}

impl PartialRow {
    fn start(row: &RowRef<'_>) -> Self {
        let mut writer = PlainBufferWriter::with_capacity(1024);
        for c in &row.primary_key {
            writer.pk(c.name, c.value);
        }
        let mut p = PartialRow {
            writer,
            last_cell: None,
            parts: 0,
        };
        p.append(&row.cells);
        p
    }

    /// Whether `cells` (a continuation) go on after the cells held: column names ascending,
    /// timestamps descending within a column; no cell twice.
    fn check_continues(&self, cells: &[CellRef<'_>]) -> Result<(), String> {
        let (Some((name, ts)), Some(first)) = (&self.last_cell, cells.first()) else {
            return Ok(());
        };
        let after = match first.name.cmp(name.as_str()) {
            KeyOrder::Greater => true,
            KeyOrder::Less => false,
            KeyOrder::Equal => matches!((first.timestamp, ts), (Some(a), Some(b)) if a < *b),
        };
        if after {
            Ok(())
        } else {
            Err(format!(
                "the continuation of a row split with next_token repeats or goes back: its first cell {}@{:?} is not after the last cell received {name}@{ts:?}",
                first.name, first.timestamp
            ))
        }
    }

    /// Appends cells exactly as received: value, type, timestamp.
    fn append(&mut self, cells: &[CellRef<'_>]) {
        for c in cells {
            self.writer.cell(c.name, c.value, c.op, c.timestamp);
        }
        if let Some(c) = cells.last() {
            self.last_cell = Some((c.name.to_string(), c.timestamp));
        }
        self.parts += 1;
    }

    /// The complete row as a one-row PlainBuffer.
    fn finish(mut self) -> Vec<u8> {
        self.writer.end_row();
        self.writer.into_bytes()
    }
}

impl SplitScanner {
    pub fn new(
        client: OtsClient,
        table: impl Into<String>,
        split: Split,
        options: ScanOptions,
    ) -> Result<Self, ScanError> {
        Self::with_source(RangeSource::Service(client), table, split, options)
    }

    fn with_source(
        source: RangeSource,
        table: impl Into<String>,
        split: Split,
        options: ScanOptions,
    ) -> Result<Self, ScanError> {
        let start = Bytes::from(encode_primary_key(&split.start_columns()?));
        let end = Bytes::from(encode_primary_key(&split.end_columns()?));
        Ok(SplitScanner {
            source,
            table: table.into(),
            split,
            options,
            next_start: start,
            end,
            pages: 0,
            done: false,
            empty_run: 0,
            backoff_on_empty_pages: true,
            token: None,
            partial: None,
            counters: Arc::new(SplitCounters::default()),
        })
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    pub fn counters(&self) -> Arc<SplitCounters> {
        self.counters.clone()
    }

    /// The next non-empty page of the split.
    ///
    /// `Ok(None)` means exactly one thing: the service answered a request of this split with no
    /// `next_start_primary_key`, i.e. said the range is exhausted. Nothing else ends a split: an
    /// empty page that carries a next key (a projection or filter skipped everything scanned) is
    /// followed, not returned, with a growing pause once several come in a row; every response's
    /// next start key and tokens are checked (see [`ScanError::Protocol`]) before its page is
    /// returned, and its rows as the page is read; and after an error a further call repeats the
    /// failed request instead of reporting the end.
    ///
    /// A page holds whole rows only: a row the service sends in parts (`next_token`) is completed
    /// first (see the module docs), and is then the first row of the page that completes it.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ScanError> {
        while !self.done {
            if let Some(pause) = empty_page_backoff(self.empty_run)
                && self.backoff_on_empty_pages
            {
                tracing::debug!(
                    split = self.split.id,
                    empty_pages = self.empty_run,
                    pause_ms = pause.as_millis() as u64,
                    "consecutive empty GetRange pages; backing off before the next request"
                );
                tokio::time::sleep(pause).await;
            }
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
                inclusive_start_primary_key: self.next_start.clone(),
                exclusive_end_primary_key: self.end.clone(),
                token: self.token.clone(),
                ..Default::default()
            };
            let resp = self.source.get_range(&req).await?;
            let cu = resp.consumed.capacity_unit.read.unwrap_or(0).max(0) as u64;
            if let Some(limiter) = &self.options.read_limiter {
                limiter.spend(cu as f64).await;
            }
            self.counters.read_cu.fetch_add(cu, Ordering::Relaxed);
            let next = resp.next_start_primary_key.filter(|k| !k.is_empty());
            let next_token = resp.next_token.filter(|t| !t.is_empty());
            let split = self.split.id;
            let protocol = |detail| ScanError::Protocol { split, detail };
            let tokens = Tokens {
                sent: self.token.as_deref(),
                received: next_token.as_deref(),
            };
            // Rows must lie in [this request's start, the next start key or the split's end).
            let bounds = RowBounds {
                start: self.next_start.clone(),
                upper: next.clone().unwrap_or_else(|| self.end.clone()),
                upper_is: if next.is_some() {
                    UpperBound::NextStartKey
                } else {
                    UpperBound::SplitEnd
                },
            };
            let whole_rows_only =
                self.partial.is_none() && self.token.is_none() && next_token.is_none();
            // `any_rows`: the response held at least one row or part of one (progress).
            let (page, any_rows) = if whole_rows_only {
                // The common case: the page is the response's rows as they came, checked as
                // they are read (see `page`).
                check_next_key(&self.next_start, &self.end, next.as_deref()).map_err(protocol)?;
                let any_rows = has_rows(&resp.rows).map_err(protocol)?;
                (any_rows.then(|| resp.rows.clone()), any_rows)
            } else {
                let checked = check_response(
                    &self.next_start,
                    &self.end,
                    &resp.rows,
                    next.as_deref(),
                    tokens,
                )
                .map_err(protocol)?;
                let page = self
                    .assemble(&resp.rows, &checked, next_token.is_some())
                    .map_err(protocol)?;
                (page, checked.rows > 0)
            };
            // Everything is checked before the scanner changes: after an error it is where it was.
            match next {
                Some(next) => self.next_start = next,
                None => self.done = true,
            }
            self.token = next_token;
            let Some(data) = page else {
                if any_rows {
                    // Only a further part of a row still incomplete: progress all the same.
                    self.empty_run = 0;
                } else {
                    self.empty_run = self.empty_run.saturating_add(1);
                }
                continue;
            };
            self.empty_run = 0;
            let page = Page::new(self.split.id, self.pages, data, bounds);
            self.pages += 1;
            self.counters.pages.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(page.encoded_len() as u64, Ordering::Relaxed);
            return Ok(Some(page));
        }
        Ok(None)
    }

    /// The page of whole rows a response makes when a row comes in parts: the row completed by this
    /// response's first row (if one was held), then the whole rows after it; its last row is held
    /// back as the start of a new partial row when the response carries a token (`splits`).
    /// `None` when no row is complete yet. Checks the continuation before changing anything.
    fn assemble(
        &mut self,
        data: &Bytes,
        checked: &Checked,
        splits: bool,
    ) -> Result<Option<Bytes>, String> {
        let n = checked.rows;
        let continuing = self.partial.is_some();
        // Rows [whole_from, whole_to) of the response are whole rows.
        let whole_from = u64::from(continuing && n > 0);
        let holds_back = splits && n > whole_from;
        let whole_to = n - u64::from(holds_back);
        let (first, last) = first_and_last_rows(data, n)?;
        if continuing && let (Some(partial), Some(first)) = (&self.partial, &first) {
            partial.check_continues(&first.cells)?;
        }
        // From here on nothing can fail.
        let mut completed = None;
        if let Some(mut partial) = self.partial.take() {
            if let Some(first) = &first {
                partial.append(&first.cells);
            }
            if splits && n <= 1 {
                // Still incomplete: the response was only (at most) this row's next part.
                self.partial = Some(partial);
            } else {
                tracing::debug!(
                    split = self.split.id,
                    parts = partial.parts,
                    "a row the service sent in parts (next_token) is complete"
                );
                completed = Some(partial.finish());
            }
        }
        if holds_back && let Some(last) = &last {
            self.partial = Some(PartialRow::start(last));
        }
        let whole_bytes = if whole_from < whole_to {
            let from = if whole_from == 0 {
                checked.rows_start
            } else {
                checked.first_end
            };
            let to = if holds_back {
                checked.last_start
            } else {
                data.len()
            };
            Some(from..to)
        } else {
            None
        };
        Ok(match (completed, whole_bytes) {
            (Some(mut row), Some(range)) => {
                row.extend_from_slice(&data[range]);
                Some(Bytes::from(row))
            }
            (Some(row), None) => Some(Bytes::from(row)),
            // The response's own header starts the slice.
            (None, Some(range)) => Some(data.slice(..range.end)),
            (None, None) => None,
        })
    }

    /// Follows empty pages without pausing: for reads where nearly every page is expected to be
    /// empty (a probe for rare cells), so a long empty stretch costs requests, not sleeps. Every
    /// response is still checked, so the scan still cannot loop.
    pub(crate) fn without_empty_page_backoff(mut self) -> Self {
        self.backoff_on_empty_pages = false;
        self
    }

    /// Records rows and cells the consumer decoded from a page (for progress).
    pub fn record_rows(&self, rows: u64, cells: u64) {
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters.cells.fetch_add(cells, Ordering::Relaxed);
    }
}

/// The `token` a GetRange request sent and the `next_token` its response carried (non-empty).
#[derive(Clone, Copy, Debug, Default)]
struct Tokens<'a> {
    sent: Option<&'a [u8]>,
    received: Option<&'a [u8]>,
}

/// What [`check_response`] found: the row count and where rows start and end in the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Checked {
    rows: u64,
    /// Offset of the first row (after the header).
    rows_start: usize,
    /// Offset just after the first row.
    first_end: usize,
    /// Offset of the last row.
    last_start: usize,
}

/// Checks one GetRange response against its request `[start, end)` and returns its row count and
/// row boundaries.
///
/// - every row has a full primary key, rows are strictly increasing, the first is ≥ `start` and the
///   last (hence every one) is < `end`;
/// - `next`, when present, is strictly after the last row, strictly after `start` and strictly
///   before `end`.
///
/// Across pages this makes each page's first row strictly after the previous page's last row:
/// last row < next key = the following request's start ≤ its first row (and the starts of
/// consecutive requests strictly increase across empty pages).
///
/// With tokens (a row sent in parts) two rules change, and nothing else:
/// - a response carrying a `next_token` must carry a next key equal to its last row's key (the row
///   it split), or, with no rows, equal to `start`, in answer to a request with a different token
///   (so a repeated answer cannot loop the scan);
/// - a request that sent a token continues the row at `start`: the response's first row, if any,
///   must be that row (a continuation with another key would lose the rest of the row or
///   duplicate it).
///
/// Rows are decoded with one reused pair of borrowed rows (no copy of the page, no allocation per
/// row); only the primary keys are compared.
fn check_response(
    start: &[u8],
    end: &[u8],
    rows: &[u8],
    next: Option<&[u8]>,
    tokens: Tokens<'_>,
) -> Result<Checked, String> {
    let start = decode_key(start, "the request's start key")?;
    let end = decode_key(end, "the split's end key")?;
    let mut decoder =
        RowDecoder::new(rows).map_err(|e| format!("the page's rows do not decode: {e}"))?;
    let mut checked = Checked {
        rows_start: decoder.position(),
        ..Checked::default()
    };
    let mut last = RowRef::default();
    let mut row = RowRef::default();
    let mut n = 0u64;
    let mut row_start = decoder.position();
    while decoder
        .next_into(&mut row)
        .map_err(|e| format!("row {n} of the page does not decode: {e}"))?
    {
        let prev = (n > 0).then_some(&last.primary_key[..]);
        check_row_key(n, &row.primary_key, &start, prev)?;
        if n == 0 {
            if tokens.sent.is_some() && cmp_keys(&row.primary_key, &start) != KeyOrder::Equal {
                return Err(format!(
                    "the continuation of a row split with next_token starts with another row: {} \
                     is not the row {} the token continues",
                    show_key(&row.primary_key),
                    show_key(&start)
                ));
            }
            checked.first_end = decoder.position();
        }
        checked.last_start = row_start;
        row_start = decoder.position();
        std::mem::swap(&mut last, &mut row);
        n += 1;
    }
    checked.rows = n;
    if n > 0 && cmp_keys(&last.primary_key, &end) != KeyOrder::Less {
        return Err(format!(
            "the page's last row {} is not before the split's end {}",
            show_key(&last.primary_key),
            show_key(&end)
        ));
    }
    if let Some(token) = tokens.received {
        let Some(next) = next else {
            return Err("the service returned a next_token without a next start key".to_string());
        };
        let next = decode_key(next, "the next start key")?;
        let (split_row, what) = if n > 0 {
            (&last.primary_key, "the page's last row")
        } else {
            (&start, "the request's start")
        };
        if cmp_keys(&next, split_row) != KeyOrder::Equal {
            return Err(format!(
                "the service returned a next_token with a next start key {} that is not {what} {}, \
                 the row it split",
                show_key(&next),
                show_key(split_row)
            ));
        }
        if n == 0 && tokens.sent == Some(token) {
            return Err(format!(
                "the service returned no rows and the token it was sent, at {}: the scan would \
                 not advance",
                show_key(&start)
            ));
        }
        return Ok(checked);
    }
    if let Some(next) = next {
        let next = decode_key(next, "the next start key")?;
        if n > 0 && cmp_keys(&next, &last.primary_key) != KeyOrder::Greater {
            return Err(format!(
                "the service returned a next start key that does not advance: {} is not after \
                 the page's last row {}",
                show_key(&next),
                show_key(&last.primary_key)
            ));
        }
        next_key_in_range(&next, &start, &end)?;
    }
    Ok(checked)
}

/// The checks of a response without `next_token`s that need none of its rows: the start, the end
/// and the next start key (if any) decode, and the next start key is strictly after the request's
/// start and strictly before the split's end. The rest ([`check_response`]'s row rules, with the
/// next start key as the rows' upper bound when there is one) runs as the page is read.
fn check_next_key(start: &[u8], end: &[u8], next: Option<&[u8]>) -> Result<(), String> {
    let start = decode_key(start, "the request's start key")?;
    let end = decode_key(end, "the split's end key")?;
    if let Some(next) = next {
        next_key_in_range(&decode_key(next, "the next start key")?, &start, &end)?;
    }
    Ok(())
}

fn next_key_in_range(
    next: &[PkCellRef<'_>],
    start: &[PkCellRef<'_>],
    end: &[PkCellRef<'_>],
) -> Result<(), String> {
    if cmp_keys(next, start) != KeyOrder::Greater {
        return Err(format!(
            "the service returned a next start key that does not advance: {} is not after the \
             request's start {}",
            show_key(next),
            show_key(start)
        ));
    }
    if cmp_keys(next, end) != KeyOrder::Less {
        return Err(format!(
            "the service returned a next start key {} that is not before the split's end {}",
            show_key(next),
            show_key(end)
        ));
    }
    Ok(())
}

/// Whether a PlainBuffer holds any row after its header (which is checked).
fn has_rows(rows: &[u8]) -> Result<bool, String> {
    let decoder =
        RowDecoder::new(rows).map_err(|e| format!("the page's rows do not decode: {e}"))?;
    Ok(!decoder.is_done())
}

/// The first and the last row of a checked page (the same row when it holds one).
type Ends<'a> = (Option<RowRef<'a>>, Option<RowRef<'a>>);

fn first_and_last_rows(data: &[u8], n: u64) -> Result<Ends<'_>, String> {
    let decode = |e: DecodeError| format!("the page's rows do not decode: {e}");
    let mut decoder = RowDecoder::new(data).map_err(decode)?;
    let (mut first, mut last) = (None, None);
    let mut row = RowRef::default();
    let mut i = 0u64;
    while decoder.next_into(&mut row).map_err(decode)? {
        if i == 0 {
            first = Some(row.clone());
        }
        if i + 1 == n {
            last = Some(row.clone());
        }
        i += 1;
    }
    Ok((first, last))
}

/// Something that yields a split's pages in order; the prefetch task drives one.
trait PageSource: Send + 'static {
    fn next_page(&mut self) -> impl Future<Output = Result<Option<Page>, ScanError>> + Send;
}

impl PageSource for SplitScanner {
    fn next_page(&mut self) -> impl Future<Output = Result<Option<Page>, ScanError>> + Send {
        SplitScanner::next_page(self)
    }
}

/// Pages of one split fetched ahead on a tokio task; made by [`spawn_prefetch`].
///
/// Dropping it aborts the task.
pub struct Prefetch {
    split: u32,
    rx: mpsc::Receiver<Result<Option<Page>, ScanError>>,
    task: Option<JoinHandle<()>>,
    /// The scanner reported the end of the split.
    ended: bool,
    /// Why the task stopped without an end, once found out (repeated on later calls).
    died: Option<String>,
}

/// Runs `scanner` on a tokio task that fetches up to `depth` pages (at least 1) ahead of the
/// consumer, plus the one it is fetching; memory per split is bounded by (depth + 2) pages.
pub fn spawn_prefetch(scanner: SplitScanner, depth: usize) -> Prefetch {
    let split = scanner.split.id;
    spawn_pages(split, scanner, depth)
}

fn spawn_pages<S: PageSource>(split: u32, mut source: S, depth: usize) -> Prefetch {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let task = tokio::spawn(async move {
        loop {
            let r = source.next_page().await;
            let last = !matches!(r, Ok(Some(_)));
            if tx.send(r).await.is_err() || last {
                break;
            }
        }
    });
    Prefetch {
        split,
        rx,
        task: Some(task),
        ended: false,
        died: None,
    }
}

impl Prefetch {
    pub fn split_id(&self) -> u32 {
        self.split
    }

    /// The next page, fetched ahead.
    ///
    /// `Ok(None)` only after the scanner returned `Ok(None)` (the service said the split is
    /// exhausted), and then on every later call. An error of the scanner is passed on; if the task
    /// stopped without an end (it panicked or was cancelled, or already passed on an error) this
    /// returns [`ScanError::FetcherDied`], never `Ok(None)`.
    pub async fn next(&mut self) -> Result<Option<Page>, ScanError> {
        if self.ended {
            return Ok(None);
        }
        if self.died.is_none() {
            match self.rx.recv().await {
                Some(Ok(None)) => {
                    self.ended = true;
                    return Ok(None);
                }
                Some(r) => return r,
                None => {
                    let why = match self.task.take() {
                        Some(task) => match task.await {
                            Ok(()) => "it stopped after an error it already returned".to_string(),
                            Err(e) if e.is_panic() => {
                                format!("it panicked: {}", panic_message(e.into_panic()))
                            }
                            Err(_) => "it was cancelled".to_string(),
                        },
                        None => "it is gone".to_string(),
                    };
                    self.died = Some(why);
                }
            }
        }
        Err(ScanError::FetcherDied {
            split: self.split,
            detail: self.died.clone().unwrap_or_default(),
        })
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
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
    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    use ots_wire::plainbuffer::encode_rows;
    use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};

    use super::*;
    use crate::{KeyPart, KeyValue};
    use ots_wire::types::PkValueRef;

    fn key(id: i64) -> Bytes {
        Bytes::from(encode_primary_key(&[PkColumn::new(
            "id",
            PkValue::Integer(id),
        )]))
    }

    fn rows(ids: &[i64]) -> Bytes {
        let rows: Vec<Row> = ids
            .iter()
            .map(|&id| Row {
                primary_key: vec![PkColumn::new("id", PkValue::Integer(id))],
                cells: vec![Cell::new("v", Value::Integer(id), Some(1))],
            })
            .collect();
        Bytes::from(encode_rows(&rows))
    }

    fn response(ids: &[i64], next: Option<i64>) -> pb::GetRangeResponse {
        pb::GetRangeResponse {
            rows: if ids.is_empty() {
                Bytes::new()
            } else {
                rows(ids)
            },
            next_start_primary_key: next.map(key),
            ..Default::default()
        }
    }

    fn whole_table() -> Split {
        let part = |value| KeyPart {
            name: "id".into(),
            value,
        };
        Split {
            id: 7,
            start: vec![part(KeyValue::InfMin)],
            end: vec![part(KeyValue::InfMax)],
        }
    }

    /// When each request was made, its start key and its token.
    type RequestLog = Arc<StdMutex<Vec<(Instant, Bytes, Option<Bytes>)>>>;

    /// A scanner over `script`'s replies, one per request; records when each request was made, its
    /// start key and its token.
    fn scripted(script: Vec<Result<pb::GetRangeResponse, OtsError>>) -> (SplitScanner, RequestLog) {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let seen = log.clone();
        let mut script: VecDeque<_> = script.into();
        let source = RangeSource::Scripted(Box::new(move |req: &pb::GetRangeRequest| {
            seen.lock().unwrap().push((
                Instant::now(),
                req.inclusive_start_primary_key.clone(),
                req.token.clone(),
            ));
            script
                .pop_front()
                .expect("request past the end of the script")
        }));
        let options = ScanOptions::up_to(1000);
        let scanner = SplitScanner::with_source(source, "t", whole_table(), options).unwrap();
        (scanner, log)
    }

    fn ids(page: &Page) -> Vec<i64> {
        let mut out = Vec::new();
        page.for_each_row::<ScanError>(|r| {
            if let PkValueRef::Integer(i) = r.primary_key[0].value {
                out.push(i);
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_empty_page_backoff_doubles_from_the_third_empty_page_up_to_the_cap() {
        let ms = |n| empty_page_backoff(n).map(|d| d.as_millis());
        assert_eq!(ms(0), None);
        assert_eq!(ms(2), None);
        assert_eq!(ms(3), Some(50));
        assert_eq!(ms(4), Some(100));
        assert_eq!(ms(8), Some(1600));
        assert_eq!(ms(9), Some(2000));
        assert_eq!(ms(u32::MAX), Some(2000));
    }

    /// On paused time: the first empty pages are followed at once, then each further one waits
    /// twice as long; a non-empty page resets the run.
    #[tokio::test(start_paused = true)]
    async fn consecutive_empty_pages_are_followed_with_a_growing_pause() {
        let mut script: Vec<_> = (1..=7).map(|k| Ok(response(&[], Some(k)))).collect();
        script.push(Ok(response(&[10, 11], Some(12))));
        script.extend((13..=16).map(|k| Ok(response(&[], Some(k)))));
        script.push(Ok(response(&[20], None)));
        let (mut s, log) = scripted(script);
        let t0 = Instant::now();
        assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), vec![10, 11]);
        assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), vec![20]);
        assert!(s.next_page().await.unwrap().is_none());
        let gaps: Vec<u128> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(at, _, _)| at.duration_since(t0).as_millis())
            .collect();
        // Requests 1–3 at once; after the 3rd, 4th, … empty page: 50, 100, 200, 400 ms.
        assert_eq!(gaps[..8], [0, 0, 0, 50, 150, 350, 750, 1550]);
        // The page of rows reset the run: the next four empty pages pause 50 then 100 ms again.
        assert_eq!(gaps[8..], [1550, 1550, 1550, 1600, 1700]);
    }

    /// The probe's mode: empty pages are followed without pausing (still checked).
    #[tokio::test(start_paused = true)]
    async fn without_the_backoff_empty_pages_are_followed_at_once() {
        let mut script: Vec<_> = (1..=9).map(|k| Ok(response(&[], Some(k)))).collect();
        script.push(Ok(response(&[], Some(9))));
        let (s, log) = scripted(script);
        let mut s = s.without_empty_page_backoff();
        let t0 = Instant::now();
        let e = s.next_page().await.unwrap_err();
        assert!(matches!(e, ScanError::Protocol { .. }), "{e}");
        assert_eq!(log.lock().unwrap().len(), 10);
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn an_error_leaves_the_scanner_in_place_and_is_never_an_end() {
        let busy = || OtsError::Config("scripted failure".into());
        let (mut s, log) = scripted(vec![
            Ok(response(&[1, 2], Some(3))),
            Err(busy()),
            Ok(response(&[3], Some(2))),
            Ok(response(&[3, 4], None)),
        ]);
        assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), vec![1, 2]);
        assert!(matches!(s.next_page().await, Err(ScanError::Ots(_))));
        let e = s.next_page().await.unwrap_err();
        assert!(matches!(e, ScanError::Protocol { split: 7, .. }), "{e}");
        assert!(e.to_string().contains("does not advance"), "{e}");
        assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), vec![3, 4]);
        assert!(s.next_page().await.unwrap().is_none());
        assert!(s.next_page().await.unwrap().is_none());
        // Each retry asked again from the same key.
        let starts: Vec<Bytes> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, k, _)| k.clone())
            .collect();
        assert_eq!(starts[1..], [key(3), key(3), key(3)]);
    }

    /// Each rule of `check_response`, passing and failing.
    #[test]
    fn response_checks() {
        let inf = |v: PkValue| Bytes::from(encode_primary_key(&[PkColumn::new("id", v)]));
        let (min, max) = (inf(PkValue::InfMin), inf(PkValue::InfMax));
        let check = |start: &Bytes, end: &Bytes, ids: &[i64], next: Option<i64>| {
            let page = if ids.is_empty() {
                Bytes::new()
            } else {
                rows(ids)
            };
            check_response(
                start,
                end,
                &page,
                next.map(key).as_deref(),
                Tokens::default(),
            )
            .map(|c| c.rows)
        };
        // Valid: rows in order inside the range, a next key after them, or none at the end.
        assert_eq!(check(&min, &max, &[1, 2, 5], Some(6)), Ok(3));
        assert_eq!(check(&min, &max, &[1, 2, 5], None), Ok(3));
        assert_eq!(check(&key(1), &key(6), &[1, 5], None), Ok(2));
        assert_eq!(check(&key(1), &key(6), &[], Some(3)), Ok(0));
        assert_eq!(check(&min, &max, &[], None), Ok(0));
        // A bare header is an empty page too.
        assert_eq!(
            check_response(&min, &max, &[0x75, 0, 0, 0], None, Tokens::default()).map(|c| c.rows),
            Ok(0)
        );

        let fails = |r: Result<u64, String>, what: &str| {
            let e = r.unwrap_err();
            assert!(e.contains(what), "{e:?} does not say {what:?}");
        };
        fails(
            check(&key(3), &max, &[2], None),
            "before the request's start",
        );
        fails(check(&min, &max, &[1, 3, 3], None), "out of order");
        fails(check(&min, &max, &[1, 3, 2], None), "out of order");
        fails(
            check(&min, &key(3), &[1, 3], None),
            "not before the split's end",
        );
        fails(
            check(&min, &key(3), &[1, 4], None),
            "not before the split's end",
        );
        fails(check(&min, &max, &[1, 3], Some(3)), "does not advance");
        fails(check(&min, &max, &[1, 3], Some(2)), "does not advance");
        fails(check(&key(4), &max, &[], Some(4)), "does not advance");
        fails(check(&key(4), &max, &[], Some(1)), "does not advance");
        fails(
            check(&min, &key(9), &[], Some(9)),
            "not before the split's end",
        );
        fails(
            check(&min, &key(9), &[1], Some(10)),
            "not before the split's end",
        );
        let no = Tokens::default();
        let rows_of = |r: Result<Checked, String>| r.map(|c| c.rows);
        fails(
            rows_of(check_response(&min, &max, b"junk", None, no)),
            "do not decode",
        );
        fails(
            rows_of(check_response(&min, &max, &[], Some(&rows(&[1])[..]), no)),
            "not a primary key alone",
        );
        // Rows with fewer key columns than the table's.
        let two = Bytes::from(encode_primary_key(&[
            PkColumn::new("a", PkValue::InfMin),
            PkColumn::new("b", PkValue::InfMin),
        ]));
        fails(
            rows_of(check_response(&two, &max, &rows(&[1]), None, no)),
            "primary-key columns",
        );
    }

    /// A response without tokens is checked in two halves, the next key by the scanner and the
    /// rows as the page is read; together they accept exactly what `check_response` accepts.
    /// Every page of up to 3 rows over 5 keys, against every start, end and next key near them.
    #[test]
    fn checking_rows_as_they_are_read_accepts_exactly_what_the_whole_check_accepts() {
        let inf = |v: PkValue| Bytes::from(encode_primary_key(&[PkColumn::new("id", v)]));
        let starts: Vec<Bytes> = std::iter::once(inf(PkValue::InfMin))
            .chain((0..5).map(key))
            .collect();
        let ends: Vec<Bytes> = (1..5)
            .map(key)
            .chain(std::iter::once(inf(PkValue::InfMax)))
            .collect();
        let nexts: Vec<Option<Bytes>> = std::iter::once(None)
            .chain((0..5).map(|k| Some(key(k))))
            .collect();
        let mut pages: Vec<Vec<i64>> = vec![vec![]];
        for len in 1..=3 {
            let mut grown = Vec::new();
            for p in pages.iter().filter(|p| p.len() == len - 1) {
                for id in 0..5 {
                    grown.push([p.clone(), vec![id]].concat());
                }
            }
            pages.extend(grown);
        }
        let (mut accepted, mut refused) = (0, 0);
        for start in &starts {
            for end in &ends {
                for next in &nexts {
                    for ids in &pages {
                        let data = if ids.is_empty() {
                            Bytes::new()
                        } else {
                            rows(ids)
                        };
                        let whole =
                            check_response(start, end, &data, next.as_deref(), Tokens::default());
                        let bounds = RowBounds {
                            start: start.clone(),
                            upper: next.clone().unwrap_or_else(|| end.clone()),
                            upper_is: UpperBound::SplitEnd,
                        };
                        let halves = check_next_key(start, end, next.as_deref())
                            .map_err(|e| ScanError::Protocol {
                                split: 0,
                                detail: e,
                            })
                            .and_then(|()| {
                                Page::new(0, 0, data.clone(), bounds)
                                    .for_each_row::<ScanError>(|_| Ok(()))
                            });
                        assert_eq!(
                            whole.is_ok(),
                            halves.is_ok(),
                            "start {start:?} end {end:?} next {next:?} rows {ids:?}: {whole:?} \
                             against {halves:?}"
                        );
                        if let (Ok(c), Ok((n, _))) = (&whole, &halves) {
                            assert_eq!(c.rows, *n);
                            accepted += 1;
                        } else {
                            refused += 1;
                        }
                    }
                }
            }
        }
        assert!(accepted > 100 && refused > 1000, "{accepted} {refused}");
    }

    /// Cells `range` of a wide row: cell `i` is version `3 - i % 3` of column `c{i / 3}` (newest
    /// first within a column), its type and value cycling through every attribute type.
    fn wide_cells(range: std::ops::Range<usize>) -> Vec<Cell> {
        range
            .map(|i| {
                let value = match i % 5 {
                    0 => Value::Integer(i as i64 - 7),
                    1 => Value::Double(i as f64 / 3.0),
                    2 => Value::Boolean(i % 2 == 0),
                    3 => Value::String(format!("s{i}")),
                    _ => Value::Binary(vec![i as u8; i % 4]),
                };
                Cell::new(
                    format!("c{:03}", i / 3),
                    value,
                    Some(1_700_000_000_000 + 3 - (i % 3) as i64),
                )
            })
            .collect()
    }

    fn wide_row(id: i64, range: std::ops::Range<usize>) -> Row {
        Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(id))],
            cells: wide_cells(range),
        }
    }

    fn narrow_row(id: i64) -> Row {
        Row {
            primary_key: vec![PkColumn::new("id", PkValue::Integer(id))],
            cells: vec![Cell::new("v", Value::Integer(id), Some(1))],
        }
    }

    /// A response of these rows, with a next key and a token.
    fn parts(
        rows: &[Row],
        next: Option<i64>,
        token: Option<&'static [u8]>,
    ) -> pb::GetRangeResponse {
        pb::GetRangeResponse {
            rows: if rows.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(encode_rows(rows))
            },
            next_start_primary_key: next.map(key),
            next_token: token.map(Bytes::from_static),
            ..Default::default()
        }
    }

    fn page_rows(page: &Page) -> Vec<Row> {
        let mut out = Vec::new();
        page.for_each_row::<ScanError>(|r| {
            out.push(r.to_row());
            Ok(())
        })
        .unwrap();
        out
    }

    fn tokens_sent(log: &RequestLog) -> Vec<(Bytes, Option<Bytes>)> {
        log.lock()
            .unwrap()
            .iter()
            .map(|(_, k, t)| (k.clone(), t.clone()))
            .collect()
    }

    /// A row split over three responses comes out whole, every cell exactly as sent, on the page
    /// of the response that completes it; the rows around it are unaffected, and a row split again
    /// at the end of that response is held back for the next page.
    #[tokio::test]
    async fn a_row_split_over_three_responses_is_handed_out_whole() {
        let (mut s, log) = scripted(vec![
            Ok(parts(
                &[narrow_row(1), wide_row(2, 0..10)],
                Some(2),
                Some(b"t1"),
            )),
            Ok(parts(&[wide_row(2, 10..20)], Some(2), Some(b"t2"))),
            Ok(parts(
                &[wide_row(2, 20..25), narrow_row(3), wide_row(4, 0..4)],
                Some(4),
                Some(b"t3"),
            )),
            Ok(parts(&[wide_row(4, 4..9), narrow_row(5)], Some(6), None)),
            Ok(parts(&[narrow_row(6)], None, None)),
        ]);
        let p0 = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&p0), vec![narrow_row(1)]);
        let p1 = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&p1), vec![wide_row(2, 0..25), narrow_row(3)]);
        // Byte for byte what the service would have sent had it not split the row.
        assert_eq!(
            p1.data(),
            &Bytes::from(encode_rows(&[wide_row(2, 0..25), narrow_row(3)]))
        );
        let p2 = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&p2), vec![wide_row(4, 0..9), narrow_row(5)]);
        let p3 = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&p3), vec![narrow_row(6)]);
        assert!(s.next_page().await.unwrap().is_none());
        assert_eq!((p0.index, p1.index, p2.index, p3.index), (0, 1, 2, 3));

        let t = |b: &'static [u8]| Some(Bytes::from_static(b));
        let min = Bytes::from(encode_primary_key(&[PkColumn::new("id", PkValue::InfMin)]));
        assert_eq!(
            tokens_sent(&log),
            vec![
                (min, None),
                (key(2), t(b"t1")),
                (key(2), t(b"t2")),
                (key(4), t(b"t3")),
                (key(6), None),
            ]
        );
        assert_eq!(s.counters().pages.load(Ordering::Relaxed), 4);
    }

    /// A continuation that starts with another row, or repeats cells, is a protocol error; the
    /// scanner stays in place and a good answer to the repeated request completes the row.
    #[tokio::test]
    async fn a_continuation_of_another_row_is_a_protocol_error() {
        let (mut s, log) = scripted(vec![
            Ok(parts(
                &[narrow_row(1), wide_row(2, 0..10)],
                Some(2),
                Some(b"t1"),
            )),
            Ok(parts(&[wide_row(3, 10..20)], None, None)),
            Ok(parts(&[wide_row(2, 9..20)], None, None)),
            Ok(parts(
                &[Row {
                    primary_key: vec![PkColumn::new("id", PkValue::Integer(2))],
                    cells: vec![Cell::new("a", Value::Integer(0), Some(1))],
                }],
                None,
                None,
            )),
            Ok(parts(&[wide_row(2, 10..20), narrow_row(3)], None, None)),
        ]);
        assert_eq!(ids(&s.next_page().await.unwrap().unwrap()), vec![1]);
        let e = s.next_page().await.unwrap_err();
        assert!(matches!(e, ScanError::Protocol { split: 7, .. }), "{e}");
        assert!(e.to_string().contains("starts with another row"), "{e}");
        // Cells already received, again: the row would hold a cell twice.
        let e = s.next_page().await.unwrap_err();
        assert!(e.to_string().contains("repeats or goes back"), "{e}");
        // A column before the last one received.
        let e = s.next_page().await.unwrap_err();
        assert!(e.to_string().contains("repeats or goes back"), "{e}");
        let page = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&page), vec![wide_row(2, 0..20), narrow_row(3)]);
        assert!(s.next_page().await.unwrap().is_none());
        // Every retry asked again for the same continuation.
        let sent = tokens_sent(&log);
        assert!(
            sent[1..]
                .iter()
                .all(|(k, t)| *k == key(2) && t.as_deref() == Some(&b"t1"[..])),
            "{sent:?}"
        );
    }

    /// The split row is the last of the range: its last part comes with no next key, which ends
    /// the split after the row is handed out. A last part with no cells completes the row too.
    #[tokio::test]
    async fn a_token_at_the_end_of_the_range() {
        let (mut s, _) = scripted(vec![
            Ok(parts(&[wide_row(5, 0..7)], Some(5), Some(b"a"))),
            Ok(parts(&[wide_row(5, 7..12)], None, None)),
        ]);
        let page = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&page), vec![wide_row(5, 0..12)]);
        assert!(s.next_page().await.unwrap().is_none());

        let (mut s, _) = scripted(vec![
            Ok(parts(&[wide_row(5, 0..7)], Some(5), Some(b"a"))),
            Ok(parts(&[], None, None)),
        ]);
        let page = s.next_page().await.unwrap().unwrap();
        assert_eq!(page_rows(&page), vec![wide_row(5, 0..7)]);
        assert!(s.next_page().await.unwrap().is_none());

        // A token with no next key cannot be followed: an error, never an end or a cut row.
        let (mut s, _) = scripted(vec![Ok(parts(&[wide_row(5, 0..7)], None, Some(b"a")))]);
        let e = s.next_page().await.unwrap_err();
        assert!(e.to_string().contains("without a next start key"), "{e}");
    }

    /// The token rules of `check_response`, passing and failing.
    #[test]
    fn response_checks_with_tokens() {
        let max = Bytes::from(encode_primary_key(&[PkColumn::new("id", PkValue::InfMax)]));
        let check = |start: i64,
                     ids: &[i64],
                     next: Option<i64>,
                     sent: Option<&[u8]>,
                     got: Option<&[u8]>| {
            let page = if ids.is_empty() {
                Bytes::new()
            } else {
                rows(ids)
            };
            let tokens = Tokens {
                sent,
                received: got,
            };
            check_response(&key(start), &max, &page, next.map(key).as_deref(), tokens)
                .map(|c| c.rows)
        };
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        // A token splits the last row: the next key is that row's key.
        assert_eq!(check(1, &[1, 2, 3], Some(3), None, Some(a)), Ok(3));
        // A continuation starts with the row at the start key.
        assert_eq!(check(3, &[3], Some(3), Some(a), Some(b)), Ok(1));
        assert_eq!(check(3, &[3, 4], Some(5), Some(a), None), Ok(2));
        assert_eq!(check(3, &[3, 4], None, Some(a), None), Ok(2));
        assert_eq!(check(3, &[], None, Some(a), None), Ok(0));
        // No rows but a new token for the same row.
        assert_eq!(check(3, &[], Some(3), Some(a), Some(b)), Ok(0));

        let fails = |r: Result<u64, String>, what: &str| {
            let e = r.unwrap_err();
            assert!(e.contains(what), "{e:?} does not say {what:?}");
        };
        fails(
            check(1, &[1, 2, 3], Some(4), None, Some(a)),
            "the row it split",
        );
        fails(
            check(1, &[1, 2, 3], Some(2), None, Some(a)),
            "the row it split",
        );
        fails(
            check(1, &[1, 2, 3], None, None, Some(a)),
            "without a next start key",
        );
        fails(check(3, &[], Some(4), Some(a), Some(b)), "the row it split");
        fails(
            check(3, &[], Some(3), Some(a), Some(a)),
            "would not advance",
        );
        fails(
            check(3, &[4], Some(5), Some(a), None),
            "starts with another row",
        );
        fails(
            check(3, &[4], Some(4), Some(a), Some(b)),
            "starts with another row",
        );
        // Without a token a next key equal to the last row still does not advance.
        fails(check(3, &[3], Some(3), Some(a), None), "does not advance");
    }

    fn page(index: u64) -> Page {
        let inf = |v: PkValue| Bytes::from(encode_primary_key(&[PkColumn::new("id", v)]));
        let bounds = RowBounds {
            start: inf(PkValue::InfMin),
            upper: inf(PkValue::InfMax),
            upper_is: UpperBound::SplitEnd,
        };
        Page::new(3, index, rows(&[index as i64]), bounds)
    }

    /// A page source from a closure, for the prefetch task.
    struct FnSource<F>(F);

    impl<F> PageSource for FnSource<F>
    where
        F: FnMut() -> Result<Option<Page>, ScanError> + Send + 'static,
    {
        fn next_page(&mut self) -> impl Future<Output = Result<Option<Page>, ScanError>> + Send {
            let r = (self.0)();
            async move {
                tokio::task::yield_now().await;
                r
            }
        }
    }

    #[tokio::test]
    async fn prefetch_yields_every_page_then_the_end() {
        let mut n = 0;
        let mut p = spawn_pages(
            3,
            FnSource(move || {
                n += 1;
                Ok((n <= 5).then(|| page(n - 1)))
            }),
            2,
        );
        for i in 0..5 {
            assert_eq!(p.next().await.unwrap().unwrap().index, i);
        }
        assert!(p.next().await.unwrap().is_none());
        assert!(p.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_fetcher_that_panics_is_an_error_not_an_end() {
        let mut n = 0;
        let mut p = spawn_pages(
            3,
            FnSource(move || {
                n += 1;
                if n > 2 {
                    panic!("scripted fetcher panic");
                }
                Ok(Some(page(n - 1)))
            }),
            1,
        );
        assert_eq!(p.next().await.unwrap().unwrap().index, 0);
        assert_eq!(p.next().await.unwrap().unwrap().index, 1);
        for _ in 0..2 {
            match p.next().await {
                Err(ScanError::FetcherDied { split: 3, detail }) => {
                    assert!(detail.contains("scripted fetcher panic"), "{detail}")
                }
                other => panic!("expected FetcherDied, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_cancelled_fetcher_is_an_error_not_an_end() {
        let mut p = spawn_pages(3, FnSource(|| Ok(Some(page(0)))), 1);
        p.task.as_ref().unwrap().abort();
        // Drain what was sent before the abort; then the death is reported, not an end.
        let mut pages = 0;
        let err = loop {
            match p.next().await {
                Ok(Some(_)) => pages += 1,
                Ok(None) => panic!("a cancelled fetcher looked like the end after {pages} pages"),
                Err(e) => break e,
            }
        };
        match err {
            ScanError::FetcherDied { split: 3, detail } => {
                assert!(detail.contains("cancelled"), "{detail}")
            }
            other => panic!("expected FetcherDied, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_scanner_error_is_passed_on_and_never_followed_by_an_end() {
        let mut n = 0;
        let mut p = spawn_pages(
            3,
            FnSource(move || {
                n += 1;
                match n {
                    1 => Ok(Some(page(0))),
                    _ => Err(ScanError::Protocol {
                        split: 3,
                        detail: "scripted".into(),
                    }),
                }
            }),
            4,
        );
        assert!(p.next().await.unwrap().is_some());
        assert!(matches!(p.next().await, Err(ScanError::Protocol { .. })));
        assert!(matches!(p.next().await, Err(ScanError::FetcherDied { .. })));
    }

    #[tokio::test]
    async fn dropping_the_prefetch_stops_the_task() {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let p = spawn_pages(
            3,
            FnSource(move || {
                let _keep = &flag;
                Ok(Some(page(0)))
            }),
            1,
        );
        tokio::task::yield_now().await;
        drop(p);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the prefetch task outlived its Prefetch");
    }

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
