//! # strata-diff
//!
//! Applies OCI layers to directories and computes layers from two directory trees, with
//! containerd's semantics (`Applier` / `Comparer`, the walking differ) and a safety model
//! where no archive entry can touch anything outside the target root.
//!
//! **Its place in strata**: between the content store and the snapshotters. The image
//! service's Unpack reads a layer blob from `strata-content` and applies it into a
//! snapshot's mounts (`strata-snapshot`); its Commit compares a container's snapshot with
//! its parent and writes the new layer blob back into the content store.
//!
//! ## Contents
//! - [`apply`]: the synchronous streaming applier [`apply_layer`] (decode thread, DiffID,
//!   whiteouts, overlay upperdir mode), [`inherit_dirs`] and [`prune_whiteouts`].
//!   - [`apply::resolve`]: path resolution beneath the apply root (`openat2`).
//!   - [`apply::whiteout`]: OCI whiteout names and their overlayfs forms.
//! - [`compare`]: changes between two trees and the layer tar written from them.
//!   - [`compare::walk`]: continuity's double walk of a lower and an upper tree.
//!   - [`compare::overlay`]: the single walk of an overlayfs upperdir.
//!   - [`compare::writer`]: the deterministic tar writer ([`compare::ChangeWriter`]).
//! - [`compression`]: the one [`Compression`] enum, the layer media types, decoders
//!   (multi-member gzip, multi-frame zstd) and encoders.
//! - [`readers`]: the sync readers apply consumes: a stored blob ([`ReadAt`]) or chunks
//!   arriving on a channel ([`ChannelReader`]).
//! - [`walking`]: the async [`Applier`] / [`Comparer`] traits and [`WalkingDiff`], which
//!   picks targets from snapshot mounts and writes layers into a content store.
//!
//! ## Example
//! Apply a one-file layer (a plain tar made here) to an empty directory, then list the
//! changes from the empty tree; the DiffID is the sha256 of the uncompressed stream.
//!
//! ```
//! # fn main() -> strata_content::Result<()> {
//! use strata_diff::compare::{self, ChangeKind};
//! use strata_diff::{ApplyOptions, Compression, apply_layer};
//!
//! let mut layer = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_size(2);
//! header.set_mode(0o644);
//! layer.append_data(&mut header, "etc/motd", &b"hi"[..]).unwrap();
//! let layer = layer.into_inner().unwrap();
//!
//! let root = tempfile::tempdir().unwrap();
//! let opts = ApplyOptions { no_same_owner: true, ..Default::default() };
//! let plain = Compression::from_media_type(strata_diff::compression::OCI_LAYER)?;
//! let stats = apply_layer(&layer[..], plain, root.path(), &opts)?;
//! assert_eq!(stats.diff_id, strata_content::digest::sha256(&layer));
//! assert_eq!(std::fs::read(root.path().join("etc/motd")).unwrap(), b"hi");
//!
//! let mut seen = Vec::new();
//! compare::changes(None, root.path(), &mut |c| {
//!     seen.push((c.kind, c.path));
//!     Ok(())
//! })?;
//! assert_eq!(seen, [(ChangeKind::Add, "etc".into()), (ChangeKind::Add, "etc/motd".into())]);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod apply;
pub mod compare;
pub mod compression;
mod fsutil;
mod pipeline;
pub mod readers;
pub mod walking;

pub use apply::{
    ApplyOptions, ApplyStats, OverlayOptions, apply_layer, inherit_dirs, prune_whiteouts,
};
pub use compression::{Compression, Encoding};
pub use readers::{ChannelReader, ReadAt};
pub use walking::{Applier, ApplyOpts, Comparer, DiffOpts, WalkingDiff};
