//! continuity's `fs.Changes`: a sorted double walk of the lower and upper trees.
//!
//! Files are the same when type, permission bits, owner, device number and
//! `security.capability` match and, for non-directories, size and mtime seconds match;
//! when both mtimes have zero nanoseconds (possibly truncated) the content (or symlink
//! target) decides; otherwise differing nanoseconds count as a change.

use super::{Change, ChangeKind};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

/// Names in `dir`, sorted bytewise (`.` and `..` left out).
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| io_err("read dir", dir, e))? {
        v.push(e.map_err(|e| io_err("read dir", dir, e))?.file_name());
    }
    v.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(v)
}

/// An open directory of one of the trees. Entries are looked up relative to its fd, so a
/// deep path is not resolved again for every `lstat`, `open` and `readlink`; the full path
/// is kept for messages and for the calls that have no `*at` form.
struct DirFd {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

impl DirFd {
    fn open_root(path: &Path) -> Result<DirFd> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| io_err("open dir", path, e.into()))?;
        Ok(DirFd {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn open_sub(&self, name: &OsStr) -> Result<DirFd> {
        let path = self.path.join(name);
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| io_err("open dir", &path, e.into()))?;
        Ok(DirFd { fd, path })
    }

    /// The entries' names and (where the filesystem reports it) types, sorted bytewise.
    fn entries(&self) -> Result<Vec<(OsString, Option<FileType>)>> {
        let err = |e: rustix::io::Errno| io_err("read dir", &self.path, e.into());
        let mut d = rustix::fs::Dir::new(rustix::io::dup(&self.fd).map_err(err)?).map_err(err)?;
        let mut v = Vec::new();
        while let Some(e) = d.read() {
            let e = e.map_err(err)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let ft = e.file_type();
            v.push((
                OsStr::from_bytes(name).to_os_string(),
                (ft != FileType::Unknown).then_some(ft),
            ));
        }
        v.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        Ok(v)
    }

    fn lstat(&self, name: &OsStr) -> Result<Md> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(Md::from)
            .map_err(|e| io_err("lstat", &self.path.join(name), e.into()))
    }

    fn open_file(&self, name: &OsStr) -> Result<fs::File> {
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map(fs::File::from)
        .map_err(|e| io_err("open", &self.path.join(name), e.into()))
    }

    fn readlink(&self, name: &OsStr) -> Result<std::ffi::CString> {
        rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .map_err(|e| io_err("readlink", &self.path.join(name), e.into()))
    }
}

/// What the comparison needs of `lstat`.
#[derive(Debug, Clone, Copy)]
struct Md {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    nlink: u64,
}

impl From<rustix::fs::Stat> for Md {
    #[allow(clippy::unnecessary_cast)] // the field types differ between architectures
    fn from(s: rustix::fs::Stat) -> Md {
        Md {
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            mode: s.st_mode as u32,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            rdev: s.st_rdev as u64,
            size: s.st_size as u64,
            mtime: s.st_mtime as i64,
            mtime_nsec: s.st_mtime_nsec as u32,
            nlink: s.st_nlink as u64,
        }
    }
}

impl Md {
    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
}

fn walk(
    lower: Option<&Path>,
    upper: &Path,
    rel: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
    unchanged: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let lower = lower.map(DirFd::open_root).transpose()?;
    let upper = DirFd::open_root(upper)?;
    let mut bufs = Bufs::default();
    walk_dir(lower.as_ref(), &upper, rel, f, unchanged, &mut bufs)
}

/// Read buffers of the content comparison, allocated once per walk.
#[derive(Default)]
struct Bufs {
    a: Vec<u8>,
    b: Vec<u8>,
}

