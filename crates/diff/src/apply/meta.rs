//! Writing a node's metadata, shared by entry apply ([`super::entry`]) and overlay
//! copy-up ([`super::lower`]): times without following links, xattrs from an archive
//! (refusing `trusted.*`), and the I/O error that names the path.

use super::show;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::io;
use strata_content::{Error, Result};

/// A timestamp: (seconds, nanoseconds).
pub(super) type Time = (i64, u32);

/// `t` as the kernel's timespec.
pub(super) fn ts(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.0,
        tv_nsec: t.1 as _,
    }
}

/// Sets the times of `name` in `dir` without following a symlink.
pub(super) fn set_times_at(dir: &OwnedFd, name: &[u8], atime: Time, mtime: Time) -> io::Result<()> {
    let t = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rustix::fs::utimensat(dir.as_fd(), name, &t, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// An `Io` error saying `what` failed on `path` (as shown by [`show`]).
pub(super) fn io_err(what: &str, path: &[u8], e: impl Into<io::Error>) -> Error {
    Error::io(format!("{what} {}", show(path)), e.into())
}

/// Whether an xattr from an archive may be applied.
fn xattr_allowed(name: &[u8]) -> bool {
    !name.starts_with(b"trusted.")
}

/// Applies xattrs through `set`, skipping ENOTSUP and EPERM on `user.*` of special files.
pub(super) fn apply_xattrs(
    xattrs: &[(Vec<u8>, Vec<u8>)],
    special: bool,
    path: &[u8],
    mut set: impl FnMut(&[u8], &[u8]) -> rustix::io::Result<()>,
) -> Result<()> {
    for (k, v) in xattrs {
        if !xattr_allowed(k) {
            tracing::warn!(path = %show(path), xattr = %show(k), "ignoring trusted xattr from archive");
            continue;
        }
        match set(k, v) {
            Ok(()) => {}
            Err(Errno::NOTSUP) => {
                tracing::warn!(path = %show(path), xattr = %show(k), "xattr not supported")
            }
            Err(Errno::PERM) if special && k.starts_with(b"user.") => {}
            Err(e) => return Err(io_err(&format!("set xattr {} on", show(k)), path, e)),
        }
    }
    Ok(())
}
