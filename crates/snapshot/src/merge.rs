//! Merging a layer applied on its own (overlay upperdir form) into a complete tree: how
//! the native snapshotter rebases ([`NativeSnapshotter`](crate::native::NativeSnapshotter)'s
//! `commit_rebase`), so a pull can apply its layers in parallel on native too.
//!
//! The layer directory holds what the layer's tar created, with its deletions in overlay
//! form: a whiteout is a 0:0 character device, an opaque directory carries
//! `trusted.overlay.opaque=y`. [`merge_layer`] moves its entries into the tree with
//! `renameat` (no data is copied) and gives the result an in-order apply would have:
//! - a whiteout deletes the tree's entry of that name (a whole directory included);
//! - an opaque directory replaces the tree's entry of that name, contents and all;
//! - another directory that the tree has as a directory is merged into it, child by
//!   child, then takes the layer's owner, mode, xattrs and times (a directory the layer
//!   only implied already carries the tree's, from `strata_diff::inherit_dirs`);
//! - anything else replaces the tree's entry of that name (a directory there is removed
//!   first); new directories move as whole subtrees, cleared of the markers inside them.
//!
//! The layer's root is never given metadata (the applier skips a tar's root entry, like
//! containerd); its opaque marker clears the tree's root. Hardlinks made by the layer
//! survive the moves (a rename keeps the inode); a layer with a hardlink to a lower
//! layer's file cannot be applied on its own in the first place.

use crate::copy::{copy_dir_attrs, times_of};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Stat};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use strata_content::{Error, Result};

/// The xattr that marks an overlay upperdir's directory opaque.
const OPAQUE: &CStr = c"trusted.overlay.opaque";

/// Moves the entries of `layer` (a layer applied without its parents, in overlay form)
/// into the complete tree `tree`, applying its whiteouts and opaque directories.
/// `layer` is consumed: what is left of it afterwards is to be removed.
///
/// # Errors
/// `Io` naming the path that failed; the tree is then partly merged and should be
/// removed by the caller.
pub fn merge_layer(layer: &Path, tree: &Path) -> Result<()> {
    let open = |p: &Path| open_dir_at(rustix::fs::CWD, p.as_os_str().as_bytes(), p);
    let (src, dst) = (open(layer)?, open(tree)?);
    let m = Merger { tree };
    if is_opaque(src.as_fd()).map_err(|e| m.err("read xattrs of", Path::new(""), e))? {
        m.clear(&dst, Path::new(""))?;
    }
    m.merge_dir(&src, &dst, Path::new(""))
}

/// Paths for error messages.
struct Merger<'a> {
    tree: &'a Path,
}

/// A directory entry: its name and `lstat`.
struct Entry {
    name: CString,
    st: Stat,
}

impl Entry {
    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.st.st_mode as _)
    }

    fn is_whiteout(&self) -> bool {
        self.kind() == FileType::CharacterDevice && self.st.st_rdev == 0
    }
}

