//! Computing the changes between two trees and writing them as a layer.
//!
//! - [`walk`]: continuity's `fs.Changes` double walk of a lower and an upper tree.
//! - [`overlay`]: the single walk of an overlayfs upperdir.
//! - [`writer`]: the deterministic tar writer (containerd's `ChangeWriter`).

pub mod overlay;
pub mod walk;
pub mod writer;

use std::path::PathBuf;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the upper tree.
    Add,
    /// Present in both, different.
    Modify,
    /// Only in the lower tree (a removed directory is one `Delete`).
    Delete,
}

/// One change, with a path relative to the tree roots (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The relative path. An opaque directory from the overlay walk is reported as a
    /// `Delete` of `<dir>/.wh..opq`, which the writer emits as `<dir>/.wh..wh..opq`.
    pub path: PathBuf,
}

pub use walk::changes;
pub use writer::{ChangeWriter, WriterOptions};
