//! [`ImageService::unpack`]: an image's layers → snapshots named by ChainID.
//!
//! containerd's unpack: for each layer compute the ChainID; `stat` it and skip what
//! exists; otherwise prepare `extract-<nanos>-<rand> <chainID>` on the parent chain, apply
//! the layer, check the DiffID against the config's `rootfs.diff_ids` (a mismatch removes
//! the snapshot and fails), commit as the ChainID (`AlreadyExists` from a concurrent
//! unpacker is success), label the layer blob `containerd.io/uncompressed=<DiffID>`, and
//! finally label the config `containerd.io/gc.ref.snapshot.<snapshotter>=<top ChainID>`.
//!
//! [`LayerUnpacker`] is the per-layer machinery shared with the pipelined pull.

use std::io::Read;
use std::sync::Arc;

use strata_content::labels::{GC_REF_CONTENT, GC_REF_SNAPSHOT, UNCOMPRESSED};
use strata_content::{Descriptor, Digest, Error, Info, Labels, Result, Store};
use strata_diff::{ApplyOptions, Compression};
use strata_snapshot::{Mount, Snapshotter, unpack_key};

use super::{ImageService, KeyedLocks};
use crate::identity::chain_ids;
use crate::image::{self as img, Image};
use crate::leases::{LeaseManager, Resource};
use crate::platforms::{self, MatchComparer};

/// The label an extract snapshot carries: the ChainID it will be committed as
/// (containerd's `containerd.io/snapshot.ref`).
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// What happened to one layer during an unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Its snapshot already existed.
    Exists,
    /// Being applied.
    Applying,
    /// Applied and committed.
    Applied,
}

/// A progress event of an unpack.
#[derive(Debug, Clone)]
pub struct UnpackEvent {
    /// Index of the layer in the manifest.
    pub index: usize,
    /// The layer blob.
    pub layer: Descriptor,
    /// The ChainID of the snapshot holding layers `0..=index`.
    pub chain_id: Digest,
    /// What happened.
    pub state: LayerState,
}

/// An unpack progress callback.
pub type UnpackProgressFn = Arc<dyn Fn(&UnpackEvent) + Send + Sync>;

/// Options of [`ImageService::unpack`].
#[derive(Clone, Default)]
pub struct UnpackOptions {
    /// The snapshotter (by the name it was registered under); default the service's
    /// default snapshotter.
    pub snapshotter: Option<String>,
    /// Which manifest of an index to unpack; default the host platform.
    pub platform: Option<Arc<dyn MatchComparer>>,
    /// Drop the manifest's layer GC references after unpacking, so GC may reclaim the
    /// compressed layer blobs (the snapshots keep the data). containerd's
    /// `discard_unpacked_layers`.
    pub discard_layers: bool,
    /// `syncfs` each snapshot after applying.
    pub sync_fs: bool,
    /// Called as layers are skipped, applied and committed.
    pub progress: Option<UnpackProgressFn>,
    /// A lease holding the snapshots and labels made by this unpack.
    pub lease: Option<(Arc<LeaseManager>, String)>,
}

impl std::fmt::Debug for UnpackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpackOptions")
            .field("snapshotter", &self.snapshotter)
            .field("discard_layers", &self.discard_layers)
            .field("sync_fs", &self.sync_fs)
            .finish_non_exhaustive()
    }
}

/// What [`ImageService::unpack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The snapshotter used.
    pub snapshotter: String,
    /// The config blob of the unpacked manifest.
    pub config: Descriptor,
    /// The ChainIDs of every layer prefix; the last names the image's top snapshot.
    pub chain_ids: Vec<Digest>,
    /// Layers applied by this call.
    pub applied: usize,
    /// Layers whose snapshot already existed.
    pub existed: usize,
}

impl Unpacked {
    /// The top snapshot's name (the ChainID of all layers), `None` for an image without
    /// layers.
    pub fn top(&self) -> Option<&Digest> {
        self.chain_ids.last()
    }
}

