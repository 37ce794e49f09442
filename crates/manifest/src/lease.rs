//! Leases: who is working on a snapshot right now. A process that writes to a snapshot (a backup,
//! a resume, gc) holds a lease, renewed while it runs; another process that finds a live lease
//! refuses (naming the holder) unless told to take over. Each renewal is a new create-once object
//! (`leases/<owner>-<renewal>.json`), so leases work on stores that refuse overwrites (WORM) and
//! need no compare-and-swap. Leases guard against wasted work and against gc removing what a
//! resume is about to commit; the commit protocol itself is correct with any number of processes.
//!
//! Liveness does not trust the holder's clock alone: a lease counts as live only while both its
//! own expiry and the store's timestamp of the lease object plus its time-to-live are ahead.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ots_format::layout::lease_path;
use ots_format::time::{rfc3339, unix_millis};
use serde::{Deserialize, Serialize};

use crate::snapshot::{ManifestError, Snapshot};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// Clock difference tolerated between the store and the machines that read leases.
const CLOCK_SLACK_MS: i64 = 30_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub renewal: u32,
    pub host: String,
    pub pid: u32,
    /// The holder's boot id and pid namespace: a pid is only meaningful within both.
    #[serde(default)]
    pub machine: String,
    /// What the owner is doing, e.g. `backup`, `backup --resume`, `gc`.
    pub command: String,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default)]
    pub ttl_ms: i64,
    /// The owner is done: the lease is no longer held, whatever the times say.
    #[serde(default)]
    pub released: bool,
    /// `None`: the lease excludes every other holder (a backup, a resume, gc). `Some(scope)`:
    /// it excludes only exclusive leases and leases of the same scope — one per worker of a
    /// sharded backup (`worker 2/8`), the committer (`commit`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Human-readable forms of the two times above.
    pub started_at: String,
    pub expires_at: String,
    /// When the store says the lease object was written (ms), filled in when it is read.
    #[serde(skip)]
    pub stored_at_ms: Option<i64>,
}

impl Lease {
    pub fn path(&self) -> String {
        lease_path(&self.owner, self.renewal)
    }

