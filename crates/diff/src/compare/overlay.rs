//! The overlayfs fast path: the changes of an overlay mount are exactly its upperdir.
//!
//! A 0:0 character device is a deleted path, a directory with `trusted.overlay.opaque=y`
//! (or `user.overlay.opaque=y`) hides everything below it in the lowers. Whether an upper
//! path is an `Add` or a `Modify` is decided by looking it up in the lowerdirs.

use super::walk::sorted_names;
use super::{Change, ChangeKind};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use strata_content::{Error, Result};

/// Calls `f` with the changes recorded in `upperdir` over `lowers` (top first).
///
/// # Errors
/// `Io` for unreadable directories, or whatever `f` returns.
pub fn changes(
    upperdir: &Path,
    lowers: &[PathBuf],
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    walk(upperdir, lowers, Path::new(""), false, f)
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    for key in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if let Ok(n) = rustix::fs::lgetxattr(p, key, &mut buf[..])
            && n >= 1
            && buf[0] == b'y'
        {
            return true;
        }
    }
    false
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk(
    dir: &Path,
    lowers: &[PathBuf],
    rel: &Path,
    hidden: bool,
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    for name in sorted_names(dir)? {
        let p = dir.join(&name);
        let r = rel.join(&name);
        let md =
            fs::symlink_metadata(&p).map_err(|e| Error::io(format!("lstat {}", p.display()), e))?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            if !hidden && in_lowers(lowers, &r) {
                f(Change {
                    kind: ChangeKind::Delete,
                    path: r,
                })?;
            }
            continue;
        }
        let existed = !hidden && in_lowers(lowers, &r);
        let kind = if existed {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        f(Change {
            kind,
            path: r.clone(),
        })?;
        if md.is_dir() {
            let opaque = is_opaque(&p);
            if opaque && existed {
                f(Change {
                    kind: ChangeKind::Delete,
                    path: r.join(".wh..opq"),
                })?;
            }
            walk(&p, lowers, &r, hidden || opaque || !existed, f)?;
        }
    }
    Ok(())
}
