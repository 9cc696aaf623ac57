//! Writing images into an OCI image layout (directory or tar).

use super::{
    IMAGE_NAME_ANNOTATION, LAYOUT_VERSION, REF_NAME_ANNOTATION, canonical_json, ref_name_for,
};
use crate::handlers::children;
use crate::image::Image;
use crate::media_types as mt;
use crate::platforms::{self, MatchComparer};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use strata_content::{Descriptor, Error, Provider, ReaderAt, Result};

/// Options for [`export_dir`] and [`export_tar`].
#[derive(Clone, Default)]
pub struct ExportOpts {
    /// Export only the manifests of these platforms from indexes (entries without a
    /// platform are kept). `None`: every manifest, all of which must be present.
    pub platforms: Option<Arc<dyn MatchComparer>>,
    /// Also write non-distributable (foreign) layers; by default they are left out, as
    /// containerd does.
    pub include_non_distributable: bool,
    /// Do not add a `docker load`-compatible `manifest.json` to tar exports (by default
    /// one is written, as containerd's exporter does, for every image whose manifest for
    /// the selected platform — the host's when `platforms` is `None` — is present).
    pub skip_docker_manifest: bool,
}

/// The blobs to export, parents before children, each once.
async fn collect(
    provider: &dyn Provider,
    images: &[Image],
    opts: &ExportOpts,
) -> Result<Vec<Descriptor>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for img in images {
        let mut stack = vec![img.target.clone()];
        while let Some(desc) = stack.pop() {
            if !seen.insert(desc.digest().clone()) {
                continue;
            }
            let media_type = desc.media_type().to_string();
            if mt::is_non_distributable(&media_type) && !opts.include_non_distributable {
                continue;
            }
            provider.reader_at(&desc).await.map_err(|e| {
                e.context(format!(
                    "export image {:?}: {media_type} {}{}",
                    img.name,
                    desc.digest(),
                    if mt::is_manifest(&media_type) && opts.platforms.is_none() {
                        " (export only the platforms present)"
                    } else {
                        ""
                    }
                ))
            })?;
            let mut kids = children(provider, &desc)
                .await
                .map_err(|e| e.context(format!("export image {:?}", img.name)))?;
            if let (true, Some(m)) = (mt::is_index(&media_type), &opts.platforms) {
                kids.retain(|c| platforms::of_descriptor(c).is_none_or(|p| m.matches(&p)));
            }
            out.push(desc);
            stack.extend(kids.into_iter().rev());
        }
    }
    Ok(out)
}

/// The `index.json` entry for `img`: its target with the ref-name annotations.
fn entry(img: &Image) -> Result<Value> {
    if img.name.is_empty() {
        return Err(Error::invalid_argument("export: image name is empty"));
    }
    let mut d = img.target.clone();
    let mut a = d.annotations().clone().unwrap_or_default();
    a.insert(REF_NAME_ANNOTATION.into(), ref_name_for(&img.name));
    a.insert(IMAGE_NAME_ANNOTATION.into(), img.name.clone());
    d.set_annotations(Some(a));
    serde_json::to_value(&d).map_err(|e| Error::internal(format!("encode descriptor: {e}")))
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get("annotations")?.get(key)?.as_str()
}

/// Builds `index.json`: `existing` entries (from a layout being added to) minus those
/// with the same ref name or image name as a new one, then the new entries.
fn index_json(existing: Vec<Value>, images: &[Image]) -> Result<Vec<u8>> {
    let new: Vec<Value> = images.iter().map(entry).collect::<Result<_>>()?;
    let names: HashSet<(Option<&str>, Option<&str>)> = new
        .iter()
        .map(|v| {
            (
                annotation(v, REF_NAME_ANNOTATION),
                annotation(v, IMAGE_NAME_ANNOTATION),
            )
        })
        .collect();
    let new_refs: HashSet<&str> = names.iter().filter_map(|n| n.0).collect();
    let mut manifests: Vec<Value> = existing
        .into_iter()
        .filter(|v| {
            let r = annotation(v, REF_NAME_ANNOTATION);
            let n = annotation(v, IMAGE_NAME_ANNOTATION);
            !(r.is_some_and(|r| new_refs.contains(r))
                || n.is_some_and(|n| names.iter().any(|x| x.1 == Some(n))))
        })
        .collect();
    manifests.extend(new);
    Ok(canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    })))
}

