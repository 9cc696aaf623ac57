//! # strata-snapshot
//!
//! Snapshotters with containerd's semantics.
//!
//! - [`mount`]: [`Mount`] specifications and helpers to mount them
//!   ([`mount::mount_all`], [`mount::with_temp_mount`], [`mount::MountGuard`]).

pub mod mount;

pub use mount::Mount;
