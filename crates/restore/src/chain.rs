//! Chains of snapshots: a full link (scan + changes up to its T_c) followed by incrementals
//! (changes from the parent's T_c to their own). Restoring link N means: the base's data files,
//! then every link's change files from the base to N, in order — cut at `--as-of` if given.
//!
//! The chain is resolved and checked before anything is written: every link committed, each
//! incremental's window starting exactly at its parent's consistency point on the same stream,
//! one base for all.

use std::sync::Arc;

use futures::TryStreamExt;
use ots_format::time::rfc3339_micros;
use ots_format::{ChangeSet, LinkKind};
use ots_manifest::{FileEntry, Manifest, ManifestError, Snapshot};

use crate::error::RestoreError;
use crate::integrity::FilePins;

/// One link: its snapshot, its manifest, and (once verified) the pins of its files.
#[derive(Clone, Debug)]
pub struct ChainLink {
    pub snapshot: Snapshot,
    pub manifest: Manifest,
}

/// Whether the keys `snapshot` was opened with read its files, as `manifest` records them.
pub fn check_keys(snapshot: &Snapshot, manifest: &Manifest) -> Result<(), RestoreError> {
    ots_manifest::ReadKeys::check(snapshot.keys(), manifest.encryption.as_ref()).map_err(|source| {
        RestoreError::Key {
            path: snapshot.url(),
            source,
        }
    })
}

impl ChainLink {
    pub fn id(&self) -> &str {
        self.snapshot.id()
    }

    /// Whether the keys given can read this link's files (an encrypted link needs its master key).
    pub fn check_keys(&self) -> Result<(), RestoreError> {
        check_keys(&self.snapshot, &self.manifest)
    }

    pub fn changes(&self) -> Option<&ChangeSet> {
        self.manifest.changes.as_ref()
    }

    /// The link's consistency point (µs), when it captured changes.
    pub fn t_c_us(&self) -> Option<i64> {
        self.changes().map(|c| c.consistency_point.t_us)
    }
}

/// A base and its links in order; the last is the snapshot asked for.
#[derive(Clone, Debug)]
pub struct Chain {
    pub links: Vec<ChainLink>,
}

impl Chain {
    /// Whether the keys given read every link's files: checked before anything is written.
    pub fn check_keys(&self) -> Result<(), RestoreError> {
        self.links.iter().try_for_each(ChainLink::check_keys)
    }

    pub fn base(&self) -> &ChainLink {
        &self.links[0]
    }

    pub fn last(&self) -> &ChainLink {
        &self.links[self.links.len() - 1]
    }

    /// Does restoring replay changes at all?
    pub fn has_changes(&self) -> bool {
        self.base().changes().is_some()
    }

    /// Every change file to replay, link by link, in order.
    pub fn change_files(&self) -> impl Iterator<Item = (&ChainLink, &FileEntry)> {
        self.links.iter().flat_map(|l| {
            l.changes()
                .into_iter()
                .flat_map(move |c| c.files.iter().map(move |f| (l, f)))
        })
    }

    /// Keeps the links needed to reach `as_of_us`: up to the first whose T_c is at or after it.
    /// An instant before the base's T_c (the scan is exact only from there) or after the last
    /// link's T_c (nothing is known after it) is a usage error naming the range.
    pub fn cut_at(&mut self, as_of_us: i64) -> Result<(), RestoreError> {
        let (Some(first), Some(last)) = (self.base().t_c_us(), self.last().t_c_us()) else {
            return Err(RestoreError::Usage(format!(
                "--as-of needs a snapshot with captured changes; {} captured none (the table had no stream)",
                self.last().id()
            )));
        };
        if as_of_us < first || as_of_us > last {
            return Err(RestoreError::Usage(format!(
                "--as-of {} is outside what chain {}..{} can restore exactly: from {} (the base's consistency point) to {} (snapshot {}'s)",
                rfc3339_micros(as_of_us),
                self.base().id(),
                self.last().id(),
                rfc3339_micros(first),
                rfc3339_micros(last),
                self.last().id()
            )));
        }
        if let Some(n) = self
            .links
            .iter()
            .position(|l| l.t_c_us().is_some_and(|t| t >= as_of_us))
        {
            self.links.truncate(n + 1);
        }
        Ok(())
    }

