//! [`ImageService::pull`]: Fetch and Unpack, pipelined.
//!
//! 1. Resolve the reference and fetch the documents (index, manifests, configs) with the
//!    usual handler stack (GC labels, platform filtering).
//! 2. Read the selected manifest and config: DiffIDs → ChainIDs. A layer whose snapshot
//!    already exists is neither fetched (unless [`PullOptions::fetch_all`]) nor applied
//!    (containerd's unpacker does the same; `fetch_all` is its `WithUnpackFetchAllContent`).
//! 3. The missing layers download concurrently (bounded by
//!    [`FetchOptions::max_concurrent_downloads`]), in layer order; meanwhile the unpacker
//!    applies layer *n* as soon as its blob is committed and layer *n-1*'s snapshot is
//!    committed, decompressing and hashing in a blocking task while later layers are still
//!    arriving.
//! 4. Label the config with the top snapshot, create or update the image record.
//!
//! Everything made is held by a lease (when the service has a lease manager) until the
//! image record exists, so a crash leaves only what GC collects.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_content::{Descriptor, Digest, Error, Result};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::unpack::{LayerState, LayerUnpacker, UnpackEvent, UnpackProgressFn};
use super::{FetchOptions, ImageService};
use crate::identity::chain_ids;
use crate::image::{self as img, Image};
use crate::leases::{LeaseOpts, Resource};
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
        let lease = match (&self.leases, &opts.fetch.lease) {
            (_, Some(_)) => None,
            (Some(m), None) => {
                let l = m
                    .create(LeaseOpts::default().expires_in(Duration::from_secs(24 * 3600)))
                    .await?;
                opts.fetch.lease = Some((m.clone(), l.id.clone()));
                Some((m.clone(), l.id))
            }
            (None, None) => None,
        };
        let res = self.pull_leased(reference, &opts).await;
        if let Some((m, id)) = lease {
            let _ = m.delete(&id).await;
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
        let diff_ids = img::rootfs(provider, &config).await?;
        let layers = m.manifest.layers().clone();
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid_argument(format!(
                "config {} lists {} DiffIDs for {} layers",
                config.digest(),
                diff_ids.len(),
                layers.len()
            )));
        }
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

        // 3. Fetch what is missing, in order, bounded; apply as each becomes ready. The
        //    layer the unpacker waits for is applied straight from its download stream
        //    when the download starts after the unpacker asked for it.
        let slot: Arc<Mutex<Option<StreamWanted>>> = Arc::default();
        let mut fetch_opts = opts.fetch.clone();
        let tee_slot = slot.clone();
        fetch_opts.tee = Some(Arc::new(move |desc: &Descriptor, offset: u64| {
            let mut slot = tee_slot.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some(w) if offset == 0 && &w.digest == desc.digest() => {
                    let (tx, rx) = mpsc::channel(16);
                    let _ = w.deliver.send(rx);
                    Some(tx)
                }
                other => {
                    *slot = other;
                    None
                }
            }
        }));
        let limiter = Arc::new(Semaphore::new(opts.fetch.max_concurrent_downloads.max(1)));
        let mut ready: Vec<watch::Receiver<Option<std::result::Result<(), String>>>> = Vec::new();
        let mut fetches = tokio::task::JoinSet::new();
        for (i, layer) in layers.iter().enumerate() {
            let (tx, rx) = watch::channel(None);
            ready.push(rx);
            if exists[i] && !opts.fetch_all {
                let _ = tx.send(Some(Ok(())));
                continue;
            }
            let (svc, resolver, r, layer, fopts, limiter) = (
                self.clone_for_fetch(),
                resolver.clone(),
                r.clone(),
                layer.clone(),
                opts.fetch.clone(),
                limiter.clone(),
            );
            fetches.spawn(async move {
                let _permit = limiter.acquire_owned().await;
                let res = svc.fetch_target(&resolver, &r, layer, &fopts).await;
                let _ = tx.send(Some(res.as_ref().map(|_| ()).map_err(|e| e.to_string())));
                res
            });
        }
        let emit = |index: usize, state: LayerState| {
            if let Some(p) = &opts.unpack_progress {
                p(&UnpackEvent {
                    index,
                    layer: layers[index].clone(),
                    chain_id: chains[index].clone(),
                    state,
                });
            }
        };
        let unpacked: Result<(usize, usize)> = async {
            let (mut applied, mut existed) = (0, 0);
            for (i, layer) in layers.iter().enumerate() {
                if exists[i] {
                    u.label_uncompressed(layer, &diff_ids[i]).await?;
                    existed += 1;
                    emit(i, LayerState::Exists);
                    continue;
                }
                let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
                let stream = if ready[i].borrow().is_some() {
                    None
                } else {
                    let (deliver, got) = oneshot::channel();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(StreamWanted {
                        digest: layer.digest().clone(),
                        deliver,
                    });
                    let mut done = ready[i].clone();
                    tokio::select! {
                        rx = got => rx.ok(),
                        _ = done.wait_for(Option::is_some) => None,
                    }
                };
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
                emit(i, LayerState::Applying);
                let did_apply = match stream {
                    Some(rx) => {
                        let open = move || {
                            Ok(Box::new(ChannelReader {
                                rx,
                                cur: Bytes::new(),
                            }) as Box<dyn Read + Send>)
                        };
                        let mut done = ready[i].clone();
                        let verified = async move { wait_ready(&mut done, layer).await };
                        u.unpack_layer_verified(
                            parent,
                            &chains[i],
                            layer,
                            &diff_ids[i],
                            open,
                            verified,
                        )
                        .await?
                    }
                    None => {
                        wait_ready(&mut ready[i], layer).await?;
                        let open = u.blob_reader(layer).await?;
                        u.unpack_layer(parent, &chains[i], layer, &diff_ids[i], open)
                            .await?
                    }
                };
                if did_apply {
                    applied += 1;
                    emit(i, LayerState::Applied);
                } else {
                    existed += 1;
                    emit(i, LayerState::Exists);
                }
            }
            Ok((applied, existed))
        }
        .await;
        if unpacked.is_err() {
            fetches.abort_all();
        }
        while let Some(res) = fetches.join_next().await {
            match res {
                Ok(Ok(())) => {}
                // A failed download is the root cause of any unpack failure it led to.
                Ok(Err(e)) => return Err(e),
                Err(e) if e.is_cancelled() => {}
                Err(e) => return Err(Error::internal(format!("layer fetch task: {e}"))),
            }
        }
        let (applied, existed) = unpacked?;

        // 4. Labels and the image record.
        u.finish(&m.descriptor, &config, chains.last(), opts.discard_layers)
            .await?;
        hold_image().await?;
        let mut image = Image::new(name, target);
        image.labels = opts.fetch.image_labels.clone();
        let image = self.put_image(image).await?;
        Ok(Pulled {
            image,
            chain_ids: chains,
            applied,
            existed,
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

/// The unpacker's wish to read layer `digest` from its download stream.
struct StreamWanted {
    digest: Digest,
    deliver: oneshot::Sender<mpsc::Receiver<Bytes>>,
}

/// A blocking [`Read`] over a download's chunks; EOF when the download ends.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
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
