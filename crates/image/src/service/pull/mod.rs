//! [`ImageService::pull`]: Fetch and Unpack, pipelined.
//!
//! 1. Resolve the reference and fetch the documents (index, manifests, configs) with the
//!    usual handler stack (GC labels, platform filtering).
//! 2. Read the selected manifest and config: DiffIDs → ChainIDs. A layer whose snapshot
//!    already exists is neither fetched (unless [`PullOptions::fetch_all`]) nor applied
//!    (containerd's unpacker does the same; `fetch_all` is its `WithUnpackFetchAllContent`).
//! 3. The missing layers download concurrently (bounded by
//!    [`FetchOptions::max_concurrent_downloads`]), in layer order, and are applied while
//!    they arrive, decompressing and hashing in blocking tasks:
//!    - `ordered` (any snapshotter): layer *n* is applied once layer *n-1*'s snapshot is
//!      committed, straight from its download stream when the download had not started
//!      yet, from the committed blob otherwise;
//!    - `parallel` (snapshotters that [can rebase](strata_snapshot::Snapshotter::can_rebase),
//!      overlay and native): every layer is applied from its own download stream into a
//!      parentless snapshot at the same time, then committed in order onto its parent.
//!
//!    Either way a layer's snapshot is committed only after its blob's digest and its
//!    DiffID checked out.
//! 4. Label the config with the top snapshot, create or update the image record.
//!
//! Everything made is held by a lease (when the service has a lease manager) until the
//! image record exists, so a crash leaves only what GC collects.

mod ordered;
mod parallel;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_content::{Descriptor, Digest, Error, Result};
use strata_diff::ChannelReader;
use tokio::sync::{mpsc, oneshot, watch};

use super::layer::{LayerUnpacker, OpenLayer};
use super::unpack::{LayerState, UnpackEvent, UnpackProgressFn};
use super::{FetchOptions, ImageService, TeeFn};
use crate::identity::chain_ids;
use crate::image::{self as img, Image};
use crate::leases::Resource;
use crate::platforms::{self, MatchComparer};
use crate::reference::Reference;
use crate::remote::Resolver;

/// Options of [`ImageService::pull`].
#[derive(Clone, Default)]
pub struct PullOptions {
    /// How to fetch (registry options, platforms, concurrency, progress, labels, name).
    pub fetch: FetchOptions,
    /// The snapshotter to unpack into; default the service's default.
    pub snapshotter: Option<String>,
    /// Do not unpack: fetch only.
    pub no_unpack: bool,
    /// Fetch every layer blob even when its snapshot already exists.
    pub fetch_all: bool,
    /// Drop the layer GC references after unpacking (see
    /// [`UnpackOptions::discard_layers`](super::UnpackOptions::discard_layers)).
    pub discard_layers: bool,
    /// Called as layers are skipped, applied and committed.
    pub unpack_progress: Option<UnpackProgressFn>,
}

/// What [`ImageService::pull`] did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image record.
    pub image: Image,
    /// The ChainIDs of the unpacked manifest's layer prefixes (empty without unpack).
    pub chain_ids: Vec<Digest>,
    /// Layers applied by this pull.
    pub applied: usize,
    /// Layers whose snapshots already existed.
    pub existed: usize,
    /// Of the applied layers, those applied straight from their download stream (the
    /// others were read back from the content store).
    pub streamed: usize,
}

/// Counts of what step 3 did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    applied: usize,
    existed: usize,
    streamed: usize,
}

impl Counts {
    /// Counts layer `i` as applied by this pull (`streamed` from its download) or found
    /// made by another unpacker, and tells `plan`'s progress callback.
    fn record(&mut self, plan: &Plan, i: usize, applied: bool, streamed: bool) {
        if applied {
            self.applied += 1;
            self.streamed += usize::from(streamed);
            plan.emit(i, LayerState::Applied);
        } else {
            self.existed += 1;
            plan.emit(i, LayerState::Exists);
        }
    }
}

