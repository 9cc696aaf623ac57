//! Handlers: walking and dispatching over an image's descriptor graph, after containerd's
//! `images/handlers.go`.
//!
//! A [`Handler`] is called with a descriptor and returns its children. [`walk`] visits the
//! graph depth first, one descriptor at a time; [`dispatch`] runs siblings concurrently
//! (bounded by an optional semaphore) and stops at the first error. Handlers compose:
//! [`handlers`] runs several in sequence, and the wrappers [`filter_platforms`],
//! [`limit_manifests`] and [`set_children_labels`] refine what a [`children_handler`]
//! returns. Two sentinel errors steer the traversal: [`stop_handler`] (from a handler in a
//! [`handlers`] chain: skip the rest of the chain) and [`skip_desc`] (from a handler under
//! [`walk`]/[`dispatch`]: do not descend into this descriptor).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use std::sync::{Arc, Mutex};
//! use strata_image::handlers::{handler_fn, walk, Handler};
//! use strata_content::Descriptor;
//! let seen = Arc::new(Mutex::new(0));
//! let s = seen.clone();
//! let h: Arc<dyn Handler> = Arc::new(handler_fn(move |_d: Descriptor| {
//!     let s = s.clone();
//!     async move { *s.lock().unwrap() += 1; Ok(vec![]) }
//! }));
//! walk(h, vec![]).await?;
//! assert_eq!(*seen.lock().unwrap(), 0);
//! # Ok(()) }
//! ```

use crate::image::{decode_index, decode_manifest, read_blob, schema1_error, sort_by_platform};
use crate::media_types as mt;
use crate::platforms::{self, MatchComparer, Matcher};
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use strata_content::{Descriptor, Error, ErrorKind, Info, Labels, Manager, Provider, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Handles one descriptor and returns the descriptors to visit next.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles `desc`; returns its children (possibly none).
    ///
    /// # Errors
    /// Whatever the handler fails with; the sentinels [`stop_handler`] and [`skip_desc`]
    /// steer the traversal instead of failing it.
    async fn handle(&self, desc: &Descriptor) -> Result<Vec<Descriptor>>;
}

#[async_trait]
impl<H: Handler + ?Sized> Handler for Arc<H> {
    async fn handle(&self, desc: &Descriptor) -> Result<Vec<Descriptor>> {
        (**self).handle(desc).await
    }
}

/// A [`Handler`] made from an async closure (see [`handler_fn`]).
pub struct HandlerFn<F>(F);

/// Wraps an async closure `Fn(Descriptor) -> Future<Output = Result<Vec<Descriptor>>>`
/// as a [`Handler`] (containerd's `HandlerFunc`).
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Descriptor) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Vec<Descriptor>>> + Send,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Descriptor) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Vec<Descriptor>>> + Send,
{
    async fn handle(&self, desc: &Descriptor) -> Result<Vec<Descriptor>> {
        (self.0)(desc.clone()).await
    }
}

#[derive(Debug)]
struct StopHandler;
impl std::fmt::Display for StopHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop handler")
    }
}
impl std::error::Error for StopHandler {}

#[derive(Debug)]
struct SkipDesc;
impl std::fmt::Display for SkipDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("skip descriptor")
    }
}
impl std::error::Error for SkipDesc {}

/// The sentinel a handler in a [`handlers`] chain returns to end the chain early
/// (containerd's `ErrStopHandler`); the children gathered so far are kept.
pub fn stop_handler() -> Error {
    Error::new(ErrorKind::Cancelled, "stop handler").with_source(StopHandler)
}

/// The sentinel a handler returns under [`walk`]/[`dispatch`] to skip a descriptor's
/// children without failing (containerd's `ErrSkipDesc`).
pub fn skip_desc() -> Error {
    Error::new(ErrorKind::Cancelled, "skip descriptor").with_source(SkipDesc)
}

fn source_is<T: std::error::Error + 'static>(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<T>())
}

/// Whether `e` is the [`stop_handler`] sentinel.
pub fn is_stop_handler(e: &Error) -> bool {
    source_is::<StopHandler>(e)
}

/// Whether `e` is the [`skip_desc`] sentinel.
pub fn is_skip_desc(e: &Error) -> bool {
    source_is::<SkipDesc>(e)
}

/// Runs handlers in order on each descriptor and concatenates their children
/// (see [`handlers`]).
pub struct Handlers(Vec<Arc<dyn Handler>>);

/// Chains `hs`: each runs on the descriptor in turn, their children are concatenated; a
/// [`stop_handler`] error ends the chain (keeping earlier children), any other error
/// fails it.
pub fn handlers(hs: Vec<Arc<dyn Handler>>) -> Handlers {
    Handlers(hs)
}

