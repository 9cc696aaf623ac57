//! The image service: the flows users call, over a content store, an image store,
//! snapshotters and (optionally) a lease manager.
//!
//! | flow | what it does | module docs |
//! |---|---|---|
//! | [`ImageService::fetch`] | resolve a reference, land every blob (verified, resumable) with GC labels, record the image | `fetch` |
//! | [`ImageService::unpack`] | an image's layers → committed snapshots named by ChainID | `unpack` |
//! | [`ImageService::pull`] | fetch and unpack pipelined: layers are applied from their download streams | `pull` |
//! | [`ImageService::commit`] | a container's active snapshot → a new layer, config, manifest and image | `commit` |
//! | [`ImageService::push`] | an image's blobs and manifests → a registry | `push` |
//!
//! Every layer that becomes a snapshot, in unpack, pull and commit alike, goes through
//! one path (`layer`): prepare a scratch snapshot `extract-… <name>` held by the
//! flow's lease → apply → check the DiffID → commit as the ChainID (a concurrent
//! unpacker's `AlreadyExists` is success) → label the blob with its DiffID. Any failure
//! removes the scratch snapshot, so no partial snapshot is ever committed.
//!
//! With a [`LeaseManager`] ([`ImageService::with_leases`]),
//! pull and commit take a lease of their own (fetch and unpack use the one in their
//! options), owned by this process: a crash leaves nothing that GC would not collect
//! once the process is gone, and a flow whose future is dropped removes its scratch
//! snapshots and lease in a cleanup task ([`wait_for_cleanups`]).
//!
//! ## Fetch flow
//! 1. Parse the reference (docker defaults, `:latest`), build a
//!    [`Resolver`](crate::remote::Resolver) and resolve
//!    the target descriptor (HEAD, then GET).
//! 2. [`dispatch`](crate::handlers::dispatch) over the graph with the handler stack of
//!    containerd's pull: *fetch this blob*, then *children* (index → manifests,
//!    manifest → config + layers) wrapped by `set_children_labels` (GC refs on the
//!    parent), `filter_platforms` and `limit_manifests`. The dispatch limiter bounds the
//!    concurrent downloads ([`FetchOptions::max_concurrent_downloads`], default 3).
//! 3. Each blob: a per-digest lock (single-flight inside this process: a second fetch of
//!    the same blob waits, then finds it committed); `Exists` if committed; else open the
//!    ingest `<kind>-<digest>` (retrying while another process holds it), resume at its
//!    offset (`Range: bytes=<offset>-`), stream into the writer, and commit with the
//!    expected size and digest (the store verifies). A digest mismatch aborts the ingest,
//!    so nothing wrong is ever committed or resumed. The
//!    `containerd.io/distribution.source.<host>=<repo>` label is set or appended.
//! 4. Create or update the image record `name → target`.
//!
//! [`FetchOptions::lease`] holds everything fetched until the caller drops it.
//!
//! ## For the pipelined pull (fetch + unpack)
//! [`FetchOptions::on_blob`] receives every blob's descriptor as soon as it is committed
//! (or found present), in completion order. An unpacker can apply layer N when its
//! notification has arrived and its parent chain is ready, while later layers are still
//! downloading. [`FetchOptions::tee`] goes further: it hands the unpacker a bounded
//! stream of a layer's bytes while they are being ingested, so decompression can start
//! before the download ends (the blob is still verified and committed as usual; the
//! unpacker must not commit its snapshot before `on_blob` says the blob was verified).

pub mod commit;
pub mod fetch;
pub(crate) mod flow_lease;
mod layer;
pub mod pull;
pub mod push;
pub mod unpack;

pub use commit::{CommitOptions, Committed, ConfigChanges, EMPTY_LAYER_DIFF_ID, IMAGE_LABEL};
pub use fetch::{BlobEvent, FetchOptions, PlatformSelection, TeeFn};
pub use flow_lease::wait_for_cleanups;
pub use pull::{PullOptions, Pulled};
pub use push::PushOptions;
pub use unpack::{
    LayerState, SNAPSHOT_REF, UnpackEvent, UnpackOptions, UnpackProgressFn, Unpacked,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use strata_content::{Descriptor, Error, Result, Store};
use strata_snapshot::Snapshotter;

use crate::leases::LeaseManager;
use crate::store::ImageStore;

/// The state of one blob in a fetch or push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Queued behind the concurrency limit or another fetch of the same blob.
    Waiting,
    /// Bytes are moving; `offset` says how many are done.
    Downloading,
    /// Fetched (or pushed) and committed.
    Done,
    /// Already present; nothing was transferred.
    Exists,
}

