//! Sharding a snapshot's splits over N workers (`--worker K/N`): a deterministic assignment that
//! every worker, the committer and `status` compute alike from the plan alone.

use std::fmt;
use std::str::FromStr;

/// Worker `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerSlot {
    pub index: u32,
    pub count: u32,
}

impl WorkerSlot {
    /// Split `id` belongs to worker `id mod count`. The plan's splits are of about equal size
    /// (ComputeSplitPointsBySize cuts the table by size), so dealing them out in turn balances
    /// the bytes as well as the count; consecutive splits go to different workers, which spreads
    /// a hot key range.
    pub fn of_split(split: u32, count: u32) -> WorkerSlot {
        WorkerSlot {
            index: split % count.max(1),
            count: count.max(1),
        }
    }

    pub fn owns(&self, split: u32) -> bool {
        Self::of_split(split, self.count) == *self
    }

    /// The lease scope of this worker (`worker 2/8`).
    pub fn lease_scope(&self) -> String {
        format!("worker {self}")
    }

    /// The worker a lease scope names, if it names one.
    pub fn from_lease_scope(scope: &str) -> Option<WorkerSlot> {
        scope.strip_prefix("worker ")?.parse().ok()
    }
}

impl fmt::Display for WorkerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for WorkerSlot {
    type Err = String;

    /// `K/N` with 0 ≤ K < N (N ≥ 1), as an array-job scheduler numbers its tasks.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not K/N (worker K of N, counted from 0: 0/3, 1/3 and 2/3 share a snapshot three ways)"
            )
        };
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(WorkerSlot { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_deals_splits_in_turn() {
        let w: WorkerSlot = "1/3".parse().unwrap();
        assert_eq!(w.to_string(), "1/3");
        let mine: Vec<u32> = (0..10).filter(|&s| w.owns(s)).collect();
        assert_eq!(mine, vec![1, 4, 7]);
        for bad in ["3/3", "1", "a/3", "0/0", "-1/2", ""] {
            assert!(bad.parse::<WorkerSlot>().is_err(), "{bad}");
        }
        // Every split has exactly one worker.
        for s in 0..20 {
            let owners = (0..4)
                .filter(|&k| WorkerSlot { index: k, count: 4 }.owns(s))
                .count();
            assert_eq!(owners, 1);
        }
        assert_eq!(WorkerSlot::from_lease_scope(&w.lease_scope()), Some(w));
        assert_eq!(WorkerSlot::from_lease_scope("commit"), None);
    }
}