    /// Whether a lease of scope `mine` and this one cannot be held at once.
    pub fn conflicts_with(&self, mine: Option<&str>) -> bool {
        match (mine, self.scope.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// When this renewal was written, by the holder's clock (ms).
    pub fn written_at_ms(&self) -> i64 {
        if self.released {
            self.expires_at_ms
        } else {
            self.expires_at_ms - self.ttl_ms.max(0)
        }
    }

    /// Held at `now_ms`: not released, not expired by the holder's clock, and not older (by the
    /// store's clock) than its time-to-live.
    pub fn is_live(&self, now_ms: i64) -> bool {
        let by_store = match self.stored_at_ms {
            Some(at) => at + self.ttl_ms.max(0) + CLOCK_SLACK_MS > now_ms,
            None => true,
        };
        !self.released && self.expires_at_ms > now_ms && by_store
    }

    /// Whether the holder is known to be gone: it ran on this very machine (same boot and pid
    /// namespace) and its process no longer exists, so a resume right after a crash or `kill -9`
    /// need not wait for the lease to expire.
    pub fn holder_is_gone(&self) -> bool {
        let here = machine_id();
        let proc_fs = std::path::Path::new("/proc");
        !self.machine.is_empty()
            && here.as_deref() == Some(self.machine.as_str())
            && proc_fs.join("self").exists()
            && !proc_fs.join(self.pid.to_string()).exists()
    }

    /// `owner 1a2b3c4d (backup --resume, pid 4242 on host-a, lease until 2026-…)`.
    pub fn describe(&self) -> String {
        format!(
            "owner {} ({}, pid {} on {}, started {}, lease until {})",
            self.owner, self.command, self.pid, self.host, self.started_at, self.expires_at
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "snapshot {id} is in use by another process: {holder}. Wait for it to finish (its lease expires if it dies), \
         or pass --take-over if you are sure it is gone"
    )]
    Held { id: String, holder: String },
    #[error(transparent)]
    Store(#[from] ManifestError),
}

impl LeaseError {
    /// As a [`ManifestError`] of `snap`, for callers (gc, expire) that report only those.
    pub(crate) fn into_manifest_error(self, snap: &Snapshot) -> ManifestError {
        match self {
            LeaseError::Store(s) => s,
            other => ManifestError::Invalid {
                url: snap.url(),
                detail: other.to_string(),
            },
        }
    }
}

/// The first live lease among `leases` not owned by `me`, described for a report.
pub(crate) fn live_holder(leases: &[Lease], me: Option<&str>, now_ms: i64) -> Option<String> {
    leases
        .iter()
        .find(|l| Some(l.owner.as_str()) != me && l.is_live(now_ms))
        .map(Lease::describe)
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// This machine's boot id and pid namespace, when the system tells them (Linux).
fn machine_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// The lease state of one holder: the next renewal number to try grows on every attempt,
/// whatever its outcome, so one write that landed but reported an error cannot stall renewals.
struct Holder {
    lease: Lease,
    next_renewal: u32,
}

/// A held lease, renewed in the background until [`LeaseGuard::release`] or drop.
pub struct LeaseGuard {
    snapshot: Snapshot,
    holder: Arc<std::sync::Mutex<Holder>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

fn lease_at(
    owner: &str,
    renewal: u32,
    command: &str,
    scope: Option<&str>,
    started_ms: i64,
    ttl: Duration,
) -> Lease {
    let now = SystemTime::now();
    let expires = now + ttl;
    Lease {
        owner: owner.to_string(),
        renewal,
        host: host_name(),
        pid: std::process::id(),
        machine: machine_id().unwrap_or_default(),
        command: command.to_string(),
        started_at_ms: started_ms,
        expires_at_ms: unix_millis(expires),
        ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        released: false,
        scope: scope.map(str::to_string),
        started_at: rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(started_ms.max(0) as u64),
        ),
        expires_at: rfc3339(expires),
        stored_at_ms: None,
    }
}

/// Writes the next renewal of `holder` (a fresh lease, or the release); a number already taken
/// (an earlier write that landed although it reported an error) is skipped.
async fn write_next(
    snapshot: &Snapshot,
    holder: &std::sync::Mutex<Holder>,
    make: impl Fn(&Lease, u32) -> Lease,
) -> Result<(), ManifestError> {
    let mut last = None;
    for _ in 0..3 {
        let next = {
            let Ok(mut h) = holder.lock() else {
                return Ok(());
            };
            let n = h.next_renewal;
            h.next_renewal += 1;
            make(&h.lease, n)
        };
        match snapshot.create_lease(&next).await {
            Ok(()) => {
                if let Ok(mut h) = holder.lock() {
                    h.lease = next;
                }
                return Ok(());
            }
            Err(ManifestError::Exists { .. }) => continue,
            Err(e) => last = Some(e),
        }
        break;
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Takes the snapshot's exclusive lease for `command`. Refuses when another owner's lease is
/// live, unless `take_over`. Two processes that start at once both write a lease, then the one
/// that started later (ties: the larger owner token) steps back, so at most one proceeds.
pub async fn acquire(
    snapshot: &Snapshot,
    command: &str,
    take_over: bool,
    ttl: Duration,
) -> Result<LeaseGuard, LeaseError> {
    acquire_scoped(snapshot, command, None, take_over, ttl).await
}

/// [`acquire`] for a lease of `scope` (see [`Lease::scope`]): refused only by live leases it
/// conflicts with.
pub async fn acquire_scoped(
    snapshot: &Snapshot,
    command: &str,
    scope: Option<&str>,
    take_over: bool,
    ttl: Duration,
) -> Result<LeaseGuard, LeaseError> {
    let now = unix_millis(SystemTime::now());
    let owner = ots_format::random_token();
    let held_by_other = |leases: Vec<Lease>, now: i64| {
        leases
            .into_iter()
            .filter(|l| {
                l.owner != owner && l.conflicts_with(scope) && l.is_live(now) && !l.holder_is_gone()
            })
            .collect::<Vec<_>>()
    };
    if !take_over && let Some(other) = held_by_other(snapshot.leases().await?, now).first() {
        return Err(LeaseError::Held {
            id: snapshot.id().to_string(),
            holder: other.describe(),
        });
    }
    let first = lease_at(&owner, 0, command, scope, now, ttl);
    snapshot.create_lease(&first).await?;
    let holder = Arc::new(std::sync::Mutex::new(Holder {
        lease: first.clone(),
        next_renewal: 1,
    }));
    let renewer = {
        let snapshot = snapshot.clone();
        let holder = holder.clone();
        let command = command.to_string();
        let scope = scope.map(str::to_string);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let renew = |l: &Lease, n: u32| {
                    lease_at(
                        &l.owner,
                        n,
                        &command,
                        scope.as_deref(),
                        l.started_at_ms,
                        ttl,
                    )
                };
                if let Err(e) = write_next(&snapshot, &holder, renew).await {
                    tracing::warn!("could not renew the lease on the snapshot: {e}");
                }
            }
        })
    };
    let guard = LeaseGuard {
        snapshot: snapshot.clone(),
        holder,
        renewer: Some(renewer),
    };
    if !take_over {
        let now = unix_millis(SystemTime::now());
        let earlier = held_by_other(snapshot.leases().await?, now)
            .into_iter()
            .find(|l| (l.started_at_ms, &l.owner) < (first.started_at_ms, &first.owner));
        if let Some(other) = earlier {
            guard.release().await;
            return Err(LeaseError::Held {
                id: snapshot.id().to_string(),
                holder: other.describe(),
            });
        }
    }
    Ok(guard)
}

impl LeaseGuard {
    pub fn owner(&self) -> String {
        self.holder
            .lock()
            .map(|h| h.lease.owner.clone())
            .unwrap_or_default()
    }

    /// Stops renewing and writes a last renewal marked released.
    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
            let _ = r.await;
        }
        let done = |l: &Lease, n: u32| {
            let mut d = l.clone();
            d.renewal = n;
            d.released = true;
            d.expires_at_ms = unix_millis(SystemTime::now());
            d.expires_at = rfc3339(SystemTime::now());
            d
        };
        if let Err(e) = write_next(&self.snapshot, &self.holder, done).await {
            tracing::warn!(
                "could not release the lease on the snapshot (it expires by itself): {e}"
            );
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Not released (an error path): stop renewing; the lease expires by itself.
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}
