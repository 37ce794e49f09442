//! Integrity of a stored snapshot. First the manifest itself (`ots_format::check`): splits that
//! cover the key space, files inside their splits, totals and statistics that add up, agreement
//! with the plan and with each split's chosen record. Then every file it lists: present, its
//! size and SHA-256, a Parquet footer holding the rows the manifest says. Data files the manifest
//! does not list are reported (they are not part of the snapshot).
//!
//! Sizes and SHA-256 are of the bytes stored, so an encrypted snapshot's are checked without its
//! key; decoding its footers needs the key, and without it the report says what went unchecked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::TryStreamExt;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use serde::Serialize;
use sha2::{Digest, Sha256};

use ots_format::layout::PLAN_FILE;
use ots_format::{Manifest, check_manifest, check_record};

use crate::snapshot::{ManifestError, ReadKeys, Snapshot};

/// One problem found, with the object it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyIssue {
    pub path: String,
    pub problem: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub snapshot_id: String,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub rows_in_footers: u64,
    /// Problems that make the snapshot fail verification.
    pub issues: Vec<VerifyIssue>,
    /// Data files present but not listed (of attempts the commit did not choose): not part of
    /// the snapshot; `otsarchive gc` removes them.
    pub unlisted_files: Vec<String>,
    /// Why the Parquet footers (and so the row counts inside them) were not decoded: an encrypted
    /// snapshot verified without its key. Sizes and SHA-256 were still checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_checks_skipped: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.issues.is_empty()
    }

    pub fn issue(&mut self, path: &str, problem: String) {
        self.issues.push(VerifyIssue {
            path: path.to_string(),
            problem,
        });
    }
}

/// Progress of a verification, for callers that show it.
pub trait VerifyProgress: Send + Sync {
    /// The manifest is checked; the data files come next: this many, of this many bytes.
    fn started(&self, _files: u64, _bytes: u64) {}
    /// `n` more bytes of a data file were read and hashed.
    fn bytes_read(&self, _n: u64) {}
    /// A data file was read to its end (`bytes` long).
    fn file_checked(&self, _bytes: u64) {}
}

impl VerifyProgress for () {}

/// Counters a verification fills in, for a progress display to read.
#[derive(Debug, Default)]
pub struct VerifyCounters {
    /// Set once the manifest is checked and the totals are known.
    pub started: AtomicBool,
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

impl VerifyProgress for VerifyCounters {
    fn started(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.started.store(true, Ordering::Release);
    }

