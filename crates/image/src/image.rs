//! Images and helpers over their manifests and configs, after containerd's
//! `images/image.go`.
//!
//! An [`Image`] is a name pointing at a target descriptor (an index or a manifest). The
//! helpers read the documents from a [`Provider`]: [`manifest`] resolves through indexes to
//! the manifest of one platform, [`config`] and [`rootfs`] follow it to the config and its
//! DiffIDs, [`check`] lists which blobs are present. The `decode_*` functions parse raw
//! bytes (they are the fuzzing entry points); the raw bytes are always kept, never
//! re-serialized.

use crate::media_types as mt;
use crate::platforms::{self, MatchComparer, Platform};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use strata_content::{Descriptor, Digest, Error, Labels, Provider, Result};
use tokio::io::AsyncReadExt;

/// The most bytes [`read_blob`] reads of a manifest, index or config (containerd's
/// `MaxManifestSize` is 4 MiB for registries; configs with long histories can be larger).
pub const MAX_DOCUMENT_SIZE: u64 = 16 << 20;

/// An image record: a name and the descriptor of its index or manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The image name, usually a reference such as `docker.io/library/debian:bookworm`.
    pub name: String,
    /// The root of the image: an index or a manifest.
    pub target: Descriptor,
    /// Labels of the record.
    #[serde(default)]
    pub labels: Labels,
    /// When the record was created.
    #[serde(with = "strata_content::time_format")]
    pub created_at: SystemTime,
    /// When the record last changed.
    #[serde(with = "strata_content::time_format")]
    pub updated_at: SystemTime,
}

impl Image {
    /// A record named `name` for `target`, with no labels and both times now.
    pub fn new(name: impl Into<String>, target: Descriptor) -> Self {
        let now = SystemTime::now();
        Image {
            name: name.into(),
            target,
            labels: Labels::new(),
            created_at: now,
            updated_at: now,
        }
    }
}

/// The fields containerd peeks at to tell an index from a manifest.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UnknownDocument {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default, rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

fn json_error(what: &str, e: serde_json::Error) -> Error {
    Error::invalid_argument(format!("malformed {what}: {e}")).with_source(e)
}

/// Checks that `bytes` is the kind of document `media_type` says (containerd's
/// `validateMediaType`): a manifest type must not hold `manifests`, an index type must not
/// hold `config`/`layers`, and schema 1 (`fsLayers`) is refused.
///
/// # Errors
/// `InvalidArgument` for malformed JSON or a mismatch; `NotImplemented` for schema 1.
pub fn validate_media_type(bytes: &[u8], media_type: &str) -> Result<()> {
    let doc: UnknownDocument =
        serde_json::from_slice(bytes).map_err(|e| json_error(media_type, e))?;
    if doc.fs_layers.is_some() || doc.media_type.as_deref().is_some_and(mt::is_schema1) {
        return Err(schema1_error(media_type));
    }
    let declared = doc.media_type.as_deref().unwrap_or("");
    if mt::is_manifest(media_type) && (doc.manifests.is_some() || mt::is_index(declared)) {
        return Err(Error::invalid_argument(format!(
            "expected a manifest ({media_type}) but found an index"
        )));
    }
    if mt::is_index(media_type)
        && (doc.config.is_some() || doc.layers.is_some() || mt::is_manifest(declared))
    {
        return Err(Error::invalid_argument(format!(
            "expected an index ({media_type}) but found a manifest"
        )));
    }
    Ok(())
}

/// The error for a Docker schema 1 manifest.
pub fn schema1_error(what: &str) -> Error {
    Error::not_implemented(format!(
        "{what}: Docker schema 1 manifests are not supported (deprecated; \
         push the image again with a current Docker or containerd to get schema 2/OCI)"
    ))
}

/// Decodes an OCI index or Docker manifest list.
///
/// # Errors
/// `InvalidArgument` for malformed JSON or a document that is a manifest.
///
/// ```
/// let idx = strata_image::image::decode_index(br#"{"schemaVersion":2,"manifests":[]}"#)?;
/// assert!(idx.manifests().is_empty());
/// assert!(strata_image::image::decode_index(b"{").is_err());
/// # Ok::<(), strata_content::Error>(())
/// ```
pub fn decode_index(bytes: &[u8]) -> Result<ImageIndex> {
    validate_media_type(bytes, mt::OCI_INDEX)?;
    serde_json::from_slice(bytes).map_err(|e| json_error("image index", e))
}