/// A progress event for one blob.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The ingest ref (`layer-sha256:…`).
    pub reference: String,
    /// The blob.
    pub descriptor: Descriptor,
    /// What is happening.
    pub state: ProgressState,
    /// Bytes done so far (including resumed bytes).
    pub offset: u64,
    /// The blob's size.
    pub total: u64,
}

/// A progress callback; called from the transferring tasks, so it should be quick.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Per-key async locks that disappear when unused: single-flight by digest.
#[derive(Default)]
pub(crate) struct KeyedLocks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub(crate) async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap();
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

/// The flows over one content store, one image store (both of one namespace), the
/// registered snapshotters and an optional lease manager: Fetch, Unpack, Pull, Commit
/// and Push (see the [module docs](self)).
///
/// `strata::Root` builds one over a state directory; build one by hand with
/// [`ImageService::new`], [`ImageService::with_snapshotter`] and
/// [`ImageService::with_leases`].
pub struct ImageService {
    content: Arc<dyn Store>,
    images: Arc<ImageStore>,
    blob_locks: Arc<KeyedLocks>,
    snapshotters: Vec<(String, Arc<dyn Snapshotter>)>,
    leases: Option<Arc<LeaseManager>>,
}

impl ImageService {
    /// A service over a content store and an image store (of the same namespace).
    pub fn new(content: Arc<dyn Store>, images: Arc<ImageStore>) -> Self {
        ImageService {
            content,
            images,
            blob_locks: Arc::default(),
            snapshotters: Vec::new(),
            leases: None,
        }
    }

    /// Registers a snapshotter under `name` (`overlay`, `native` …) for unpack and commit.
    /// The first one registered is the default.
    pub fn with_snapshotter(mut self, name: impl Into<String>, sn: Arc<dyn Snapshotter>) -> Self {
        self.snapshotters.push((name.into(), sn));
        self
    }

    /// Uses `leases` to protect the flows' work against garbage collection: commit takes
    /// a lease of its own; fetch, unpack and pull use the lease given in their options.
    pub fn with_leases(mut self, leases: Arc<LeaseManager>) -> Self {
        self.leases = Some(leases);
        self
    }

    /// The lease manager, if any.
    pub fn leases(&self) -> Option<&Arc<LeaseManager>> {
        self.leases.as_ref()
    }

    /// A lease of this process for one flow, when the service has a lease manager.
    async fn flow_lease(&self, ttl: std::time::Duration) -> Result<Option<flow_lease::FlowLease>> {
        match &self.leases {
            Some(m) => Ok(Some(
                flow_lease::FlowLease::create(m, ttl, &self.snapshotters).await?,
            )),
            None => Ok(None),
        }
    }

    /// The registered snapshotters, default first.
    pub fn snapshotters(&self) -> &[(String, Arc<dyn Snapshotter>)] {
        &self.snapshotters
    }

    /// The snapshotter `name`, or the default one.
    ///
    /// # Errors
    /// `NotFound` when no snapshotter of that name (or none at all) is registered.
    pub fn snapshotter(&self, name: Option<&str>) -> Result<(String, Arc<dyn Snapshotter>)> {
        let found = match name {
            Some(n) => self.snapshotters.iter().find(|(k, _)| k == n),
            None => self.snapshotters.first(),
        };
        found.cloned().ok_or_else(|| {
            Error::not_found(format!(
                "snapshotter {:?} (registered: {:?})",
                name.unwrap_or("<default>"),
                self.snapshotters
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
            ))
        })
    }

    /// The content store.
    pub fn content(&self) -> &Arc<dyn Store> {
        &self.content
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }
}

/// Nanoseconds since the epoch, for unique scratch names.
pub(crate) fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// containerd's `MakeRefKey`: the ingest ref of a blob, `<kind>-<digest>`.
///
/// ```
/// use strata_image::service::ref_key;
/// let d = strata_content::Descriptor::new(
///     strata_image::media_types::OCI_LAYER_GZIP.into(), 1,
///     strata_content::digest::sha256(b"x"));
/// assert!(ref_key(&d).starts_with("layer-sha256:"));
/// ```
pub fn ref_key(desc: &Descriptor) -> String {
    format!(
        "{}-{}",
        crate::media_types::ref_key_prefix(desc.media_type().as_ref()),
        desc.digest()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyed_locks_serialize_one_key_only() {
        let l = Arc::new(KeyedLocks::default());
        let g = l.lock("a").await;
        // Another key is free.
        let _b = tokio::time::timeout(std::time::Duration::from_millis(100), l.lock("b"))
            .await
            .expect("b is free");
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a is held");
        drop(g);
        waiter.await.unwrap();
        assert!(
            l.map
                .lock()
                .unwrap()
                .values()
                .all(|w| w.strong_count() <= 1)
        );
    }
}