fn walk_dir(
    lower: Option<&DirFd>,
    upper: &DirFd,
    rel: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
    unchanged: &mut dyn FnMut(&Path) -> Result<()>,
    bufs: &mut Bufs,
) -> Result<()> {
    let unames = upper.entries()?;
    let lnames = match lower {
        Some(l) => l.entries()?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < lnames.len() || j < unames.len() {
        let ord = match (lnames.get(i), unames.get(j)) {
            (Some(l), Some(u)) => l.0.as_encoded_bytes().cmp(u.0.as_encoded_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                f(Change {
                    kind: ChangeKind::Delete,
                    path: rel.join(&lnames[i].0),
                })?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, ft) = &unames[j];
                add_all(upper, name, *ft, &rel.join(name), f)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = &unames[j].0;
                let l = lower.expect("both");
                let (lm, um) = (l.lstat(name)?, upper.lstat(name)?);
                let r = rel.join(name);
                if um.is_dir() {
                    let usub = upper.open_sub(name)?;
                    if lm.is_dir() {
                        if !same_file(l, upper, name, &lm, &um, bufs)? {
                            f(Change {
                                kind: ChangeKind::Modify,
                                path: r.clone(),
                            })?;
                        }
                        let lsub = l.open_sub(name)?;
                        walk_dir(Some(&lsub), &usub, &r, f, unchanged, bufs)?;
                    } else {
                        f(Change {
                            kind: ChangeKind::Modify,
                            path: r.clone(),
                        })?;
                        walk_dir(None, &usub, &r, f, unchanged, bufs)?;
                    }
                } else if lm.is_dir() || !same_file(l, upper, name, &lm, &um, bufs)? {
                    f(Change {
                        kind: ChangeKind::Modify,
                        path: r,
                    })?;
                } else if um.file_type() == FileType::RegularFile && um.nlink > 1 {
                    unchanged(&r)?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// Reports `name` in `dir` and, for a directory, everything below it as added.
fn add_all(
    dir: &DirFd,
    name: &OsStr,
    ft: Option<FileType>,
    rel: &Path,
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    f(Change {
        kind: ChangeKind::Add,
        path: rel.to_path_buf(),
    })?;
    let is_dir = match ft {
        Some(ft) => ft == FileType::Directory,
        None => dir.lstat(name)?.is_dir(),
    };
    if is_dir {
        let sub = dir.open_sub(name)?;
        for (n, ft) in sub.entries()? {
            add_all(&sub, &n, ft, &rel.join(&n), f)?;
        }
    }
    Ok(())
}

/// The `security.capability` xattr of a path (not following symlinks).
fn capability(p: &Path) -> Result<Option<Vec<u8>>> {
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

/// The `security.capability` xattr of an open file.
fn fcapability(f: &fs::File, p: &Path) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::fgetxattr(f, "security.capability", &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(io_err("get capability of", p, e.into())),
    }
}

/// continuity's `sameFile` for `name` in `ld` (lower) and `ud` (upper): the same when
/// type, permissions, owner, device, `security.capability` and, for non-directories,
/// size and mtime seconds match, and then the nanoseconds match or, when both are zero
/// (possibly truncated), the content or link target does. The checks are ordered
/// cheapest first; the result is the same as continuity's order.
fn same_file(
    ld: &DirFd,
    ud: &DirFd,
    name: &OsStr,
    lm: &Md,
    um: &Md,
    bufs: &mut Bufs,
) -> Result<bool> {
    if lm.dev == um.dev && lm.ino == um.ino {
        return Ok(true);
    }
    if lm.mode != um.mode || lm.uid != um.uid || lm.gid != um.gid || lm.rdev != um.rdev {
        return Ok(false);
    }
    let (lp, up) = (ld.path.join(name), ud.path.join(name));
    let dir = lm.is_dir();
    if !dir && (lm.size != um.size || lm.mtime != um.mtime) {
        return Ok(false);
    }
    let truncated = lm.mtime_nsec == 0 && um.mtime_nsec == 0;
    if !dir && truncated && lm.file_type() == FileType::RegularFile && lm.size > 0 {
        // The content decides: open both once, and read the capabilities through the fds.
        let (fa, fb) = (ld.open_file(name)?, ud.open_file(name)?);
        if fcapability(&fa, &lp)? != fcapability(&fb, &up)? {
            return Ok(false);
        }
        return same_content(fa, &lp, fb, &up, bufs);
    }
    if capability(&lp)? != capability(&up)? {
        return Ok(false);
    }
    if dir {
        return Ok(true);
    }
    if truncated {
        if lm.file_type() == FileType::Symlink {
            return Ok(ld.readlink(name)? == ud.readlink(name)?);
        }
        return Ok(true);
    }
    Ok(lm.mtime_nsec == um.mtime_nsec)
}

const CMP_BUF: usize = 64 * 1024;

fn same_content(
    mut fa: fs::File,
    a: &Path,
    mut fb: fs::File,
    b: &Path,
    bufs: &mut Bufs,
) -> Result<bool> {
    bufs.a.resize(CMP_BUF, 0);
    bufs.b.resize(CMP_BUF, 0);
    let (ba, bb) = (&mut bufs.a[..], &mut bufs.b[..]);
    loop {
        let na = read_full(&mut fa, ba).map_err(|e| io_err("read", a, e))?;
        let nb = read_full(&mut fb, bb).map_err(|e| io_err("read", b, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Timespec, Timestamps, utimensat};

    /// Both trees get `setup`, then `change` is applied to the upper one; the changes.
    fn changes_after(
        setup: impl Fn(&Path),
        change: impl Fn(&Path),
    ) -> (Vec<(ChangeKind, String)>, Vec<String>) {
        let t = tempfile::tempdir().unwrap();
        let (l, u) = (t.path().join("l"), t.path().join("u"));
        for d in [&l, &u] {
            fs::create_dir(d).unwrap();
            setup(d);
        }
        change(&u);
        let (mut got, mut kept) = (Vec::new(), Vec::new());
        changes_with_links(
            Some(&l),
            &u,
            &mut |c| {
                got.push((c.kind, c.path.to_string_lossy().into_owned()));
                Ok(())
            },
            &mut |p| {
                kept.push(p.to_string_lossy().into_owned());
                Ok(())
            },
        )
        .unwrap();
        (got, kept)
    }

    fn set_mtime(p: &Path, sec: i64, nsec: i64) {
        let ts = Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        utimensat(
            rustix::fs::CWD,
            p,
            &Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    fn file(root: &Path, name: &str, data: &[u8], nsec: i64) {
        let p = root.join(name);
        fs::write(&p, data).unwrap();
        set_mtime(&p, 1_700_000_000, nsec);
    }

    fn modified(names: &[&str]) -> Vec<(ChangeKind, String)> {
        names
            .iter()
            .map(|n| (ChangeKind::Modify, n.to_string()))
            .collect()
    }

    #[test]
    fn truncated_mtimes_compare_content_and_link_targets() {
        let (got, _) = changes_after(
            |r| {
                file(r, "same", b"abcd", 0);
                file(r, "differs", b"abcd", 0);
                file(r, "empty", b"", 0);
                std::os::unix::fs::symlink("aaaa", r.join("link")).unwrap();
                set_mtime(&r.join("link"), 1_700_000_000, 0);
                std::os::unix::fs::symlink("aaaa", r.join("samelink")).unwrap();
                set_mtime(&r.join("samelink"), 1_700_000_000, 0);
            },
            |u| {
                file(u, "same", b"abcd", 0);
                file(u, "differs", b"abce", 0);
                file(u, "empty", b"", 0);
                fs::remove_file(u.join("link")).unwrap();
                std::os::unix::fs::symlink("bbbb", u.join("link")).unwrap();
                set_mtime(&u.join("link"), 1_700_000_000, 0);
            },
        );
        assert_eq!(got, modified(&["differs", "link"]));
    }

    #[test]
    fn nanoseconds_decide_when_not_truncated() {
        let (got, _) = changes_after(
            |r| {
                file(r, "a", b"abcd", 5);
                file(r, "b", b"abcd", 5);
                file(r, "c", b"abcd", 0);
                file(r, "size", b"abcd", 0);
            },
            |u| {
                file(u, "a", b"wxyz", 5); // same size and mtime: trusted as unchanged
                file(u, "b", b"abcd", 6);
                file(u, "c", b"abcd", 7);
                file(u, "size", b"abcde", 0);
            },
        );
        assert_eq!(got, modified(&["b", "c", "size"]));
    }

    #[test]
    fn adds_deletes_nested_trees_and_kept_hardlinks() {
        let (got, kept) = changes_after(
            |r| {
                fs::create_dir_all(r.join("d/e")).unwrap();
                file(r, "d/e/f", b"f", 0);
                file(r, "h", b"h", 0);
                fs::hard_link(r.join("h"), r.join("h2")).unwrap();
                set_mtime(&r.join("d/e"), 1_700_000_000, 0);
                set_mtime(&r.join("d"), 1_700_000_000, 0);
            },
            |u| {
                fs::remove_dir_all(u.join("d/e")).unwrap();
                fs::create_dir_all(u.join("n/m")).unwrap();
                file(u, "n/m/x", b"x", 0);
                set_mtime(&u.join("d"), 1_700_000_000, 0);
            },
        );
        assert_eq!(
            got,
            vec![
                (ChangeKind::Delete, "d/e".into()),
                (ChangeKind::Add, "n".into()),
                (ChangeKind::Add, "n/m".into()),
                (ChangeKind::Add, "n/m/x".into()),
            ]
        );
        assert_eq!(kept, ["h", "h2"]);
    }

    #[test]
    fn capability_differences_are_changes() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("SKIP: setting security.capability needs root");
            return;
        }
        // v2 file capabilities: cap_net_raw / cap_net_bind_service, permitted + effective.
        let raw: &[u8] = &[
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let bind: &[u8] = &[
            1, 0, 0, 2, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let setcap = |p: &Path, v: &[u8]| {
            rustix::fs::lsetxattr(p, "security.capability", v, rustix::fs::XattrFlags::empty())
                .unwrap()
        };
        let (got, _) = changes_after(
            |r| {
                file(r, "trunc", b"abcd", 0); // compared through the opened fds
                file(r, "nanos", b"abcd", 9); // compared by path
                file(r, "same", b"abcd", 0);
                fs::create_dir(r.join("dir")).unwrap();
                setcap(&r.join("trunc"), raw);
                setcap(&r.join("nanos"), raw);
                setcap(&r.join("same"), raw);
                set_mtime(&r.join("trunc"), 1_700_000_000, 0);
                set_mtime(&r.join("nanos"), 1_700_000_000, 9);
                set_mtime(&r.join("same"), 1_700_000_000, 0);
            },
            |u| {
                setcap(&u.join("trunc"), bind);
                setcap(&u.join("nanos"), bind);
                setcap(&u.join("dir"), raw);
                set_mtime(&u.join("trunc"), 1_700_000_000, 0);
                set_mtime(&u.join("nanos"), 1_700_000_000, 9);
            },
        );
        assert_eq!(got, modified(&["dir", "nanos", "trunc"]));
    }
}
