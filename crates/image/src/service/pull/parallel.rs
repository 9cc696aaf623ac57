//! Step 3 of a pull for snapshotters that can rebase (overlay, native): every missing
//! layer is downloaded and applied at the same time as the others, each from its own download
//! stream into a parentless snapshot (overlay upperdir mode, whiteouts as 0:0 devices),
//! then committed in layer order onto its parent with
//! [`commit_rebase`](strata_snapshot::Snapshotter::commit_rebase) (containerd 2.2's
//! parallel unpack).
//!
//! What a layer applied without its lowerdirs cannot know is settled at commit time:
//! - directories the layer needed but did not contain are created with default metadata
//!   and reported ([`ApplyStats::implied_dirs`](strata_diff::ApplyStats::implied_dirs));
//!   before the commit they take the metadata of the lowerdirs that have them
//!   ([`strata_diff::inherit_dirs`]), as an in-order apply would have given them;
//! - whiteouts that hide nothing below (in a directory of the layer's own, say) are
//!   removed ([`strata_diff::prune_whiteouts`]): overlayfs would list them;
//! - a layer that cannot be applied alone (a hardlink to a file of a lower layer) fails
//!   its parallel apply; it is applied again, in order, on its committed parent.
//!
//! Concurrency is bounded by [`FetchOptions::max_concurrent_downloads`](crate::service::FetchOptions::max_concurrent_downloads):
//! each permit covers one layer's download and apply. Each task holds its ChainID's lock
//! from before its prepare until its commit, so concurrent pulls in one process apply a
//! layer once.

use std::path::PathBuf;
use std::sync::Arc;

use strata_content::{Error, Labels, Result};
use strata_diff::{ApplyStats, ChannelReader, Compression};
use strata_snapshot::{Snapshotter, unpack_key};
use tokio::sync::{OwnedMutexGuard, Semaphore, watch};
use tokio::task::JoinHandle;

use super::{Counts, Plan, TeeRouter};
use crate::service::layer::layer_compression;
use crate::service::unpack::LayerState;

/// What a layer task left for the in-order committer.
enum Staged {
    /// The ChainID's snapshot existed (maybe made meanwhile by a concurrent unpacker).
    Exists,
    /// Applied into the parentless active snapshot `key`, whose directory is `upper`.
    Applied {
        key: String,
        upper: PathBuf,
        stats: ApplyStats,
        streamed: bool,
        _lock: OwnedMutexGuard<()>,
    },
    /// The layer could not be applied without its lowerdirs; its blob is committed.
    Retry { cause: Error },
}

/// Fetches and applies the missing layers of `plan` in parallel, committing in order.
pub(super) async fn run(plan: Arc<Plan>) -> Result<Counts> {
    let router = TeeRouter::default();
    let limiter = Arc::new(Semaphore::new(plan.fetch.max_concurrent_downloads.max(1)));
    let (cancel_tx, cancel) = watch::channel(false);
    let cancel_tx = Arc::new(cancel_tx);
    let mut tasks: Vec<Option<LayerTask>> = Vec::new();
    for i in 0..plan.layers.len() {
        if plan.exists[i] && !plan.fetch_all {
            tasks.push(None);
            continue;
        }
        let (plan, router, limiter) = (plan.clone(), router.clone(), limiter.clone());
        let (cancel, cancel_tx) = (cancel.clone(), cancel_tx.clone());
        tasks.push(Some(LayerTask(tokio::spawn(async move {
            let res = layer_task(&plan, i, &router, &limiter, cancel).await;
            if res.is_err() {
                let _ = cancel_tx.send(true); // the others stop: the pull fails anyway
            }
            res
        }))));
    }
    let res = commit_in_order(&plan, &mut tasks).await;
    let Err(mut err) = res else {
        return res;
    };
    // The tasks of layers not committed stop their downloads, which ends their applies,
    // and remove their snapshots; wait for that, remove the snapshots of those that had
    // finished, and report the first failure that was not a consequence of another.
    let _ = cancel_tx.send(true);
    for t in tasks.iter_mut().filter_map(Option::take) {
        match t.await {
            Ok(Ok(Staged::Applied { key, .. })) => {
                let _ = plan.u.sn.remove(&key).await;
            }
            Ok(Err(e)) if err.is_cancelled() && !e.is_cancelled() => err = e,
            _ => {}
        }
    }
    Err(err)
}

