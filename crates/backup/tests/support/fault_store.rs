//! An object store for failure tests: `object_store`'s in-memory store behind a wrapper that
//! counts writes ("steps"), fails or crashes at a chosen step, denies deletes, hides recent
//! objects from listings (a stale listing), pauses chosen writes or deletes until the test lets
//! them go (gates), and can order writes on a deterministic schedule shared by several
//! "processes" (wrappers with different tags over one backend).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What a wrapper does to the operations passing through it.
#[derive(Debug, Default)]
pub struct Faults {
    /// The write (1-based, counted over puts and multipart starts) that fails.
    pub fail_put_at: Option<u64>,
    /// From the failing write on, every operation fails: the process "crashed" there.
    pub crash: bool,
    /// Deletes are refused, as under a least-privilege policy or a WORM bucket.
    pub deny_delete: bool,
    /// Listings leave out objects whose path contains this (a stale listing).
    pub hide_from_list: Option<String>,
    /// Deletes allowed before every further delete fails (a gc cut short).
    pub deletes_allowed: Option<u64>,
    /// The write (as counted above) that lands on the store but then reports an error (a
    /// timeout after success).
    pub ambiguous_put_at: Option<u64>,
    /// Each delete first takes a permit from this semaphore (a gc paused mid-way).
    pub delete_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// Deletes of paths containing any of these are refused, as a WORM bucket refuses objects
    /// still under retention; the others go through.
    pub deny_delete_containing: Vec<String>,
    /// Writes of paths containing `.0`, from the `.1`-th such write on (1-based), wait for a
    /// permit from `.2` once logged: a writer paused there while the test changes the world.
    pub write_gate: Option<(String, u64, Arc<tokio::sync::Semaphore>)>,
}

/// A deterministic schedule of writes over several tagged wrappers: write `i` must come from
/// `order[i]`; a tag that has finished is skipped; past the end, everyone runs freely.
#[derive(Debug, Default)]
pub struct Schedule {
    order: Vec<u8>,
    state: Mutex<(usize, Vec<u8>)>,
    notify: tokio::sync::Notify,
}

impl Schedule {
    pub fn new(order: Vec<u8>) -> Arc<Self> {
        Arc::new(Schedule {
            order,
            state: Mutex::new((0, Vec::new())),
            notify: tokio::sync::Notify::new(),
        })
    }

    async fn turn(&self, tag: u8) {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock().unwrap();
                // Skip entries of tags that are done.
                while st.0 < self.order.len() && st.1.contains(&self.order[st.0]) {
                    st.0 += 1;
                }
                if st.0 >= self.order.len() {
                    return;
                }
                if self.order[st.0] == tag {
                    st.0 += 1;
                    drop(st);
                    self.notify.notify_waiters();
                    return;
                }
            }
            notified.await;
        }
    }

    /// The process with `tag` will write no more.
    pub fn finished(&self, tag: u8) {
        self.state.lock().unwrap().1.push(tag);
        self.notify.notify_waiters();
    }
}

#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<InMemory>,
    tag: u8,
    faults: Mutex<Faults>,
    writes: AtomicU64,
    /// The path of every write attempted, in order.
    log: Mutex<Vec<String>>,
    deletes_attempted: AtomicU64,
    /// The path of every object delete attempted, in order (deletes that reach the last branch
    /// of `delete_stream`: not gated, not all denied).
    delete_log: Arc<Mutex<Vec<String>>>,
    crashed: AtomicBool,
    schedule: Option<Arc<Schedule>>,
    /// Writes seen that `Faults::write_gate` matches.
    gate_matches: AtomicU64,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.tag)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected fault: {what}").into(),
    }
}

impl FaultStore {
    pub fn new(inner: Arc<InMemory>, tag: u8, faults: Faults) -> Arc<Self> {
        Self::build(inner, tag, faults, None)
    }

    pub fn scheduled(inner: Arc<InMemory>, tag: u8, faults: Faults, s: Arc<Schedule>) -> Arc<Self> {
        Self::build(inner, tag, faults, Some(s))
    }