fn oci_layout() -> Vec<u8> {
    canonical_json(&json!({ "imageLayoutVersion": LAYOUT_VERSION }))
}

fn blob_path(d: &Descriptor) -> String {
    format!("blobs/{}/{}", d.digest().algorithm(), d.digest().digest())
}

/// Exports `images` into the layout directory `dir` (created if missing; an existing
/// layout is added to, replacing entries with the same names). Blobs are streamed from
/// `provider`; blobs already in the directory with the right size are kept.
/// Returns the `index.json` entries written for `images`.
///
/// # Errors
/// `NotFound` when a needed blob is missing from `provider` (with `platforms: None`, a
/// multi-platform image needs every platform); `InvalidArgument` for an existing
/// malformed layout or an unnamed image; `Io` for filesystem errors.
pub async fn export_dir(
    provider: Arc<dyn Provider>,
    images: &[Image],
    dir: &Path,
    opts: &ExportOpts,
) -> Result<Vec<Descriptor>> {
    let blobs = collect(provider.as_ref(), images, opts).await?;
    let io = |what: &str, p: &Path, e| Error::io(format!("export: {what} {}", p.display()), e);
    let mut existing = Vec::new();
    let index_path = dir.join("index.json");
    if let Ok(bytes) = tokio::fs::read(&index_path).await {
        super::check_oci_layout(
            &tokio::fs::read(dir.join("oci-layout"))
                .await
                .map_err(|e| io("read", &dir.join("oci-layout"), e))?,
            &dir.display().to_string(),
        )?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid_argument(format!("export: malformed {}: {e}", index_path.display()))
        })?;
        existing = v
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    }
    for d in &blobs {
        let path = dir.join(blob_path(d));
        if let Ok(m) = tokio::fs::metadata(&path).await
            && m.len() == d.size()
        {
            continue;
        }
        let parent = path.parent().expect("blob path has a parent");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io("create", parent, e))?;
        let tmp = parent.join(format!(
            ".{}.tmp{}",
            d.digest().digest(),
            std::process::id()
        ));
        let mut r = provider.reader(d).await?;
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io("create", &tmp, e))?;
        let n = tokio::io::copy(&mut r, &mut f)
            .await
            .map_err(|e| io("write", &tmp, e))?;
        f.sync_all().await.map_err(|e| io("sync", &tmp, e))?;
        drop(f);
        if n != d.size() {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Error::failed_precondition(format!(
                "export: blob {} read as {n} bytes, expected {}",
                d.digest(),
                d.size()
            )));
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io("rename", &path, e))?;
    }
    let index = index_json(existing, images)?;
    for (name, bytes) in [("oci-layout", oci_layout()), ("index.json", index)] {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| io("write", &tmp, e))?;
        tokio::fs::rename(&tmp, &p)
            .await
            .map_err(|e| io("rename", &p, e))?;
    }
    entries(images)
}

fn entries(images: &[Image]) -> Result<Vec<Descriptor>> {
    images
        .iter()
        .map(|i| {
            serde_json::from_value(entry(i)?)
                .map_err(|e| Error::internal(format!("decode descriptor: {e}")))
        })
        .collect()
}

/// Exports `images` as a layout tar at `path` (created or truncated). See [`export_tar_to`].
///
/// # Errors
/// As [`export_tar_to`]; `Io` when the file cannot be created.
pub async fn export_tar(
    provider: Arc<dyn Provider>,
    images: &[Image],
    path: &Path,
    opts: &ExportOpts,
) -> Result<Vec<Descriptor>> {
    let f = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("export: create {}", path.display()), e))?;
    let (f, entries) = export_tar_to(
        provider,
        images,
        std::io::BufWriter::with_capacity(1 << 20, f),
        opts,
    )
    .await?;
    let f = f
        .into_inner()
        .map_err(|e| Error::io(format!("export: flush {}", path.display()), e.into_error()))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("export: sync {}", path.display()), e))?;
    Ok(entries)
}