impl ImageService {
    /// Pulls `reference`: fetch and unpack, pipelined (see the [module docs](self)).
    ///
    /// # Errors
    /// As [`ImageService::fetch`] and [`ImageService::unpack`]. Nothing partial becomes
    /// visible: a failed layer's extract snapshot is removed, committed blobs and
    /// snapshots stay for the next attempt, and the image record is written last.
    pub async fn pull(&self, reference: &str, opts: PullOptions) -> Result<Pulled> {
        let mut opts = opts;
        let lease = match opts.fetch.lease {
            Some(_) => None,
            None => self.flow_lease(Duration::from_secs(24 * 3600)).await?,
        };
        if let Some(l) = &lease {
            opts.fetch.lease = Some(l.handle());
        }
        let res = self.pull_leased(reference, &opts).await;
        if let Some(l) = lease {
            l.release().await;
        }
        res.map_err(|e| e.context(format!("pull {reference}")))
    }

    async fn pull_leased(&self, reference: &str, opts: &PullOptions) -> Result<Pulled> {
        let r = Reference::parse_normalized(reference)?.with_default_tag();
        let resolver = Resolver::new(opts.fetch.registry.clone())?;
        let target = resolver.resolve(&r).await?;
        let name = opts.fetch.name.clone().unwrap_or_else(|| r.to_string());
        let hold_image = || async {
            if let Some((m, id)) = &opts.fetch.lease {
                m.add_resource(id, &Resource::image(name.clone())).await?;
            }
            Ok::<(), Error>(())
        };
        if opts.no_unpack {
            self.fetch_target(&resolver, &r, target.clone(), &opts.fetch)
                .await?;
            hold_image().await?;
            let mut image = Image::new(name.clone(), target);
            image.labels = opts.fetch.image_labels.clone();
            let image = self.put_image(image).await?;
            return Ok(Pulled {
                image,
                chain_ids: Vec::new(),
                applied: 0,
                existed: 0,
                streamed: 0,
            });
        }
        let (sn_name, sn) = self.snapshotter(opts.snapshotter.as_deref())?;

        // 1. Documents.
        let docs = FetchOptions {
            documents_only: true,
            ..opts.fetch.clone()
        };
        self.fetch_target(&resolver, &r, target.clone(), &docs)
            .await?;

        // 2. The manifest to unpack, its DiffIDs and ChainIDs.
        let matcher: Arc<dyn MatchComparer> = match &opts.fetch.platforms {
            super::PlatformSelection::Only(ps) if !ps.is_empty() => {
                Arc::new(platforms::only(ps[0].clone()))
            }
            _ => platforms::default_arc(),
        };
        let provider: &dyn strata_content::Provider = self.content.as_ref();
        let m = img::manifest(provider, &target, matcher.as_ref()).await?;
        let config = m.manifest.config().clone();
        let (layers, diff_ids) = m.layers_with_diff_ids(provider).await?;
        let chains = chain_ids(&diff_ids);
        let u = LayerUnpacker {
            content: self.content.clone(),
            sn,
            sn_name,
            locks: self.blob_locks.clone(),
            lease: opts.fetch.lease.clone(),
            sync_fs: false,
        };
        let mut exists = Vec::with_capacity(layers.len());
        for c in &chains {
            exists.push(u.exists(c).await?);
        }
        let plan = Arc::new(Plan {
            svc: self.clone_for_fetch(),
            resolver: resolver.clone(),
            r: r.clone(),
            fetch: opts.fetch.clone(),
            fetch_all: opts.fetch_all,
            progress: opts.unpack_progress.clone(),
            u: u.clone(),
            layers,
            diff_ids,
            chains,
            exists,
        });

        // 3. Fetch what is missing and apply it.
        let counts = if u.sn.can_rebase() && plan.exists.iter().filter(|e| !**e).count() > 1 {
            parallel::run(plan.clone()).await?
        } else {
            ordered::run(plan.clone()).await?
        };

        // 4. Labels and the image record.
        u.finish(
            &m.descriptor,
            &config,
            plan.chains.last(),
            opts.discard_layers,
        )
        .await?;
        hold_image().await?;
        let mut image = Image::new(name, target);
        image.labels = opts.fetch.image_labels.clone();
        let image = self.put_image(image).await?;
        Ok(Pulled {
            image,
            chain_ids: plan.chains.clone(),
            applied: counts.applied,
            existed: counts.existed,
            streamed: counts.streamed,
        })
    }

