//! Step 3 of a pull for any snapshotter: layers download concurrently, in order, and are
//! applied one after another, each onto its parent's committed snapshot.
//!
//! The layer the unpacker waits for is applied straight from its download stream when
//! that download had not started yet; otherwise (already downloading, resumed, or
//! already present) from the committed blob once its download ends.

use std::sync::Arc;

use strata_content::{Error, Result};
use tokio::sync::{Semaphore, watch};

use super::{Counts, Plan, TeeRouter, stream_reader, wait_ready};
use crate::service::unpack::LayerState;

/// Fetches and applies the missing layers of `plan` in order.
pub(super) async fn run(plan: Arc<Plan>) -> Result<Counts> {
    let router = TeeRouter::default();
    let limiter = Arc::new(Semaphore::new(plan.fetch.max_concurrent_downloads.max(1)));
    let mut ready: Vec<watch::Receiver<Option<std::result::Result<(), String>>>> = Vec::new();
    let mut fetches = tokio::task::JoinSet::new();
    for i in 0..plan.layers.len() {
        let (tx, rx) = watch::channel(None);
        ready.push(rx);
        if plan.exists[i] && !plan.fetch_all {
            let _ = tx.send(Some(Ok(())));
            continue;
        }
        let (plan, router, limiter) = (plan.clone(), router.clone(), limiter.clone());
        fetches.spawn(async move {
            let _permit = limiter.acquire_owned().await;
            let res = plan.fetch_layer(i, &router).await;
            let _ = tx.send(Some(res.as_ref().map(|_| ()).map_err(|e| e.to_string())));
            res
        });
    }
    let unpacked = apply_in_order(&plan, &router, &mut ready).await;
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
    unpacked
}

async fn apply_in_order(
    plan: &Plan,
    router: &TeeRouter,
    ready: &mut [watch::Receiver<Option<std::result::Result<(), String>>>],
) -> Result<Counts> {
    let u = &plan.u;
    let mut n = Counts::default();
    for (i, layer) in plan.layers.iter().enumerate() {
        if plan.exists[i] {
            u.label_uncompressed(layer, &plan.diff_ids[i]).await?;
            n.record(plan, i, false, false);
            continue;
        }
        let (parent, chain, diff_id) = (plan.parent(i), &plan.chains[i], &plan.diff_ids[i]);
        // Ask for the download stream only while holding the ChainID's lock: the download
        // then waits for nobody but us.
        let stream = if ready[i].borrow().is_some() {
            None
        } else {
            let lock = u.lock_chain(chain).await;
            let want = router.want(layer.digest());
            let mut done = ready[i].clone();
            let s = tokio::select! {
                rx = want.stream => rx.ok(),
                _ = done.wait_for(Option::is_some) => None,
            };
            router.forget(layer.digest(), want.id);
            s.map(|rx| (rx, lock))
        };
        plan.emit(i, LayerState::Applying);
        let streamed = stream.is_some();
        let did_apply = match stream {
            Some((rx, lock)) => {
                let mut done = ready[i].clone();
                let verified = async move { wait_ready(&mut done, layer).await };
                let open = stream_reader(rx);
                u.unpack_layer_verified(lock, parent, chain, layer, diff_id, open, verified)
                    .await?
            }
            None => {
                wait_ready(&mut ready[i], layer).await?;
                let open = u.blob_reader(layer).await?;
                u.unpack_layer(parent, chain, layer, diff_id, open).await?
            }
        };
        n.record(plan, i, did_apply, streamed);
    }
    Ok(n)
}
