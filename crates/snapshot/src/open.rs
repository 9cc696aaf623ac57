//! Choosing and opening a backend by name.

use crate::Snapshotter;
use crate::native::NativeSnapshotter;
use crate::overlay::{self, OverlayOptions, OverlaySnapshotter};
use std::path::Path;
use std::sync::Arc;
use strata_content::{Error, Result};

/// The backends [`open`] knows.
pub const BACKENDS: [&str; 2] = ["overlay", "native"];

/// `overlay` when overlayfs mounts work in `dir` (created if needed), else `native`.
pub fn default_backend(dir: &Path) -> &'static str {
    if std::fs::create_dir_all(dir).is_ok() && overlay::supported(dir).is_ok() {
        "overlay"
    } else {
        "native"
    }
}

/// Opens backend `name` (`overlay` or `native`) rooted at `root`.
///
/// # Errors
/// `InvalidArgument` for an unknown name; the backend's `open` errors.
pub fn open(name: &str, root: &Path) -> Result<Arc<dyn Snapshotter>> {
    match name {
        "overlay" | "overlayfs" => Ok(Arc::new(OverlaySnapshotter::open(
            root,
            OverlayOptions::default(),
        )?)),
        "native" => Ok(Arc::new(NativeSnapshotter::open(root)?)),
        _ => Err(Error::invalid_argument(format!(
            "unknown snapshotter {name:?} (known: overlay, native)"
        ))),
    }
}
