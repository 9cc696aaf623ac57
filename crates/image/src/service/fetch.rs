//! [`ImageService::fetch`]: registry → content store.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use strata_content::helpers::open_writer;
use strata_content::labels::DISTRIBUTION_SOURCE;
use strata_content::{Descriptor, Error, Info, Labels, Result, WriterOpts};
use tokio::sync::{Semaphore, mpsc};

use super::{ImageService, Progress, ProgressFn, ProgressState, ref_key};
use crate::handlers::{
    Handler, children_handler, dispatch, filter_platforms, handler_fn, handlers, limit_manifests,
    set_children_labels,
};
use crate::image::Image;
use crate::leases::{LeaseManager, Resource};
use crate::platforms::{self, MatchComparer, Platform};
use crate::reference::Reference;
use crate::remote::{Fetcher, RegistryOptions, Resolver};

/// Which platforms of a multi-platform image to fetch.
#[derive(Debug, Clone, Default)]
pub enum PlatformSelection {
    /// The host's platform (or the best compatible one), one manifest.
    #[default]
    Host,
    /// These platforms: one manifest for a single platform (with compatible variants),
    /// every matching manifest for several.
    Only(Vec<Platform>),
    /// Every manifest of the index.
    All,
}

/// A blob that landed during a fetch (see [`FetchOptions::on_blob`]).
#[derive(Debug, Clone)]
pub struct BlobEvent {
    /// The blob.
    pub descriptor: Descriptor,
    /// `Done` when this fetch committed it, `Exists` when it was already there.
    pub state: ProgressState,
}

/// See [`FetchOptions::tee`].
pub type TeeFn = Arc<dyn Fn(&Descriptor, u64) -> Option<mpsc::Sender<bytes::Bytes>> + Send + Sync>;

/// Options of [`ImageService::fetch`].
#[derive(Clone)]
pub struct FetchOptions {
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Which platforms to fetch.
    pub platforms: PlatformSelection,
    /// At most this many blobs transfer at once (default 3, as containerd).
    pub max_concurrent_downloads: usize,
    /// Called with each blob's progress.
    pub progress: Option<ProgressFn>,
    /// Receives each blob as soon as it is committed or found present: the hook for
    /// pipelined unpacking.
    pub on_blob: Option<mpsc::UnboundedSender<BlobEvent>>,
    /// Tees downloads: called when a blob's download starts, with the descriptor and the
    /// offset it resumes from; a returned sender receives every further chunk as it is
    /// written to the ingest (bounded: a slow receiver slows the download; a dropped one
    /// is ignored). Blobs already present are not downloaded and not teed. This lets an
    /// unpacker decompress a layer while it downloads (return `None` when `offset > 0`
    /// to wait for [`FetchOptions::on_blob`] instead).
    pub tee: Option<TeeFn>,
    /// Labels of the image record.
    pub image_labels: Labels,
    /// The image record's name; default the normalized reference.
    pub name: Option<String>,
    /// A lease that holds every ingest and blob of the fetch against GC.
    pub lease: Option<(Arc<LeaseManager>, String)>,
    /// Fetch the documents only (indexes, manifests, configs), not the layers: the pull
    /// fetches the layers itself once it knows which snapshots already exist.
    pub documents_only: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            registry: RegistryOptions::default(),
            platforms: PlatformSelection::Host,
            max_concurrent_downloads: 3,
            progress: None,
            on_blob: None,
            tee: None,
            image_labels: Labels::new(),
            name: None,
            lease: None,
            documents_only: false,
        }
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("registry", &self.registry)
            .field("platforms", &self.platforms)
            .field("max_concurrent_downloads", &self.max_concurrent_downloads)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `repo` added to a comma-separated, sorted set of repositories.
pub(crate) fn append_source(existing: Option<&str>, repo: &str) -> String {
    let mut set: BTreeSet<&str> = existing
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    set.insert(repo);
    set.into_iter().collect::<Vec<_>>().join(",")
}

struct Ctx {
    svc: Arc<ImageServiceInner>,
    fetcher: Fetcher,
    source_key: String,
    repo: String,
    progress: Option<ProgressFn>,
    on_blob: Option<mpsc::UnboundedSender<BlobEvent>>,
    tee: Option<TeeFn>,
    lease: Option<(Arc<LeaseManager>, String)>,
}

/// What a fetch handler needs from the service (so handlers are `'static`).
pub(crate) struct ImageServiceInner {
    pub content: Arc<dyn strata_content::Store>,
    pub locks: Arc<super::KeyedLocks>,
}

impl Ctx {
    fn emit(&self, desc: &Descriptor, state: ProgressState, offset: u64) {
        if let Some(p) = &self.progress {
            p(&Progress {
                reference: ref_key(desc),
                descriptor: desc.clone(),
                state,
                offset,
                total: desc.size(),
            });
        }
    }

    async fn hold(&self, r: Resource) -> Result<()> {
        if let Some((m, id)) = &self.lease {
            m.add_resource(id, &r).await?;
        }
        Ok(())
    }