/// The decompression a layer's media type asks for.
///
/// # Errors
/// `InvalidArgument` for a media type that is not a layer's, naming the layer.
pub(crate) fn layer_compression(layer: &Descriptor) -> Result<Compression> {
    Compression::from_media_type(layer.media_type().to_string().as_str())
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
    /// Adds snapshot `key` to the unpack's lease, if it has one.
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

    /// Makes the committed snapshot `chain` = `parent` + `layer`, unless it exists.
    /// `open` gives the layer's bytes (compressed as its media type says). Returns
    /// whether this call applied the layer.
    ///
    /// # Errors
    /// `FailedPrecondition` when the applied layer's DiffID is not `diff_id` (the
    /// snapshot is removed); apply and snapshotter errors otherwise.
    pub async fn unpack_layer<F>(
        &self,
        parent: Option<&Digest>,
        chain: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
        open: F,
    ) -> Result<bool>
    where
        F: FnOnce() -> Result<Box<dyn Read + Send>> + Send + 'static,
    {
        let lock = self.lock_chain(chain).await;
        self.unpack_layer_verified(lock, parent, chain, layer, diff_id, open, async { Ok(()) })
            .await
    }

    /// The in-process lock of snapshot `chain`: whoever holds it is the one making it.
    /// Never wait for a blob download while holding it unless that download feeds you
    /// (a download holds its blob's lock and may wait for its tee's reader).
    pub async fn lock_chain(&self, chain: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks
            .lock(&format!("sn://{}/{chain}", self.sn_name))
            .await
    }

    /// As [`LayerUnpacker::unpack_layer`], with `chain`'s lock already held
    /// ([`LayerUnpacker::lock_chain`]), and the snapshot committed only once `verified`
    /// succeeds: for layers applied from a download stream, whose digest the content
    /// store checks only when the download commits.
    ///
    /// # Errors
    /// As [`LayerUnpacker::unpack_layer`], and `verified`'s error (the snapshot is removed).
    #[allow(clippy::too_many_arguments)]
    pub async fn unpack_layer_verified<F, V>(
        &self,
        _lock: tokio::sync::OwnedMutexGuard<()>,
        parent: Option<&Digest>,
        chain: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
        open: F,
        verified: V,
    ) -> Result<bool>
    where
        F: FnOnce() -> Result<Box<dyn Read + Send>> + Send + 'static,
        V: std::future::Future<Output = Result<()>>,
    {
        if self.exists(chain).await? {
            self.hold(chain.as_ref()).await?;
            return Ok(false);
        }
        let compression = layer_compression(layer)?;
        let key = unpack_key(chain.as_ref());
        self.hold(&key).await?;
        let mut labels = Labels::new();
        labels.insert(SNAPSHOT_REF.into(), chain.to_string());
        let parent_key = parent.map(|p| p.to_string()).unwrap_or_default();
        let mounts = self.sn.prepare(&key, &parent_key, labels).await?;
        let applied = self.apply(mounts, compression, open).await;
        let applied = match (applied, verified.await) {
            (Ok(s), Ok(())) => Ok(s),
            (_, Err(e)) => Err(e),
            (Err(e), _) => Err(e),
        };
        let stats = match applied {
            Ok(s) => s,
            Err(e) => {
                let _ = self.sn.remove(&key).await;
                return Err(e.context(format!("apply layer {} onto {key:?}", layer.digest())));
            }
        };
        if let Err(e) = check_diff_id(layer, &stats.diff_id, diff_id) {
            let _ = self.sn.remove(&key).await;
            return Err(e);
        }
        let applied = self.commit_layer(chain, &key, None).await?;
        self.label_uncompressed(layer, diff_id).await?;
        Ok(applied)
    }

    /// Commits the applied active snapshot `key` as `chain` — onto `rebase_onto` with
    /// [`Snapshotter::commit_rebase`] when given (`key` was prepared without parent) —
    /// under the lease. Returns whether this call made `chain`; `false` when a concurrent
    /// unpacker (maybe in another process) made it first, theirs being as good. `key` is
    /// removed unless committed.
    ///
    /// # Errors
    /// The snapshotter's commit errors other than `AlreadyExists`.
    pub async fn commit_layer(
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

    async fn apply<F>(
        &self,
        mounts: Vec<Mount>,
        compression: Compression,
        open: F,
    ) -> Result<strata_diff::ApplyStats>
    where
        F: FnOnce() -> Result<Box<dyn Read + Send>> + Send + 'static,
    {
        let opts = ApplyOptions {
            sync_fs: self.sync_fs,
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || {
            let reader = open()?;
            strata_diff::walking::apply_to_mounts(reader, compression, &mounts, opts)
        })
        .await
        .map_err(|e| Error::internal(format!("apply task failed: {e}")))?
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

    /// A reader over a committed blob.
    pub async fn blob_reader(
        &self,
        layer: &Descriptor,
    ) -> Result<impl FnOnce() -> Result<Box<dyn Read + Send>> + Send + 'static> {
        let r = self.content.reader_at(layer).await?;
        Ok(move || Ok(Box::new(strata_diff::walking::ReadAt::new(r)) as Box<dyn Read + Send>))
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

impl ImageService {
    /// Unpacks `image` into snapshots (see the [module docs](self)).
    ///
    /// # Errors
    /// - `NotFound` for an unknown snapshotter, a missing blob or no manifest for the
    ///   platform.
    /// - `InvalidArgument` when the config's DiffIDs do not match the layers in number.
    /// - `FailedPrecondition` when a layer's DiffID differs from the config's.
    /// - apply and snapshotter errors, naming the layer.
    pub async fn unpack(&self, image: &Image, opts: UnpackOptions) -> Result<Unpacked> {
        let (sn_name, sn) = self.snapshotter(opts.snapshotter.as_deref())?;
        let provider: &dyn strata_content::Provider = self.content.as_ref();
        let matcher = opts.platform.clone().unwrap_or_else(platforms::default_arc);
        let m = img::manifest(provider, &image.target, matcher.as_ref())
            .await
            .map_err(|e| e.context(format!("unpack image {}", image.name)))?;
        let config = m.manifest.config().clone();
        let (layers, diff_ids) = m
            .layers_with_diff_ids(provider)
            .await
            .map_err(|e| e.context(format!("unpack image {}", image.name)))?;
        let chains = chain_ids(&diff_ids);
        let u = LayerUnpacker {
            content: self.content.clone(),
            sn,
            sn_name: sn_name.clone(),
            locks: self.blob_locks.clone(),
            lease: opts.lease.clone(),
            sync_fs: opts.sync_fs,
        };
        let emit = |index: usize, state: LayerState| {
            if let Some(p) = &opts.progress {
                p(&UnpackEvent {
                    index,
                    layer: layers[index].clone(),
                    chain_id: chains[index].clone(),
                    state,
                });
            }
        };
        let (mut applied, mut existed) = (0, 0);
        for (i, layer) in layers.iter().enumerate() {
            if u.exists(&chains[i]).await? {
                u.label_uncompressed(layer, &diff_ids[i]).await?;
                existed += 1;
                emit(i, LayerState::Exists);
                continue;
            }
            emit(i, LayerState::Applying);
            let open = u
                .blob_reader(layer)
                .await
                .map_err(|e| e.context(format!("unpack image {}", image.name)))?;
            let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
            if u.unpack_layer(parent, &chains[i], layer, &diff_ids[i], open)
                .await?
            {
                applied += 1;
                emit(i, LayerState::Applied);
            } else {
                existed += 1;
                emit(i, LayerState::Exists);
            }
        }
        u.finish(&m.descriptor, &config, chains.last(), opts.discard_layers)
            .await?;
        Ok(Unpacked {
            snapshotter: sn_name,
            config,
            chain_ids: chains,
            applied,
            existed,
        })
    }
}