#[async_trait]
impl Handler for Handlers {
    async fn handle(&self, desc: &Descriptor) -> Result<Vec<Descriptor>> {
        let mut children = Vec::new();
        for h in &self.0 {
            match h.handle(desc).await {
                Ok(c) => children.extend(c),
                Err(e) if is_stop_handler(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(children)
    }
}

/// Visits `descs` and their descendants depth first, one at a time, in order. A
/// [`skip_desc`] error prunes that descriptor's subtree.
///
/// # Errors
/// The first error a handler returns (other than [`skip_desc`]).
pub fn walk(handler: Arc<dyn Handler>, descs: Vec<Descriptor>) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        for desc in descs {
            let children = match handler.handle(&desc).await {
                Ok(c) => c,
                Err(e) if is_skip_desc(&e) => continue,
                Err(e) => return Err(e),
            };
            if !children.is_empty() {
                walk(handler.clone(), children).await?;
            }
        }
        Ok(())
    })
}

/// Visits `descs` and their descendants with siblings handled concurrently, each handler
/// call holding a permit of `limiter` (when given) while it runs; children are dispatched
/// after the permit is released. The first error aborts every task still running.
///
/// # Errors
/// The first error a handler returns (other than [`skip_desc`]); `Internal` if a handler
/// panics.
pub fn dispatch(
    handler: Arc<dyn Handler>,
    limiter: Option<Arc<Semaphore>>,
    descs: Vec<Descriptor>,
) -> BoxFuture<'static, Result<()>> {
    Box::pin(async move {
        let mut tasks = JoinSet::new();
        for desc in descs {
            let handler = handler.clone();
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let children = {
                    let _permit = match &limiter {
                        Some(l) => Some(l.clone().acquire_owned().await.map_err(|_| {
                            Error::new(ErrorKind::Cancelled, "dispatch limiter closed")
                        })?),
                        None => None,
                    };
                    match handler.handle(&desc).await {
                        Ok(c) => c,
                        Err(e) if is_skip_desc(&e) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                };
                if children.is_empty() {
                    Ok(())
                } else {
                    dispatch(handler, limiter, children).await
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(Error::internal(format!(
                    "dispatch handler task failed: {e}"
                )))
            });
            if let Err(e) = result {
                tasks.abort_all();
                return Err(e);
            }
        }
        Ok(())
    })
}

/// The children of `desc`: the config and layers of a manifest, the manifests of an
/// index. Layers, configs and unknown types have none. The document is read from
/// `provider` and checked against its media type.
///
/// # Errors
/// `NotImplemented` for Docker schema 1; `NotFound` when the blob is missing;
/// `InvalidArgument` for a malformed document or one of the wrong kind.
pub async fn children(provider: &dyn Provider, desc: &Descriptor) -> Result<Vec<Descriptor>> {
    let media_type = desc.media_type().to_string();
    let ctx = || format!("children of {media_type} {}", desc.digest());
    if mt::is_manifest(&media_type) {
        let raw = read_blob(provider, desc)
            .await
            .map_err(|e| e.context(ctx()))?;
        crate::image::validate_media_type(&raw, &media_type).map_err(|e| e.context(ctx()))?;
        let m = decode_manifest(&raw).map_err(|e| e.context(ctx()))?;
        let mut out = Vec::with_capacity(m.layers().len() + 1);
        out.push(m.config().clone());
        out.extend(m.layers().iter().cloned());
        Ok(out)
    } else if mt::is_index(&media_type) {
        let raw = read_blob(provider, desc)
            .await
            .map_err(|e| e.context(ctx()))?;
        crate::image::validate_media_type(&raw, &media_type).map_err(|e| e.context(ctx()))?;
        Ok(decode_index(&raw)
            .map_err(|e| e.context(ctx()))?
            .manifests()
            .clone())
    } else if mt::is_schema1(&media_type) {
        Err(schema1_error(&format!("manifest {}", desc.digest())))
    } else {
        if !mt::is_layer(&media_type) && !mt::is_config(&media_type) {
            tracing::debug!(%media_type, digest = %desc.digest(), "unknown type; no children");
        }
        Ok(Vec::new())
    }
}

/// A handler returning [`children`] from `provider` (containerd's `ChildrenHandler`).
pub fn children_handler(provider: Arc<dyn Provider>) -> impl Handler {
    handler_fn(move |desc: Descriptor| {
        let provider = provider.clone();
        async move { children(provider.as_ref(), &desc).await }
    })
}