    /// Fetches one blob into the content store (or finds it there).
    async fn fetch_blob(&self, desc: &Descriptor) -> Result<()> {
        let digest = desc.digest().clone();
        self.emit(desc, ProgressState::Waiting, 0);
        let _flight = self.svc.locks.lock(digest.as_ref()).await;
        let content = &self.svc.content;
        let state = match content.info(&digest).await {
            Ok(info) => {
                self.add_source(&info).await?;
                ProgressState::Exists
            }
            Err(e) if e.is_not_found() => self.download(desc).await?,
            Err(e) => return Err(e),
        };
        self.hold(Resource::content(digest.to_string())).await?;
        self.emit(desc, state, desc.size());
        if let Some(tx) = &self.on_blob {
            let _ = tx.send(BlobEvent {
                descriptor: desc.clone(),
                state,
            });
        }
        Ok(())
    }

    async fn add_source(&self, info: &Info) -> Result<()> {
        let v = append_source(
            info.labels.get(&self.source_key).map(String::as_str),
            &self.repo,
        );
        if info.labels.get(&self.source_key) == Some(&v) {
            return Ok(());
        }
        let mut l = Labels::new();
        l.insert(self.source_key.clone(), v);
        self.svc
            .content
            .update(
                Info::for_update(info.digest.clone(), l),
                &[format!("labels.{}", self.source_key)],
            )
            .await?;
        Ok(())
    }

    async fn download(&self, desc: &Descriptor) -> Result<ProgressState> {
        let size = desc.size();
        let digest = desc.digest().clone();
        if size == 0 {
            return Err(Error::invalid_argument(format!(
                "descriptor of {digest} has size 0"
            )));
        }
        let reference = ref_key(desc);
        self.hold(Resource::ingest(reference.clone())).await?;
        let content = self.svc.content.clone();
        let mut w = match open_writer(
            content.as_ref(),
            WriterOpts::new(reference.clone()).descriptor(desc),
        )
        .await
        {
            Ok(w) => w,
            Err(e) if e.is_already_exists() => {
                let info = content.info(&digest).await?;
                self.add_source(&info).await?;
                return Ok(ProgressState::Exists);
            }
            Err(e) => return Err(e),
        };
        let mt = desc.media_type().to_string();
        // Documents are small: keep them whole to check them before committing.
        let is_doc = crate::media_types::is_manifest(&mt)
            || crate::media_types::is_index(&mt)
            || crate::media_types::is_config(&mt);
        let mut doc = Vec::new();
        let mut offset = w.status().await?.offset;
        if offset > size || (is_doc && offset > 0) {
            w.truncate(0).await?;
            offset = 0;
        }
        if offset < size {
            self.emit(desc, ProgressState::Downloading, offset);
            let mut tee = self.tee.as_ref().and_then(|f| f(desc, offset));
            let result: Result<()> = async {
                let mut s = self.fetcher.fetch(desc, offset).await?;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    w.write(&chunk).await?;
                    if let Some(tx) = &tee
                        && tx.send(chunk.clone()).await.is_err()
                    {
                        tee = None;
                    }
                    if is_doc {
                        doc.extend_from_slice(&chunk);
                    }
                    offset += chunk.len() as u64;
                    self.emit(desc, ProgressState::Downloading, offset);
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                // Keep the bytes: a later fetch resumes at this offset.
                let _ = w.close().await;
                return Err(e.context(format!("fetch {digest} ({})", desc.media_type())));
            }
        }
        if is_doc && let Err(e) = check_document(&doc, &mt) {
            let _ = w.close().await;
            let _ = content.abort(&reference).await;
            return Err(e.context(format!(
                "registry {} served {mt} {digest}",
                self.fetcher.domain()
            )));
        }
        let mut labels = Labels::new();
        labels.insert(self.source_key.clone(), self.repo.clone());
        match w.commit(size, Some(digest.clone()), labels).await {
            Ok(()) => Ok(ProgressState::Done),
            Err(e) if e.is_already_exists() => {
                let info = content.info(&digest).await?;
                self.add_source(&info).await?;
                Ok(ProgressState::Exists)
            }
            Err(e) => {
                if e.is_failed_precondition() {
                    // Wrong bytes: never resume from them.
                    let _ = content.abort(&reference).await;
                }
                Err(e.context(format!(
                    "registry {} served bad content for {digest}",
                    self.fetcher.domain()
                )))
            }
        }
    }
}

/// Decodes a manifest, index or config as its media type says.
fn check_document(doc: &[u8], mt: &str) -> Result<()> {
    use crate::media_types as m;
    if m::is_manifest(mt) || m::is_index(mt) {
        crate::image::validate_media_type(doc, mt)?;
    }
    if m::is_manifest(mt) {
        crate::image::decode_manifest(doc).map(drop)
    } else if m::is_index(mt) {
        crate::image::decode_index(doc).map(drop)
    } else {
        crate::image::decode_config(doc).map(drop)
    }
}

