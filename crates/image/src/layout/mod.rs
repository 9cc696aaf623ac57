//! OCI image layout import and export, and import of `docker save` archives.
//!
//! An [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
//! is a directory (or a tar of one) holding `oci-layout`, `index.json` and
//! `blobs/<alg>/<hex>`. Each `index.json` entry is an image; its
//! `org.opencontainers.image.ref.name` annotation names it (we write the tag there, and the
//! full name in containerd's `io.containerd.image.name`, as `ctr export` does).
//!
//! - [`export_dir`] / [`export_tar`]: write images from a content store, streaming every
//!   blob, into a new or existing layout (entries with the same ref name are replaced).
//! - [`import`]: read a layout directory or tar (optionally gzip-compressed), or a
//!   `docker save` archive/directory, into a content store and an [`ImageStore`](crate::store::ImageStore). Every
//!   blob is streamed into the store and verified against its digest; on any error the
//!   blobs this import committed are removed again.
//!
//! A `docker save` archive (`manifest.json` listing `Config`, `RepoTags` and `Layers`)
//! becomes a Docker schema 2 manifest built deterministically from the exact config and
//! layer bytes, the way containerd's importer builds it.

mod docker;
mod export;
mod import;
mod ingest;

pub use export::{ExportOpts, export_dir, export_tar, export_tar_to};
pub use import::{ImportOpts, ImportResult, import};

use serde_json::Value;
use strata_content::{Error, Result};

/// The annotation naming an index entry (`org.opencontainers.image.ref.name`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation holding an entry's full image name.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The `imageLayoutVersion` strata writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The most bytes of `index.json`, `oci-layout` or `manifest.json` read into memory.
pub const MAX_METADATA_SIZE: u64 = 8 << 20;

/// Serializes `v` as compact JSON with object keys sorted, so output is deterministic.
pub(crate) fn canonical_json(v: &Value) -> Vec<u8> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // With serde_json's default map (sorted) this is already canonical; sorting again
    // keeps it so if `preserve_order` gets enabled somewhere in the build.
    serde_json::to_vec(&sort(v)).expect("JSON values serialize")
}

/// The `org.opencontainers.image.ref.name` for an image name: the tag of a reference
/// (`docker.io/library/x:1` → `1`), `latest` for a tagless name, or the name itself when
/// it is not a reference or has only a digest.
pub fn ref_name_for(image_name: &str) -> String {
    match crate::reference::Reference::parse(image_name) {
        Ok(r) => match (r.tag(), r.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(_)) => image_name.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        },
        Err(_) => image_name.to_string(),
    }
}

/// Checks an `oci-layout` file's content.
fn check_oci_layout(bytes: &[u8], origin: &str) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct OciLayout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let l: OciLayout = serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid_argument(format!("{origin}: malformed oci-layout file: {e}"))
    })?;
    if l.version != LAYOUT_VERSION {
        return Err(Error::not_implemented(format!(
            "{origin}: unsupported imageLayoutVersion {:?} (want {LAYOUT_VERSION})",
            l.version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
