//! Overlay mode's view of the lowerdirs: looking a path up through them, top first, as
//! overlayfs's merged view would, to give implied parent directories the metadata they
//! had below ([`copy_parent_info`]) and to copy up the target of a hardlink to a lower
//! layer's file ([`Applier::copy_up`]).
//!
//! The lookup walks one component at a time without following symlinks: a whiteout
//! (0:0 character device) or a non-directory in a higher layer hides the path in every
//! layer below, and an opaque directory hides that directory of the layers below.
//! Lowerdirs are our own snapshot directories; the path comes from the untrusted layer,
//! so nothing here follows a link or leaves a lowerdir, and writes go to the upperdir
//! only through the applier's beneath-root resolution.

use super::Applier;
use super::meta::{apply_xattrs, io_err};
use super::resolve::{clean, join};
use crate::fsutil;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::io;
use strata_content::Result;

/// A path found in a lowerdir: its parent directory and its `lstat`.
struct Found {
    parent: OwnedFd,
    st: Stat,
}

fn open_dir(at: &OwnedFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at.as_fd(),
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut v = [0u8; 1];
    matches!(rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut v), Ok(1) if v[0] == b'y')
}

/// Whether `st` is an overlay whiteout (a 0:0 character device).
fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Looks `comps` up through `lowers` (top first) as the merged view would.
fn lookup(lowers: &[OwnedFd], comps: &[&[u8]]) -> io::Result<Option<Found>> {
    let Some(last) = comps.len().checked_sub(1) else {
        return Ok(None);
    };
    'layers: for lower in lowers {
        let mut dir = open_dir(lower, b".")?;
        let mut opaque_above = false;
        for (k, c) in comps.iter().enumerate() {
            let st = match rustix::fs::statat(dir.as_fd(), *c, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) if opaque_above => return Ok(None),
                Err(Errno::NOENT) => continue 'layers,
                Err(e) => return Err(e.into()),
            };
            if is_whiteout(&st) {
                return Ok(None); // whited out
            }
            let ft = FileType::from_raw_mode(st.st_mode);
            if k == last {
                return Ok(Some(Found { parent: dir, st }));
            }
            if ft != FileType::Directory {
                return Ok(None); // a file or symlink hides the rest of the path
            }
            dir = open_dir(&dir, c)?;
            opaque_above |= is_opaque(&dir);
        }
    }
    Ok(None)
}

/// Removes the whiteout device at `path` of the upperdir `root` unless it hides something:
/// its target is visible through `lowers` and no directory above it in `root` is opaque.
/// See [`prune_whiteouts`](super::prune_whiteouts).
pub(super) fn prune_whiteout(root: &OwnedFd, lowers: &[OwnedFd], path: &[u8]) -> io::Result<()> {
    let comps = clean(path);
    let Some((name, parents)) = comps.split_last() else {
        return Ok(());
    };
    let mut dir = open_dir(root, b".")?;
    let mut hides = !is_opaque(&dir);
    for c in parents {
        dir = match open_dir(&dir, c) {
            Ok(d) => d,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()), // replaced meanwhile
            Err(e) => return Err(e.into()),
        };
        hides &= !is_opaque(&dir);
    }
    let st = match rustix::fs::statat(dir.as_fd(), *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !is_whiteout(&st) || (hides && lookup(lowers, &comps)?.is_some()) {
        return Ok(());
    }
    rustix::fs::unlinkat(dir.as_fd(), *name, AtFlags::empty())?;
    Ok(())
}

fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Gives the directory `fd` (at `path`, relative to the root) the owner, mode, times and
/// non-`trusted.*` xattrs the merged view of `lowers` shows for `path`. Returns whether a
/// lowerdir had it as a directory.
pub(super) fn copy_parent_info(lowers: &[OwnedFd], fd: &OwnedFd, path: &[u8]) -> io::Result<bool> {
    let comps = clean(path);
    let Some(found) = lookup(lowers, &comps)? else {
        return Ok(false);
    };
    if FileType::from_raw_mode(found.st.st_mode) != FileType::Directory {
        return Ok(false);
    }
    let l = open_dir(&found.parent, comps[comps.len() - 1])?;
    let st = &found.st;
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    for (k, v) in fsutil::fxattrs(&l)? {
        if k.starts_with(b"trusted.") {
            continue;
        }
        match rustix::fs::fsetxattr(fd, k.as_slice(), &v, XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::futimens(fd, &times_of(st))?;
    Ok(true)
}

impl Applier<'_> {
    /// Overlay mode: copies the regular file or symlink `comps` up from the lowerdirs
    /// (as the merged view shows it) with its owner (unless `no_same_owner`), mode,
    /// non-`trusted.*` xattrs and times, so that a hardlink to it can be made in the
    /// upperdir, as overlayfs itself would. Nothing happens when the merged view has no
    /// such file.
    pub(super) fn copy_up(&mut self, comps: &[&[u8]]) -> Result<()> {
        let full = join(comps);
        let found = lookup(&self.lowers, comps).map_err(|e| io_err("look up", &full, e))?;
        let Some(Found { parent: lpd, st }) = found else {
            return Ok(());
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if !matches!(ft, FileType::RegularFile | FileType::Symlink) {
            return Ok(());
        }
        let (base, parent) = comps.split_last().expect("found a non-root path");
        let base: &[u8] = base;
        let pfd = self.parent(parent, true)?.expect("created");
        let owner = !self.opts.no_same_owner;
        let chown = |what| {
            if !owner {
                return Ok(());
            }
            rustix::fs::chownat(
                pfd.as_fd(),
                base,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(what, &full, e))
        };
        if ft == FileType::Symlink {
            let target = rustix::fs::readlinkat(lpd.as_fd(), base, Vec::new())
                .map_err(|e| io_err("read lower symlink", &full, e))?;
            rustix::fs::symlinkat(target.as_bytes(), pfd.as_fd(), base)
                .map_err(|e| io_err("copy up symlink", &full, e))?;
            chown("lchown")?;
            return rustix::fs::utimensat(
                pfd.as_fd(),
                base,
                &times_of(&st),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err("set times of", &full, e));
        }
        let src = rustix::fs::openat(
            lpd.as_fd(),
            base,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open lower file", &full, e))?;
        let dst = rustix::fs::openat(
            pfd.as_fd(),
            base,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err("copy up", &full, e))?;
        let (mut r, mut w) = (std::fs::File::from(src), std::fs::File::from(dst));
        io::copy(&mut r, &mut w).map_err(|e| io_err("copy up", &full, e))?;
        let (src, dst) = (OwnedFd::from(r), OwnedFd::from(w));
        chown("chown")?;
        rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| io_err("chmod", &full, e))?;
        let xattrs = fsutil::fxattrs(&src).map_err(|e| io_err("list xattrs of", &full, e))?;
        apply_xattrs(&xattrs, false, &full, |k, v| {
            rustix::fs::fsetxattr(&dst, k, v, XattrFlags::empty())
        })?;
        rustix::fs::futimens(&dst, &times_of(&st)).map_err(|e| io_err("set times of", &full, e))
    }
}