impl Merger<'_> {
    fn err(&self, what: &str, rel: &Path, e: Errno) -> Error {
        let p = self.tree.join(rel);
        Error::io(format!("{what} {}", p.display()), e.into())
    }

    /// Merges the children of layer directory `src` into tree directory `dst` (`rel`).
    fn merge_dir(&self, src: &OwnedFd, dst: &OwnedFd, rel: &Path) -> Result<()> {
        for e in entries(src).map_err(|e| self.err("read layer directory for", rel, e))? {
            let child = rel.join(OsStr::from_bytes(e.name.to_bytes()));
            self.merge_entry(src, dst, &e, &child)?;
        }
        Ok(())
    }

    fn merge_entry(&self, src: &OwnedFd, dst: &OwnedFd, e: &Entry, rel: &Path) -> Result<()> {
        let below = stat_at(dst.as_fd(), &e.name).map_err(|x| self.err("stat", rel, x))?;
        let below_is_dir = below
            .as_ref()
            .is_some_and(|b| FileType::from_raw_mode(b.st_mode as _) == FileType::Directory);
        if e.is_whiteout() {
            return match below {
                Some(_) => self.remove(dst, &e.name, below_is_dir, rel),
                None => Ok(()),
            };
        }
        if e.kind() == FileType::Directory {
            let sfd = open_dir_at(src.as_fd(), e.name.to_bytes(), rel)?;
            let opaque = is_opaque(sfd.as_fd()).map_err(|x| self.err("read xattrs of", rel, x))?;
            if below_is_dir && !opaque {
                let dfd = open_dir_at(dst.as_fd(), e.name.to_bytes(), rel)?;
                self.merge_dir(&sfd, &dfd, rel)?;
                return self.dir_meta(sfd.as_fd(), dfd.as_fd(), &e.st, rel);
            }
            self.strip(&sfd, rel)?;
        }
        if below.is_some() && (below_is_dir || e.kind() == FileType::Directory) {
            self.remove(dst, &e.name, below_is_dir, rel)?;
        }
        rustix::fs::renameat(src.as_fd(), &e.name, dst.as_fd(), &e.name)
            .map_err(|x| self.err("move layer entry to", rel, x))
    }

    /// Gives tree directory `dst` the layer directory's owner, mode, xattrs and times
    /// (times last: merging its children changed them).
    fn dir_meta(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &Stat,
        rel: &Path,
    ) -> Result<()> {
        let what = "copy directory metadata to";
        copy_dir_attrs(src, dst, st, Some(OPAQUE)).map_err(|e| self.err(what, rel, e))?;
        rustix::fs::futimens(dst, &times_of(st)).map_err(|e| self.err(what, rel, e))
    }

    /// Removes the markers inside a directory about to move into the tree as a whole:
    /// there is nothing below it for them to hide.
    fn strip(&self, dir: &OwnedFd, rel: &Path) -> Result<()> {
        if is_opaque(dir.as_fd()).map_err(|e| self.err("read xattrs of", rel, e))? {
            rustix::fs::fremovexattr(dir, OPAQUE).map_err(|e| self.err("unmark", rel, e))?;
        }
        for e in entries(dir).map_err(|e| self.err("read layer directory for", rel, e))? {
            let child = rel.join(OsStr::from_bytes(e.name.to_bytes()));
            if e.is_whiteout() {
                rustix::fs::unlinkat(dir, &e.name, AtFlags::empty())
                    .map_err(|x| self.err("remove whiteout", &child, x))?;
            } else if e.kind() == FileType::Directory {
                let sub = open_dir_at(dir.as_fd(), e.name.to_bytes(), &child)?;
                self.strip(&sub, &child)?;
            }
        }
        Ok(())
    }

    /// Removes the tree's entry `name` of `dir` (`rel`), a whole directory included.
    fn remove(&self, dir: &OwnedFd, name: &CStr, is_dir: bool, rel: &Path) -> Result<()> {
        if !is_dir {
            return rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| self.err("remove", rel, e));
        }
        let sub = open_dir_at(dir.as_fd(), name.to_bytes(), rel)?;
        self.clear(&sub, rel)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| self.err("remove", rel, e))
    }

    /// Removes every child of the tree directory `dir` (`rel`).
    fn clear(&self, dir: &OwnedFd, rel: &Path) -> Result<()> {
        for e in entries(dir).map_err(|e| self.err("read", rel, e))? {
            let child = rel.join(OsStr::from_bytes(e.name.to_bytes()));
            self.remove(dir, &e.name, e.kind() == FileType::Directory, &child)?;
        }
        Ok(())
    }
}

/// The entries of `dir` (without `.` and `..`), each with its `lstat`.
fn entries(dir: &OwnedFd) -> std::result::Result<Vec<Entry>, Errno> {
    let mut out = Vec::new();
    let mut d = Dir::read_from(dir.as_fd())?;
    while let Some(e) = d.read() {
        let e = e?;
        let name = e.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        out.push(Entry {
            name: name.to_owned(),
            st,
        });
    }
    Ok(out)
}

/// `lstat` of `name` in `dir`; `None` when there is no such entry.
fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> std::result::Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`copy::open_dir`](crate::copy) of `name` in `dir`, errors naming `rel`.
fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8], rel: &Path) -> Result<OwnedFd> {
    crate::copy::open_dir(dir, Path::new(OsStr::from_bytes(name)))
        .map_err(|e| Error::io(format!("open directory {}", rel.display()), e.into()))
}

/// Whether directory `dir` carries the overlay opaque marker.
fn is_opaque(dir: BorrowedFd<'_>) -> std::result::Result<bool, Errno> {
    let mut v = [0u8; 2];
    match rustix::fs::fgetxattr(dir, OPAQUE, &mut v) {
        Ok(n) => Ok(&v[..n] == b"y"),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
