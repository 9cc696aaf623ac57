//! The media types a registry client must know: manifests and indexes (OCI and Docker),
//! the Docker schema 1 types it rejects, and the `Accept` list for resolving.
//!
//! `strata-image`'s `media_types` re-exports these next to configs and layers, so there
//! is one set of them.
//!
//! ```
//! use strata_remote::media_types as mt;
//! assert!(mt::is_index(mt::DOCKER_MANIFEST_LIST));
//! assert!(mt::is_manifest(mt::OCI_MANIFEST));
//! assert!(mt::is_schema1(mt::DOCKER_SCHEMA1_MANIFEST_SIGNED));
//! ```

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2), the Docker counterpart of an index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

// --- Docker schema 1 (rejected) -------------------------------------------------------

/// Docker schema 1 manifest: not supported (containerd ≥ 2.1 rejects it too).
pub const DOCKER_SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifest: not supported.
pub const DOCKER_SCHEMA1_MANIFEST_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

// --- resolving ------------------------------------------------------------------------

/// The `Accept` header value a registry client should send when resolving a reference:
/// every manifest and index type strata can read, most preferred first, then `*/*`.
pub const RESOLVE_ACCEPT: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    "*/*",
];

/// Whether `mt` is an OCI index or a Docker manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

/// Whether `mt` is an OCI manifest or a Docker schema 2 manifest (schema 1 is not).
pub fn is_manifest(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// Whether `mt` is a Docker schema 1 manifest, which strata rejects.
pub fn is_schema1(mt: &str) -> bool {
    mt == DOCKER_SCHEMA1_MANIFEST || mt == DOCKER_SCHEMA1_MANIFEST_SIGNED
}