/// Decodes an OCI manifest or Docker schema 2 manifest.
///
/// # Errors
/// `InvalidArgument` for malformed JSON or a document that is an index;
/// `NotImplemented` for schema 1.
pub fn decode_manifest(bytes: &[u8]) -> Result<ImageManifest> {
    validate_media_type(bytes, mt::OCI_MANIFEST)?;
    serde_json::from_slice(bytes).map_err(|e| json_error("image manifest", e))
}

/// Decodes an image config (OCI or Docker). Unknown fields are accepted.
///
/// # Errors
/// `InvalidArgument` for malformed JSON or a config without `rootfs`.
pub fn decode_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|e| json_error("image config", e))
}

#[derive(Deserialize)]
struct ConfigHead {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFsHead>,
}

#[derive(Deserialize)]
struct RootFsHead {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The platform an image config declares (`os`, `architecture`, `variant`, `os.version`),
/// normalized.
///
/// # Errors
/// `InvalidArgument` for malformed JSON.
pub fn decode_config_platform(bytes: &[u8]) -> Result<Platform> {
    let c: ConfigHead = serde_json::from_slice(bytes).map_err(|e| json_error("image config", e))?;
    Ok(platforms::normalize(&Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant.unwrap_or_default(),
        os_version: c.os_version.unwrap_or_default(),
        os_features: Vec::new(),
    }))
}

/// The DiffIDs listed in an image config's `rootfs.diff_ids`, in order.
///
/// # Errors
/// `InvalidArgument` for malformed JSON, a missing `rootfs` or an invalid digest.
pub fn decode_diff_ids(bytes: &[u8]) -> Result<Vec<Digest>> {
    let c: ConfigHead = serde_json::from_slice(bytes).map_err(|e| json_error("image config", e))?;
    let rootfs = c
        .rootfs
        .ok_or_else(|| Error::invalid_argument("image config has no rootfs"))?;
    rootfs
        .diff_ids
        .iter()
        .map(|d| strata_content::digest::parse(d).map_err(|e| e.context("config rootfs.diff_ids")))
        .collect()
}

/// Reads a whole blob (a manifest, index or config) of at most [`MAX_DOCUMENT_SIZE`]
/// bytes, and checks its digest.
///
/// # Errors
/// `NotFound` when the blob is missing; `InvalidArgument` when the descriptor's size is
/// over the limit; `FailedPrecondition` when the bytes do not match the descriptor.
pub async fn read_blob(provider: &dyn Provider, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size() > MAX_DOCUMENT_SIZE {
        return Err(Error::invalid_argument(format!(
            "{} {} is {} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit for documents",
            desc.media_type(),
            desc.digest(),
            desc.size()
        )));
    }
    let mut r = provider.reader(desc).await?;
    let mut buf = Vec::with_capacity(desc.size() as usize);
    (&mut r)
        .take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Error::io(format!("read blob {}", desc.digest()), e))?;
    let got = strata_content::digest::sha256(&buf);
    if &got != desc.digest() || buf.len() as u64 != desc.size() {
        return Err(Error::failed_precondition(format!(
            "blob {} ({} bytes expected) read as {got} ({} bytes)",
            desc.digest(),
            desc.size(),
            buf.len()
        )));
    }
    Ok(buf)
}

/// A manifest resolved for a platform.
#[derive(Debug, Clone)]
pub struct ResolvedManifest {
    /// The manifest's descriptor (from the index, or the image target itself).
    pub descriptor: Descriptor,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// The manifest's exact bytes.
    pub raw: Vec<u8>,
}

