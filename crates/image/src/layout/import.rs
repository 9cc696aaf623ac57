//! Reading an OCI image layout or a `docker save` archive into a content store.

use super::docker::{self, DockerFiles};
use super::ingest::{BlockingRead, Tracker, ingest_expected, ingest_unknown};
use super::{IMAGE_NAME_ANNOTATION, MAX_METADATA_SIZE, REF_NAME_ANNOTATION, check_oci_layout};
use crate::handlers::{child_gc_labels, children, children_labels};
use crate::image::{Image, decode_index};
use crate::leases::{LeaseManager, Resource};
use crate::media_types as mt;
use crate::platforms::{self, MatchComparer};
use crate::store::ImageStore;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use strata_content::{Descriptor, Digest, Error, Info, Result, Store};

/// Options for [`import`].
#[derive(Clone, Default)]
pub struct ImportOpts {
    /// The image name. With one image in the archive it names it; with several, each is
    /// named `<name>:<ref name>` (or `<name>:<tag>` for `docker save` tags).
    pub name: Option<String>,
    /// Import only these platforms' manifests from indexes (entries without a platform
    /// are kept). `None`: every manifest, all of which must be in the archive.
    pub platforms: Option<Arc<dyn MatchComparer>>,
    /// A lease (manager, lease id) that holds every ingest, blob and image record of the
    /// import against garbage collection while it runs (as containerd's `ctr import`).
    pub lease: Option<(Arc<LeaseManager>, String)>,
}

/// What [`import`] did.
#[derive(Debug, Clone, Default)]
pub struct ImportResult {
    /// The image records created or updated.
    pub images: Vec<Image>,
    /// Top-level entries that had no name (their blobs were imported, no record made).
    pub unnamed: Vec<Descriptor>,
    /// How many blobs this import added to the content store.
    pub blobs_written: usize,
}

/// Where the archive's files are.
enum Source {
    /// An unpacked directory.
    Dir(PathBuf),
    /// A tar already read: metadata files in memory, every blob already ingested.
    Tar {
        meta: HashMap<String, Vec<u8>>,
        docker: DockerFiles,
    },
}

/// Imports the OCI layout or `docker save` archive at `path` (a directory, or a tar that
/// may be gzip-compressed) into `store` and creates or updates image records in `images`.
///
/// Blobs are streamed into the store and verified by digest and size; the manifests,
/// indexes and configs are read back from the store to find their children, and each
/// parent gets containerd's GC reference labels. If anything fails, the blobs this
/// import committed are deleted again and no record is written.
///
/// # Errors
/// - `InvalidArgument`: not a layout/archive, malformed JSON, unsafe paths.
/// - `FailedPrecondition`: a blob whose bytes do not match its digest or size.
/// - `NotFound`: a blob referenced but missing from the archive.
/// - `NotImplemented`: Docker schema 1, an unknown layout version or digest algorithm.
/// - `Io`: reading the archive failed (for example a truncated tar).
pub async fn import(
    store: Arc<dyn Store>,
    images: &ImageStore,
    path: &Path,
    opts: &ImportOpts,
) -> Result<ImportResult> {
    let tracker = Tracker::with_lease(opts.lease.clone());
    let result = import_inner(store.clone(), images, path, opts, &tracker).await;
    match result {
        Ok(mut r) => {
            r.blobs_written = tracker.committed().len();
            Ok(r)
        }
        Err(e) => {
            tracker.rollback(store.as_ref()).await;
            Err(e.context(format!("import {}", path.display())))
        }
    }
}