    fn bytes_read(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    fn file_checked(&self, _bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks the manifest of `snap` against itself, its plan and its chosen records, without
/// reading data. Returns the manifest and the problems found.
pub async fn verify_manifest(snap: &Snapshot) -> Result<(Manifest, VerifyReport), ManifestError> {
    let manifest = snap.read_manifest().await?;
    let mut report = VerifyReport {
        snapshot_id: snap.id().to_string(),
        ..Default::default()
    };
    let plan = match snap.read_plan().await {
        Ok(p) => Some(p),
        Err(ManifestError::NotFound { .. }) => {
            report.issue(
                PLAN_FILE,
                "missing: the snapshot's plan is gone".to_string(),
            );
            None
        }
        Err(ManifestError::Json { source, .. }) => {
            report.issue(PLAN_FILE, format!("not a valid plan: {source}"));
            None
        }
        Err(e) => return Err(e),
    };
    for p in check_manifest(&manifest, snap.id(), plan.as_ref()) {
        report.issue(&p.path, p.problem);
    }
    for s in &manifest.splits {
        let (record, rel) = snap.chosen_record(s.id, &s.attempt).await?;
        match record {
            None => report.issue(
                &rel,
                format!(
                    "missing: split {}'s chosen record is not in the snapshot",
                    s.id
                ),
            ),
            Some(r) => {
                for p in check_record(&manifest, s, &r, &rel) {
                    report.issue(&p.path, p.problem);
                }
            }
        }
    }
    if let Some(c) = &manifest.changes {
        let rel = ots_format::layout::capture_record_path(&c.attempt);
        let record = snap
            .get_json::<ots_format::CaptureRecord>(&rel, "capture record")
            .await?;
        match record {
            None => report.issue(
                &rel,
                "missing: the chosen capture attempt's record is not in the snapshot".into(),
            ),
            Some(r) => {
                if r.files != c.files
                    || r.counts != c.counts
                    || r.end != c.consistency_point
                    || r.snapshot_id != manifest.snapshot_id
                {
                    report.issue(
                        &rel,
                        "the capture record disagrees with the manifest's change set (files, counts or consistency point)".into(),
                    );
                }
            }
        }
    }
    Ok((manifest, report))
}

/// Verifies snapshot `snap`: the manifest, then every file. An unreadable manifest is an error;
/// everything else is collected into the report so that one run lists every problem.
pub async fn verify_snapshot(
    snap: &Snapshot,
    progress: &dyn VerifyProgress,
) -> Result<VerifyReport, ManifestError> {
    let (manifest, mut report) = verify_manifest(snap).await?;
    let all_files: Vec<&ots_format::FileEntry> = manifest
        .files
        .iter()
        .chain(manifest.changes.iter().flat_map(|c| &c.files))
        .collect();
    progress.started(
        all_files.len() as u64,
        all_files.iter().map(|f| f.bytes).sum(),
    );
    let decode_footers = match ReadKeys::check(snap.keys(), manifest.encryption.as_ref()) {
        Ok(()) => true,
        Err(e) => {
            report.content_checks_skipped = Some(format!(
                "the files are encrypted; their Parquet footers and row counts were not checked: {e}"
            ));
            false
        }
    };
    let decryption = snap.decryption();
    for f in all_files.iter().copied() {
        let Some(got) = snap.get(&f.path).await? else {
            report.issue(&f.path, "missing".to_string());
            progress.file_checked(0);
            continue;
        };
        // Stream the file through SHA-256; keep only the last 8 bytes for the footer.
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut tail: Vec<u8> = Vec::with_capacity(16);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|source| ManifestError::Store {
                url: snap.url_of(&f.path),
                source,
            })?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            progress.bytes_read(chunk.len() as u64);
            tail.extend_from_slice(&chunk[chunk.len().saturating_sub(8)..]);
            let excess = tail.len().saturating_sub(8);
            tail.drain(..excess);
        }
        report.files_checked += 1;
        report.bytes_checked += size;
        progress.file_checked(size);
        if size != f.bytes {
            report.issue(
                &f.path,
                format!("size {size} bytes, the manifest says {}", f.bytes),
            );
            continue;
        }
        let digest = hex::encode(hasher.finalize());
        if digest != f.sha256 {
            report.issue(
                &f.path,
                format!("SHA-256 {digest}, the manifest says {}", f.sha256),
            );
            continue;
        }
        // The file must be exactly as encrypted as the manifest says: a plaintext file in an
        // encrypted snapshot would leak what the snapshot promises to protect.
        let encrypted = tail.ends_with(b"PARE");
        match (manifest.encryption.is_some(), encrypted) {
            (true, false) => {
                report.issue(
                    &f.path,
                    "not encrypted, although the manifest records encryption".into(),
                );
                continue;
            }
            (false, true) => {
                report.issue(
                    &f.path,
                    "encrypted, although the manifest records no encryption".into(),
                );
                continue;
            }
            _ => {}
        }
        if !decode_footers {
            continue;
        }
        match footer_rows(snap, &f.path, &tail, size, decryption.clone()).await {
            Ok(n) if n == f.rows => report.rows_in_footers += n,
            Ok(n) => report.issue(
                &f.path,
                format!(
                    "Parquet footer holds {n} rows, the manifest says {}",
                    f.rows
                ),
            ),
            Err(e) => report.issue(&f.path, e),
        }
    }
    let listed: BTreeSet<&str> = all_files.iter().map(|f| f.path.as_str()).collect();
    let mut present = snap.list_data_files().await?;
    present.extend(
        snap.list_change_objects()
            .await?
            .into_iter()
            .filter(|l| l.rel.ends_with(".parquet")),
    );
    for l in present {
        if !listed.contains(l.rel.as_str()) {
            report.unlisted_files.push(l.rel);
        }
    }
    Ok(report)
}

/// The row count in the footer of `rel` (`size` bytes, ending in `tail`), decrypting the footer
/// with `decryption` when it is encrypted.
async fn footer_rows(
    snap: &Snapshot,
    rel: &str,
    tail: &[u8],
    size: u64,
    decryption: Option<Arc<FileDecryptionProperties>>,
) -> Result<u64, String> {
    let md = read_footer(snap, rel, Some(tail), size, decryption).await?;
    Ok(md.file_metadata().num_rows().max(0) as u64)
}

/// The decoded footer of snapshot file `rel` (`size` bytes; its last 8 bytes in `tail` when
/// already read), decrypted with `decryption` when it is encrypted. The error says what is wrong
/// with the file, or which key it needs.
pub async fn read_footer(
    snap: &Snapshot,
    rel: &str,
    tail: Option<&[u8]>,
    size: u64,
    decryption: Option<Arc<FileDecryptionProperties>>,
) -> Result<ParquetMetaData, String> {
    let unreadable = |e: String| format!("not a readable Parquet file: {e}");
    if size < 8 {
        return Err(unreadable("shorter than a Parquet footer".to_string()));
    }
    let fetched;
    let tail = match tail {
        Some(t) => t,
        None => {
            fetched = snap
                .get_range(rel, size - 8..size)
                .await
                .map_err(|e| unreadable(e.to_string()))?;
            &fetched[..]
        }
    };
    let tail: [u8; 8] = tail
        .try_into()
        .map_err(|_| unreadable("shorter than a Parquet footer".to_string()))?;
    let footer = FooterTail::try_new(&tail).map_err(|e| unreadable(e.to_string()))?;
    let len = footer.metadata_length() as u64;
    if len + 8 > size {
        return Err(unreadable(format!(
            "footer length {len} exceeds the file size {size}"
        )));
    }
    let suffix = snap
        .get_range(rel, size - 8 - len..size)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    let mut reader = ParquetMetaDataReader::new().with_decryption_properties(decryption);
    reader
        .try_parse_sized(&suffix, size)
        .map_err(|e| match ots_crypto::key_error(&e) {
            Some(k) => format!("cannot decrypt its footer: {k}"),
            None => unreadable(e.to_string()),
        })?;
    reader.finish().map_err(|e| unreadable(e.to_string()))
}
