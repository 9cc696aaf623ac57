//! # strata-snapshot
//!
//! Snapshotters with containerd's semantics: the [`Snapshotter`] interface, a SQLite
//! metastore, and two backends.
//!
//! **Its place in strata**: the image service unpacks each layer into a snapshot (named by
//! its ChainID, on its parent's snapshot) and prepares containers' writable snapshots on
//! them; the differ (`strata-diff`) applies layers into and compares snapshots through the
//! [`Mount`]s they return. It depends only on `strata-content` (for its error type, labels,
//! filters and SQLite plumbing).
//!
//! ## Contents
//! - [`snapshotter`]: the [`Snapshotter`] trait, [`Kind`], [`Info`], [`Usage`] and the
//!   unpack key format ([`unpack_key`]).
//! - [`mount`]: [`Mount`] specifications, what a set of them is ([`mount::classify`],
//!   [`mount::Layout`]) and helpers to mount them ([`mount::mount_all`],
//!   [`mount::with_temp_mount`], [`mount::MountGuard`]).
//! - [`storage`]: the metastore ([`storage::MetaStore`]): records, kinds, parent chains,
//!   labels and containerd's rules for misuse.
//! - [`native`]: [`native::NativeSnapshotter`], full directory copies, bind mounts.
//! - [`overlay`]: [`overlay::OverlaySnapshotter`], overlayfs layers; [`overlay::upperdir`]
//!   finds an active snapshot's changes from its mounts.
//! - [`open()`] / [`default_backend`] / [`BACKENDS`]: a backend by name (`overlay` where
//!   it works, else `native`).
//! - [`copy`]: a faithful, parallel tree copy (reflink / `copy_file_range`).
//! - [`merge`]: moves a layer applied on its own (overlay form) into a complete tree,
//!   how native rebases.
//! - [`du`]: disk usage of a tree.
//! - `testsuite` (cargo feature `testsuite`, off by default): the conformance suite every
//!   backend runs, and `fstest` helpers.
//!
//! ## Example
//! A base snapshot committed from an active one, then a read-only view of it. The native
//! backend's mounts here are binds of directories, so the example reads and writes them
//! without mounting.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use strata_content::Labels;
//! use strata_snapshot::mount::{Layout, classify};
//! use strata_snapshot::{Kind, Snapshotter, native::NativeSnapshotter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let sn = NativeSnapshotter::open(dir.path())?;
//!
//! let mounts = sn.prepare("build", "", Labels::new()).await?;
//! let Layout::Bind { source, readonly: false } = classify(&mounts) else { unreachable!() };
//! std::fs::write(source.join("hello.txt"), "hi").unwrap();
//! sn.commit("base", "build", Labels::new()).await?;
//! assert_eq!(sn.stat("base").await?.kind, Kind::Committed);
//!
//! let view = sn.view("look", "base", Labels::new()).await?;
//! let Layout::Bind { source, readonly: true } = classify(&view) else { unreachable!() };
//! assert_eq!(std::fs::read_to_string(source.join("hello.txt")).unwrap(), "hi");
//! // Removing a snapshot with children is refused.
//! assert!(sn.remove("base").await.unwrap_err().is_failed_precondition());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod base;
pub mod copy;
pub mod du;
pub mod merge;
pub mod mount;
pub mod native;
mod open;
pub mod overlay;
pub mod snapshotter;
pub mod storage;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use mount::Mount;
pub use open::{BACKENDS, default_backend, open};
pub use snapshotter::{Info, Kind, Snapshotter, Usage, unpack_key, unpack_key_chain_id};