    fn build(
        inner: Arc<InMemory>,
        tag: u8,
        faults: Faults,
        schedule: Option<Arc<Schedule>>,
    ) -> Arc<Self> {
        Arc::new(FaultStore {
            inner,
            tag,
            faults: Mutex::new(faults),
            writes: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            deletes_attempted: AtomicU64::new(0),
            delete_log: Arc::new(Mutex::new(Vec::new())),
            crashed: AtomicBool::new(false),
            schedule,
            gate_matches: AtomicU64::new(0),
        })
    }

    /// Writes (puts and multipart starts) seen so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// The paths of the writes attempted so far, in order.
    pub fn write_log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The paths of the object deletes attempted so far, in order.
    pub fn delete_log(&self) -> Vec<String> {
        self.delete_log.lock().unwrap().clone()
    }

    pub fn deletes_attempted(&self) -> u64 {
        self.deletes_attempted.load(Ordering::SeqCst)
    }

    fn alive(&self) -> Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            Err(injected("the process crashed earlier"))
        } else {
            Ok(())
        }
    }

    async fn write_step(&self, what: &str) -> Result<()> {
        self.alive()?;
        if let Some(s) = &self.schedule {
            s.turn(self.tag).await;
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.lock().unwrap().push(what.to_string());
        let gate = self.faults.lock().unwrap().write_gate.clone();
        if let Some((containing, from, gate)) = gate
            && what.contains(containing.as_str())
            && self.gate_matches.fetch_add(1, Ordering::SeqCst) + 1 >= from
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
        let f = self.faults.lock().unwrap();
        if f.fail_put_at == Some(n) {
            if f.crash {
                self.crashed.store(true, Ordering::SeqCst);
            }
            return Err(injected(&format!("write #{n} ({what}) failed")));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.write_step(location.as_ref()).await?;
        let n = self.writes();
        let landed = self.inner.put_opts(location, payload, opts).await?;
        if self.faults.lock().unwrap().ambiguous_put_at == Some(n) {
            return Err(injected("a timeout after the put landed"));
        }
        Ok(landed)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.write_step(location.as_ref()).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.alive()?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let n = self.deletes_attempted.fetch_add(1, Ordering::SeqCst) + 1;
        let (over, gate) = {
            let f = self.faults.lock().unwrap();
            (
                f.deletes_allowed.is_some_and(|a| n > a),
                f.delete_gate.clone(),
            )
        };
        if let Some(gate) = gate {
            let inner = self.inner.clone();
            return futures::stream::once(async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                let locations: Vec<_> = locations.collect().await;
                let done: Vec<_> = inner
                    .delete_stream(futures::stream::iter(locations).boxed())
                    .collect()
                    .await;
                futures::stream::iter(done)
            })
            .flatten()
            .boxed();
        }
        if over || self.faults.lock().unwrap().deny_delete || self.alive().is_err() {
            return locations
                .map(|_| {
                    Err(object_store::Error::PermissionDenied {
                        path: "delete".into(),
                        source: "injected: deletes are denied".into(),
                    })
                })
                .boxed();
        }
        let inner = self.inner.clone();
        let log = self.delete_log.clone();
        let deny = self.faults.lock().unwrap().deny_delete_containing.clone();
        locations
            .then(move |location| {
                let (inner, log, deny) = (inner.clone(), log.clone(), deny.clone());
                async move {
                    let location = location?;
                    log.lock().unwrap().push(location.to_string());
                    if deny.iter().any(|d| location.as_ref().contains(d.as_str())) {
                        return Err(object_store::Error::PermissionDenied {
                            path: location.to_string(),
                            source: "injected: object under retention (WORM), delete denied".into(),
                        });
                    }
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = self.alive() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let hide = self.faults.lock().unwrap().hide_from_list.clone();
        self.inner
            .list(prefix)
            .filter(move |m| {
                let keep = match (m, &hide) {
                    (Ok(m), Some(h)) => !m.location.as_ref().contains(h.as_str()),
                    _ => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.alive()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.write_step(to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}
