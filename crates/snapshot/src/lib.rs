//! # strata-snapshot
//!
//! Snapshotters with containerd's semantics: the [`Snapshotter`] interface, a SQLite
//! metastore, and two backends.
//!
//! - [`snapshotter`]: the [`Snapshotter`] trait, [`Kind`], [`Info`], [`Usage`] and the
//!   unpack key format ([`unpack_key`]).
//! - [`mount`]: [`Mount`] specifications and helpers to mount them
//!   ([`mount::mount_all`], [`mount::with_temp_mount`], [`mount::MountGuard`]).
//! - [`storage`]: the metastore ([`storage::MetaStore`]): records, kinds, parent chains,
//!   labels and containerd's rules for misuse.
//! - [`native`]: [`native::NativeSnapshotter`], full directory copies, bind mounts.
//! - [`overlay`]: [`overlay::OverlaySnapshotter`], overlayfs layers; [`overlay::upperdir`]
//!   finds an active snapshot's changes from its mounts.
//! - [`open()`] / [`default_backend`]: a backend by name (`overlay` where it works, else
//!   `native`).
//! - [`copy`]: a faithful, parallel tree copy (reflink / `copy_file_range`).
//! - [`du`]: disk usage of a tree.
//! - `testsuite` (cargo feature `testsuite`, off by default): the conformance suite every
//!   backend runs, and `fstest` helpers.

mod base;
pub mod copy;
pub mod du;
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
