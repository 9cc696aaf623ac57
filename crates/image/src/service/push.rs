//! [`ImageService::push`]: content store → registry.

use std::sync::Arc;

use futures::StreamExt;
use strata_content::{Descriptor, Error, Result};

use super::{ImageService, Progress, ProgressFn, ProgressState, ref_key};
use crate::handlers::children;
use crate::image::read_blob;
use crate::media_types;
use crate::platforms::{self, Matcher};
use crate::reference::Reference;
use crate::remote::{PushStatus, Pusher, RegistryOptions, Resolver};

/// Options of [`ImageService::push`].
#[derive(Clone)]
pub struct PushOptions {
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Only index entries of these platforms (default: every entry, which must all be
    /// present locally).
    pub platforms: Option<Vec<crate::platforms::Platform>>,
    /// At most this many blobs upload at once (default 3).
    pub max_concurrent_uploads: usize,
    /// Called with each blob's progress.
    pub progress: Option<ProgressFn>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            registry: RegistryOptions::default(),
            platforms: None,
            max_concurrent_uploads: 3,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("registry", &self.registry)
            .field("platforms", &self.platforms)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .finish_non_exhaustive()
    }
}

impl ImageService {
    /// Pushes the local image `local` to `remote` (a reference; when `None`, `local`'s
    /// own name): every blob (existing ones are skipped, blobs with a
    /// `containerd.io/distribution.source.<host>` label are mounted when possible), then
    /// the manifests by digest bottom-up, then the target under the remote tag (or by
    /// digest). Returns the pushed target.
    ///
    /// # Errors
    /// `NotFound` for an unknown image or a blob missing locally (e.g. a platform that
    /// was not fetched: choose platforms in [`PushOptions::platforms`]);
    /// `InvalidArgument` for a malformed reference; the registry's errors.
    pub async fn push(
        &self,
        local: &str,
        remote: Option<&str>,
        opts: PushOptions,
    ) -> Result<Descriptor> {
        let img = self.images.get(local).await?;
        let remote = remote.unwrap_or(&img.name);
        let r = Reference::parse_normalized(remote)?.with_default_tag();
        let resolver = Resolver::new(opts.registry.clone())?;
        let pusher = resolver.pusher(&r);
        let matcher: Option<Arc<dyn Matcher>> = opts
            .platforms
            .as_ref()
            .map(|ps| Arc::new(platforms::any(ps.clone())) as Arc<dyn Matcher>);
        // Post-order: children before parents.
        let mut blobs: Vec<Descriptor> = Vec::new();
        let mut manifests: Vec<Descriptor> = Vec::new();
        self.collect(&img.target, matcher.as_deref(), &mut blobs, &mut manifests)
            .await
            .map_err(|e| e.context(format!("push {local}")))?;
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|d| seen.insert(d.digest().clone()));
        let results = futures::stream::iter(blobs.into_iter().map(|d| {
            let pusher = pusher.clone();
            let progress = opts.progress.clone();
            async move { self.push_blob(&pusher, &d, progress.as_ref()).await }
        }))
        .buffer_unordered(opts.max_concurrent_uploads.max(1))
        .collect::<Vec<_>>()
        .await;
        for res in results {
            res.map_err(|e| e.context(format!("push {local} to {r}")))?;
        }
        let mut done = std::collections::HashSet::new();
        let last = manifests.len().saturating_sub(1);
        for (i, m) in manifests.iter().enumerate() {
            let tag = if i == last && r.digest().is_none() {
                r.tag()
            } else {
                None
            };
            if tag.is_none() && !done.insert(m.digest().clone()) {
                continue;
            }
            let body = read_blob(self.content.as_ref(), m).await?;
            pusher
                .push_manifest(m, body.into(), tag)
                .await
                .map_err(|e| e.context(format!("push {local} to {r}")))?;
            emit(opts.progress.as_ref(), m, ProgressState::Done);
        }
        Ok(img.target)
    }

    fn collect<'a>(
        &'a self,
        desc: &'a Descriptor,
        matcher: Option<&'a dyn Matcher>,
        blobs: &'a mut Vec<Descriptor>,
        manifests: &'a mut Vec<Descriptor>,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mt = desc.media_type().to_string();
            if media_types::is_index(&mt) || media_types::is_manifest(&mt) {
                let provider: &dyn strata_content::Provider = self.content.as_ref();
                let mut kids = children(provider, desc).await?;
                if media_types::is_index(&mt)
                    && let Some(m) = matcher
                {
                    kids.retain(|c| platforms::of_descriptor(c).is_none_or(|p| m.matches(&p)));
                }
                for k in &kids {
                    self.collect(k, matcher, blobs, manifests).await?;
                }
                manifests.push(desc.clone());
            } else if media_types::is_non_distributable(&mt) {
                tracing::debug!("not pushing non-distributable layer {}", desc.digest());
            } else {
                blobs.push(desc.clone());
            }
            Ok(())
        })
    }

    async fn push_blob(
        &self,
        pusher: &Pusher,
        desc: &Descriptor,
        progress: Option<&ProgressFn>,
    ) -> Result<()> {
        emit(progress, desc, ProgressState::Waiting);
        let info = self.content.info(desc.digest()).await.map_err(|e| {
            if e.is_not_found() {
                Error::not_found(format!(
                    "blob {} ({}) is not in the local content store",
                    desc.digest(),
                    desc.media_type()
                ))
            } else {
                e
            }
        })?;
        let data = self.content.reader_at(desc).await?;
        emit(progress, desc, ProgressState::Downloading);
        let st = pusher.push_blob(desc, data, &info.labels).await?;
        emit(
            progress,
            desc,
            if st == PushStatus::Uploaded {
                ProgressState::Done
            } else {
                ProgressState::Exists
            },
        );
        Ok(())
    }
}

fn emit(p: Option<&ProgressFn>, desc: &Descriptor, state: ProgressState) {
    if let Some(p) = p {
        let offset = if matches!(state, ProgressState::Done | ProgressState::Exists) {
            desc.size()
        } else {
            0
        };
        p(&Progress {
            reference: ref_key(desc),
            descriptor: desc.clone(),
            state,
            offset,
            total: desc.size(),
        });
    }
}
