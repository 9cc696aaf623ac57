//! # strata-diff
//!
//! Applies OCI layers to directories and computes layers from two directory trees, with
//! containerd's semantics (`Applier` / `Comparer`, the walking differ) and a safety model
//! where no archive entry can touch anything outside the target root.
//!
//! ## Contents
//! - [`compression`]: media types, decoders (multi-member gzip, multi-frame zstd), encoders.
//! - [`apply`]: the synchronous streaming applier [`apply_layer`] (decode thread, DiffID,
//!   whiteouts, overlay upperdir mode).
//! - [`compare`]: the double walk and the overlay-upperdir fast path producing changes,
//!   and the deterministic tar writer.
//! - [`readers`]: the sync readers apply consumes: a stored blob ([`ReadAt`]) or chunks
//!   arriving on a channel ([`ChannelReader`]).
//! - [`walking`]: the async [`Applier`] / [`Comparer`] traits and [`WalkingDiff`], which
//!   picks targets from snapshot mounts and writes layers into a content store.

pub mod apply;
pub mod compare;
pub mod compression;
mod fsutil;
mod pipeline;
pub mod readers;
pub mod walking;

pub use apply::{ApplyOptions, ApplyStats, OverlayOptions, apply_layer, inherit_dirs};
pub use compression::{Compression, Encoding};
pub use readers::{ChannelReader, ReadAt};
pub use walking::{Applier, ApplyOpts, Comparer, DiffOpts, WalkingDiff};
