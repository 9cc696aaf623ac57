//! Build small images from code: layers entry by entry, then config, manifest and image
//! record written into the stores with containerd's GC labels.
//!
//! For base images made by programs (VM image builders, tests, the quickstart), not for
//! large trees: a layer is built in memory. Timestamps are fixed (`mtime` option, default
//! the epoch) so the same entries always give the same digests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use std::sync::Arc;
//! use strata_image::build::{ImageBuilder, LayerBuilder};
//! let dir = tempfile::tempdir().unwrap();
//! let content = Arc::new(strata_content::local::LocalStore::open(dir.path().join("content"))?);
//! let images = strata_image::store::ImageStore::open(dir.path().join("metadata.db"))?;
//! let mut l = LayerBuilder::new();
//! l.dir("etc", 0o755)?.file("etc/hostname", 0o644, b"strata\n")?;
//! let image = ImageBuilder::new().layer(l.finish_gzip()?).write(content.as_ref(), &images, "example:1").await?;
//! assert_eq!(image.name, "example:1");
//! # Ok(()) }
//! ```

use std::sync::Arc;

use serde_json::{Value, json};
use strata_content::helpers::write_blob;
use strata_content::{Descriptor, Digest, Error, Info, Labels, MediaType, Result, Store, digest};

use crate::handlers::{child_gc_labels, children_labels};
use crate::image::Image;
use crate::leases::{LeaseManager, Resource};
use crate::media_types as mt;
use crate::platforms;
use crate::store::ImageStore;

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::io(format!("build layer: {what}"), e)
}

/// Builds one layer's tar in memory. Paths are relative to the root (`etc/hostname`).
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished layer: its compressed bytes, media type and DiffID.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// The blob as stored.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub media_type: &'static str,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

impl LayerBuilder {
    /// An empty layer whose entries belong to root (0:0), dated at the epoch.
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        LayerBuilder {
            tar,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// Owner of the entries added from now on.
    pub fn owner(&mut self, uid: u64, gid: u64) -> &mut Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Modification time (Unix seconds) of the entries added from now on.
    pub fn mtime(&mut self, secs: u64) -> &mut Self {
        self.mtime = secs;
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// Adds a directory.
    ///
    /// # Errors
    /// `Io` for a path the tar format cannot hold.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(
                &mut h,
                format!("{}/", path.trim_end_matches('/')),
                std::io::empty(),
            )
            .map_err(|e| io_err(path, e))?;
        Ok(self)
    }

    /// Adds a regular file.
    ///
    /// # Errors
    /// As [`LayerBuilder::dir`].
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self> {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .map_err(|e| io_err(path, e))?;
        Ok(self)
    }

    /// Adds a symbolic link to `target` (stored verbatim).
    ///
    /// # Errors
    /// As [`LayerBuilder::dir`].
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| io_err(path, e))?;
        Ok(self)
    }

    /// Adds a hard link to `target` (a path in this or a lower layer).
    ///
    /// # Errors
    /// As [`LayerBuilder::dir`].
    pub fn hardlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let mut h = self.header(tar::EntryType::Link, 0o644, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| io_err(path, e))?;
        Ok(self)
    }

    /// Adds an OCI whiteout deleting `path` from the layers below.
    ///
    /// # Errors
    /// As [`LayerBuilder::dir`].
    pub fn whiteout(&mut self, path: &str) -> Result<&mut Self> {
        let (dir, name) = path
            .rsplit_once('/')
            .map(|(d, n)| (format!("{d}/"), n))
            .unwrap_or((String::new(), path));
        self.file(&format!("{dir}.wh.{name}"), 0o644, b"")
    }

    /// Makes directory `path` opaque: nothing below it from lower layers shows.
    ///
    /// # Errors
    /// As [`LayerBuilder::dir`].
    pub fn opaque(&mut self, path: &str) -> Result<&mut Self> {
        self.file(
            &format!("{}/.wh..wh..opq", path.trim_end_matches('/')),
            0o644,
            b"",
        )
    }

    fn finish_tar(self) -> Result<(Vec<u8>, Digest)> {
        let tar = self.tar.into_inner().map_err(|e| io_err("finish", e))?;
        let diff_id = digest::sha256(&tar);
        Ok((tar, diff_id))
    }

    /// Finishes the layer as gzip (`…tar+gzip`).
    ///
    /// # Errors
    /// `Io` if compression fails.
    pub fn finish_gzip(self) -> Result<BuiltLayer> {
        use std::io::Write;
        let (tar, diff_id) = self.finish_tar()?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).map_err(|e| io_err("gzip", e))?;
        let bytes = gz.finish().map_err(|e| io_err("gzip", e))?;
        Ok(BuiltLayer {
            bytes,
            media_type: mt::OCI_LAYER_GZIP,
            diff_id,
        })
    }

    /// Finishes the layer uncompressed (`…tar`).
    ///
    /// # Errors
    /// `Io` if the archive cannot be finished.
    pub fn finish_plain(self) -> Result<BuiltLayer> {
        let (tar, diff_id) = self.finish_tar()?;
        Ok(BuiltLayer {
            bytes: tar,
            media_type: mt::OCI_LAYER,
            diff_id,
        })
    }
}

/// Assembles layers into an image: config (host platform unless set), OCI manifest,
/// blobs with GC labels, image record.
#[derive(Debug, Clone, Default)]
pub struct ImageBuilder {
    layers: Vec<BuiltLayer>,
    config: serde_json::Map<String, Value>,
    created: Option<String>,
}

