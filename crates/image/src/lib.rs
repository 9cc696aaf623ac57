//! # strata-image
//!
//! Images and registries: image records, handlers over index/manifest/config/layers,
//! platform matching, a Docker Registry HTTP API v2 client, OCI layout import/export, and
//! the image service (Fetch, Push; Unpack and Commit later).
//!
//! Filled in by the image changes; each module below is owned by one of them.
//!
//! ## Image core
//! - [`media_types`]: OCI and Docker media types and their classifiers.
//! - [`platforms`]: parse, format and normalize platforms; containerd's matchers.
//! - [`image`]: the [`image::Image`] record; manifest/config/rootfs/check helpers; decoding.
//! - [`identity`]: DiffIDs to ChainIDs.
//! - [`handlers`]: walk and dispatch over descriptor graphs; children, GC labels, filters.
//! - [`store`]: the namespaced SQLite image store.
//! - [`layout`]: OCI image layout import/export and `docker save` import.

pub mod build;
pub mod gc;
pub mod leases;
mod metadb;
pub mod reference;
pub mod remote;
pub mod service;

pub mod handlers;
pub mod identity;
pub mod image;
pub mod layout;
pub mod media_types;
pub mod platforms;
pub mod store;
#[cfg(test)]
mod test_fixtures;
