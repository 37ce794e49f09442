//! The snapshot on the store: [`Snapshots`] (the snapshot folders under a destination) and
//! [`Snapshot`] (one folder), which own every object path. Callers never build a path by hand.
//!
//! Writes of documents (plan, records, manifest, leases) are create-once: `PutMode::Create` where
//! the backend has it (local, S3, GCS, Azure); on OSS, which has none, an existence check before
//! the put. The protocol never depends on that check being race-free: every name it writes is
//! unique to the process writing it, except `plan.json` (written once, by the process that made
//! the id) and `manifest.json` (any two manifests of one snapshot list only complete attempts).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetResult, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use ots_crypto::{CryptoError, KeyProvider};
use ots_format::layout::{
    CHANGES_DIR, DATA_DIR, LEASES_DIR, MANIFEST_FILE, PLAN_FILE, SPLITS_DIR, capture_record_path,
    record_path,
};
use ots_format::{
    CaptureRecord, EncryptionInfo, FORMAT_VERSION, Manifest, Plan, SplitRecord, is_snapshot_id,
};
use ots_writer::Destination;
use parquet::encryption::decrypt::FileDecryptionProperties;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::lease::Lease;

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
    /// A create-once object exists already (another process wrote it).
    #[error("{url} exists already: another process wrote it")]
    Exists { url: String },
}

impl ManifestError {
    fn store(url: String, source: object_store::Error) -> Self {
        match source {
            object_store::Error::AlreadyExists { .. } => ManifestError::Exists { url },
            source => ManifestError::Store { url, source },
        }
    }
}

/// Master keys for reading encrypted snapshots (FORMAT.md §12), and the Parquet decryption
/// properties that unwrap each file's data key with them.
#[derive(Clone)]
pub struct ReadKeys {
    provider: Arc<dyn KeyProvider>,
    decryption: Arc<FileDecryptionProperties>,
}

impl std::fmt::Debug for ReadKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadKeys")
            .field("key_ids", &self.provider.key_ids())
            .finish()
    }
}

impl ReadKeys {
    pub fn new(provider: Arc<dyn KeyProvider>) -> Result<Self, CryptoError> {
        let decryption = ots_crypto::decryption_properties(provider.clone())?;
        Ok(ReadKeys {
            provider,
            decryption,
        })
    }

    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Whether files encrypted as `encryption` says can be read with `keys`: an error naming the
    /// master key to pass when they cannot (or the scheme, if this build does not know it).
    pub fn check(
        keys: Option<&ReadKeys>,
        encryption: Option<&EncryptionInfo>,
    ) -> Result<(), CryptoError> {
        let Some(info) = encryption else {
            return Ok(());
        };
        if info.scheme != ots_format::ENCRYPTION_SCHEME {
            return Err(CryptoError::UnknownScheme {
                found: info.scheme.clone(),
                known: ots_format::ENCRYPTION_SCHEME,
            });
        }
        match keys {
            Some(k) => k.provider.require(&info.master_key_id),
            None => Err(CryptoError::UnknownKey {
                id: info.master_key_id.clone(),
                known: Vec::new(),
            }),
        }
    }
}

/// An object of a snapshot folder, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the snapshot folder, e.g. `data/part-00000-7f3a9c01-000.parquet`.
    pub rel: String,
    pub size: u64,
    /// Milliseconds since the epoch, as the store reports the object's last change.
    pub modified_ms: i64,
}

/// The second an id was started in: its part before the first `-` (`20261206T074147Z`).
fn id_second(id: &str) -> &str {
    id.split('-').next().unwrap_or_default()
}

/// How committed snapshots order for `DEST/latest`: by the second their id was started in, then
/// the instant they restore to ([`Manifest::instant_us`]), then when they finished, then the id.
pub fn recency_key<'a>(id: &'a str, m: &'a Manifest) -> (&'a str, i64, &'a str, &'a str) {
    (id_second(id), m.instant_us(), m.finished_at.as_str(), id)
}

/// The snapshot folders under one destination.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dest: Destination,
    keys: Option<ReadKeys>,
}

impl Snapshots {
    pub fn new(dest: Destination) -> Self {
        Snapshots { dest, keys: None }
    }

