//! # strata-image
//!
//! Images and the flows over them: image records, the descriptor graph of an image
//! (index → manifests → config and layers), platforms, a Docker Registry HTTP API v2
//! client, OCI layouts, leases, garbage collection, and the [`ImageService`] whose
//! Fetch, Unpack, Commit and Push follow containerd's flows.
//!
//! This crate sits on top of the others: blobs go to a `strata-content` store, come from
//! registries through `strata-remote`, and layers are applied with `strata-diff` into
//! `strata-snapshot` snapshots named by ChainID. Programs usually open all of them at once with `strata::Root` (the facade
//! crate), which wires an [`ImageService`] the one way; this crate is for building on
//! the pieces.
//!
//! ## The flows
//! - [`service`]: [`ImageService`] — [`fetch`](ImageService::fetch),
//!   [`unpack`](ImageService::unpack), [`pull`](ImageService::pull) (fetch and unpack
//!   pipelined), [`commit`](ImageService::commit) and [`push`](ImageService::push).
//! - [`leases`]: hold what a flow makes against garbage collection while it runs.
//! - [`gc`]: containerd's mark and sweep over content, snapshots, images and leases.
//! - [`check`]: a consistency check of everything (blobs, ingests, snapshots, images,
//!   GC labels) and its repair.
//!
//! ## Images and their documents
//! - [`image`]: the [`Image`](image::Image) record; manifest, config and DiffID helpers.
//! - [`store`]: the namespaced SQLite image store.
//! - [`media_types`]: OCI and Docker media types and their classifiers.
//! - [`handlers`]: walk and dispatch over descriptor graphs; children, GC labels,
//!   platform filters.
//! - [`platforms`]: parse, format and normalize platforms; containerd's matchers.
//! - [`identity`]: DiffIDs to ChainIDs.
//! - [`build`]: small images made from code (layers entry by entry).
//!
//! ## Moving images
//! - [`layout`]: OCI image layout import/export and `docker save` import.
//! - [`remote`] and [`reference`](mod@reference): the registry client and references
//!   (the `strata-remote` crate, re-exported).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use std::sync::Arc;
//! use strata_image::build::{ImageBuilder, LayerBuilder};
//! use strata_image::service::{ImageService, UnpackOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let content = Arc::new(strata_content::local::LocalStore::open(dir.path().join("content"))?);
//! let images = Arc::new(strata_image::store::ImageStore::open(dir.path().join("metadata.db"))?);
//! let sn = strata_snapshot::open("native", &dir.path().join("snapshots/native"))?;
//! let svc = ImageService::new(content.clone(), images.clone()).with_snapshotter("native", sn);
//! let mut layer = LayerBuilder::new();
//! layer.file("hello", 0o644, b"hi\n")?;
//! let image = ImageBuilder::new()
//!     .layer(layer.finish_gzip()?)
//!     .write(content.as_ref(), &images, "example:1")
//!     .await?;
//! let unpacked = svc.unpack(&image, UnpackOptions::default()).await?;
//! assert_eq!(unpacked.applied, 1); // one snapshot, named by the layer's ChainID
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod build;
pub mod check;
pub mod gc;
pub mod handlers;
pub mod identity;
pub mod image;
pub mod layout;
pub mod leases;
pub mod media_types;
mod metadb;
pub mod platforms;
pub mod service;
pub mod store;
#[cfg(test)]
mod test_fixtures;

pub use service::ImageService;
/// The registry client, `strata-remote` (re-exported: the flows take its options).
pub use strata_remote as remote;
/// Docker-style references (`strata-remote`'s, re-exported).
pub use strata_remote::reference;