impl ImageBuilder {
    /// An image with no layers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn layer(mut self, l: BuiltLayer) -> Self {
        self.layers.push(l);
        self
    }

    /// Sets a field of the runtime config (`Cmd`, `Env`, `WorkingDir` …).
    pub fn config(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.into(), value);
        self
    }

    /// Sets the `created` time (RFC 3339); default none, for reproducible digests.
    pub fn created(mut self, rfc3339: &str) -> Self {
        self.created = Some(rfc3339.into());
        self
    }

    /// Writes blobs and the image record `name`; returns the record.
    ///
    /// # Errors
    /// Content and image store errors (`AlreadyExists` from the image store when `name`
    /// exists).
    pub async fn write(
        self,
        content: &dyn Store,
        images: &ImageStore,
        name: &str,
    ) -> Result<Image> {
        let p = platforms::default_spec();
        let mut config = json!({
            "architecture": p.architecture,
            "os": p.os,
            "config": Value::Object(self.config),
            "rootfs": {"type": "layers", "diff_ids": self.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
            "history": self.layers.iter().map(|_| json!({"created_by": "strata build"})).collect::<Vec<_>>(),
        });
        if let Some(c) = &self.created {
            config["created"] = json!(c);
        }
        let mut layers = Vec::new();
        for l in &self.layers {
            let d = Descriptor::new(
                MediaType::from(l.media_type),
                l.bytes.len() as u64,
                digest::sha256(&l.bytes),
            );
            let mut labels = Labels::new();
            labels.insert(
                strata_content::labels::UNCOMPRESSED.into(),
                l.diff_id.to_string(),
            );
            put(content, &l.bytes, &d, labels).await?;
            layers.push(d);
        }
        let (_, manifest) =
            write_image_blobs(content, &config, Labels::new(), &layers, None).await?;
        images.create(Image::new(name.to_string(), manifest)).await
    }
}

/// Writes an image's config blob (`config`, with `config_labels`) and an OCI manifest
/// over it and `layers` (already stored), labelled with containerd's GC references to
/// its children ([`children_labels`]); returns their descriptors. When a lease is given,
/// each blob and its ingest are added to it before they are written.
///
/// # Errors
/// Content store and lease errors.
pub(crate) async fn write_image_blobs(
    content: &dyn Store,
    config: &Value,
    config_labels: Labels,
    layers: &[Descriptor],
    lease: Option<&(Arc<LeaseManager>, String)>,
) -> Result<(Descriptor, Descriptor)> {
    let config = encode(MediaType::ImageConfig, config)?;
    put_held(content, &config, config_labels, lease).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": descriptor_json(&config.0),
        "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
    });
    let manifest = encode(MediaType::ImageManifest, &manifest)?;
    let mut kids = vec![config.0.clone()];
    kids.extend(layers.iter().cloned());
    let labels = children_labels(&kids, child_gc_labels);
    put_held(content, &manifest, labels, lease).await?;
    Ok((config.0, manifest.0))
}

/// A JSON document's bytes and descriptor.
fn encode(media_type: MediaType, v: &Value) -> Result<(Descriptor, Vec<u8>)> {
    let bytes =
        serde_json::to_vec(v).map_err(|e| Error::internal(format!("encode {media_type}: {e}")))?;
    let desc = Descriptor::new(media_type, bytes.len() as u64, digest::sha256(&bytes));
    Ok((desc, bytes))
}

/// [`put`], after adding the blob and its ingest to `lease`.
async fn put_held(
    content: &dyn Store,
    (desc, bytes): &(Descriptor, Vec<u8>),
    labels: Labels,
    lease: Option<&(Arc<LeaseManager>, String)>,
) -> Result<()> {
    if let Some((m, id)) = lease {
        m.add_resource(id, &Resource::ingest(ingest_ref(desc)))
            .await?;
        m.add_resource(id, &Resource::content(desc.digest().to_string()))
            .await?;
    }
    put(content, bytes, desc, labels).await
}

/// A descriptor as manifest JSON (annotations sorted, URLs kept).
fn descriptor_json(d: &Descriptor) -> Value {
    let mut v = json!({
        "mediaType": d.media_type().to_string(),
        "digest": d.digest().to_string(),
        "size": d.size(),
    });
    if let Some(a) = d.annotations().as_ref().filter(|a| !a.is_empty()) {
        let sorted: std::collections::BTreeMap<_, _> = a.iter().collect();
        v["annotations"] = json!(sorted);
    }
    if let Some(u) = d.urls().as_ref().filter(|u| !u.is_empty()) {
        v["urls"] = json!(u);
    }
    v
}

/// The ingest ref [`put`] writes `desc` under (for leases to hold).
pub(crate) fn ingest_ref(desc: &Descriptor) -> String {
    format!("build-{}", desc.digest())
}

/// Writes a blob (fine if it exists) and sets `labels` on it.
pub(crate) async fn put(
    content: &dyn Store,
    bytes: &[u8],
    desc: &Descriptor,
    labels: Labels,
) -> Result<()> {
    write_blob(content, &ingest_ref(desc), bytes, desc, labels.clone()).await?;
    if !labels.is_empty() {
        let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
        content
            .update(Info::for_update(desc.digest().clone(), labels), &paths)
            .await?;
    }
    Ok(())
}