/// Docker's `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`) for the images whose
/// manifest for the export platform is present, so `docker load` reads the tar too.
/// `None` when no image qualifies.
async fn docker_manifest(
    provider: &dyn Provider,
    images: &[Image],
    opts: &ExportOpts,
) -> Result<Option<Vec<u8>>> {
    let default: Arc<dyn MatchComparer> = Arc::new(platforms::default_matcher());
    let matcher = opts.platforms.clone().unwrap_or(default);
    // One entry per manifest, listing every tag that points at it.
    let mut order: Vec<String> = Vec::new();
    let mut by_manifest: std::collections::HashMap<String, (Value, Vec<String>)> =
        Default::default();
    for img in images {
        let m = match crate::image::manifest(provider, &img.target, matcher.as_ref()).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let layers = m.manifest.layers();
        if layers
            .iter()
            .any(|l| mt::is_non_distributable(l.media_type().as_ref()))
        {
            continue;
        }
        let tag = crate::reference::Reference::parse(&img.name)
            .ok()
            .filter(|r| r.tag().is_some() && r.digest().is_none())
            .map(|r| r.familiar());
        let key = m.descriptor.digest().to_string();
        let entry = by_manifest.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            let files: Vec<String> = layers.iter().map(blob_path).collect();
            (
                json!({ "Config": blob_path(m.manifest.config()), "Layers": files }),
                Vec::new(),
            )
        });
        entry.1.extend(tag);
    }
    if order.is_empty() {
        return Ok(None);
    }
    let list: Vec<Value> = order
        .iter()
        .map(|k| {
            let (mut v, tags) = by_manifest.remove(k).expect("key was inserted");
            v["RepoTags"] = json!(tags);
            v
        })
        .collect();
    Ok(Some(canonical_json(&Value::Array(list))))
}

struct ReadAt {
    ra: Arc<dyn ReaderAt>,
    off: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.ra.read_at(buf, self.off)?;
        self.off += n as u64;
        Ok(n)
    }
}

fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

/// Writes `images` as an OCI layout tar into `w` (`oci-layout`, `index.json`, then
/// `blobs/…`), streaming each blob from `provider` on a blocking thread, and returns the
/// writer and the `index.json` entries. Entries have mode 0644/0755, owner 0 and mtime 0.
///
/// # Errors
/// `NotFound` for a missing blob (see [`export_dir`]); `Io` when writing fails or a blob
/// is shorter than its descriptor says.
pub async fn export_tar_to<W: Write + Send + 'static>(
    provider: Arc<dyn Provider>,
    images: &[Image],
    w: W,
    opts: &ExportOpts,
) -> Result<(W, Vec<Descriptor>)> {
    let blobs = collect(provider.as_ref(), images, opts).await?;
    let index = index_json(Vec::new(), images)?;
    let entries = entries(images)?;
    let docker = if opts.skip_docker_manifest {
        None
    } else {
        docker_manifest(provider.as_ref(), images, opts).await?
    };
    let handle = tokio::runtime::Handle::current();
    let w = tokio::task::spawn_blocking(move || -> Result<W> {
        let io = |what: String, e| Error::io(format!("export tar: {what}"), e);
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        let mut meta = vec![("oci-layout", oci_layout()), ("index.json", index)];
        if let Some(d) = docker {
            meta.push(("manifest.json", d));
        }
        for (name, bytes) in meta {
            let mut h = header(bytes.len() as u64, false);
            b.append_data(&mut h, name, bytes.as_slice())
                .map_err(|e| io(format!("write {name}"), e))?;
        }
        let mut dirs = HashSet::new();
        for d in &blobs {
            let path = blob_path(d);
            let parent = path.rsplit_once('/').map(|x| x.0).unwrap_or("blobs");
            for dir in ["blobs", parent] {
                if dirs.insert(dir.to_string()) {
                    b.append_data(&mut header(0, true), format!("{dir}/"), std::io::empty())
                        .map_err(|e| io(format!("write {dir}/"), e))?;
                }
            }
            let ra = handle.block_on(provider.reader_at(d))?;
            if ra.size() != d.size() {
                return Err(Error::failed_precondition(format!(
                    "export tar: blob {} is {} bytes, descriptor says {}",
                    d.digest(),
                    ra.size(),
                    d.size()
                )));
            }
            let mut h = header(d.size(), false);
            b.append_data(&mut h, &path, ReadAt { ra, off: 0 })
                .map_err(|e| io(format!("write {path}"), e))?;
        }
        b.into_inner().map_err(|e| io("finish".into(), e))
    })
    .await
    .map_err(|e| Error::internal(format!("export tar task failed: {e}")))??;
    Ok((w, entries))
}