/// Resolves `target` (an index or a manifest) to the manifest best matching `matcher`, as
/// containerd's `images.Manifest`: index entries without a platform or matching it are
/// tried in the matcher's order of preference (depth first through nested indexes); a
/// manifest reached through an index with no platform is checked against its config's
/// platform. A `target` that is itself a manifest is returned whatever its platform.
///
/// # Errors
/// `NotFound` ("no match for platform") when nothing matches, or a blob is missing;
/// `NotImplemented` for schema 1; `InvalidArgument` for malformed documents or an
/// unexpected media type.
pub async fn manifest(
    provider: &dyn Provider,
    target: &Descriptor,
    matcher: &dyn MatchComparer,
) -> Result<ResolvedManifest> {
    let mut was_index = false;
    // Depth-first: a stack of pending descriptors, most preferred on top.
    let mut stack = vec![target.clone()];
    while let Some(desc) = stack.pop() {
        let media_type = desc.media_type().to_string();
        if mt::is_manifest(&media_type) {
            let raw = read_blob(provider, &desc).await?;
            validate_media_type(&raw, &media_type)?;
            let manifest = decode_manifest(&raw)?;
            if desc.digest() != target.digest() {
                match platforms::of_descriptor(&desc) {
                    Some(p) if !matcher.matches(&p) => continue,
                    Some(_) => {}
                    None => {
                        let cfg = read_blob(provider, manifest.config()).await?;
                        if !matcher.matches(&decode_config_platform(&cfg)?) {
                            continue;
                        }
                    }
                }
            }
            return Ok(ResolvedManifest {
                descriptor: desc,
                manifest,
                raw,
            });
        } else if mt::is_index(&media_type) {
            was_index = true;
            let raw = read_blob(provider, &desc).await?;
            validate_media_type(&raw, &media_type)?;
            let index = decode_index(&raw)?;
            let mut children: Vec<Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| platforms::of_descriptor(d).is_none_or(|p| matcher.matches(&p)))
                .cloned()
                .collect();
            sort_by_platform(&mut children, matcher);
            stack.extend(children.into_iter().rev());
        } else if mt::is_schema1(&media_type) {
            return Err(schema1_error(&format!("manifest {}", desc.digest())));
        } else {
            return Err(Error::not_found(format!(
                "unexpected media type {media_type} for {}",
                desc.digest()
            )));
        }
    }
    if was_index {
        Err(Error::not_found(format!(
            "no match for platform in manifest {}",
            target.digest()
        )))
    } else {
        Err(Error::not_found(format!("manifest {}", target.digest())))
    }
}

/// Stable-sorts descriptors by `matcher`'s preference for their platforms; descriptors
/// without a platform go last (containerd's `LimitManifests` order).
pub fn sort_by_platform(descs: &mut [Descriptor], matcher: &dyn MatchComparer) {
    descs.sort_by(|a, b| {
        use std::cmp::Ordering::*;
        match (platforms::of_descriptor(a), platforms::of_descriptor(b)) {
            (None, None) => Equal,
            (None, Some(_)) => Greater,
            (Some(_), None) => Less,
            (Some(pa), Some(pb)) => {
                if matcher.less(&pa, &pb) {
                    Less
                } else if matcher.less(&pb, &pa) {
                    Greater
                } else {
                    Equal
                }
            }
        }
    });
}

/// The config descriptor of the manifest [`manifest`] resolves.
///
/// # Errors
/// As [`manifest`].
pub async fn config(
    provider: &dyn Provider,
    target: &Descriptor,
    matcher: &dyn MatchComparer,
) -> Result<Descriptor> {
    Ok(manifest(provider, target, matcher)
        .await?
        .manifest
        .config()
        .clone())
}

/// The DiffIDs of the config blob `config_desc` (containerd's `RootFS`).
///
/// # Errors
/// `NotFound` when the config is missing; `InvalidArgument` when it is malformed.
pub async fn rootfs(provider: &dyn Provider, config_desc: &Descriptor) -> Result<Vec<Digest>> {
    let raw = read_blob(provider, config_desc).await?;
    decode_diff_ids(&raw).map_err(|e| e.context(format!("config {}", config_desc.digest())))
}

impl ResolvedManifest {
    /// The layers with their DiffIDs (from the config, [`rootfs`]), in order.
    ///
    /// # Errors
    /// As [`rootfs`]; `InvalidArgument` when the config lists a different number of
    /// DiffIDs than the manifest has layers.
    pub async fn layers_with_diff_ids(
        &self,
        provider: &dyn Provider,
    ) -> Result<(Vec<Descriptor>, Vec<Digest>)> {
        let config = self.manifest.config();
        let diff_ids = rootfs(provider, config).await?;
        let layers = self.manifest.layers().clone();
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid_argument(format!(
                "config {} lists {} DiffIDs for {} layers",
                config.digest(),
                diff_ids.len(),
                layers.len()
            )));
        }
        Ok((layers, diff_ids))
    }
}