async fn import_inner(
    store: Arc<dyn Store>,
    images: &ImageStore,
    path: &Path,
    opts: &ImportOpts,
    tracker: &Tracker,
) -> Result<ImportResult> {
    let meta_dir = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    let src = if meta_dir.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        read_tar(store.clone(), tracker.clone(), path.to_path_buf()).await?
    };
    let has = |name: &str| -> bool {
        match &src {
            Source::Dir(d) => d.join(name).is_file(),
            Source::Tar { meta, .. } => meta.contains_key(name),
        }
    };
    let mut reachable = HashSet::new();
    let mut result = ImportResult::default();
    // (names, target) of each top-level image.
    let mut tops: Vec<(Vec<String>, Descriptor)> = Vec::new();
    if has("oci-layout") {
        check_oci_layout(
            &read_meta(&src, "oci-layout").await?,
            &path.display().to_string(),
        )?;
        let index_bytes = read_meta(&src, "index.json").await?;
        let index = decode_index(&index_bytes).map_err(|e| e.context("index.json"))?;
        let count = index.manifests().len();
        for entry in index.manifests() {
            ensure_graph(store.as_ref(), tracker, &src, entry, opts, &mut reachable).await?;
            let mut target = entry.clone();
            let mut ann = target.annotations().clone().unwrap_or_default();
            let ref_name = ann.remove(REF_NAME_ANNOTATION);
            let full_name = ann.remove(IMAGE_NAME_ANNOTATION);
            target.set_annotations((!ann.is_empty()).then_some(ann));
            let name = match (&opts.name, count) {
                (Some(n), 1) => Some(n.clone()),
                (Some(n), _) => ref_name.as_ref().map(|r| format!("{n}:{r}")),
                (None, _) => full_name.or(ref_name),
            };
            tops.push((name.into_iter().collect(), target));
        }
    } else if has("manifest.json") {
        let bytes = read_meta(&src, "manifest.json").await?;
        let files = match &src {
            Source::Dir(d) => DockerFiles::Dir(d.clone()),
            Source::Tar { docker, .. } => docker.clone(),
        };
        let built = docker::import(store.as_ref(), tracker, &files, &bytes).await?;
        let count = built.len();
        for (tags, manifest) in built {
            ensure_graph(
                store.as_ref(),
                tracker,
                &src,
                &manifest,
                opts,
                &mut reachable,
            )
            .await?;
            let names = match (&opts.name, count) {
                (Some(n), 1) => vec![n.clone()],
                (Some(n), _) => tags
                    .iter()
                    .map(|t| format!("{n}:{}", t.rsplit_once(':').map_or("latest", |x| x.1)))
                    .collect(),
                (None, _) => tags,
            };
            tops.push((names, manifest));
        }
    } else {
        return Err(Error::invalid_argument(
            "neither an OCI image layout (oci-layout, index.json) nor a docker save archive \
             (manifest.json)",
        ));
    }
    if let Source::Tar { .. } = src {
        // Blobs in the tar that no image uses are not kept.
        tracker
            .remove_unreferenced(store.as_ref(), &reachable)
            .await;
    }
    for (names, target) in tops {
        if names.is_empty() {
            tracing::warn!(digest = %target.digest(), "import: entry without a name; no image record");
            result.unnamed.push(target);
            continue;
        }
        for name in names {
            tracker.hold(Resource::image(name.clone())).await?;
            let img = match images
                .create(Image::new(name.clone(), target.clone()))
                .await
            {
                Err(e) if e.is_already_exists() => {
                    let mut existing = images.get(&name).await?;
                    existing.target = target.clone();
                    images.update(existing, &["target".into()]).await?
                }
                other => other?,
            };
            result.images.push(img);
        }
    }
    Ok(result)
}

async fn read_meta(src: &Source, name: &str) -> Result<Vec<u8>> {
    match src {
        Source::Dir(d) => {
            let p = d.join(name);
            let m = tokio::fs::metadata(&p)
                .await
                .map_err(|e| Error::io(format!("read {}", p.display()), e))?;
            if m.len() > MAX_METADATA_SIZE {
                return Err(Error::invalid_argument(format!(
                    "{} is {} bytes, over the {MAX_METADATA_SIZE}-byte limit",
                    p.display(),
                    m.len()
                )));
            }
            tokio::fs::read(&p)
                .await
                .map_err(|e| Error::io(format!("read {}", p.display()), e))
        }
        Source::Tar { meta, .. } => meta
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("{name} in the archive"))),
    }
}

/// Makes sure `root` and everything below it are in the store (ingesting from a
/// directory as needed), and labels each parent with its children.
async fn ensure_graph(
    store: &dyn Store,
    tracker: &Tracker,
    src: &Source,
    root: &Descriptor,
    opts: &ImportOpts,
    reachable: &mut HashSet<Digest>,
) -> Result<()> {
    let mut stack = vec![root.clone()];
    while let Some(desc) = stack.pop() {
        if reachable.contains(desc.digest()) {
            continue;
        }
        let media_type = desc.media_type().to_string();
        strata_content::digest::require_sha256(desc.digest())?;
        if !ensure_blob(store, tracker, src, &desc).await? {
            continue;
        }
        reachable.insert(desc.digest().clone());
        if !(mt::is_index(&media_type)
            || mt::is_manifest(&media_type)
            || mt::is_schema1(&media_type))
        {
            continue;
        }
        let kids = children(store, &desc).await?;
        let labels = children_labels(&kids, child_gc_labels);
        if !labels.is_empty() {
            let fields: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
            store
                .update(Info::for_update(desc.digest().clone(), labels), &fields)
                .await?;
        }
        let kids: Vec<Descriptor> = match (&opts.platforms, mt::is_index(&media_type)) {
            (Some(m), true) => kids
                .into_iter()
                .filter(|c| platforms::of_descriptor(c).is_none_or(|p| m.matches(&p)))
                .collect(),
            _ => kids,
        };
        stack.extend(kids.into_iter().rev());
    }
    Ok(())
}