    /// The same destination, reading encrypted files with `keys` (every snapshot opened from it).
    pub fn with_keys(mut self, keys: Option<ReadKeys>) -> Self {
        self.keys = keys;
        self
    }

    pub fn url(&self) -> &str {
        self.dest.url()
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    pub fn snapshot(&self, id: &str) -> Snapshot {
        Snapshot {
            dest: self.dest.clone(),
            id: id.to_string(),
            keys: self.keys.clone(),
        }
    }

    /// The newest committed snapshot that `wanted` accepts (see [`recency_key`]). Ids sort by
    /// time only to the second (their random suffix orders snapshots taken within one second
    /// arbitrarily), so every accepted snapshot of the newest second that has one is read and
    /// compared; older seconds are not read.
    pub async fn newest_committed(
        &self,
        wanted: impl Fn(&Manifest) -> bool,
    ) -> Result<Option<(Snapshot, Manifest)>, ManifestError> {
        self.newest_committed_in(&self.list_ids().await?, wanted)
            .await
    }

    /// [`newest_committed`](Self::newest_committed) among `ids`, as [`list_ids`](Self::list_ids)
    /// gave them (for a caller that has listed them already).
    pub async fn newest_committed_in(
        &self,
        ids: &[String],
        wanted: impl Fn(&Manifest) -> bool,
    ) -> Result<Option<(Snapshot, Manifest)>, ManifestError> {
        let mut best: Option<(Snapshot, Manifest)> = None;
        for id in ids.iter().rev() {
            if let Some((b, _)) = &best
                && id_second(id) != id_second(b.id())
            {
                break;
            }
            let snapshot = self.snapshot(id);
            let manifest = match snapshot.read_manifest().await {
                Ok(m) => m,
                Err(ManifestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if !wanted(&manifest) {
                continue;
            }
            let newer = match &best {
                None => true,
                Some((b, m)) => recency_key(id, &manifest) > recency_key(b.id(), m),
            };
            if newer {
                best = Some((snapshot, manifest));
            }
        }
        Ok(best)
    }

    /// Snapshot ids under the destination, sorted (= by time). Folders whose names are not
    /// snapshot ids are not snapshots and are left out.
    pub async fn list_ids(&self) -> Result<Vec<String>, ManifestError> {
        let listing = self
            .dest
            .store()
            .list_with_delimiter(Some(self.dest.prefix()))
            .await
            .map_err(|source| ManifestError::store(self.dest.url().to_string(), source))?;
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|name| is_snapshot_id(name))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// One snapshot folder: `DEST/<id>/`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    dest: Destination,
    id: String,
    keys: Option<ReadKeys>,
}

impl Snapshot {
    pub fn new(dest: Destination, id: impl Into<String>) -> Self {
        Snapshot {
            dest,
            id: id.into(),
            keys: None,
        }
    }

    /// The same snapshot, reading encrypted files with `keys` (its siblings too).
    pub fn with_keys(mut self, keys: Option<ReadKeys>) -> Self {
        self.keys = keys;
        self
    }

    /// The keys this snapshot's encrypted files are read with, if any were given.
    pub fn keys(&self) -> Option<&ReadKeys> {
        self.keys.as_ref()
    }

    /// Decryption properties for this snapshot's Parquet files: `None` when no keys were given
    /// (a plaintext snapshot needs none; see [`ReadKeys::check`] for an encrypted one).
    pub fn decryption(&self) -> Option<Arc<FileDecryptionProperties>> {
        self.keys.as_ref().map(|k| k.decryption.clone())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The snapshot folder's URL (`DEST/<id>`).
    pub fn url(&self) -> String {
        self.dest.url_of(&self.id)
    }

    /// The URL of an object of the snapshot, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        self.dest.url_of(&format!("{}/{rel}", self.id))
    }

    /// Another snapshot of the same destination (a chain's parent, say).
    pub fn sibling(&self, id: &str) -> Snapshot {
        Snapshot {
            dest: self.dest.clone(),
            id: id.to_string(),
            keys: self.keys.clone(),
        }
    }

    /// The destination's URL (its parent).
    pub fn destination_url(&self) -> &str {
        self.dest.url()
    }

    fn path(&self, rel: &str) -> Path {
        self.dest.path(&format!("{}/{rel}", self.id))
    }

    /// The store the snapshot lives on (to wrap it; see [`Snapshot::with_store`]).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.dest.store()
    }

    /// The same snapshot seen through another store, e.g. a wrapper of [`Snapshot::store`].
    pub fn with_store(&self, store: Arc<dyn ObjectStore>) -> Snapshot {
        Snapshot {
            dest: self.dest.with_store(store),
            id: self.id.clone(),
            keys: self.keys.clone(),
        }
    }

    /// The store and object path of a data file, for writers and readers of Parquet.
    pub fn object(&self, rel: &str) -> (Arc<dyn ObjectStore>, Path) {
        (self.dest.store().clone(), self.path(rel))
    }

    // --- documents -------------------------------------------------------------------------

    /// Writes a JSON document once; `ManifestError::Exists` when it is there already.
    async fn create_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<(), ManifestError> {
        let url = self.url_of(rel);
        let body = serde_json::to_vec_pretty(value).map_err(|source| ManifestError::Json {
            url: url.clone(),
            what: "JSON value",
            source,
        })?;
        let path = self.path(rel);
        if !self.dest.supports_create_only() {
            // OSS: no create-only put. Check first; the callers' protocol tolerates the race.
            if self.exists(rel).await? {
                return Err(ManifestError::Exists { url });
            }
            self.dest
                .store()
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|source| ManifestError::store(url, source))?;
            return Ok(());
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.dest
            .store()
            .put_opts(&path, PutPayload::from(body), opts)
            .await
            .map_err(|source| ManifestError::store(url, source))?;
        Ok(())
    }

    /// `Ok(None)` when the object does not exist.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        rel: &str,
        what: &'static str,
    ) -> Result<Option<T>, ManifestError> {
        let url = self.url_of(rel);
        let got = match self.dest.store().get(&self.path(rel)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(ManifestError::store(url, source)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|source| ManifestError::store(url.clone(), source))?;
        // Check the version before the shape, so a newer format gets the helpful message.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(found) = v.get("format_version").and_then(|f| f.as_u64())
            && found > u64::from(FORMAT_VERSION)
        {
            return Err(ManifestError::FormatVersion {
                url,
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ManifestError::Json { url, what, source })
    }

    pub async fn exists(&self, rel: &str) -> Result<bool, ManifestError> {
        match self.dest.store().head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(ManifestError::store(self.url_of(rel), source)),
        }
    }

    /// Writes the plan, once.
    pub async fn create_plan(&self, plan: &Plan) -> Result<(), ManifestError> {
        self.create_json(PLAN_FILE, plan).await
    }

    pub async fn read_plan(&self) -> Result<Plan, ManifestError> {
        self.get_json(PLAN_FILE, "snapshot plan")
            .await?
            .ok_or_else(|| self.not_found(PLAN_FILE))
    }

    /// Writes one attempt's record, once.
    pub async fn create_record(&self, record: &SplitRecord) -> Result<(), ManifestError> {
        self.create_json(&record_path(record.split.id, &record.attempt), record)
            .await
    }

    /// The record of one attempt, `Ok(None)` when it does not exist.
    pub async fn read_record(
        &self,
        split: u32,
        attempt: &str,
    ) -> Result<Option<SplitRecord>, ManifestError> {
        self.get_json(&record_path(split, attempt), "split record")
            .await
    }

    /// The record a manifest's split names: its chosen attempt (format 2) or the single record
    /// of format 1. Returns the record and its path.
    pub async fn chosen_record(
        &self,
        split: u32,
        attempt: &str,
    ) -> Result<(Option<SplitRecord>, String), ManifestError> {
        let rel = if attempt.is_empty() {
            ots_format::layout::record_path_v1(split)
        } else {
            record_path(split, attempt)
        };
        Ok((self.get_json(&rel, "split record").await?, rel))
    }

    /// Every split record of every attempt (format 1's single records included), sorted by
    /// split id then attempt. A listing may be stale: callers treat a missing record as "not
    /// done yet", never as an error.
    pub async fn records(&self) -> Result<Vec<SplitRecord>, ManifestError> {
        let mut records = Vec::new();
        for l in self.list(SPLITS_DIR).await? {
            if !l.rel.ends_with(".json") {
                continue;
            }
            // Listed then gone cannot happen without deletes; skip it rather than fail.
            if let Some(r) = self.get_json::<SplitRecord>(&l.rel, "split record").await? {
                records.push(r);
            }
        }
        records.sort_by(|a, b| (a.split.id, &a.attempt).cmp(&(b.split.id, &b.attempt)));
        Ok(records)
    }

    /// The bytes of object `rel`, exactly as stored; `NotFound` when it does not exist.
    pub async fn read_bytes(&self, rel: &str) -> Result<bytes::Bytes, ManifestError> {
        let Some(got) = self.get(rel).await? else {
            return Err(self.not_found(match rel {
                MANIFEST_FILE => MANIFEST_FILE,
                PLAN_FILE => PLAN_FILE,
                _ => "object",
            }));
        };
        got.bytes()
            .await
            .map_err(|source| ManifestError::store(self.url_of(rel), source))
    }

    /// Writes a JSON document once (`Exists` when it is there already).
    pub async fn create_document<T: Serialize>(
        &self,
        rel: &str,
        value: &T,
    ) -> Result<(), ManifestError> {
        self.create_json(rel, value).await
    }

    /// Reads a JSON document, `Ok(None)` when it does not exist.
    pub async fn read_document<T: DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<Option<T>, ManifestError> {
        self.get_json(rel, "JSON document").await
    }

    /// Writes one capture attempt's record, once.
    pub async fn create_capture_record(&self, record: &CaptureRecord) -> Result<(), ManifestError> {
        self.create_json(&capture_record_path(&record.attempt), record)
            .await
    }

    /// Every capture record (one per finished capture attempt), sorted by attempt. Like
    /// [`records`](Self::records), a stale listing only hides records, never invents them.
    pub async fn capture_records(&self) -> Result<Vec<CaptureRecord>, ManifestError> {
        let mut records = Vec::new();
        for l in self.list(CHANGES_DIR).await? {
            if !l.rel.ends_with(".json") {
                continue;
            }
            if let Some(r) = self
                .get_json::<CaptureRecord>(&l.rel, "capture record")
                .await?
            {
                records.push(r);
            }
        }
        records.sort_by(|a, b| a.attempt.cmp(&b.attempt));
        Ok(records)
    }

    pub async fn has_manifest(&self) -> Result<bool, ManifestError> {
        self.exists(MANIFEST_FILE).await
    }

    pub async fn read_manifest(&self) -> Result<Manifest, ManifestError> {
        let mut m: Manifest = self
            .get_json(MANIFEST_FILE, "manifest")
            .await?
            .ok_or_else(|| self.not_found(MANIFEST_FILE))?;
        // A schema with an unknown layout version or invalid names cannot be read back safely.
        m.schema.validate().map_err(|e| ManifestError::Invalid {
            url: self.url_of(MANIFEST_FILE),
            detail: e.to_string(),
        })?;
        // Early version-1 manifests did not repeat the split ranges; the plan has them.
        if m.format_version == 1
            && m.splits
                .iter()
                .any(|s| s.start.is_empty() || s.end.is_empty())
            && let Ok(plan) = self.read_plan().await
        {
            for s in &mut m.splits {
                if let Some(p) = plan.splits.iter().find(|p| p.id == s.id) {
                    s.start = p.start.clone();
                    s.end = p.end.clone();
                }
            }
        }
        Ok(m)
    }

    /// Writes the manifest once. When another process committed first, its manifest stands and
    /// is returned instead: any committed manifest lists complete attempts only. Without
    /// create-only puts (OSS) two committers can both put; the manifest read back is what stands.
    /// A put that reports an error may still have landed: the stored manifest decides.
    pub async fn commit_manifest(&self, manifest: &Manifest) -> Result<Committed, ManifestError> {
        let stored = match self.create_json(MANIFEST_FILE, manifest).await {
            Ok(()) if self.dest.supports_create_only() => return Ok(Committed::Written),
            Ok(()) => self.read_manifest().await?,
            Err(ManifestError::Exists { .. }) => self.read_manifest().await?,
            Err(e @ ManifestError::Store { .. }) => match self.read_manifest().await {
                Ok(stored) => stored,
                Err(_) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        if stored == *manifest {
            Ok(Committed::Written)
        } else {
            Ok(Committed::AlreadyCommitted(Box::new(stored)))
        }
    }

    // --- leases ----------------------------------------------------------------------------

    pub async fn create_lease(&self, lease: &Lease) -> Result<(), ManifestError> {
        self.create_json(&lease.path(), lease).await
    }

    /// The newest lease of every owner. Only the newest renewal of each owner is read (the
    /// renewal number is in the object's name); the store's timestamp of it is kept.
    pub async fn leases(&self) -> Result<Vec<Lease>, ManifestError> {
        let mut newest: std::collections::BTreeMap<String, (u32, Listed)> = Default::default();
        for l in self.list(LEASES_DIR).await? {
            let Some((owner, renewal)) = ots_format::layout::parse_lease_path(&l.rel) else {
                continue;
            };
            if newest.get(owner).is_none_or(|(have, _)| *have < renewal) {
                newest.insert(owner.to_string(), (renewal, l));
            }
        }
        let mut out = Vec::with_capacity(newest.len());
        for (_, (_, listed)) in newest {
            // Listed then gone cannot happen without gc; skip it rather than fail.
            if let Some(mut lease) = self.get_json::<Lease>(&listed.rel, "lease").await? {
                lease.stored_at_ms = Some(listed.modified_ms);
                out.push(lease);
            }
        }
        Ok(out)
    }

    // --- data and listing ------------------------------------------------------------------

    /// Every object under `rel` (a folder of the snapshot, or "" for all of it).
    pub async fn list(&self, rel: &str) -> Result<Vec<Listed>, ManifestError> {
        let root = self.dest.path(&self.id);
        let prefix = if rel.is_empty() {
            root.clone()
        } else {
            self.path(rel)
        };
        let metas: Vec<_> = self
            .dest
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| ManifestError::store(self.url_of(rel), source))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&root)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(Listed {
                    rel: parts.join("/"),
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
            })
            .filter(|l| !l.rel.is_empty())
            .collect();
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// The data files present (listed, so possibly stale).
    pub async fn list_data_files(&self) -> Result<Vec<Listed>, ManifestError> {
        self.list(DATA_DIR).await
    }

    /// The change files and capture records present (listed, so possibly stale).
    pub async fn list_change_objects(&self) -> Result<Vec<Listed>, ManifestError> {
        self.list(CHANGES_DIR).await
    }

    /// Opens an object of the snapshot for reading.
    pub async fn get(&self, rel: &str) -> Result<Option<GetResult>, ManifestError> {
        match self.dest.store().get(&self.path(rel)).await {
            Ok(g) => Ok(Some(g)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(ManifestError::store(self.url_of(rel), source)),
        }
    }

    pub async fn get_range(
        &self,
        rel: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, ManifestError> {
        self.dest
            .store()
            .get_range(&self.path(rel), range)
            .await
            .map_err(|source| ManifestError::store(self.url_of(rel), source))
    }

    /// Deletes one object (a missing one counts as deleted). Only `otsarchive gc` and
    /// `otsarchive expire` call this; a backup never deletes.
    pub async fn delete(&self, rel: &str) -> Result<(), ManifestError> {
        match self.dest.store().delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ManifestError::store(self.url_of(rel), source)),
        }
    }

    fn not_found(&self, what: &'static str) -> ManifestError {
        ManifestError::NotFound {
            id: self.id.clone(),
            url: self.dest.url().to_string(),
            what,
        }
    }
}

/// How a commit ended.
#[derive(Debug)]
pub enum Committed {
    /// This process wrote the manifest.
    Written,
    /// Another process had committed: its manifest.
    AlreadyCommitted(Box<Manifest>),
}

impl ManifestError {
    /// Bad input, a mismatch, or a failure: the CLI's exit code.
    pub fn kind(&self) -> ots_format::ErrorKind {
        use ots_format::ErrorKind;
        match self {
            ManifestError::NotFound { .. } => ErrorKind::Usage,
            ManifestError::Json { .. }
            | ManifestError::FormatVersion { .. }
            | ManifestError::Invalid { .. } => ErrorKind::Mismatch,
            ManifestError::Store { .. } | ManifestError::Exists { .. } => ErrorKind::Failure,
        }
    }
}
