//! Small `*at` helpers shared by apply and compare (never following the final symlink).

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;

/// Removes `name` in `dir` recursively, never following symlinks. Missing is fine.
/// Returns whether the removed entry was a directory or a symlink.
///
/// # Errors
/// I/O errors other than ENOENT.
pub fn remove_all(dir: &OwnedFd, name: &[u8]) -> io::Result<bool> {
    let st = match rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft == FileType::Directory {
        let sub = rustix::fs::openat(
            dir.as_fd(),
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for child in list_dir(&sub)? {
            remove_all(&sub, &child)?;
        }
        drop(sub);
        match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    } else {
        match rustix::fs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(ft == FileType::Symlink)
    }
}

/// The names in a directory (without `.` and `..`), sorted bytewise.
///
/// # Errors
/// I/O errors from reading the directory.
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut d = rustix::fs::Dir::read_from(dir.as_fd())?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    out.sort();
    Ok(out)
}

/// The `/proc/self/fd/<dir>/<name>` path of an entry, for the xattr calls that have no
/// `*at` form (the `l*xattr` variants do not follow the final component). An empty `name`
/// names `dir` itself.
pub fn proc_path(dir: &OwnedFd, name: &[u8]) -> OsString {
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    OsString::from_vec(p)
}

/// All xattrs of a path, not following a final symlink: `(name, value)` sorted by name.
///
/// # Errors
/// I/O errors other than ENOTSUP (which gives an empty list).
pub fn lxattrs(path: &std::ffi::OsStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(
        |buf| rustix::fs::llistxattr(path, buf),
        |name, buf| rustix::fs::lgetxattr(path, name, buf),
    )
}

/// All xattrs of an open file: `(name, value)` sorted by name.
///
/// # Errors
/// I/O errors other than ENOTSUP (which gives an empty list).
pub fn fxattrs(fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(
        |buf| rustix::fs::flistxattr(fd, buf),
        |name, buf| rustix::fs::fgetxattr(fd, name, buf),
    )
}

/// Lists names with `list`, reads each with `get`, growing buffers on ERANGE.
fn read_xattrs(
    list: impl Fn(&mut [u8]) -> Result<usize, Errno>,
    get: impl Fn(&[u8], &mut [u8]) -> Result<usize, Errno>,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match list(&mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut val = vec![0u8; 256];
        loop {
            match get(name, &mut val[..]) {
                Ok(n) => {
                    val.truncate(n);
                    break;
                }
                Err(Errno::RANGE) => val.resize(val.len() * 4, 0),
                Err(Errno::NODATA) => {
                    val.clear();
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}