impl ImageService {
    /// Fetches `reference` into the content store and records the image (see the
    /// [module docs](super) for the flow). Returns the image record.
    ///
    /// # Errors
    /// - `InvalidArgument` for a malformed reference, a manifest over 4 MiB, or
    ///   malformed JSON; `NotImplemented` for Docker schema 1.
    /// - `NotFound` when the registry lacks the reference or a blob, or no manifest
    ///   matches the platforms.
    /// - `FailedPrecondition` when the registry serves bytes that do not match their
    ///   digest (nothing is committed) or refuses authentication.
    /// - `Unavailable` when the registry cannot be reached or a download cannot be
    ///   resumed (its bytes stay in the ingest for the next fetch).
    pub async fn fetch(&self, reference: &str, opts: FetchOptions) -> Result<Image> {
        let r = Reference::parse_normalized(reference)?.with_default_tag();
        let resolver = Resolver::new(opts.registry.clone())?;
        let target = resolver.resolve(&r).await?;
        self.fetch_target(&resolver, &r, target.clone(), &opts)
            .await
            .map_err(|e| e.context(format!("fetch {r}")))?;
        let name = opts.name.clone().unwrap_or_else(|| r.to_string());
        let mut img = Image::new(name, target);
        img.labels = opts.image_labels.clone();
        if let Some((m, id)) = &opts.lease {
            m.add_resource(id, &Resource::image(img.name.clone()))
                .await?;
        }
        self.put_image(img).await
    }

    /// Fetches the graph under `target` from `r`'s repository (no image record).
    ///
    /// # Errors
    /// As [`ImageService::fetch`].
    pub async fn fetch_target(
        &self,
        resolver: &Resolver,
        r: &Reference,
        target: Descriptor,
        opts: &FetchOptions,
    ) -> Result<()> {
        let ctx = Arc::new(Ctx {
            svc: Arc::new(ImageServiceInner {
                content: self.content.clone(),
                locks: self.blob_locks.clone(),
            }),
            fetcher: resolver.fetcher(r),
            source_key: format!("{DISTRIBUTION_SOURCE}{}", r.domain()),
            repo: r.path().to_string(),
            progress: opts.progress.clone(),
            on_blob: opts.on_blob.clone(),
            tee: opts.tee.clone(),
            lease: opts.lease.clone(),
        });
        let fetch_h: Arc<dyn Handler> = Arc::new(handler_fn(move |desc: Descriptor| {
            let ctx = ctx.clone();
            async move {
                ctx.fetch_blob(&desc).await?;
                Ok(Vec::new())
            }
        }));
        let provider: Arc<dyn strata_content::Provider> = self.content.clone();
        let manager: Arc<dyn strata_content::Manager> = self.content.clone();
        let mut children: Arc<dyn Handler> = Arc::new(set_children_labels(
            manager,
            Arc::new(children_handler(provider)),
        ));
        let (comparer, limit): (Arc<dyn MatchComparer>, usize) = match &opts.platforms {
            PlatformSelection::Host => (platforms::default_arc(), 1),
            PlatformSelection::Only(ps) if ps.len() == 1 => {
                (Arc::new(platforms::only(ps[0].clone())), 1)
            }
            PlatformSelection::Only(ps) => (Arc::new(platforms::ordered(ps.clone())), 0),
            PlatformSelection::All => (Arc::new(platforms::all()), 0),
        };
        let matcher: Arc<dyn platforms::Matcher> = match &opts.platforms {
            PlatformSelection::Host => Arc::new(platforms::default_matcher()),
            PlatformSelection::Only(ps) if ps.len() == 1 => {
                Arc::new(platforms::only(ps[0].clone()))
            }
            PlatformSelection::Only(ps) => Arc::new(platforms::any(ps.clone())),
            PlatformSelection::All => Arc::new(platforms::all()),
        };
        children = Arc::new(filter_platforms(children, matcher));
        children = Arc::new(limit_manifests(children, comparer, limit));
        if opts.documents_only {
            let inner = children;
            children = Arc::new(handler_fn(move |desc: Descriptor| {
                let inner = inner.clone();
                async move {
                    let mut kids = inner.handle(&desc).await?;
                    kids.retain(|d| !crate::media_types::is_layer(d.media_type().as_ref()));
                    Ok(kids)
                }
            }));
        }
        let h: Arc<dyn Handler> = Arc::new(handlers(vec![fetch_h, children]));
        let limiter = Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1)));
        dispatch(h, Some(limiter), vec![target]).await
    }

    /// Creates the image record, or updates its target and labels if it exists.
    pub(crate) async fn put_image(&self, img: Image) -> Result<Image> {
        match self.images.create(img.clone()).await {
            Ok(i) => Ok(i),
            Err(e) if e.is_already_exists() => {
                self.images
                    .update(img, &["target".to_string(), "labels".to_string()])
                    .await
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_labels_are_sorted_and_unique() {
        assert_eq!(append_source(None, "a/b"), "a/b");
        assert_eq!(append_source(Some("z,c"), "a"), "a,c,z");
        assert_eq!(append_source(Some("a,c"), "c"), "a,c");
        assert_eq!(append_source(Some(""), "x"), "x");
    }
}
