//! The one per-layer unpack path: prepare → apply → verify → commit → label.
//!
//! Every flow that turns a layer into a snapshot goes through [`LayerUnpacker`]: the
//! image unpack and the ordered pull ([`LayerUnpacker::unpack_layer_verified`]), the
//! parallel pull (prepare without parent, [`LayerUnpacker::settle`] with a rebase), and
//! commit (a scratch snapshot on the base chain fed by the diff's uncompressed stream).
//!
//! The steps and their invariants:
//! 1. [`prepare`](LayerUnpacker::prepare) an active scratch snapshot named
//!    `extract-<nanos>-<rand> <name>` ([`unpack_key`]), held by the flow's lease, so GC
//!    collects it if the process dies, and labelled with the ChainID it will become
//!    ([`SNAPSHOT_REF`]) when that is known;
//! 2. [`start_apply`](LayerUnpacker::start_apply) the layer on a blocking thread, from a
//!    stored blob or a stream;
//! 3. [`settle`](LayerUnpacker::settle): check the DiffID against the config's, commit
//!    the scratch snapshot as the ChainID (a concurrent unpacker's `AlreadyExists` is
//!    success: theirs is as good), and label the blob `containerd.io/uncompressed`.
//!
//! Any failure removes the scratch snapshot: no partial snapshot is ever committed.

use std::io::Read;
use std::sync::Arc;

use strata_content::labels::{GC_REF_CONTENT, GC_REF_SNAPSHOT, UNCOMPRESSED};
use strata_content::{Descriptor, Digest, Error, Info, Labels, Result, Store};
use strata_diff::{ApplyOptions, ApplyStats, Compression, OverlayOptions};
use strata_snapshot::{Mount, Snapshotter, unpack_key};

use super::KeyedLocks;
use super::unpack::SNAPSHOT_REF;
use crate::leases::{LeaseManager, Resource};

/// A source of a layer's bytes, opened on the blocking thread that applies it.
pub(crate) type OpenLayer = Box<dyn FnOnce() -> Result<Box<dyn Read + Send>> + Send>;

/// The decompression a layer's media type asks for.
///
/// # Errors
/// `NotImplemented` for a media type that is not a known layer's, naming the layer.
pub(crate) fn layer_compression(layer: &Descriptor) -> Result<Compression> {
    Compression::from_media_type(layer.media_type().as_ref())
        .map_err(|e| e.context(format!("layer {}", layer.digest())))
}

/// Checks an applied layer's DiffID against the config's.
///
/// # Errors
/// `FailedPrecondition` naming the layer and both DiffIDs when they differ.
pub(crate) fn check_diff_id(layer: &Descriptor, got: &Digest, want: &Digest) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::failed_precondition(format!(
        "layer {} has DiffID {got}, but the config says {want}",
        layer.digest()
    )))
}

/// An active scratch snapshot prepared for one layer.
pub(crate) struct Scratch {
    /// Its key (`extract-… <name>`).
    pub key: String,
    /// Its mounts.
    pub mounts: Vec<Mount>,
}

/// An apply running on a blocking thread (started at once, so it makes progress while
/// the caller awaits something else, e.g. the download feeding it).
pub(crate) struct ApplyTask(tokio::task::JoinHandle<Result<ApplyStats>>);

impl ApplyTask {
    /// Waits for the apply to end.
    pub async fn wait(self) -> Result<ApplyStats> {
        self.0
            .await
            .map_err(|e| Error::internal(format!("apply task failed: {e}")))?
    }
}

/// Applies layers into snapshots named by ChainID, one at a time per chain.
#[derive(Clone)]
pub(crate) struct LayerUnpacker {
    pub content: Arc<dyn Store>,
    pub sn: Arc<dyn Snapshotter>,
    pub sn_name: String,
    pub locks: Arc<KeyedLocks>,
    pub lease: Option<(Arc<LeaseManager>, String)>,
    pub sync_fs: bool,
}

impl LayerUnpacker {
    /// Adds snapshot `key` to the flow's lease, if it has one.
    pub async fn hold(&self, key: &str) -> Result<()> {
        if let Some((m, id)) = &self.lease {
            m.add_resource(id, &Resource::snapshot(&self.sn_name, key))
                .await?;
        }
        Ok(())
    }

