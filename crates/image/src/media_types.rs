//! Media types of OCI and Docker images, and classifiers over them.
//!
//! After containerd's `images/mediatypes.go`. The layer types and [`Compression`] come
//! from `strata-diff` (which decodes layers), the manifest and index types from
//! `strata-remote` (which resolves them); both are re-exported here, so there is one set
//! of them. Media types are compared as strings (the
//! `+json`/`+gzip` suffixes are part of the type); [`MediaType`](strata_content::MediaType)
//! values convert with `.to_string()`.
//!
//! ```
//! use strata_image::media_types::{self as mt, Compression};
//! assert!(mt::is_index(mt::DOCKER_MANIFEST_LIST));
//! assert!(mt::is_manifest(mt::OCI_MANIFEST));
//! assert!(mt::is_layer(mt::DOCKER_LAYER_GZIP));
//! assert_eq!(Compression::from_media_type(mt::OCI_LAYER_ZSTD).unwrap(), Compression::Zstd);
//! assert!(mt::is_schema1(mt::DOCKER_SCHEMA1_MANIFEST_SIGNED));
//! ```

// --- layers (strata-diff owns them, with the one `Compression` enum) -------------------

pub use strata_diff::Compression;
pub use strata_diff::compression::{
    DOCKER_LAYER, DOCKER_LAYER_FOREIGN, DOCKER_LAYER_FOREIGN_GZIP, DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_NONDISTRIBUTABLE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_LAYER_ZSTD,
};

// --- manifests and indexes (strata-remote owns them: resolving needs them) -------------

pub use strata_remote::media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_MANIFEST_SIGNED,
    OCI_INDEX, OCI_MANIFEST, RESOLVE_ACCEPT, is_index, is_manifest, is_schema1,
};

// --- OCI image-spec -------------------------------------------------------------------

/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI `oci-layout` file content type (not a blob type; informational).
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
/// OCI empty descriptor (artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
// --- Docker image manifest v2 ---------------------------------------------------------

/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker plugin config (a known config type containerd accepts).
pub const DOCKER_PLUGIN_CONFIG: &str = "application/vnd.docker.plugin.v1+json";

/// Whether `mt` is a known image config type (OCI, Docker or Docker plugin), as
/// containerd's `IsKnownConfig`.
pub fn is_config(mt: &str) -> bool {
    mt == OCI_CONFIG || mt == DOCKER_CONFIG || mt == DOCKER_PLUGIN_CONFIG
}

/// Whether `mt` is a layer type: any OCI `…image.layer.…` or Docker `…rootfs.…diff.tar…`
/// type (including non-distributable/foreign ones and unknown compression suffixes), as
/// containerd's `IsLayerType`.
pub fn is_layer(mt: &str) -> bool {
    let base = mt.split(';').next().unwrap_or(mt).trim();
    if base.starts_with("application/vnd.oci.image.layer.") {
        return true;
    }
    matches!(
        base.split('+').next().unwrap_or(base),
        DOCKER_LAYER
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_ZSTD
            | DOCKER_LAYER_FOREIGN
            | DOCKER_LAYER_FOREIGN_GZIP
    )
}

/// Whether `mt` is a non-distributable (OCI) or foreign (Docker) layer, which registries
/// may refuse and exports may leave out.
pub fn is_non_distributable(mt: &str) -> bool {
    mt.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || mt.starts_with("application/vnd.docker.image.rootfs.foreign.")
}

/// The ingest-ref prefix containerd's `MakeRefKey` uses for a blob of this media type:
/// `manifest`, `index`, `layer`, `config` or `unknown`.
pub fn ref_key_prefix(mt: &str) -> &'static str {
    if is_manifest(mt) {
        "manifest"
    } else if is_index(mt) {
        "index"
    } else if is_layer(mt) {
        "layer"
    } else if is_config(mt) {
        "config"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifiers() {
        for mt in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
            assert!(is_index(mt) && !is_manifest(mt) && !is_layer(mt) && !is_config(mt));
        }
        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            assert!(is_manifest(mt) && !is_index(mt) && !is_layer(mt));
        }
        for mt in [DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_MANIFEST_SIGNED] {
            assert!(is_schema1(mt) && !is_manifest(mt));
        }
        for mt in [OCI_CONFIG, DOCKER_CONFIG, DOCKER_PLUGIN_CONFIG] {
            assert!(is_config(mt) && !is_layer(mt));
        }
        assert!(!is_config(OCI_EMPTY));
    }

    #[test]
    fn layers() {
        for mt in [
            OCI_LAYER,
            OCI_LAYER_GZIP,
            OCI_LAYER_ZSTD,
            OCI_LAYER_NONDISTRIBUTABLE,
            OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
            DOCKER_LAYER,
            DOCKER_LAYER_GZIP,
            DOCKER_LAYER_ZSTD,
            DOCKER_LAYER_FOREIGN,
            DOCKER_LAYER_FOREIGN_GZIP,
            "application/vnd.oci.image.layer.v1.tar+lz4",
        ] {
            assert!(is_layer(mt), "{mt} is a layer");
        }
        assert!(!is_layer(OCI_CONFIG));
        assert!(!is_layer(OCI_MANIFEST));
        assert!(!is_layer("application/octet-stream"));
        assert!(is_non_distributable(OCI_LAYER_NONDISTRIBUTABLE_GZIP));
        assert!(is_non_distributable(DOCKER_LAYER_FOREIGN_GZIP));
        assert!(!is_non_distributable(OCI_LAYER_GZIP));
    }

    #[test]
    fn ref_keys() {
        assert_eq!(ref_key_prefix(OCI_MANIFEST), "manifest");
        assert_eq!(ref_key_prefix(DOCKER_MANIFEST_LIST), "index");
        assert_eq!(ref_key_prefix(DOCKER_LAYER_GZIP), "layer");
        assert_eq!(ref_key_prefix(DOCKER_CONFIG), "config");
        assert_eq!(ref_key_prefix("text/plain"), "unknown");
    }
}