    /// Windows contiguous, one stream, one base; every link's base names the chain's base.
    fn check(&self) -> Result<(), RestoreError> {
        let base = self.base();
        let broken = |detail: String| {
            Err(RestoreError::ChainBroken {
                id: self.last().id().to_string(),
                detail,
            })
        };
        if let Some(c) = base.changes()
            && c.kind != LinkKind::Full
        {
            return broken(format!(
                "the chain starts at {}, which is not a full snapshot",
                base.id()
            ));
        }
        for w in self.links.windows(2) {
            let (parent, child) = (&w[0], &w[1]);
            let (Some(p), Some(c)) = (parent.changes(), child.changes()) else {
                return broken(format!(
                    "{} and {} must both hold captured changes",
                    parent.id(),
                    child.id()
                ));
            };
            if c.parent.as_deref() != Some(parent.id()) {
                return broken(format!(
                    "{} does not name {} as its parent",
                    child.id(),
                    parent.id()
                ));
            }
            if c.stream_id != p.stream_id {
                return broken(format!(
                    "{} read stream {}, its parent {} read stream {}",
                    child.id(),
                    c.stream_id,
                    parent.id(),
                    p.stream_id
                ));
            }
            if c.start != p.consistency_point {
                return broken(format!(
                    "{}'s window starts at {}, not at its parent {}'s consistency point {}: the windows are not contiguous",
                    child.id(),
                    c.start.time,
                    parent.id(),
                    p.consistency_point.time
                ));
            }
            if c.base != base.id() {
                return broken(format!(
                    "{} names {} as its base, the chain's base is {}",
                    child.id(),
                    c.base,
                    base.id()
                ));
            }
            if child.manifest.source.table.primary_key != base.manifest.source.table.primary_key {
                return broken(format!(
                    "{} and the base {} have different primary keys",
                    child.id(),
                    base.id()
                ));
            }
        }
        Ok(())
    }
}

/// The chain ending at `snapshot` (whose manifest is `manifest`): its parents are read from the
/// same destination, following `changes.parent` back to the full link. A snapshot without
/// captured changes, or a full link, is a chain of one.
pub async fn resolve_chain(snapshot: &Snapshot, manifest: Manifest) -> Result<Chain, RestoreError> {
    let mut links = vec![ChainLink {
        snapshot: snapshot.clone(),
        manifest,
    }];
    loop {
        let head = &links[links.len() - 1];
        let Some(c) = head.changes() else { break };
        if c.kind == LinkKind::Full {
            break;
        }
        let Some(parent_id) = c.parent.clone() else {
            return Err(RestoreError::ChainBroken {
                id: snapshot.id().to_string(),
                detail: format!("incremental {} names no parent", head.id()),
            });
        };
        if links.iter().any(|l| l.id() == parent_id) || links.len() > 100_000 {
            return Err(RestoreError::ChainBroken {
                id: snapshot.id().to_string(),
                detail: format!("the chain loops back to {parent_id}"),
            });
        }
        let parent = snapshot.sibling(&parent_id);
        let pm = parent.read_manifest().await.map_err(|e| match e {
            ManifestError::NotFound { .. } => RestoreError::ChainBroken {
                id: snapshot.id().to_string(),
                detail: format!(
                    "link {parent_id} (the parent of {}) is not committed under {}: it was deleted or never finished",
                    head.id(),
                    snapshot.destination_url()
                ),
            },
            other => other.into(),
        })?;
        links.push(ChainLink {
            snapshot: parent,
            manifest: pm,
        });
    }
    links.reverse();
    let chain = Chain { links };
    chain.check()?;
    Ok(chain)
}

/// What replaying a chain's changes did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ChainReplayStats {
    pub links: u64,
    pub change_files: u64,
    pub changes_applied: u64,
    pub changes_after_as_of: u64,
}

