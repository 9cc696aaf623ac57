//! Test images built in a real [`LocalStore`] (unit tests only).

use crate::media_types as mt;
use crate::platforms;
use strata_content::digest::sha256;
use strata_content::helpers::write_blob;
use strata_content::local::LocalStore;
use strata_content::{Descriptor, Labels};

/// A descriptor for `bytes` of `media_type`.
pub(crate) fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type.into(), bytes.len() as u64, sha256(bytes))
}

/// Writes `bytes` into `store` and returns its descriptor.
pub(crate) async fn put(store: &LocalStore, media_type: &str, bytes: &[u8]) -> Descriptor {
    let d = desc(media_type, bytes);
    write_blob(
        store,
        &format!("test-{}", d.digest()),
        bytes,
        &d,
        Labels::new(),
    )
    .await
    .expect("write test blob");
    d
}

pub(crate) fn open() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("content")).unwrap();
    (dir, store)
}

/// One platform's manifest and its parts.
pub(crate) struct TestManifest {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<strata_content::Digest>,
}

/// Writes a manifest for `platform` with `n` (fake, uncompressed) layers.
pub(crate) async fn put_manifest(
    store: &LocalStore,
    platform: &str,
    n: usize,
    docker: bool,
) -> TestManifest {
    let p = platforms::parse(platform).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let layer_type = if docker {
        mt::DOCKER_LAYER
    } else {
        mt::OCI_LAYER
    };
    for i in 0..n {
        let data = format!("layer {i} of {platform}").repeat(10);
        diff_ids.push(sha256(data.as_bytes()));
        layers.push(put(store, layer_type, data.as_bytes()).await);
    }
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let variant = if p.variant.is_empty() {
        String::new()
    } else {
        format!(r#","variant":"{}""#, p.variant)
    };
    let config_bytes = format!(
        r#"{{"architecture":"{}","os":"{}"{variant},"rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        p.architecture,
        p.os,
        ids.join(",")
    );
    let config_type = if docker {
        mt::DOCKER_CONFIG
    } else {
        mt::OCI_CONFIG
    };
    let config = put(store, config_type, config_bytes.as_bytes()).await;
    let manifest_type = if docker {
        mt::DOCKER_MANIFEST
    } else {
        mt::OCI_MANIFEST
    };
    let layer_json: Vec<String> = layers
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    let manifest_bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{},"layers":[{}]}}"#,
        serde_json::to_string(&config).unwrap(),
        layer_json.join(",")
    );
    let manifest = put(store, manifest_type, manifest_bytes.as_bytes()).await;
    TestManifest {
        manifest,
        config,
        layers,
        diff_ids,
    }
}

/// Writes an index over `entries` (a descriptor and the platform to put on it, if any).
pub(crate) async fn put_index(
    store: &LocalStore,
    entries: &[(Descriptor, Option<&str>)],
    docker: bool,
) -> Descriptor {
    let index_type = if docker {
        mt::DOCKER_MANIFEST_LIST
    } else {
        mt::OCI_INDEX
    };
    let ms: Vec<String> = entries
        .iter()
        .map(|(d, p)| {
            let mut d = d.clone();
            if let Some(p) = p {
                d.set_platform(Some(platforms::parse(p).unwrap().to_oci()));
            }
            serde_json::to_string(&d).unwrap()
        })
        .collect();
    let bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"{index_type}","manifests":[{}]}}"#,
        ms.join(",")
    );
    put(store, index_type, bytes.as_bytes()).await
}
