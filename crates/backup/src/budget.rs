//! The memory budget of a backup, in bytes: one `--memory-mb` shared out between the buffers of
//! the splits that run at once, so that memory follows the budget, not the row size or the
//! table size.
//!
//! Per split: the GetRange pages in flight, the rows buffered in Arrow builders (all partitions
//! together), and per open Parquet file its row group in progress plus its upload buffers. The
//! one thing no budget can cut is a single row: it is held whole (one Parquet row needs all of
//! its cells), so a row larger than a page is the documented exception.

use crate::BackupError;

pub const DEFAULT_MEMORY_MB: usize = 256;
const MIB: usize = 1 << 20;
/// What the process needs beside its data buffers: code, runtime, HTTP stack, the plan and
/// records, allocator slack. The response buffers the HTTP client keeps for reuse (up to 32 MiB)
/// are pages' buffers between pages: one is allocated only when none is free, so together with
/// the pages in flight they never exceed the most pages once in flight, counted per split below.
const BASE_BYTES: usize = 40 * MIB;
/// One GetRange response: the service ends a page after about 4 MB of rows.
const PAGE_BYTES: usize = 4 * MIB;
/// Pages per split at once: the one being converted, one fetched ahead, one being received, and
/// the rows of one page routed into builders before full batches are written out.
const PAGES_IN_FLIGHT: usize = 4;
/// Upload part size: S3 needs parts of at least 5 MiB (but the last), OSS 100 KB.
pub const UPLOAD_PART_BYTES: usize = 5 * MIB;
/// Upload parts per open file: the one filling and one being sent.
const UPLOAD_PARTS: usize = 2;
/// Below these, files and batches get so small that overhead dominates.
const MIN_ROW_GROUP_BYTES: usize = 2 * MIB;
const MIN_BUFFERED_BYTES: usize = MIB;

/// How one split attempt may use memory; every figure is in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The whole budget (`--memory-mb`).
    pub total: usize,
    /// One split's share.
    pub per_split: usize,
    /// Rows buffered in Arrow builders, over all partitions of the split.
    pub buffered: usize,
    /// A partition's rows are written out once its builder holds this much.
    pub batch: usize,
    /// Parquet files open at once (one per partition being written).
    pub open_files: usize,
    /// A row group is closed once its in-memory size reaches this.
    pub row_group: usize,
    /// Size of one upload part.
    pub upload_part: usize,
}

impl MemoryPlan {
    /// Shares `total` out between `concurrency` splits, each with up to `max_open_files` files;
    /// `row_group_cap` is the largest row group wanted (`--row-group-mb`).
    pub fn new(
        total: usize,
        concurrency: usize,
        max_open_files: usize,
        row_group_cap: usize,
    ) -> Result<Self, BackupError> {
        let concurrency = concurrency.max(1);
        if let Some(plan) = Self::share(total, concurrency, max_open_files, row_group_cap) {
            return Ok(plan);
        }
        // The smallest budget in whole MiB that fits one file per split.
        let (mut low, mut high) = (total / MIB, 1usize << 30);
        while low + 1 < high {
            let mid = low + (high - low) / 2;
            match Self::share(mid * MIB, concurrency, 1, row_group_cap) {
                Some(_) => high = mid,
                None => low = mid,
            }
        }
        Err(BackupError::Usage(format!(
            "--memory-mb {} is too small for --concurrency {concurrency}: it needs at least {high} \
             (raise --memory-mb or lower --concurrency)",
            total / MIB
        )))
    }

    fn share(
        total: usize,
        concurrency: usize,
        max_open_files: usize,
        row_group_cap: usize,
    ) -> Option<Self> {
        let per_split = total.saturating_sub(BASE_BYTES) / concurrency;
        let for_data = per_split.checked_sub(PAGES_IN_FLIGHT * PAGE_BYTES)?;
        let buffered = (for_data / 4).max(MIN_BUFFERED_BYTES);
        let per_file_fixed = UPLOAD_PARTS * UPLOAD_PART_BYTES;
        // A row group is held twice while it is closed: its column buffers and the encoded bytes.
        let row_group_for = |files: usize| {
            (for_data.saturating_sub(buffered) / files).saturating_sub(per_file_fixed) / 2
        };
        let wanted = MIN_ROW_GROUP_BYTES.min(row_group_cap.max(1));
        let mut open_files = max_open_files.max(1);
        while open_files > 1 && row_group_for(open_files) < wanted {
            open_files -= 1;
        }
        let row_group = row_group_for(open_files).min(row_group_cap.max(1));
        (row_group >= wanted).then_some(MemoryPlan {
            total,
            per_split,
            buffered,
            batch: (buffered / 2).max(MIN_BUFFERED_BYTES),
            open_files,
            row_group,
            upload_part: UPLOAD_PART_BYTES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounted(p: &MemoryPlan, concurrency: usize) -> usize {
        BASE_BYTES
            + concurrency
                * (PAGES_IN_FLIGHT * PAGE_BYTES
                    + p.buffered
                    + p.open_files * (2 * p.row_group + UPLOAD_PARTS * p.upload_part))
    }

    #[test]
    fn a_budget_is_shared_without_exceeding_it() {
        for (total, concurrency, files) in [
            (256, 1, 1),
            (256, 4, 1),
            (256, 4, 8),
            (256, 2, 64),
            (512, 8, 8),
            (100, 1, 8),
        ] {
            let p = MemoryPlan::new(total * MIB, concurrency, files, 64 * MIB).unwrap();
            assert!(
                accounted(&p, concurrency) <= total * MIB,
                "{concurrency} splits × {files} files: {p:?}"
            );
            assert!(p.open_files >= 1 && p.open_files <= files);
            assert!(p.row_group >= MIN_ROW_GROUP_BYTES, "{p:?}");
        }
    }

    #[test]
    fn a_larger_budget_buys_bigger_row_groups_and_more_open_files() {
        let small = MemoryPlan::new(256 * MIB, 4, 8, 64 * MIB).unwrap();
        let big = MemoryPlan::new(2048 * MIB, 4, 8, 64 * MIB).unwrap();
        assert!(big.row_group > small.row_group || big.row_group == 64 * MIB);
        assert!(big.open_files > small.open_files);
        assert!(big.buffered > small.buffered);
        // The cap from --row-group-mb holds whatever the budget.
        let capped = MemoryPlan::new(8192 * MIB, 1, 1, 8 * MIB).unwrap();
        assert_eq!(capped.row_group, 8 * MIB);
    }

    #[test]
    fn a_budget_too_small_for_the_concurrency_is_a_usage_error_naming_the_minimum() {
        let e = MemoryPlan::new(64 * MIB, 16, 1, 64 * MIB).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, BackupError::Usage(_)));
        assert!(
            text.contains("--memory-mb 64") && text.contains("--concurrency 16"),
            "{text}"
        );
        let needed: usize = text
            .split("at least ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(MemoryPlan::new(needed * MIB, 16, 1, 64 * MIB).is_ok());
        assert!(MemoryPlan::new((needed - 1) * MIB, 16, 1, 64 * MIB).is_err());
    }
}
