//! Reading and writing the snapshot's JSON objects on a destination.

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use ots_writer::Destination;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url} is not a valid {what}: {source} (the file is damaged or was edited)")]
    Json {
        url: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{url}: format version {found} is newer than this otsarchive understands ({FORMAT_VERSION}); upgrade otsarchive"
    )]
    FormatVersion { url: String, found: u32 },
    #[error("{url}: {detail}")]
    Invalid { url: String, detail: String },
    #[error("snapshot {id} not found at {url}: no {what}")]
    NotFound {
        id: String,
        url: String,
        what: &'static str,
    },
}

/// The snapshots under one destination.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    pub dest: Destination,
}

impl SnapshotStore {
    pub fn new(dest: Destination) -> Self {
        SnapshotStore { dest }
    }

    pub fn url_of(&self, id: &str, rel: &str) -> String {
        self.dest.url_of(&format!("{id}/{rel}"))
    }

    pub async fn put_json<T: Serialize>(
        &self,
        id: &str,
        rel: &str,
        value: &T,
    ) -> Result<(), ManifestError> {
        let body = serde_json::to_vec_pretty(value).map_err(|source| ManifestError::Json {
            url: self.url_of(id, rel),
            what: "JSON value",
            source,
        })?;
        self.dest
            .store
            .put(
                &self.dest.path(&format!("{id}/{rel}")),
                PutPayload::from(body),
            )
            .await
            .map_err(|source| ManifestError::Store {
                url: self.url_of(id, rel),
                source,
            })?;
        Ok(())
    }

    /// `Ok(None)` when the object does not exist.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        id: &str,
        rel: &str,
        what: &'static str,
    ) -> Result<Option<T>, ManifestError> {
        let url = self.url_of(id, rel);
        let got = match self
            .dest
            .store
            .get(&self.dest.path(&format!("{id}/{rel}")))
            .await
        {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(ManifestError::Store { url, source }),
        };
        let bytes = got.bytes().await.map_err(|source| ManifestError::Store {
            url: url.clone(),
            source,
        })?;
        // Check the version before the shape, so a newer format gets the helpful message.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(found) = v.get("format_version").and_then(|f| f.as_u64())
            && found as u32 > FORMAT_VERSION
        {
            return Err(ManifestError::FormatVersion {
                url,
                found: found as u32,
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ManifestError::Json { url, what, source })
    }

    pub async fn read_plan(&self, id: &str) -> Result<Plan, ManifestError> {
        self.get_json(id, PLAN_FILE, "snapshot plan")
            .await?
            .ok_or_else(|| ManifestError::NotFound {
                id: id.to_string(),
                url: self.dest.url.clone(),
                what: PLAN_FILE,
            })
    }

    pub async fn read_manifest(&self, id: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = self
            .get_json(id, MANIFEST_FILE, "manifest")
            .await?
            .ok_or_else(|| ManifestError::NotFound {
                id: id.to_string(),
                url: self.dest.url.clone(),
                what: MANIFEST_FILE,
            })?;
        // A schema with an unknown layout version or invalid names cannot be read back safely.
        m.schema.validate().map_err(|e| ManifestError::Invalid {
            url: self.url_of(id, MANIFEST_FILE),
            detail: e.to_string(),
        })?;
        Ok(m)
    }

    /// Deletes data files of `id` that no committed split lists: files of interrupted attempts.
    /// Run before the manifest is written, so that a glob over `data/` sees only the snapshot.
    pub async fn delete_orphans(
        &self,
        id: &str,
        keep: &std::collections::BTreeSet<String>,
    ) -> Result<u64, ManifestError> {
        let root = self.dest.path(id);
        let data = self.dest.path(&format!("{id}/{DATA_DIR}"));
        let present: Vec<_> = self
            .dest
            .store
            .list(Some(&data))
            .try_collect()
            .await
            .map_err(|source| ManifestError::Store {
                url: self.url_of(id, DATA_DIR),
                source,
            })?;
        let mut deleted = 0;
        for m in present {
            let rel: Vec<String> = m
                .location
                .prefix_match(&root)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
                .unwrap_or_default();
            let rel = rel.join("/");
            if rel.is_empty() || keep.contains(&rel) {
                continue;
            }
            self.dest
                .store
                .delete(&m.location)
                .await
                .map_err(|source| ManifestError::Store {
                    url: self.url_of(id, &rel),
                    source,
                })?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Whether the snapshot has been committed (its manifest exists).
    pub async fn has_manifest(&self, id: &str) -> Result<bool, ManifestError> {
        match self
            .dest
            .store
            .head(&self.dest.path(&format!("{id}/{MANIFEST_FILE}")))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(ManifestError::Store {
                url: self.url_of(id, MANIFEST_FILE),
                source,
            }),
        }
    }

    /// Every split commit record of a snapshot, sorted by split id.
    pub async fn split_records(&self, id: &str) -> Result<Vec<SplitRecord>, ManifestError> {
        let prefix = self.dest.path(&format!("{id}/{SPLITS_DIR}"));
        let metas: Vec<_> = self
            .dest
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| ManifestError::Store {
                url: self.url_of(id, SPLITS_DIR),
                source,
            })?;
        let mut records = Vec::new();
        for m in metas {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if !name.ends_with(".json") {
                continue;
            }
            let rel = format!("{SPLITS_DIR}/{name}");
            if let Some(r) = self
                .get_json::<SplitRecord>(id, &rel, "split commit record")
                .await?
            {
                records.push(r);
            }
        }
        records.sort_by_key(|r| r.split.id);
        Ok(records)
    }

    /// Snapshot ids under the destination (folders), sorted (= by time).
    pub async fn list_snapshot_ids(&self) -> Result<Vec<String>, ManifestError> {
        let listing = self
            .dest
            .store
            .list_with_delimiter(Some(&self.dest.prefix))
            .await
            .map_err(|source| ManifestError::Store {
                url: self.dest.url.clone(),
                source,
            })?;
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

pub fn split_record_name(split: u32) -> String {
    format!("{SPLITS_DIR}/{split:05}.json")
}
