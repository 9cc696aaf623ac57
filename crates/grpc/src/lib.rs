//! # strata-grpc
//!
//! containerd's `Snapshots` and `Content` gRPC services (containerd 1.6's API) over
//! strata's snapshotters and content store, so that a stock containerd uses strata as a
//! *proxy plugin* (`[proxy_plugins.strata]`), and so does anything that speaks its API.
//!
//! ## Contents
//! - [`api`]: the messages, server traits and clients generated from strata's own
//!   `.proto` description of containerd's API (compiled with `protox`, no `protoc`).
//! - [`snapshots`]: [`SnapshotsService`] over any [`strata_snapshot::Snapshotter`].
//! - [`content`]: [`ContentService`] over any content [`strata_content::Store`], per
//!   namespace ([`content::Namespaces`]).
//! - [`write`](mod@write): the content service's bidirectional `Write` session.
//! - [`namespace`]: the `containerd-namespace` header.
//! - [`errors`]: strata's error kinds to and from gRPC codes, as containerd's `errdefs`.
//! - [`convert`]: times, mounts, infos and statuses to and from their messages; listings
//!   as streams of batches.
//! - [`client`]: a channel to a unix socket, requests in a namespace.
//! - [`serve()`]: both services on a unix socket until a shutdown future completes.
//! - [`socket`]: binding that socket (live servers refused, stale files replaced).

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod content;
pub mod convert;
pub mod errors;
pub mod namespace;
mod serve;
pub mod snapshots;
pub mod socket;
pub mod write;

pub use content::ContentService;
pub use errors::{from_status, to_status};
pub use serve::{GRACE, MAX_MESSAGE, serve};
pub use snapshots::SnapshotsService;
/// The tonic version the services and clients are built with.
pub use tonic;