/// Ensures one blob is committed with the right size. Returns false for a missing
/// non-distributable layer (skipped, as foreign layers usually are not exported).
async fn ensure_blob(
    store: &dyn Store,
    tracker: &Tracker,
    src: &Source,
    desc: &Descriptor,
) -> Result<bool> {
    let origin = format!("blob {} ({})", desc.digest(), desc.media_type());
    if let Ok(info) = store.info(desc.digest()).await {
        if info.size != desc.size() {
            return Err(Error::failed_precondition(format!(
                "{origin}: the archive has {} bytes, the descriptor says {}",
                info.size,
                desc.size()
            )));
        }
        return Ok(true);
    }
    let non_dist = mt::is_non_distributable(desc.media_type().as_ref());
    match src {
        Source::Dir(dir) => {
            let p = dir.join(format!(
                "blobs/{}/{}",
                desc.digest().algorithm(),
                desc.digest().digest()
            ));
            let f = match tokio::fs::File::open(&p).await {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && non_dist => return Ok(false),
                Err(e) => return Err(Error::io(format!("{origin}: open {}", p.display()), e)),
            };
            ingest_expected(store, tracker, desc, f, &p.display().to_string()).await?;
            Ok(true)
        }
        Source::Tar { .. } if non_dist => Ok(false),
        Source::Tar { .. } => Err(Error::not_found(format!("{origin}: not in the archive"))),
    }
}

/// A tar entry's path, normalized (no `./`), or `None` when it is unsafe (absolute or
/// with `..`).
fn clean_path(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

const META_FILES: &[&str] = &["oci-layout", "index.json", "manifest.json", "repositories"];

/// Reads a tar (gzip-compressed or not) in one pass: metadata files into memory,
/// `blobs/<alg>/<hex>` entries into the store verified against their names, and the
/// other `docker save` files (`*.json` configs, `*.tar` layers) into the store by their
/// computed digests.
async fn read_tar(store: Arc<dyn Store>, tracker: Tracker, path: PathBuf) -> Result<Source> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<Source> {
        let shown = path.display().to_string();
        let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {shown}"), e);
        let mut f = std::fs::File::open(&path).map_err(|e| io("open", e))?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).map_err(|e| io("read", e))?;
        use std::io::Seek;
        f.rewind().map_err(|e| io("rewind", e))?;
        let f = std::io::BufReader::with_capacity(1 << 20, f);
        let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut archive = tar::Archive::new(reader);
        let mut meta = HashMap::new();
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for entry in archive.entries().map_err(|e| io("read tar", e))? {
            let mut entry = entry.map_err(|e| io("read tar entry of", e))?;
            let raw = entry
                .path()
                .map_err(|e| io("read tar path in", e))?
                .into_owned();
            let Some(name) = clean_path(&raw) else {
                return Err(Error::invalid_argument(format!(
                    "{shown}: unsafe path {} in archive",
                    raw.display()
                )));
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name().map_err(|e| io("read link in", e))? {
                    let base = if kind.is_symlink() {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = normalize_link(&base) {
                        links.insert(name, t);
                    }
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            if META_FILES.contains(&name.as_str()) {
                if size > MAX_METADATA_SIZE {
                    return Err(Error::invalid_argument(format!(
                        "{shown}: {name} is {size} bytes, over the {MAX_METADATA_SIZE}-byte limit"
                    )));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| io(&format!("read {name} in"), e))?;
                meta.insert(name, buf);
                continue;
            }
            let origin = format!("{shown}: {name}");
            let parts: Vec<&str> = name.split('/').collect();
            if parts.len() == 3 && parts[0] == "blobs" {
                let digest = strata_content::digest::parse(&format!("{}:{}", parts[1], parts[2]))
                    .map_err(|e| e.context(&origin))?;
                strata_content::digest::require_sha256(&digest)?;
                let desc = Descriptor::new("application/octet-stream".into(), size, digest.clone());
                handle.block_on(ingest_expected(
                    store.as_ref(),
                    &tracker,
                    &desc,
                    BlockingRead(&mut entry),
                    &origin,
                ))?;
                files.insert(name, (digest, size));
            } else if name.ends_with(".tar") || name.ends_with(".json") {
                let found = handle.block_on(ingest_unknown(
                    store.as_ref(),
                    &tracker,
                    &name,
                    BlockingRead(&mut entry),
                    &origin,
                ))?;
                files.insert(name, found);
            }
        }
        Ok(Source::Tar {
            meta,
            docker: DockerFiles::Tar { files, links },
        })
    })
    .await
    .map_err(|e| Error::internal(format!("import tar task failed: {e}")))?
}

/// Resolves `.`/`..` in a link target; `None` if it escapes the archive root.
fn normalize_link(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    Some(parts.join("/"))
}