    /// Whether the snapshot `chain` is committed.
    pub async fn exists(&self, chain: &Digest) -> Result<bool> {
        match self.sn.stat(chain.as_ref()).await {
            Ok(info) => Ok(info.kind == strata_snapshot::Kind::Committed),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The in-process lock of snapshot `chain`: whoever holds it is the one making it.
    /// Never wait for a blob download while holding it unless that download feeds you
    /// (a download holds its blob's lock and may wait for its tee's reader).
    pub async fn lock_chain(&self, chain: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks
            .lock(&format!("sn://{}/{chain}", self.sn_name))
            .await
    }

    /// Step 1: prepares the scratch snapshot `extract-… <name>` on `parent`, held by the
    /// lease and labelled [`SNAPSHOT_REF`]` = chain` when `chain` is known.
    ///
    /// # Errors
    /// The snapshotter's prepare errors (e.g. `NotFound` for a missing parent).
    pub async fn prepare(
        &self,
        name: &str,
        chain: Option<&Digest>,
        parent: Option<&Digest>,
    ) -> Result<Scratch> {
        let key = unpack_key(name);
        self.hold(&key).await?;
        let mut labels = Labels::new();
        if let Some(c) = chain {
            labels.insert(SNAPSHOT_REF.into(), c.to_string());
        }
        let parent = parent.map(|p| p.to_string()).unwrap_or_default();
        let mounts = self.sn.prepare(&key, &parent, labels).await?;
        Ok(Scratch { key, mounts })
    }

    /// Step 2: starts applying the layer `open` gives (compressed as `compression` says)
    /// onto `mounts`; `overlay` applies in overlay upperdir mode (whiteouts as 0:0
    /// devices), for a snapshot prepared without its lowers.
    pub fn start_apply(
        &self,
        mounts: Vec<Mount>,
        compression: Compression,
        open: OpenLayer,
        overlay: bool,
    ) -> ApplyTask {
        let opts = ApplyOptions {
            sync_fs: self.sync_fs,
            overlay: overlay.then(OverlayOptions::default),
            ..Default::default()
        };
        ApplyTask(tokio::task::spawn_blocking(move || {
            let reader = open()?;
            strata_diff::walking::apply_to_mounts(reader, compression, &mounts, opts)
        }))
    }

    /// Step 3: checks the DiffID the apply saw against `want`, commits the scratch
    /// snapshot `key` as `chain` (onto `rebase_onto` when it was prepared without its
    /// parent) and labels the layer blob with its DiffID. Returns whether this call made
    /// `chain` (`false`: a concurrent unpacker had). `key` is removed unless committed.
    ///
    /// # Errors
    /// `FailedPrecondition` for a DiffID mismatch; the snapshotter's commit errors other
    /// than `AlreadyExists`; content errors from labelling.
    pub async fn settle(
        &self,
        key: &str,
        layer: &Descriptor,
        chain: &Digest,
        applied: &Digest,
        want: &Digest,
        rebase_onto: Option<&Digest>,
    ) -> Result<bool> {
        if let Err(e) = check_diff_id(layer, applied, want) {
            let _ = self.sn.remove(key).await;
            return Err(e);
        }
        let made = self.commit_layer(chain, key, rebase_onto).await?;
        self.label_uncompressed(layer, want).await?;
        Ok(made)
    }

    /// Makes the committed snapshot `chain` = `parent` + `layer`, unless it exists.
    /// `open` gives the layer's bytes. Returns whether this call applied the layer.
    ///
    /// # Errors
    /// As [`LayerUnpacker::unpack_layer_verified`].
    pub async fn unpack_layer(
        &self,
        parent: Option<&Digest>,
        chain: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
        open: OpenLayer,
    ) -> Result<bool> {
        let lock = self.lock_chain(chain).await;
        self.unpack_layer_verified(lock, parent, chain, layer, diff_id, open, async { Ok(()) })
            .await
    }

    /// The three steps for one layer on its committed parent, with `chain`'s lock
    /// already held ([`LayerUnpacker::lock_chain`]); the snapshot is committed only once
    /// `verified` succeeds (for layers applied from a download stream, whose digest the
    /// content store checks only when the download commits).
    ///
    /// # Errors
    /// `FailedPrecondition` when the applied layer's DiffID is not `diff_id`; apply,
    /// snapshotter and `verified`'s errors. The scratch snapshot is removed on each.
    #[allow(clippy::too_many_arguments)]
    pub async fn unpack_layer_verified<V>(
        &self,
        _lock: tokio::sync::OwnedMutexGuard<()>,
        parent: Option<&Digest>,
        chain: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
        open: OpenLayer,
        verified: V,
    ) -> Result<bool>
    where
        V: std::future::Future<Output = Result<()>>,
    {
        if self.exists(chain).await? {
            self.hold(chain.as_ref()).await?;
            return Ok(false);
        }
        let compression = layer_compression(layer)?;
        let s = self.prepare(chain.as_ref(), Some(chain), parent).await?;
        let applied = self
            .start_apply(s.mounts, compression, open, false)
            .wait()
            .await;
        let stats = match (applied, verified.await) {
            (Ok(stats), Ok(())) => stats,
            (_, Err(e)) | (Err(e), _) => {
                let _ = self.sn.remove(&s.key).await;
                let key = &s.key;
                return Err(e.context(format!("apply layer {} onto {key:?}", layer.digest())));
            }
        };
        self.settle(&s.key, layer, chain, &stats.diff_id, diff_id, None)
            .await
    }

    /// Commits the applied active snapshot `key` as `chain` — onto `rebase_onto` with
    /// [`Snapshotter::commit_rebase`] when given — under the lease. Returns whether this
    /// call made `chain`; `false` when a concurrent unpacker (maybe in another process)
    /// made it first. `key` is removed unless committed.
    ///
    /// # Errors
    /// The snapshotter's commit errors other than `AlreadyExists`.
    async fn commit_layer(
        &self,
        chain: &Digest,
        key: &str,
        rebase_onto: Option<&Digest>,
    ) -> Result<bool> {
        let committed = match self.hold(chain.as_ref()).await {
            Err(e) => Err(e),
            Ok(()) => match rebase_onto {
                None => self.sn.commit(chain.as_ref(), key, Labels::new()).await,
                Some(p) => {
                    self.sn
                        .commit_rebase(chain.as_ref(), key, p.as_ref(), Labels::new())
                        .await
                }
            },
        };
        match committed {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = self.sn.remove(key).await;
                if e.is_already_exists() {
                    Ok(false)
                } else {
                    Err(e.context(format!("commit snapshot {chain}")))
                }
            }
        }
    }

    /// Sets `containerd.io/uncompressed=<diff_id>` on the layer blob (if it is present).
    pub async fn label_uncompressed(&self, layer: &Descriptor, diff_id: &Digest) -> Result<()> {
        let mut l = Labels::new();
        l.insert(UNCOMPRESSED.into(), diff_id.to_string());
        match self
            .content
            .update(
                Info::for_update(layer.digest().clone(), l),
                &[format!("labels.{UNCOMPRESSED}")],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A source over a committed blob.
    pub async fn blob_reader(&self, layer: &Descriptor) -> Result<OpenLayer> {
        let r = self.content.reader_at(layer).await?;
        Ok(Box::new(move || {
            Ok(Box::new(strata_diff::ReadAt::new(r)) as Box<dyn Read + Send>)
        }))
    }

    /// Labels the config with the top snapshot, and drops the manifest's layer GC refs if
    /// `discard_layers`.
    pub async fn finish(
        &self,
        manifest: &Descriptor,
        config: &Descriptor,
        top: Option<&Digest>,
        discard_layers: bool,
    ) -> Result<()> {
        if let Some(top) = top {
            let key = format!("{GC_REF_SNAPSHOT}{}", self.sn_name);
            let mut l = Labels::new();
            l.insert(key.clone(), top.to_string());
            self.content
                .update(
                    Info::for_update(config.digest().clone(), l),
                    &[format!("labels.{key}")],
                )
                .await
                .map_err(|e| e.context(format!("label config {}", config.digest())))?;
        }
        if discard_layers {
            let info = self.content.info(manifest.digest()).await?;
            let paths: Vec<String> = info
                .labels
                .keys()
                .filter(|k| {
                    k.strip_prefix(GC_REF_CONTENT)
                        .is_some_and(|r| r.starts_with(".l."))
                })
                .map(|k| format!("labels.{k}"))
                .collect();
            if !paths.is_empty() {
                self.content
                    .update(Info::for_update(info.digest, Labels::new()), &paths)
                    .await?;
            }
        }
        Ok(())
    }
}
