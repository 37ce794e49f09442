//! Integrity of a stored snapshot: the manifest parses, every file it lists exists with its size
//! and SHA-256, its Parquet footer decodes and holds the rows the manifest says, the counts add up,
//! and data files the manifest does not list are reported (they are not part of the snapshot).

use std::collections::BTreeSet;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::*;
use crate::store::{ManifestError, SnapshotStore};

/// One problem found, with the file it concerns.
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
    /// Data files present but not listed (orphans of interrupted attempts): not part of the snapshot.
    pub unlisted_files: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Verifies snapshot `id`. An unreadable manifest is an error; everything else is collected into
/// the report so that one run lists every problem.
pub async fn verify_snapshot(
    store: &SnapshotStore,
    id: &str,
) -> Result<VerifyReport, ManifestError> {
    let manifest = store.read_manifest(id).await?;
    let mut report = VerifyReport {
        snapshot_id: id.to_string(),
        ..Default::default()
    };
    let issue = |report: &mut VerifyReport, path: &str, problem: String| {
        report.issues.push(VerifyIssue {
            path: path.to_string(),
            problem,
        })
    };
    if manifest.snapshot_id != id {
        issue(
            &mut report,
            MANIFEST_FILE,
            format!("manifest names snapshot '{}'", manifest.snapshot_id),
        );
    }

    // Counts must add up before any file is read.
    let rows: u64 = manifest.files.iter().map(|f| f.rows).sum();
    let cells: u64 = manifest.files.iter().map(|f| f.cells).sum();
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    let t = &manifest.totals;
    if rows != t.rows
        || cells != t.cells
        || bytes != t.bytes
        || manifest.files.len() as u64 != t.files
    {
        issue(
            &mut report,
            MANIFEST_FILE,
            format!(
                "totals (rows {}, cells {}, bytes {}, files {}) do not match the file list (rows {rows}, cells {cells}, bytes {bytes}, files {})",
                t.rows,
                t.cells,
                t.bytes,
                t.files,
                manifest.files.len()
            ),
        );
    }
    if manifest.stats.rows != t.rows || manifest.stats.cells != t.cells {
        issue(
            &mut report,
            MANIFEST_FILE,
            "column statistics disagree with the totals".to_string(),
        );
    }
    let split_ids: BTreeSet<u32> = manifest.splits.iter().map(|s| s.id).collect();

    for f in &manifest.files {
        if !split_ids.contains(&f.split) {
            issue(
                &mut report,
                &f.path,
                format!(
                    "belongs to split {} which the manifest does not list",
                    f.split
                ),
            );
        }
        let path = store.dest.path(&format!("{id}/{}", f.path));
        let got = match store.dest.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                issue(&mut report, &f.path, "missing".to_string());
                continue;
            }
            Err(source) => {
                return Err(ManifestError::Store {
                    url: store.url_of(id, &f.path),
                    source,
                });
            }
        };
        // Stream the file through SHA-256; keep only the last 8 bytes for the footer.
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut tail: Vec<u8> = Vec::with_capacity(8);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|source| ManifestError::Store {
                url: store.url_of(id, &f.path),
                source,
            })?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            tail.extend_from_slice(&chunk[chunk.len().saturating_sub(8)..]);
            let excess = tail.len().saturating_sub(8);
            tail.drain(..excess);
        }
        report.files_checked += 1;
        report.bytes_checked += size;
        if size != f.bytes {
            issue(
                &mut report,
                &f.path,
                format!("size {size} bytes, the manifest says {}", f.bytes),
            );
            continue;
        }
        let digest = hex::encode(hasher.finalize());
        if digest != f.sha256 {
            issue(
                &mut report,
                &f.path,
                format!("SHA-256 {digest}, the manifest says {}", f.sha256),
            );
            continue;
        }
        match footer_rows(store, &path, &tail, size).await {
            Ok(n) if n == f.rows => report.rows_in_footers += n,
            Ok(n) => issue(
                &mut report,
                &f.path,
                format!(
                    "Parquet footer holds {n} rows, the manifest says {}",
                    f.rows
                ),
            ),
            Err(e) => issue(
                &mut report,
                &f.path,
                format!("not a readable Parquet file: {e}"),
            ),
        }
    }

    // Data files that exist but are not listed.
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let root = store.dest.path(id);
    let data_prefix = store.dest.path(&format!("{id}/{DATA_DIR}"));
    let present: Vec<_> = store
        .dest
        .store
        .list(Some(&data_prefix))
        .try_collect()
        .await
        .map_err(|source| ManifestError::Store {
            url: store.url_of(id, DATA_DIR),
            source,
        })?;
    for m in present {
        let rel: Vec<_> = m
            .location
            .prefix_match(&root)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
            .unwrap_or_default();
        let rel = rel.join("/");
        if !listed.contains(rel.as_str()) {
            report.unlisted_files.push(rel);
        }
    }
    Ok(report)
}

async fn footer_rows(
    store: &SnapshotStore,
    path: &object_store::path::Path,
    tail: &[u8],
    size: u64,
) -> Result<u64, String> {
    let tail: [u8; 8] = tail
        .try_into()
        .map_err(|_| "shorter than a Parquet footer".to_string())?;
    let footer = FooterTail::try_new(&tail).map_err(|e| e.to_string())?;
    let len = footer.metadata_length() as u64;
    if len + 8 > size {
        return Err(format!("footer length {len} exceeds the file size {size}"));
    }
    let meta = store
        .dest
        .store
        .get_range(path, size - 8 - len..size - 8)
        .await
        .map_err(|e| e.to_string())?;
    let md = ParquetMetaDataReader::decode_metadata(&meta).map_err(|e| e.to_string())?;
    Ok(md.file_metadata().num_rows().max(0) as u64)
}