/// A spawned layer task, aborted when dropped: a pull whose future is dropped stops its
/// downloads and applies (its lease's cleanup then removes their snapshots).
struct LayerTask(JoinHandle<Result<Staged>>);

impl std::future::Future for LayerTask {
    type Output = std::result::Result<Result<Staged>, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for LayerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn cancelled() -> Error {
    Error::cancelled("another layer of this pull failed")
}

/// Resolves to `()` once `cancel` turns true.
async fn until(cancel: &mut watch::Receiver<bool>) {
    let _ = cancel.wait_for(|c| *c).await;
}

/// One layer: its ChainID's lock, then a download permit (in this order: a task holding
/// a permit never waits for a lock), then [`stage`].
async fn layer_task(
    plan: &Plan,
    i: usize,
    router: &TeeRouter,
    limiter: &Arc<Semaphore>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Staged> {
    let u = &plan.u;
    let chain = &plan.chains[i];
    let lock = tokio::select! {
        l = u.lock_chain(chain) => l,
        _ = until(&mut cancel) => return Err(cancelled()),
    };
    if plan.exists[i] || u.exists(chain).await? {
        // Made before us (maybe by a concurrent pull): fetch the blob only if asked to,
        // and not while holding the lock.
        u.hold(chain.as_ref()).await?;
        drop(lock);
        if plan.fetch_all {
            let _permit = tokio::select! {
                p = limiter.clone().acquire_owned() => p,
                _ = until(&mut cancel) => return Err(cancelled()),
            };
            tokio::select! {
                r = plan.fetch_layer(i, router) => r?,
                _ = until(&mut cancel) => return Err(cancelled()),
            }
        }
        return Ok(Staged::Exists);
    }
    let _permit = tokio::select! {
        p = limiter.clone().acquire_owned() => p,
        _ = until(&mut cancel) => return Err(cancelled()),
    };
    let compression = layer_compression(&plan.layers[i])?;
    let scratch = u.prepare(chain.as_ref(), Some(chain), None).await?;
    let key = scratch.key;
    match stage(plan, i, router, scratch.mounts, compression, cancel).await {
        Ok(Ok((upper, stats, streamed))) => Ok(Staged::Applied {
            key,
            upper,
            stats,
            streamed,
            _lock: lock,
        }),
        Ok(Err(cause)) => {
            let _ = u.sn.remove(&key).await;
            Ok(Staged::Retry { cause })
        }
        Err(e) => {
            let _ = u.sn.remove(&key).await;
            Err(e)
        }
    }
}

/// Applies layer `i` into the directory of the parentless snapshot whose mounts are
/// `mounts`, from its download stream (or its blob, when not streamed), and waits for
/// the download to verify. `Ok(Err(cause))`: the apply failed although the blob is good
/// (the layer needs its lowerdirs; the caller applies it again, in order). Stops when
/// `cancel` turns true.
async fn stage(
    plan: &Plan,
    i: usize,
    router: &TeeRouter,
    mounts: Vec<strata_snapshot::Mount>,
    compression: Compression,
    mut cancel: watch::Receiver<bool>,
) -> Result<std::result::Result<(PathBuf, ApplyStats, bool), Error>> {
    let (u, layer) = (&plan.u, &plan.layers[i]);
    let Some(upper) = strata_snapshot::overlay::upperdir(&mounts) else {
        return Err(Error::failed_precondition(format!(
            "snapshotter {} gave no directory to apply layer {} into",
            u.sn_name,
            layer.digest()
        )));
    };
    let want = router.want(layer.digest());
    let mut fetch = Box::pin(plan.fetch_layer(i, router));
    let mut fetched = None;
    let stream = tokio::select! {
        rx = want.stream => rx.ok(),
        res = &mut fetch => {
            fetched = Some(res);
            None
        }
        _ = until(&mut cancel) => return Err(cancelled()),
    };
    router.forget(layer.digest(), want.id);
    let streamed = stream.is_some();
    let reader: Box<dyn std::io::Read + Send> = match stream {
        Some(rx) => Box::new(ChannelReader::new(rx)),
        None => {
            // Not streamed (resumed, already present, or another reader has the
            // stream): wait for the blob, then read it.
            let res = match fetched.take() {
                Some(res) => res,
                None => tokio::select! {
                    res = &mut fetch => res,
                    _ = until(&mut cancel) => Err(cancelled()),
                },
            };
            res?;
            fetched = Some(Ok(()));
            (u.blob_reader(layer).await?)()?
        }
    };
    plan.emit(i, LayerState::Applying);
    let applied = u.start_apply(mounts, compression, Box::new(move || Ok(reader)), true);
    let fetched = match fetched {
        Some(res) => res,
        None => tokio::select! {
            res = &mut fetch => res,
            _ = until(&mut cancel) => Err(cancelled()),
        },
    };
    drop(fetch); // a cancelled download ends the stream, and so the apply
    let applied = applied.wait().await;
    match (applied, fetched) {
        (Ok(stats), Ok(())) => Ok(Ok((upper, stats, streamed))),
        (_, Err(e)) => Err(e),
        (Err(cause), Ok(())) => Ok(Err(cause)),
    }
}

/// Waits for each layer's task in order and commits its snapshot onto its parent.
async fn commit_in_order(plan: &Plan, tasks: &mut [Option<LayerTask>]) -> Result<Counts> {
    let u = &plan.u;
    let mut n = Counts::default();
    for (i, task) in tasks.iter_mut().enumerate() {
        let (layer, chain, diff_id) = (&plan.layers[i], &plan.chains[i], &plan.diff_ids[i]);
        let staged = match task.take() {
            None => Staged::Exists,
            Some(t) => t
                .await
                .map_err(|e| Error::internal(format!("layer task: {e}")))??,
        };
        match staged {
            Staged::Exists => {
                u.label_uncompressed(layer, diff_id).await?;
                n.record(plan, i, false, false);
            }
            Staged::Retry { cause } => {
                tracing::debug!(layer = %layer.digest(), %cause, "applying in order instead");
                let open = u.blob_reader(layer).await?;
                let made = u
                    .unpack_layer(plan.parent(i), chain, layer, diff_id, open)
                    .await?;
                n.record(plan, i, made, false);
            }
            Staged::Applied {
                key,
                upper,
                stats,
                streamed,
                _lock,
            } => {
                let made = match commit(plan, i, &key, upper, stats).await {
                    Ok(made) => made,
                    Err(e) => {
                        let _ = u.sn.remove(&key).await;
                        return Err(e);
                    }
                };
                n.record(plan, i, made, streamed);
            }
        }
    }
    Ok(n)
}

/// Settles implied directories and whiteouts, then checks the DiffID and commits `key`
/// as layer `i`'s ChainID onto its parent. Returns whether this call made the snapshot
/// (`false`: a concurrent unpacker had; `key` is removed).
async fn commit(
    plan: &Plan,
    i: usize,
    key: &str,
    upper: PathBuf,
    stats: ApplyStats,
) -> Result<bool> {
    let (u, layer, chain) = (&plan.u, &plan.layers[i], &plan.chains[i]);
    if !stats.implied_dirs.is_empty() || !stats.whiteouts.is_empty() {
        let lowers = match plan.parent(i) {
            Some(parent) => lowerdirs(u.sn.as_ref(), parent.as_ref()).await?,
            None => Vec::new(),
        };
        let (dirs, whiteouts) = (stats.implied_dirs, stats.whiteouts);
        tokio::task::spawn_blocking(move || {
            strata_diff::inherit_dirs(&upper, &lowers, &dirs)?;
            strata_diff::prune_whiteouts(&upper, &lowers, &whiteouts)
        })
        .await
        .map_err(|e| Error::internal(format!("settle task failed: {e}")))?
        .map_err(|e| e.context(format!("layer {}", layer.digest())))?;
    }
    let want = &plan.diff_ids[i];
    u.settle(key, layer, chain, &stats.diff_id, want, plan.parent(i))
        .await
}

/// The directories of committed snapshot `chain` and its parents, top first (from the
/// mounts of a short-lived view).
async fn lowerdirs(sn: &dyn Snapshotter, chain: &str) -> Result<Vec<PathBuf>> {
    let key = unpack_key(chain);
    let mounts = sn.view(&key, chain, Labels::new()).await?;
    let _ = sn.remove(&key).await;
    let dirs = strata_snapshot::mount::classify(&mounts).dirs();
    Ok(dirs
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect())
}
