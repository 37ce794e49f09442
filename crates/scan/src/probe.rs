//! Counting the cells a snapshot at time T would miss.
//!
//! Tablestore accepts explicit cell timestamps up to now + the table's max version deviation (one
//! day by default), so when a backup fixes T and reads the time range `[0, T + 1)`, cells already
//! written with a timestamp after T are silently left out. [`probe_cells_after`] counts them.

use std::sync::Arc;

use ots_wire::OtsClient;
use serde::{Deserialize, Serialize};

use crate::scanner::{RateLimiter, ScanOptions, SplitScanner};
use crate::split::{ScanError, Split};

/// The exclusive end of the probe's time range. Cell timestamps are valid in
/// `[0, i64::MAX / 1000)` ms (fact sheet §5.1), so this bound covers every cell that can exist.
/// The fact sheet does not say which `end_time` a read accepts; rather than count on `i64::MAX`
/// (the edge of the integer type, not of the data) passing the service's validation, the probe
/// ends its range at the data's own bound. The emulator accepts it.
pub const CELL_TIMESTAMP_END_MS: i64 = i64::MAX / 1000;

/// What a split holds after a time T.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterT {
    /// Rows with at least one cell dated after T.
    pub rows: u64,
    /// Cells (every version counts) dated after T.
    pub cells: u64,
    /// The newest such cell's timestamp.
    pub max_ts_ms: Option<i64>,
}

impl AfterT {
    /// Adds another split's counts.
    pub fn merge(&mut self, other: AfterT) {
        self.rows += other.rows;
        self.cells += other.cells;
        self.max_ts_ms = self.max_ts_ms.max(other.max_ts_ms);
    }
}

/// Counts the rows and cells of `split` with a timestamp after `after_ms`: one paginated GetRange
/// over the split with time range `[after_ms + 1, CELL_TIMESTAMP_END_MS)` and every version, with
/// the same response checks as any scan.
///
/// It reads whole rows: a projection onto the primary key alone returns no cells, hence no
/// timestamps, so it could not count anything. The probe walks the whole split (the service pages
/// by data scanned, so a stretch with nothing in the time range comes back as empty pages with a
/// next key), but only rows holding a cell after T are transferred. Those empty pages are the
/// expected case here, so they are followed without the scanner's empty-page backoff (which would
/// add up to 2 s a page on a large split); `limiter` bounds the read rate instead.
pub async fn probe_cells_after(
    client: &OtsClient,
    table: &str,
    split: &Split,
    after_ms: i64,
    limiter: Option<Arc<RateLimiter>>,
) -> Result<AfterT, ScanError> {
    let start = after_ms.saturating_add(1).max(0);
    if start >= CELL_TIMESTAMP_END_MS {
        // No cell can be dated after `after_ms`.
        return Ok(AfterT::default());
    }
    let options = ScanOptions {
        time_range: (start, CELL_TIMESTAMP_END_MS),
        max_versions: None,
        columns: Vec::new(),
        page_limit: None,
        read_limiter: limiter,
    };
    let mut scanner = SplitScanner::new(client.clone(), table, split.clone(), options)?
        .without_empty_page_backoff();
    let mut out = AfterT::default();
    while let Some(page) = scanner.next_page().await? {
        page.for_each_row::<ScanError>(|row| {
            // Every returned cell is in the requested time range; check anyway rather than count a
            // cell the service should not have sent.
            let mut cells = 0u64;
            for ts in row.cells.iter().filter_map(|c| c.timestamp) {
                if ts > after_ms {
                    cells += 1;
                    out.max_ts_ms = out.max_ts_ms.max(Some(ts));
                }
            }
            if cells > 0 {
                out.rows += 1;
                out.cells += cells;
            }
            Ok(())
        })?;
    }
    Ok(out)
}