/// Every change of a chain, link after link, file after file, one decoded record batch at a time
/// (within `budget` decoded bytes): the one walk over change files that replay and the comparison
/// share.
pub(crate) struct ChainChanges<'a> {
    chain: &'a Chain,
    /// Pins per link (restore, after verification); `None`: each file pinned at its first read.
    pins: Option<&'a [Arc<FilePins>]>,
    budget: usize,
    reader: ots_schema::changes::ChangeReader,
    /// The next link and file to open.
    link: usize,
    file: usize,
    open: Option<(
        parquet::arrow::async_reader::ParquetRecordBatchStream<crate::reader::FileSource>,
        String,
        String,
    )>,
    /// Change files read to their end so far.
    pub files_read: u64,
}

impl<'a> ChainChanges<'a> {
    pub(crate) fn new(chain: &'a Chain, pins: Option<&'a [Arc<FilePins>]>, budget: usize) -> Self {
        ChainChanges {
            reader: ots_schema::changes::ChangeReader::new(
                &chain.base().manifest.source.table.primary_key,
            ),
            chain,
            pins,
            budget: budget.max(1),
            link: 0,
            file: 0,
            open: None,
            files_read: 0,
        }
    }

    /// The next batch of changes (in file order), or `None` after the last file.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<ots_format::Change>>, RestoreError> {
        loop {
            if let Some((batches, path, url)) = &mut self.open {
                match batches
                    .try_next()
                    .await
                    .map_err(|e| RestoreError::parquet(path, e))?
                {
                    Some(batch) => {
                        return self.reader.read_batch(&batch).map(Some).map_err(|e| {
                            RestoreError::Changes {
                                path: url.clone(),
                                detail: e.to_string(),
                            }
                        });
                    }
                    None => {
                        self.open = None;
                        self.files_read += 1;
                    }
                }
            }
            let Some(link) = self.chain.links.get(self.link) else {
                return Ok(None);
            };
            let Some(f) = link.changes().and_then(|c| c.files.get(self.file)) else {
                self.link += 1;
                self.file = 0;
                continue;
            };
            self.file += 1;
            let (store, path) = link.snapshot.object(&f.path);
            let pin = self
                .pins
                .and_then(|p| p.get(self.link))
                .map_or(crate::reader::FilePin::FirstRead, |p| p.pin(&path));
            let source = crate::reader::open_file(store, path, &f.path, f.bytes, &f.sha256, &pin)
                .await?
                .with_decryption(link.snapshot.decryption());
            let (batches, _) = source
                .batches_within(self.budget, 8192)
                .await
                .map_err(|e| RestoreError::parquet(&f.path, e))?;
            self.open = Some((batches, f.path.clone(), link.snapshot.url_of(&f.path)));
        }
    }
}

/// Replays every change file of `chain` (already verified, with `pins` per link) into
/// `cfg.table`, link after link, skipping changes after `cfg.as_of_us`, with `cfg.concurrency`
/// lanes and a quarter of the memory budget for decoded changes.
pub(crate) async fn replay_chain(
    client: &ots_wire::OtsClient,
    cfg: &crate::RestoreConfig,
    chain: &Chain,
    pins: &[Arc<FilePins>],
    progress: &crate::RestoreProgress,
) -> Result<ChainReplayStats, RestoreError> {
    use std::sync::atomic::Ordering;
    let mut options = crate::replay::ReplayOptions::new(cfg.table.clone());
    options.concurrency = cfg.concurrency;
    options.as_of_us = cfg.as_of_us;
    options.rows_per_sec = cfg.rows_per_sec;
    let mut applier = crate::replay::ChangeApplier::new(client, options)?;
    let mut changes = ChainChanges::new(chain, Some(pins), cfg.memory_budget().read_bytes / 2);
    while let Some(batch) = changes.next().await? {
        progress
            .changes_read
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        applier.apply(batch).await?;
    }
    let mut stats = ChainReplayStats {
        links: chain.links.len() as u64,
        change_files: changes.files_read,
        ..Default::default()
    };
    let r = applier.finish().await?;
    stats.changes_applied = r.applied();
    stats.changes_after_as_of = r.skipped_as_of;
    progress
        .changes_applied
        .store(stats.changes_applied, Ordering::Relaxed);
    Ok(stats)
}
