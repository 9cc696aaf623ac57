//! The lease a flow (pull, commit) takes for itself, and its release on every way out.
//!
//! A flow holds what it makes — blobs, ingests, scratch snapshots — in a lease owned by
//! this process ([`LeaseOpts::owned_by_this_process`]), so GC leaves them alone while
//! the flow runs. When the flow returns, [`FlowLease::release`] deletes the lease. When
//! the flow's future is dropped instead (a caller's timeout, Ctrl-C), dropping the
//! [`FlowLease`] starts a cleanup task that removes the scratch snapshots the lease
//! holds (`extract-…`, `commit-view-…`) and deletes the lease; [`wait_for_cleanups`]
//! waits for those tasks. A lease that cannot be deleted (the disk is full) is marked
//! abandoned, and this process's next GC treats it as expired; what a killed process
//! leaves is collected by the next GC once that process is gone.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_content::Result;
use strata_snapshot::Snapshotter;

use crate::gc::sweep::is_scratch_key;
use crate::leases::{LeaseManager, LeaseOpts};

/// Cleanup tasks started by dropped flows, not yet awaited.
static CLEANUPS: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Leases this process released but could not delete (e.g. on a full disk).
static ABANDONED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether lease `id` belongs to a flow of this process that has ended but could not
/// delete it: GC treats it as expired, so what it held is collected by the next GC
/// (run with space to spare) rather than when the lease expires.
pub(crate) fn is_abandoned(id: &str) -> bool {
    ABANDONED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(id)
}

/// Waits until the cleanups of every flow dropped so far in this process are done
/// (their scratch snapshots removed and their leases deleted). A program that cancels a
/// flow — e.g. on SIGINT — calls this before it exits.
pub async fn wait_for_cleanups() {
    loop {
        let pending: Vec<_> =
            std::mem::take(&mut *CLEANUPS.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        for t in pending {
            let _ = t.await;
        }
    }
}

/// A lease held by a running flow; see the [module docs](self).
pub(crate) struct FlowLease {
    manager: Arc<LeaseManager>,
    id: String,
    snapshotters: Vec<(String, Arc<dyn Snapshotter>)>,
    released: bool,
}

impl FlowLease {
    /// Creates a lease owned by this process, expiring after `ttl` at the latest.
    ///
    /// # Errors
    /// The lease manager's errors.
    pub async fn create(
        manager: &Arc<LeaseManager>,
        ttl: Duration,
        snapshotters: &[(String, Arc<dyn Snapshotter>)],
    ) -> Result<FlowLease> {
        let opts = LeaseOpts::default().expires_in(ttl).owned_by_this_process();
        let lease = manager.create(opts).await?;
        Ok(FlowLease {
            manager: manager.clone(),
            id: lease.id,
            snapshotters: snapshotters.to_vec(),
            released: false,
        })
    }

    /// The lease, as flow options take it.
    pub fn handle(&self) -> (Arc<LeaseManager>, String) {
        (self.manager.clone(), self.id.clone())
    }

    /// Removes the scratch snapshots the lease still holds and deletes it (failures are
    /// left to GC).
    pub async fn release(mut self) {
        self.released = true;
        cleanup(
            self.manager.clone(),
            self.id.clone(),
            self.snapshotters.clone(),
        )
        .await;
    }
}

impl Drop for FlowLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // no runtime to clean up on: GC collects once this process is gone
        };
        let task = cleanup(
            self.manager.clone(),
            self.id.clone(),
            std::mem::take(&mut self.snapshotters),
        );
        let handle = rt.spawn(task);
        CLEANUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }
}

/// Removes lease `id`'s scratch snapshots, then the lease.
async fn cleanup(
    manager: Arc<LeaseManager>,
    id: String,
    snapshotters: Vec<(String, Arc<dyn Snapshotter>)>,
) {
    if let Ok(resources) = manager.list_resources(&id).await {
        for r in resources {
            let Some(sn_name) = r.kind.strip_prefix("snapshots/") else {
                continue;
            };
            let sn = snapshotters.iter().find(|(n, _)| n == sn_name);
            if let Some((_, sn)) = sn.filter(|_| is_scratch_key(&r.id)) {
                let _ = sn.remove(&r.id).await;
            }
        }
    }
    if let Err(e) = manager.delete(&id).await {
        tracing::debug!(lease = %id, "release flow lease: {e}; left to GC");
        ABANDONED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }
}
