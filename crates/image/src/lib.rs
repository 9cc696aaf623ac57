//! # strata-image
//!
//! Images and registries: image records, handlers over index/manifest/config/layers,
//! platform matching, a Docker Registry HTTP API v2 client, OCI layout import/export, and
//! the image service (Fetch, Push; Unpack and Commit later).
//!
//! Filled in by the image changes; each module below is owned by one of them.

pub mod media_types;
pub mod reference;
pub mod remote;
pub mod service;
pub mod platforms;
pub mod handlers;
pub mod identity;
pub mod image;
#[cfg(test)]
mod test_fixtures;
pub mod store;
pub mod layout;
