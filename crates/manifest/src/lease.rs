//! Leases: who is working on a snapshot right now. A process that writes to a snapshot holds a
//! lease, renewed while it runs; another process that finds a live lease refuses (naming the
//! holder) unless told to take over. Each renewal is a new create-once object
//! (`leases/<owner>-<renewal>.json`), so leases work on stores that refuse overwrites (WORM) and
//! need no compare-and-swap. Leases guard against wasted work and confusion, not corruption:
//! the commit protocol is correct with any number of processes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ots_format::layout::lease_path;
use ots_format::time::{rfc3339, unix_millis};
use serde::{Deserialize, Serialize};

use crate::snapshot::{ManifestError, Snapshot};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub renewal: u32,
    pub host: String,
    pub pid: u32,
    /// What the owner is doing, e.g. `backup` or `backup --resume`.
    pub command: String,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    /// Human-readable forms of the two times above.
    pub started_at: String,
    pub expires_at: String,
}

impl Lease {
    pub fn path(&self) -> String {
        lease_path(&self.owner, self.renewal)
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Whether the holder is known to be gone: it ran on this host and its process no longer
    /// exists (so a resume right after a crash or `kill -9` need not wait for the lease to expire).
    pub fn holder_is_gone(&self) -> bool {
        let proc_fs = std::path::Path::new("/proc");
        self.host == host_name()
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

/// A held lease, renewed in the background until [`LeaseGuard::release`] or drop.
pub struct LeaseGuard {
    snapshot: Snapshot,
    current: Arc<std::sync::Mutex<Lease>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
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

fn lease_at(owner: &str, renewal: u32, command: &str, started_ms: i64, ttl: Duration) -> Lease {
    let now = SystemTime::now();
    let expires = now + ttl;
    Lease {
        owner: owner.to_string(),
        renewal,
        host: host_name(),
        pid: std::process::id(),
        command: command.to_string(),
        started_at_ms: started_ms,
        expires_at_ms: unix_millis(expires),
        started_at: rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(started_ms.max(0) as u64),
        ),
        expires_at: rfc3339(expires),
    }
}

/// Takes the snapshot's lease for `command`. Refuses when another owner's lease is live, unless
/// `take_over`. Two processes that start at once both write a lease, then the one that started
/// later (ties: the larger owner token) steps back, so at most one proceeds.
pub async fn acquire(
    snapshot: &Snapshot,
    command: &str,
    take_over: bool,
    ttl: Duration,
) -> Result<LeaseGuard, LeaseError> {
    let now = unix_millis(SystemTime::now());
    let owner = ots_format::random_token();
    if !take_over
        && let Some(other) = snapshot
            .leases()
            .await?
            .into_iter()
            .find(|l| l.owner != owner && l.is_live(now) && !l.holder_is_gone())
    {
        return Err(LeaseError::Held {
            id: snapshot.id().to_string(),
            holder: other.describe(),
        });
    }
    let mine = lease_at(&owner, 0, command, now, ttl);
    snapshot.create_lease(&mine).await?;
    if !take_over {
        let now = unix_millis(SystemTime::now());
        let earlier = snapshot.leases().await?.into_iter().find(|l| {
            l.owner != owner
                && l.is_live(now)
                && !l.holder_is_gone()
                && (l.started_at_ms, &l.owner) < (mine.started_at_ms, &mine.owner)
        });
        if let Some(other) = earlier {
            release_lease(snapshot, &mine).await;
            return Err(LeaseError::Held {
                id: snapshot.id().to_string(),
                holder: other.describe(),
            });
        }
    }
    let current = Arc::new(std::sync::Mutex::new(mine));
    let renewer = {
        let snapshot = snapshot.clone();
        let current = current.clone();
        let command = command.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let next = match current.lock() {
                    Ok(c) => lease_at(&c.owner, c.renewal + 1, &command, c.started_at_ms, ttl),
                    Err(_) => return,
                };
                match snapshot.create_lease(&next).await {
                    Ok(()) => {
                        if let Ok(mut c) = current.lock() {
                            *c = next;
                        }
                    }
                    Err(e) => tracing::warn!("could not renew the lease on the snapshot: {e}"),
                }
            }
        })
    };
    Ok(LeaseGuard {
        snapshot: snapshot.clone(),
        current,
        renewer: Some(renewer),
    })
}

/// Writes a last renewal that has already expired: the owner is done.
async fn release_lease(snapshot: &Snapshot, lease: &Lease) {
    let mut done = lease.clone();
    done.renewal += 1;
    done.expires_at_ms = unix_millis(SystemTime::now());
    done.expires_at = rfc3339(SystemTime::now());
    if let Err(e) = snapshot.create_lease(&done).await {
        tracing::warn!("could not release the lease on the snapshot (it expires by itself): {e}");
    }
}

impl LeaseGuard {
    pub fn owner(&self) -> String {
        self.current
            .lock()
            .map(|c| c.owner.clone())
            .unwrap_or_default()
    }

    /// Stops renewing and marks the lease released.
    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
            let _ = r.await;
        }
        let current = self.current.lock().map(|c| c.clone()).ok();
        if let Some(c) = current {
            release_lease(&self.snapshot, &c).await;
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
