//! [`ImageService::unpack`]: an image's layers → snapshots named by ChainID.
//!
//! containerd's unpack: for each layer compute the ChainID; `stat` it and skip what
//! exists; otherwise prepare `extract-<nanos>-<rand> <chainID>` on the parent chain, apply
//! the layer, check the DiffID against the config's `rootfs.diff_ids` (a mismatch removes
//! the snapshot and fails), commit as the ChainID (`AlreadyExists` from a concurrent
//! unpacker is success), label the layer blob `containerd.io/uncompressed=<DiffID>`, and
//! finally label the config `containerd.io/gc.ref.snapshot.<snapshotter>=<top ChainID>`.
//!
//! Each layer goes through the one per-layer path (the private `layer` module's
//! `LayerUnpacker`), shared with the pipelined pull and commit.

use std::sync::Arc;

use strata_content::{Descriptor, Digest, Result};

use super::ImageService;
use super::layer::LayerUnpacker;
use crate::identity::chain_ids;
use crate::image::{self as img, Image};
use crate::leases::LeaseManager;
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