/// The platforms an image provides: those of its index entries, or of its config when the
/// target is a single manifest (containerd's `images.Platforms`). Sorted, deduplicated.
///
/// # Errors
/// As [`manifest`] for missing or malformed documents.
pub async fn platforms(provider: &dyn Provider, target: &Descriptor) -> Result<Vec<Platform>> {
    let mut out = Vec::new();
    let mut stack = vec![target.clone()];
    while let Some(desc) = stack.pop() {
        let media_type = desc.media_type().to_string();
        if mt::is_index(&media_type) {
            let index = decode_index(&read_blob(provider, &desc).await?)?;
            for d in index.manifests() {
                match platforms::of_descriptor(d) {
                    Some(p) => out.push(platforms::normalize(&p)),
                    None => stack.push(d.clone()),
                }
            }
        } else if mt::is_manifest(&media_type) {
            let m = decode_manifest(&read_blob(provider, &desc).await?)?;
            if mt::is_config(m.config().media_type().as_ref()) {
                let cfg = read_blob(provider, m.config()).await?;
                out.push(decode_config_platform(&cfg)?);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckResult {
    /// Whether the manifest could be resolved (when false, the lists are empty except
    /// `missing`, which holds the target).
    pub available: bool,
    /// The blobs a complete image needs: config then layers.
    pub required: Vec<Descriptor>,
    /// The required blobs present in the provider.
    pub present: Vec<Descriptor>,
    /// The required blobs missing from the provider.
    pub missing: Vec<Descriptor>,
}

/// Checks which of the image's required blobs (config and layers of the manifest matching
/// `matcher`) are present, as containerd's `images.Check`.
///
/// # Errors
/// Errors other than `NotFound` from reading the documents (`NotFound` gives
/// `available: false`).
pub async fn check(
    provider: &dyn Provider,
    target: &Descriptor,
    matcher: &dyn MatchComparer,
) -> Result<CheckResult> {
    let m = match manifest(provider, target, matcher).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => {
            return Ok(CheckResult {
                available: false,
                missing: vec![target.clone()],
                ..Default::default()
            });
        }
        Err(e) => return Err(e),
    };
    let mut result = CheckResult {
        available: true,
        ..Default::default()
    };
    result.required.push(m.manifest.config().clone());
    result.required.extend(m.manifest.layers().iter().cloned());
    for d in &result.required {
        match provider.reader_at(d).await {
            Ok(_) => result.present.push(d.clone()),
            Err(e) if e.is_not_found() => result.missing.push(d.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_kinds() {
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(validate_media_type(manifest, mt::OCI_MANIFEST).is_ok());
        assert!(validate_media_type(index, mt::DOCKER_MANIFEST_LIST).is_ok());
        let e = validate_media_type(manifest, mt::OCI_INDEX).unwrap_err();
        assert!(
            e.is_invalid_argument() && e.to_string().contains("found a manifest"),
            "{e}"
        );
        let e = validate_media_type(index, mt::DOCKER_MANIFEST).unwrap_err();
        assert!(
            e.is_invalid_argument() && e.to_string().contains("found an index"),
            "{e}"
        );
        let typed = format!(r#"{{"mediaType":"{}"}}"#, mt::OCI_INDEX);
        assert!(validate_media_type(typed.as_bytes(), mt::OCI_MANIFEST).is_err());
        let s1 = br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"x"}]}"#;
        let e = validate_media_type(s1, mt::DOCKER_MANIFEST).unwrap_err();
        assert_eq!(e.kind(), strata_content::ErrorKind::NotImplemented);
        assert!(e.to_string().contains("schema 1"));
        assert!(
            validate_media_type(b"[1,2", mt::OCI_INDEX)
                .unwrap_err()
                .is_invalid_argument()
        );
    }

    #[test]
    fn decode_config_parts() {
        let cfg = br#"{"architecture":"aarch64","os":"linux","variant":"v8",
            "rootfs":{"type":"layers","diff_ids":[
              "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]},
            "unknown":{"kept":"no"}}"#;
        assert_eq!(
            decode_config_platform(cfg).unwrap(),
            Platform::new("linux", "arm64", "")
        );
        let ids = decode_diff_ids(cfg).unwrap();
        assert_eq!(ids, [strata_content::digest::sha256(b"hello")]);
        assert!(decode_config(cfg).is_ok());
        let bad = br#"{"os":"linux","rootfs":{"diff_ids":["sha256:nothex"]}}"#;
        assert!(decode_diff_ids(bad).unwrap_err().is_invalid_argument());
        assert!(
            decode_diff_ids(br#"{"os":"linux"}"#)
                .unwrap_err()
                .is_invalid_argument()
        );
        assert!(decode_config(b"{}").is_err());
    }

    #[test]
    fn image_json_round_trip() {
        let desc: Descriptor = serde_json::from_str(&format!(
            r#"{{"mediaType":"{}","digest":"{}","size":3}}"#,
            mt::OCI_MANIFEST,
            strata_content::digest::sha256(b"abc")
        ))
        .unwrap();
        let mut img = Image::new("docker.io/library/x:1", desc);
        img.labels.insert("k".into(), "v".into());
        let json = serde_json::to_string(&img).unwrap();
        let back: Image = serde_json::from_str(&json).unwrap();
        assert_eq!(back, img);
    }

    use crate::platforms::{all, only, parse};
    use crate::test_fixtures::{open, put, put_index, put_manifest};

    #[tokio::test]
    async fn resolve_through_index() {
        let (_dir, store) = open();
        let arm = put_manifest(&store, "linux/arm/v7", 2, false).await;
        let amd = put_manifest(&store, "linux/amd64", 3, true).await;
        let bare = put_manifest(&store, "linux/s390x", 1, false).await;
        let idx = put_index(
            &store,
            &[
                (arm.manifest.clone(), Some("linux/arm/v7")),
                (amd.manifest.clone(), Some("linux/amd64")),
                (bare.manifest.clone(), None),
            ],
            false,
        )
        .await;
        let outer = put_index(&store, &[(idx.clone(), None)], true).await;

        for target in [&idx, &outer] {
            let m = manifest(&store, target, &only(parse("linux/amd64").unwrap()))
                .await
                .unwrap();
            assert_eq!(m.descriptor.digest(), amd.manifest.digest());
            assert_eq!(
                strata_content::digest::sha256(&m.raw),
                *amd.manifest.digest()
            );
            assert_eq!(m.manifest.layers().len(), 3);
            // arm64 runs arm/v7.
            let m = manifest(&store, target, &only(parse("linux/arm64").unwrap()))
                .await
                .unwrap();
            assert_eq!(m.descriptor.digest(), arm.manifest.digest());
            // No platform on the entry: the config's platform decides.
            let m = manifest(&store, target, &only(parse("linux/s390x").unwrap()))
                .await
                .unwrap();
            assert_eq!(m.descriptor.digest(), bare.manifest.digest());
            let e = manifest(&store, target, &only(parse("linux/riscv64").unwrap()))
                .await
                .unwrap_err();
            assert!(
                e.is_not_found() && e.to_string().contains("no match for platform"),
                "{e}"
            );
        }
        // A manifest target is returned whatever the platform.
        let m = manifest(
            &store,
            &arm.manifest,
            &only(parse("linux/riscv64").unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(m.descriptor, arm.manifest);

        let cfg = config(&store, &idx, &only(parse("linux/amd64").unwrap()))
            .await
            .unwrap();
        assert_eq!(cfg, amd.config);
        assert_eq!(rootfs(&store, &cfg).await.unwrap(), amd.diff_ids);
        let got = platforms(&store, &outer).await.unwrap();
        let want: Vec<Platform> = ["linux/amd64", "linux/arm/v7", "linux/s390x"]
            .iter()
            .map(|s| platforms::normalize(&parse(s).unwrap()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            crate::identity::chain_id(&rootfs(&store, &cfg).await.unwrap()),
            crate::identity::chain_id(&amd.diff_ids)
        );
    }

    #[tokio::test]
    async fn check_reports_missing_blobs() {
        let (_dir, store) = open();
        let m = put_manifest(&store, "linux/amd64", 2, false).await;
        let r = check(&store, &m.manifest, &all()).await.unwrap();
        assert!(r.available);
        assert_eq!(r.required.len(), 3);
        assert_eq!(r.present, r.required);
        assert!(r.missing.is_empty());

        use strata_content::Manager;
        store.delete(m.layers[1].digest()).await.unwrap();
        let r = check(&store, &m.manifest, &all()).await.unwrap();
        assert!(r.available);
        assert_eq!(r.missing, vec![m.layers[1].clone()]);
        assert_eq!(r.present.len(), 2);

        store.delete(m.manifest.digest()).await.unwrap();
        let r = check(&store, &m.manifest, &all()).await.unwrap();
        assert!(!r.available);
        assert_eq!(r.missing, vec![m.manifest.clone()]);
    }

    #[tokio::test]
    async fn read_blob_limits_and_verifies() {
        let (_dir, store) = open();
        let d = put(&store, mt::OCI_CONFIG, b"{}").await;
        assert_eq!(read_blob(&store, &d).await.unwrap(), b"{}");
        let mut big = d.clone();
        big.set_size(MAX_DOCUMENT_SIZE + 1);
        assert!(
            read_blob(&store, &big)
                .await
                .unwrap_err()
                .is_invalid_argument()
        );
        let mut short = d.clone();
        short.set_size(1);
        let e = read_blob(&store, &short).await.unwrap_err();
        assert_eq!(
            e.kind(),
            strata_content::ErrorKind::FailedPrecondition,
            "{e}"
        );
    }
}
