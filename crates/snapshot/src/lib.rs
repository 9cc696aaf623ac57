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

pub mod mount;
pub mod snapshotter;
pub mod storage;

pub use mount::Mount;
pub use snapshotter::{Info, Kind, Snapshotter, Usage, unpack_key, unpack_key_chain_id};