/// The GC label keys for a child (containerd's `ChildGCLabels`): a config gets
/// `containerd.io/gc.ref.content.config`; a manifest `…content.m.`; a layer `…content.l.`;
/// anything else `…content.`. Keys ending in `.` get a per-key counter appended.
pub fn child_gc_labels(desc: &Descriptor) -> Vec<String> {
    let m = desc.media_type().to_string();
    let base = strata_content::labels::GC_REF_CONTENT;
    if mt::is_config(&m) {
        vec![format!("{base}.config")]
    } else if mt::is_manifest(&m) {
        vec![format!("{base}.m.")]
    } else if mt::is_layer(&m) {
        vec![format!("{base}.l.")]
    } else {
        vec![format!("{base}.")]
    }
}

/// As [`child_gc_labels`] but with no label for layers (containerd's
/// `ChildGCLabelsFilterLayers`), used when unpacked layers are to be discarded.
pub fn child_gc_labels_filter_layers(desc: &Descriptor) -> Vec<String> {
    if mt::is_layer(desc.media_type().as_ref()) {
        Vec::new()
    } else {
        child_gc_labels(desc)
    }
}

/// The GC reference labels for a parent with `children`, keyed as `label_map` says.
pub fn children_labels(
    children: &[Descriptor],
    label_map: fn(&Descriptor) -> Vec<String>,
) -> Labels {
    let mut counters: std::collections::HashMap<String, usize> = Default::default();
    let mut labels = Labels::new();
    for ch in children {
        for key in label_map(ch) {
            let idx = counters.entry(key.clone()).or_insert(0);
            let full = if *idx > 0 || key.ends_with('.') {
                format!("{key}{idx}")
            } else {
                key.clone()
            };
            *idx += 1;
            labels.insert(full, ch.digest().to_string());
        }
    }
    labels
}

/// Wraps `handler` so that the children it returns are recorded as GC references on the
/// parent blob's labels in `manager` (see [`set_children_mapped_labels`]).
pub fn set_children_labels(manager: Arc<dyn Manager>, handler: Arc<dyn Handler>) -> impl Handler {
    set_children_mapped_labels(manager, handler, child_gc_labels)
}

/// As [`set_children_labels`], with `label_map` choosing the keys (for example
/// [`child_gc_labels_filter_layers`]). Only the `labels.<key>` fields written are updated.
///
/// # Errors
/// The handler's errors; the manager's (`NotFound` when the parent blob is missing).
pub fn set_children_mapped_labels(
    manager: Arc<dyn Manager>,
    handler: Arc<dyn Handler>,
    label_map: fn(&Descriptor) -> Vec<String>,
) -> impl Handler {
    handler_fn(move |desc: Descriptor| {
        let manager = manager.clone();
        let handler = handler.clone();
        async move {
            let children = handler.handle(&desc).await?;
            let labels = children_labels(&children, label_map);
            if !labels.is_empty() {
                let fields: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
                manager
                    .update(Info::for_update(desc.digest().clone(), labels), &fields)
                    .await
                    .map_err(|e| e.context(format!("set GC labels on {}", desc.digest())))?;
            }
            Ok(children)
        }
    })
}

/// Wraps `handler` to keep only children without a platform or whose platform `matcher`
/// accepts (containerd's `FilterPlatforms`).
pub fn filter_platforms(handler: Arc<dyn Handler>, matcher: Arc<dyn Matcher>) -> impl Handler {
    handler_fn(move |desc: Descriptor| {
        let handler = handler.clone();
        let matcher = matcher.clone();
        async move {
            let children = handler.handle(&desc).await?;
            Ok(children
                .into_iter()
                .filter(|c| platforms::of_descriptor(c).is_none_or(|p| matcher.matches(&p)))
                .collect())
        }
    })
}

/// Wraps `handler` so that an index's children are sorted by `comparer`'s preference
/// (entries without a platform last) and cut to the first `n` when `n > 0`
/// (containerd's `LimitManifests`). Other descriptors' children pass unchanged.
///
/// # Errors
/// `NotFound` "no match for platform" when an index has no children left and `n > 0`.
pub fn limit_manifests(
    handler: Arc<dyn Handler>,
    comparer: Arc<dyn MatchComparer>,
    n: usize,
) -> impl Handler {
    handler_fn(move |desc: Descriptor| {
        let handler = handler.clone();
        let comparer = comparer.clone();
        async move {
            let mut children = handler.handle(&desc).await?;
            if mt::is_index(desc.media_type().as_ref()) {
                sort_by_platform(&mut children, comparer.as_ref());
                if n > 0 {
                    if children.is_empty() {
                        return Err(Error::not_found(format!(
                            "no match for platform in manifest {}",
                            desc.digest()
                        )));
                    }
                    children.truncate(n);
                }
            }
            Ok(children)
        }
    })
}

#[cfg(test)]
mod tests;
