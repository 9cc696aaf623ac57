//! continuity's `fs.Changes`: a sorted double walk of the lower and upper trees.
//!
//! Files are the same when type, permission bits, owner, device number and
//! `security.capability` match and, for non-directories, size and mtime seconds match;
//! when both mtimes have zero nanoseconds (possibly truncated) the content (or symlink
//! target) decides; otherwise differing nanoseconds count as a change.

use super::{Change, ChangeKind};
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use strata_content::{Error, Result};

/// Calls `f` with every change from `lower` (or an empty tree) to `upper`, in walk order:
/// depth first, names sorted bytewise within each directory, a directory before its
/// children.
///
/// # Errors
/// `Io` for unreadable trees, or whatever `f` returns.
pub fn changes(
    lower: Option<&Path>,
    upper: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    walk(lower, upper, Path::new(""), f, &mut |_| Ok(()))
}

/// Like [`changes`], and also calls `unchanged` with every unchanged non-directory that has
/// other hard links (so a writer can link new paths to it, see
/// [`ChangeWriter::unchanged`](super::ChangeWriter::unchanged)).
///
/// # Errors
/// As [`changes`].
pub fn changes_with_links(
    lower: Option<&Path>,
    upper: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
    unchanged: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<()> {
    walk(lower, upper, Path::new(""), f, unchanged)
}

fn io_err(what: &str, p: &Path, e: io::Error) -> Error {
    Error::io(format!("{what} {}", p.display()), e)
}

pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| io_err("read dir", dir, e))? {
        v.push(e.map_err(|e| io_err("read dir", dir, e))?.file_name());
    }
    v.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(v)
}

fn lstat(p: &Path) -> Result<Metadata> {
    fs::symlink_metadata(p).map_err(|e| io_err("lstat", p, e))
}

fn walk(
    lower: Option<&Path>,
    upper: &Path,
    rel: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
    unchanged: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let unames = sorted_names(upper)?;
    let lnames = match lower {
        Some(l) => sorted_names(l)?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < lnames.len() || j < unames.len() {
        let ord = match (lnames.get(i), unames.get(j)) {
            (Some(l), Some(u)) => l.as_encoded_bytes().cmp(u.as_encoded_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                f(Change {
                    kind: ChangeKind::Delete,
                    path: rel.join(&lnames[i]),
                })?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let name = &unames[j];
                add_all(&upper.join(name), &rel.join(name), f)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = &unames[j];
                let (lp, up) = (lower.expect("both").join(name), upper.join(name));
                let (lm, um) = (lstat(&lp)?, lstat(&up)?);
                let r = rel.join(name);
                if um.is_dir() {
                    if lm.is_dir() {
                        if !same_file(&lp, &lm, &up, &um)? {
                            f(Change {
                                kind: ChangeKind::Modify,
                                path: r.clone(),
                            })?;
                        }
                        walk(Some(&lp), &up, &r, f, unchanged)?;
                    } else {
                        f(Change {
                            kind: ChangeKind::Modify,
                            path: r.clone(),
                        })?;
                        walk(None, &up, &r, f, unchanged)?;
                    }
                } else if lm.is_dir() || !same_file(&lp, &lm, &up, &um)? {
                    f(Change {
                        kind: ChangeKind::Modify,
                        path: r,
                    })?;
                } else if um.is_file() && um.nlink() > 1 {
                    unchanged(&r)?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn add_all(p: &Path, rel: &Path, f: &mut dyn FnMut(Change) -> Result<()>) -> Result<()> {
    f(Change {
        kind: ChangeKind::Add,
        path: rel.to_path_buf(),
    })?;
    if lstat(p)?.is_dir() {
        for name in sorted_names(p)? {
            add_all(&p.join(&name), &rel.join(&name), f)?;
        }
    }
    Ok(())
}

/// The `security.capability` xattr of a path (not following symlinks).
pub(crate) fn capability(p: &Path) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, "security.capability", &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(io_err("get capability of", p, e.into())),
    }
}

/// continuity's `sameFile`.
pub(crate) fn same_file(lp: &Path, lm: &Metadata, up: &Path, um: &Metadata) -> Result<bool> {
    if lm.dev() == um.dev() && lm.ino() == um.ino() {
        return Ok(true);
    }
    if lm.mode() != um.mode()
        || lm.uid() != um.uid()
        || lm.gid() != um.gid()
        || lm.rdev() != um.rdev()
    {
        return Ok(false);
    }
    if capability(lp)? != capability(up)? {
        return Ok(false);
    }
    if lm.is_dir() {
        return Ok(true);
    }
    if lm.size() != um.size() || lm.mtime() != um.mtime() {
        return Ok(false);
    }
    if lm.mtime_nsec() == 0 && um.mtime_nsec() == 0 {
        if lm.file_type().is_symlink() {
            let a = fs::read_link(lp).map_err(|e| io_err("readlink", lp, e))?;
            let b = fs::read_link(up).map_err(|e| io_err("readlink", up, e))?;
            return Ok(a == b);
        }
        if lm.size() == 0 || !lm.is_file() {
            return Ok(true);
        }
        return same_content(lp, up);
    }
    Ok(lm.mtime_nsec() == um.mtime_nsec())
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = fs::File::open(a).map_err(|e| io_err("open", a, e))?;
    let mut fb = fs::File::open(b).map_err(|e| io_err("open", b, e))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| io_err("read", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| io_err("read", b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
