//! `docker save` archives: `manifest.json` → Docker schema 2 manifests.

use super::ingest::{Tracker, ingest_expected, ingest_unknown};
use crate::media_types as mt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use strata_content::{Descriptor, Digest, Error, Info, Labels, Result, Store};

/// Where the files named by `manifest.json` are.
#[derive(Clone)]
pub(super) enum DockerFiles {
    /// An unpacked `docker save` directory; files are ingested when first needed.
    Dir(PathBuf),
    /// A tar already ingested: path → (digest, size), and link path → target path.
    Tar {
        files: HashMap<String, (Digest, u64)>,
        links: HashMap<String, String>,
    },
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A descriptor with Go's field order (`mediaType`, `digest`, `size`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
}

/// A Docker schema 2 manifest with Go's field order, as containerd's importer writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

fn safe_rel(p: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

async fn resolve(
    store: &dyn Store,
    tracker: &Tracker,
    files: &DockerFiles,
    name: &str,
) -> Result<(Digest, u64)> {
    let rel = safe_rel(name)
        .ok_or_else(|| Error::invalid_argument(format!("manifest.json: unsafe path {name:?}")))?;
    match files {
        DockerFiles::Dir(dir) => {
            let p = dir.join(&rel);
            let f = tokio::fs::File::open(&p)
                .await
                .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
            ingest_unknown(
                store,
                tracker,
                &p.display().to_string(),
                f,
                &p.display().to_string(),
            )
            .await
        }
        DockerFiles::Tar { files, links } => {
            let mut cur = rel;
            for _ in 0..16 {
                if let Some(f) = files.get(&cur) {
                    return Ok(f.clone());
                }
                match links.get(&cur) {
                    Some(t) => cur = t.clone(),
                    None => break,
                }
            }
            Err(Error::not_found(format!(
                "{name} (named in manifest.json) is not in the archive"
            )))
        }
    }
}

/// The compression of a layer blob, from its first bytes.
async fn layer_media_type(store: &dyn Store, digest: &Digest, size: u64) -> Result<&'static str> {
    let d = Descriptor::new(mt::DOCKER_LAYER.into(), size, digest.clone());
    let ra = store.reader_at(&d).await?;
    let mut magic = [0u8; 4];
    let n = ra
        .read_at(&mut magic, 0)
        .map_err(|e| Error::io(format!("read layer {digest}"), e))?;
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        mt::DOCKER_LAYER_GZIP
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        mt::DOCKER_LAYER_ZSTD
    } else {
        mt::DOCKER_LAYER
    })
}

/// Builds and stores a Docker schema 2 manifest for each `manifest.json` entry. Returns
/// each entry's normalized tags and its manifest descriptor.
pub(super) async fn import(
    store: &dyn Store,
    tracker: &Tracker,
    files: &DockerFiles,
    manifest_json: &[u8],
) -> Result<Vec<(Vec<String>, Descriptor)>> {
    let entries: Vec<Entry> = serde_json::from_slice(manifest_json)
        .map_err(|e| Error::invalid_argument(format!("malformed manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(Error::invalid_argument("manifest.json lists no images"));
    }
    let mut out = Vec::new();
    for entry in entries {
        let (cd, cs) = resolve(store, tracker, files, &entry.config).await?;
        let config_raw = crate::image::read_blob(
            store,
            &Descriptor::new(mt::DOCKER_CONFIG.into(), cs, cd.clone()),
        )
        .await?;
        let diff_ids = crate::image::decode_diff_ids(&config_raw)
            .map_err(|e| e.context(format!("config {}", entry.config)))?;
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid_argument(format!(
                "config {} lists {} diff_ids but manifest.json {} layers",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let (d, s) = resolve(store, tracker, files, layer).await?;
            let media_type = layer_media_type(store, &d, s).await?;
            if media_type == mt::DOCKER_LAYER {
                if &d != diff_id {
                    return Err(Error::failed_precondition(format!(
                        "layer {layer} has digest {d}, but the config's diff_id is {diff_id}"
                    )));
                }
                let mut l = Labels::new();
                l.insert(strata_content::labels::UNCOMPRESSED.into(), d.to_string());
                store
                    .update(
                        Info::for_update(d.clone(), l),
                        &[format!("labels.{}", strata_content::labels::UNCOMPRESSED)],
                    )
                    .await?;
            }
            layers.push(Desc {
                media_type,
                digest: d.to_string(),
                size: s,
            });
        }
        let m = Manifest {
            schema_version: 2,
            media_type: mt::DOCKER_MANIFEST,
            config: Desc {
                media_type: mt::DOCKER_CONFIG,
                digest: cd.to_string(),
                size: cs,
            },
            layers,
        };
        let bytes =
            serde_json::to_vec(&m).map_err(|e| Error::internal(format!("encode manifest: {e}")))?;
        let desc = Descriptor::new(
            mt::DOCKER_MANIFEST.into(),
            bytes.len() as u64,
            strata_content::digest::sha256(&bytes),
        );
        ingest_expected(store, tracker, &desc, bytes.as_slice(), "built manifest").await?;
        let tags = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| match crate::reference::Reference::parse_normalized(t) {
                Ok(r) => r.with_default_tag().to_string(),
                Err(_) => t.clone(),
            })
            .collect();
        out.push((tags, desc));
    }
    Ok(out)
}
