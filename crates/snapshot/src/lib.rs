//! # strata-snapshot
//!
//! Snapshotters with containerd's semantics. Filled in by the snapshot change.
//!
//! - [`mount`]: [`Mount`] specifications and helpers to mount them.

pub mod mount;

pub use mount::Mount;
