//! The I/O half of garbage collection: read the [`World`] from the real stores, then
//! remove what the [`Plan`] lists — records first, bytes and directories after.
//!
//! Snapshots are not namespaced in strata and strata has no container records, so an
//! active or view snapshot is a root unless its key says it is a flow's scratch snapshot
//! (`extract-…` from unpack, `commit-view-…` from commit): those live only as long as the
//! lease of the flow that made them, and a crashed flow's leftovers are collected.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use strata_content::Result;
use strata_content::labels::{GC_ROOT, Labels};
use strata_content::local::LocalStore;
use strata_content::{IngestManager, Manager};
use strata_snapshot::{Kind, Snapshotter};

use super::mark::{ContentRecord, ImageRecord, IngestRecord, Plan, SnapshotRecord, World};
use crate::leases::LeaseManager;
use crate::store::ImageStore;

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Expired leases deleted.
    pub leases: usize,
    /// Expired images deleted.
    pub images: usize,
    /// Blob records deleted (per namespace).
    pub content: usize,
    /// Blob files removed from disk.
    pub blobs_removed: usize,
    /// Ingests aborted.
    pub ingests: usize,
    /// Snapshots removed.
    pub snapshots: usize,
}

/// Whether a snapshot key belongs to a flow's scratch work rather than to a user.
pub fn is_scratch_key(key: &str) -> bool {
    key.starts_with("extract-") || key.starts_with("commit-view-")
}

/// Collects garbage across a content store, an image store, leases and snapshotters that
/// share one root.
#[derive(Clone)]
pub struct Collector {
    /// The content store (any namespace handle).
    pub content: LocalStore,
    /// The image store (any namespace handle).
    pub images: ImageStore,
    /// The leases.
    pub leases: Arc<LeaseManager>,
    /// The snapshotters by name.
    pub snapshotters: Vec<(String, Arc<dyn Snapshotter>)>,
}

impl Collector {
    /// Reads every object of every namespace.
    ///
    /// # Errors
    /// Store errors.
    pub async fn world(&self) -> Result<World> {
        let mut w = World {
            leases: self
                .leases
                .snapshot_all()?
                .into_iter()
                .map(expire_if_orphaned)
                .collect(),
            ..Default::default()
        };
        for (ns, image) in self.images.all_images().await? {
            w.images.push(ImageRecord {
                ns,
                name: image.name,
                target: image.target.digest().to_string(),
                labels: image.labels,
            });
        }
        for (ns, info) in self.content.all_blob_infos().await? {
            w.content.push(ContentRecord {
                ns,
                digest: info.digest.to_string(),
                labels: info.labels,
            });
        }
        for (ns, st) in self.content.all_ingests().await? {
            w.ingests.push(IngestRecord {
                ns,
                reference: st.reference,
                expected: st.expected.map(|d| d.to_string()),
                updated_at: st.updated_at,
            });
        }
        for (name, sn) in &self.snapshotters {
            for info in sn.walk(&[]).await? {
                let mut labels: Labels = info.labels;
                if info.kind != Kind::Committed && !is_scratch_key(&info.name) {
                    labels.insert(GC_ROOT.into(), "active".into());
                }
                w.snapshots.push(SnapshotRecord {
                    snapshotter: name.clone(),
                    key: info.name,
                    parent: Some(info.parent).filter(|p| !p.is_empty()),
                    labels,
                });
            }
        }
        Ok(w)
    }

    /// Marks from the roots and removes everything unreachable. Objects a concurrent flow
    /// creates after the world was read are not in the plan, so they are never removed;
    /// blob bytes are only removed while no namespace records them (checked in the same
    /// transaction that a commit uses).
    ///
    /// # Errors
    /// Store errors other than "already gone" or "busy" (an ingest still being written is
    /// skipped).
    pub async fn collect(&self) -> Result<GcStats> {
        let world = self.world().await?;
        let plan = world.plan(SystemTime::now());
        self.sweep(plan).await
    }

    async fn sweep(&self, plan: Plan) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let gone = |e: &strata_content::Error| e.is_not_found() || e.is_unavailable();
        for (ns, id) in plan.leases {
            match self.leases.namespace(ns).delete(&id).await {
                Ok(()) => stats.leases += 1,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        for (ns, name) in plan.images {
            match self.images.namespace(&ns).delete(&name, None).await {
                Ok(()) => stats.images += 1,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        for (ns, reference) in plan.ingests {
            match self.content.namespace(&ns).abort(&reference).await {
                Ok(()) => stats.ingests += 1,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        for (ns, digest) in plan.content {
            let Ok(d) = strata_content::digest::parse(&digest) else {
                continue;
            };
            match self.content.namespace(&ns).delete(&d).await {
                Ok(()) => stats.content += 1,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        // Bytes no namespace records: left by deletes above, or by a crash between a
        // blob's rename and its record.
        let recorded: BTreeSet<String> = self
            .content
            .all_blob_records()
            .await?
            .into_iter()
            .map(|(_, d)| d.to_string())
            .collect();
        for d in self.content.blobs_on_disk().await? {
            if !recorded.contains(d.as_ref()) {
                match self.content.remove_blob_bytes(&d).await {
                    Ok(true) => stats.blobs_removed += 1,
                    Ok(false) => {}
                    Err(e) if e.is_failed_precondition() || gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        stats.ingests += self.content.remove_orphan_ingest_dirs().await?;
        for (sn_name, key) in plan.snapshots {
            let Some((_, sn)) = self.snapshotters.iter().find(|(n, _)| *n == sn_name) else {
                continue;
            };
            match sn.remove(&key).await {
                Ok(()) => stats.snapshots += 1,
                Err(e) if gone(&e) || e.is_failed_precondition() => {}
                Err(e) => return Err(e),
            }
        }
        for (_, sn) in &self.snapshotters {
            sn.cleanup().await?;
        }
        Ok(stats)
    }
}

/// A lease whose owning process is gone ([`Lease::owner_gone`](crate::leases::Lease::owner_gone)),
/// or that a flow of this process released without managing to delete it, is expired:
/// it is given an expiry in the past, so the plan deletes it and stops protecting what
/// it held.
fn expire_if_orphaned(
    (ns, mut lease, resources): (String, crate::leases::Lease, Vec<crate::leases::Resource>),
) -> (String, crate::leases::Lease, Vec<crate::leases::Resource>) {
    if lease.owner_gone() || crate::service::flow_lease::is_abandoned(&lease.id) {
        lease.labels.insert(
            strata_content::labels::GC_EXPIRE.into(),
            "1970-01-01T00:00:00Z".into(),
        );
    }
    (ns, lease, resources)
}
