//! Verification before a restore, remembering which object version was verified.
//!
//! `verify_snapshot` reads every byte of every file and checks SHA-256. It runs here over a
//! store that records, for each whole-object GET, the ETag and version of the response whose
//! bytes it streamed and hashed. A file that verifies is therefore pinned to exactly the bytes
//! that were checked, and the reader ([`crate::reader`]) sends that ETag (or version) with every
//! read: a file replaced after verification fails its read instead of being restored.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use ots_manifest::{ManifestError, Snapshot, VerifyProgress, VerifyReport, verify_snapshot};

use crate::reader::FilePin;

/// What a whole-object GET named about the object it served.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Served {
    e_tag: Option<String>,
    version: Option<String>,
}

/// Delegates everything to `inner`, noting the ETag / version of every whole-object GET.
#[derive(Debug)]
struct RecordingStore {
    inner: Arc<dyn ObjectStore>,
    /// Per object: what was served, or `None` when two GETs of it were served different versions.
    served: Mutex<HashMap<Path, Option<Served>>>,
}

impl fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let whole = options.range.is_none() && !options.head;
        let got = self.inner.get_opts(location, options).await?;
        if whole {
            let served = Served {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            if let Ok(mut map) = self.served.lock() {
                map.entry(location.clone())
                    .and_modify(|seen| {
                        if seen.as_ref() != Some(&served) {
                            *seen = None;
                        }
                    })
                    .or_insert(Some(served));
            }
        }
        Ok(got)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// How each snapshot file is to be read, by object path.
#[derive(Clone, Debug, Default)]
pub struct FilePins {
    pins: HashMap<Path, FilePin>,
    verified: bool,
}

impl FilePins {
    /// For a snapshot that was not verified: every file pinned at its first read.
    pub fn unverified() -> Self {
        FilePins::default()
    }

    /// How the object at `path` is to be read.
    pub fn pin(&self, path: &Path) -> FilePin {
        match self.pins.get(path) {
            Some(p) => p.clone(),
            // Verified without a usable record (cannot happen for a file the manifest lists):
            // hash it again rather than trust it.
            None if self.verified => FilePin::Rehash,
            None => FilePin::FirstRead,
        }
    }
}

/// Verifies snapshot `id` (as `verify_snapshot` does) and pins every file to the version whose
/// bytes were checked: its ETag / version, or [`FilePin::Rehash`] when the store named neither
/// (or served two different ones).
pub async fn verify_and_pin(
    snapshot: &Snapshot,
    progress: &dyn VerifyProgress,
) -> Result<(VerifyReport, FilePins), ManifestError> {
    let recorder = Arc::new(RecordingStore {
        inner: snapshot.store().clone(),
        served: Mutex::new(HashMap::new()),
    });
    let report = verify_snapshot(&snapshot.with_store(recorder.clone()), progress).await?;
    let served = recorder
        .served
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let pins = served
        .into_iter()
        .map(|(path, s)| {
            let pin = match s {
                Some(Served { e_tag, version }) if e_tag.is_some() || version.is_some() => {
                    FilePin::Tagged { e_tag, version }
                }
                _ => FilePin::Rehash,
            };
            (path, pin)
        })
        .collect();
    Ok((
        report,
        FilePins {
            pins,
            verified: true,
        },
    ))
}