    /// A service sharing this one's stores and locks, for spawned fetch tasks.
    fn clone_for_fetch(&self) -> ImageService {
        ImageService {
            content: self.content.clone(),
            images: self.images.clone(),
            blob_locks: self.blob_locks.clone(),
            snapshotters: self.snapshotters.clone(),
            leases: self.leases.clone(),
        }
    }
}

/// What step 2 decided, shared by the unpack strategies and their tasks.
struct Plan {
    svc: ImageService,
    resolver: Resolver,
    r: Reference,
    fetch: FetchOptions,
    fetch_all: bool,
    progress: Option<UnpackProgressFn>,
    u: LayerUnpacker,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
    chains: Vec<Digest>,
    /// Whether layer *i*'s snapshot existed when the pull started.
    exists: Vec<bool>,
}

impl Plan {
    fn emit(&self, index: usize, state: LayerState) {
        if let Some(p) = &self.progress {
            p(&UnpackEvent {
                index,
                layer: self.layers[index].clone(),
                chain_id: self.chains[index].clone(),
                state,
            });
        }
    }

    /// The ChainID below layer `i`.
    fn parent(&self, i: usize) -> Option<&Digest> {
        i.checked_sub(1).map(|p| &self.chains[p])
    }

    /// Fetches layer `i` (to the content store), teeing its bytes to whoever asked
    /// `router` for them.
    async fn fetch_layer(&self, i: usize, router: &TeeRouter) -> Result<()> {
        let mut fopts = self.fetch.clone();
        fopts.tee = Some(router.tee_fn());
        self.svc
            .fetch_target(&self.resolver, &self.r, self.layers[i].clone(), &fopts)
            .await
    }
}

/// The stream a reader asked for: the download of one blob, delivered when it starts.
type StreamSlot = oneshot::Sender<mpsc::Receiver<Bytes>>;

/// Routes download streams to the appliers that want them: the [`TeeFn`] of a fetch
/// hands the chunks of blob *d* to whoever called [`TeeRouter::want`]`(d)` before its
/// download started from offset 0 (a resumed or already present blob is not streamed).
/// One reader per digest: a second `want` of a digest already wanted (a layer listed twice
/// in a manifest) gets no stream and reads the blob once it is committed.
#[derive(Clone, Default)]
struct TeeRouter {
    wants: Arc<Mutex<HashMap<Digest, (u64, StreamSlot)>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

/// A [`TeeRouter::want`]: its id (for [`TeeRouter::forget`]) and where the stream comes.
struct Want {
    id: u64,
    stream: oneshot::Receiver<mpsc::Receiver<Bytes>>,
}

impl TeeRouter {
    fn want(&self, digest: &Digest) -> Want {
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // An existing wish keeps its place; `tx` is dropped and this one gets no stream.
        self.lock().entry(digest.clone()).or_insert((id, tx));
        Want { id, stream: rx }
    }

    fn forget(&self, digest: &Digest, id: u64) {
        let mut wants = self.lock();
        if wants.get(digest).is_some_and(|(w, _)| *w == id) {
            wants.remove(digest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, (u64, StreamSlot)>> {
        self.wants.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tee_fn(&self) -> TeeFn {
        let me = self.clone();
        Arc::new(move |desc: &Descriptor, offset: u64| {
            if offset != 0 {
                return None;
            }
            let (_, slot) = me.lock().remove(desc.digest())?;
            let (tx, rx) = mpsc::channel(16);
            slot.send(rx).ok()?;
            Some(tx)
        })
    }
}

/// A source over a download stream, as the `open` of
/// [`LayerUnpacker::unpack_layer_verified`].
fn stream_reader(rx: mpsc::Receiver<Bytes>) -> OpenLayer {
    Box::new(move || Ok(Box::new(ChannelReader::new(rx)) as Box<dyn Read + Send>))
}

async fn wait_ready(
    rx: &mut watch::Receiver<Option<std::result::Result<(), String>>>,
    layer: &Descriptor,
) -> Result<()> {
    let got = rx
        .wait_for(Option::is_some)
        .await
        .map_err(|_| {
            Error::internal(format!(
                "fetch of layer {} ended without a result",
                layer.digest()
            ))
        })?
        .clone();
    match got {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::unavailable(format!(
            "fetch layer {}: {e}",
            layer.digest()
        ))),
        None => unreachable!("waited for Some"),
    }
}
