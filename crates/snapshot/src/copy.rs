//! A fast, faithful directory tree copy (continuity's `fs.CopyDir`), used by the native
//! snapshotter to prepare a snapshot on a parent.
//!
//! Preserves file type, mode (incl. setuid/setgid/sticky), uid/gid, all xattrs (incl.
//! `trusted.*`, `security.capability`, POSIX ACLs), hardlinks (as hardlinks), symlinks,
//! device nodes, fifos, sockets, sparse holes and nanosecond atimes/mtimes (directories
//! get theirs after their children). File data is reflinked (`FICLONE`) where the
//! filesystem supports it, otherwise copied in the kernel with `copy_file_range`.
//!
//! Directories are processed by a small pool of threads (one per core, at most 4; env
//! `STRATA_COPY_THREADS` overrides) working on dir file descriptors with `*at` calls.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, SeekFrom, Stat, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use strata_content::{Error, Result};

/// Copies the contents and metadata of directory `src` into the existing, empty
/// directory `dst`.
///
/// # Errors
/// `Io` naming the path that failed (the copy stops at the first error; `dst` is then
/// partial and should be removed by the caller).
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    let threads = std::env::var("STRATA_COPY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        })
        .max(1);
    Copier::new(src, dst)?.run(threads)
}

type Rel = PathBuf;

struct Queue {
    jobs: Vec<Rel>,
    pending: usize,
}

struct Copier {
    src_root: OwnedFd,
    dst_root: OwnedFd,
    src: PathBuf,
    dst: PathBuf,
    queue: Mutex<Queue>,
    cv: Condvar,
    /// (dev, ino) of multiply-linked non-directories → the first copy's relative path.
    links: Mutex<HashMap<(u64, u64), Rel>>,
    /// Links to make after all files exist: (new rel path, existing rel path).
    deferred_links: Mutex<Vec<(Rel, Rel)>>,
    /// Directory times to set last: (rel path, times).
    dir_times: Mutex<Vec<(Rel, Timestamps)>>,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    no_reflink: AtomicBool,
}

fn io_err(what: impl FnOnce() -> String, e: Errno) -> Error {
    Error::io(what(), std::io::Error::from(e))
}

/// The atime and mtime of `st`, to set with `utimensat`/`futimens`.
pub(crate) fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Opens directory `rel` (`""`: `dirfd` itself) below `dirfd` without following a
/// final symlink.
pub(crate) fn open_dir(dirfd: BorrowedFd<'_>, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
    let p: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat(
        dirfd,
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Where an xattr operation applies: an open fd or a path (no-follow).
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a Path),
}

fn list_xattrs(t: &Target<'_>) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        let r = match t {
            Target::Fd(fd) => rustix::fs::flistxattr(fd, &mut buf[..]),
            Target::Path(p) => rustix::fs::llistxattr(*p, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {
                let empty: &mut [u8] = &mut [];
                let n: usize = match t {
                    Target::Fd(fd) => rustix::fs::flistxattr(fd, empty)?,
                    Target::Path(p) => rustix::fs::llistxattr(*p, empty)?,
                };
                buf = vec![0u8; n.max(buf.len() * 2)];
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
}

fn get_xattr(t: &Target<'_>, name: &CStr) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        let r = match t {
            Target::Fd(fd) => rustix::fs::fgetxattr(fd, name, &mut buf[..]),
            Target::Path(p) => rustix::fs::lgetxattr(*p, name, &mut buf[..]),
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => buf = vec![0u8; buf.len() * 4],
            Err(e) => return Err(e),
        }
    }
}

/// Copies every xattr of `from` onto `to`.
fn copy_xattrs(from: &Target<'_>, to: &Target<'_>) -> std::result::Result<(), Errno> {
    copy_xattrs_but(from, to, None)
}

/// Gives directory `dst` the owner and mode of `st` (directory `src`'s `fstat`) and every
/// xattr of `src` but `skip`.
pub(crate) fn copy_dir_attrs(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    st: &Stat,
    skip: Option<&CStr>,
) -> std::result::Result<(), Errno> {
    set_owner_and_mode(dst, Some((st.st_uid, st.st_gid)), st.st_mode)?;
    copy_xattrs_but(&Target::Fd(src), &Target::Fd(dst), skip)
}

fn copy_xattrs_but(
    from: &Target<'_>,
    to: &Target<'_>,
    skip: Option<&CStr>,
) -> std::result::Result<(), Errno> {
    let names = list_xattrs(from)?;
    if names.is_empty() {
        return Ok(());
    }
    let skip = skip.map(CStr::to_bytes);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if Some(name) == skip {
            continue;
        }
        let name = CString::new(name).map_err(|_| Errno::INVAL)?;
        let value = match get_xattr(from, &name) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue, // removed meanwhile
            Err(e) => return Err(e),
        };
        match to {
            Target::Fd(fd) => rustix::fs::fsetxattr(fd, &name, &value, XattrFlags::empty())?,
            Target::Path(p) => rustix::fs::lsetxattr(*p, &name, &value, XattrFlags::empty())?,
        }
    }
    Ok(())
}

fn uid_gid(st: &Stat) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(st.st_uid as _)),
        Some(rustix::fs::Gid::from_raw(st.st_gid as _)),
    )
}

/// Gives the file or directory just created as `fd` the owner `owner` (`(uid, gid)`; `None`: keep
/// it) and the permission bits `mode & 0o7777`, calling `fchown`/`fchmod` only when one
/// `fstat` shows them needed. Most entries of an image are created with
/// their final owner (root) and mode (their create mode under a usual umask); on ext4
/// each skipped call is a journalled inode update saved. Owner first: a `chown` clears
/// setuid/setgid, so the mode is set again after one.
///
/// # Errors
/// The failing call's errno.
pub fn set_owner_and_mode(
    fd: BorrowedFd<'_>,
    owner: Option<(u32, u32)>,
    mode: u32,
) -> std::result::Result<(), Errno> {
    let st = rustix::fs::fstat(fd)?;
    let chown = owner.is_some_and(|(u, g)| st.st_uid != u || st.st_gid != g);
    if let (true, Some((u, g))) = (chown, owner) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
        )?;
    }
    if chown || st.st_mode & 0o7777 != mode & 0o7777 {
        rustix::fs::fchmod(fd, Mode::from_raw_mode((mode & 0o7777) as _))?;
    }
    Ok(())
}

fn perm(st: &Stat) -> Mode {
    Mode::from_raw_mode(st.st_mode as _) & Mode::from_bits_retain(0o7777)
}

impl Copier {
    fn new(src: &Path, dst: &Path) -> Result<Self> {
        let open = |p: &Path| {
            rustix::fs::open(
                p,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(|| format!("open directory {}", p.display()), e))
        };
        Ok(Copier {
            src_root: open(src)?,
            dst_root: open(dst)?,
            src: src.to_owned(),
            dst: dst.to_owned(),
            queue: Mutex::new(Queue {
                jobs: vec![PathBuf::new()],
                pending: 1,
            }),
            cv: Condvar::new(),
            links: Mutex::new(HashMap::new()),
            deferred_links: Mutex::new(Vec::new()),
            dir_times: Mutex::new(Vec::new()),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            no_reflink: AtomicBool::new(false),
        })
    }

    fn run(self, threads: usize) -> Result<()> {
        // The root's own metadata.
        let st = rustix::fs::fstat(&self.src_root)
            .map_err(|e| io_err(|| format!("stat {}", self.src.display()), e))?;
        self.dir_meta(
            self.src_root.as_fd(),
            self.dst_root.as_fd(),
            &st,
            Path::new(""),
        )?;
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(|| self.worker());
            }
            self.worker();
        });
        if let Some(e) = self.error.lock().unwrap().take() {
            return Err(e);
        }
        for (new, existing) in self.deferred_links.lock().unwrap().iter() {
            rustix::fs::linkat(
                &self.dst_root,
                existing,
                &self.dst_root,
                new,
                AtFlags::empty(),
            )
            .map_err(|e| io_err(|| format!("hardlink {}", self.dst.join(new).display()), e))?;
        }
        let mut times = std::mem::take(&mut *self.dir_times.lock().unwrap());
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, t) in &times {
            let p: &Path = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            rustix::fs::utimensat(&self.dst_root, p, t, AtFlags::SYMLINK_NOFOLLOW).map_err(
                |e| {
                    io_err(
                        || format!("set times of {}", self.dst.join(rel).display()),
                        e,
                    )
                },
            )?;
        }
        Ok(())
    }

    fn worker(&self) {
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap();
                loop {
                    if let Some(j) = q.jobs.pop() {
                        break Some(j);
                    }
                    if q.pending == 0 {
                        break None;
                    }
                    q = self.cv.wait(q).unwrap();
                }
            };
            let Some(rel) = job else { return };
            if !self.failed.load(Ordering::Relaxed)
                && let Err(e) = self.copy_dir_entries(&rel)
            {
                self.failed.store(true, Ordering::Relaxed);
                self.error.lock().unwrap().get_or_insert(e);
            }
            let mut q = self.queue.lock().unwrap();
            q.pending -= 1;
            if q.pending == 0 {
                self.cv.notify_all();
            }
        }
    }

    fn push(&self, rel: Rel) {
        let mut q = self.queue.lock().unwrap();
        q.jobs.push(rel);
        q.pending += 1;
        self.cv.notify_one();
    }

    /// chown, chmod, xattrs of a directory; its times are set at the very end.
    fn dir_meta(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &Stat,
        rel: &Path,
    ) -> Result<()> {
        let what = || format!("copy metadata to {}", self.dst.join(rel).display());
        copy_dir_attrs(src, dst, st, None).map_err(|e| io_err(what, e))?;
        self.dir_times
            .lock()
            .unwrap()
            .push((rel.to_owned(), times_of(st)));
        Ok(())
    }

    fn copy_dir_entries(&self, rel: &Path) -> Result<()> {
        let src_dir = open_dir(self.src_root.as_fd(), rel)
            .map_err(|e| io_err(|| format!("open {}", self.src.join(rel).display()), e))?;
        let dst_dir = open_dir(self.dst_root.as_fd(), rel)
            .map_err(|e| io_err(|| format!("open {}", self.dst.join(rel).display()), e))?;
        let dir = Dir::read_from(&src_dir)
            .map_err(|e| io_err(|| format!("read {}", self.src.join(rel).display()), e))?;
        for ent in dir {
            let ent =
                ent.map_err(|e| io_err(|| format!("read {}", self.src.join(rel).display()), e))?;
            let name = ent.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let child_rel = rel.join(OsStr::from_bytes(bytes));
            self.copy_entry(src_dir.as_fd(), dst_dir.as_fd(), name, &child_rel)?;
            if self.failed.load(Ordering::Relaxed) {
                break;
            }
        }
        Ok(())
    }

    fn copy_entry(
        &self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> Result<()> {
        let src_path = || self.src.join(rel).display().to_string();
        let dst_path = || self.dst.join(rel).display().to_string();
        let st = rustix::fs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(|| format!("stat {}", src_path()), e))?;
        let ft = FileType::from_raw_mode(st.st_mode as _);
        if ft == FileType::Directory {
            rustix::fs::mkdirat(ddir, name, Mode::from_bits_retain(0o700))
                .map_err(|e| io_err(|| format!("mkdir {}", dst_path()), e))?;
            let s = rustix::fs::openat(
                sdir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(|| format!("open {}", src_path()), e))?;
            let d = rustix::fs::openat(
                ddir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(|| format!("open {}", dst_path()), e))?;
            self.dir_meta(s.as_fd(), d.as_fd(), &st, rel)?;
            self.push(rel.to_owned());
            return Ok(());
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev as u64, st.st_ino as u64);
            let mut links = self.links.lock().unwrap();
            if let Some(first) = links.get(&key) {
                self.deferred_links
                    .lock()
                    .unwrap()
                    .push((rel.to_owned(), first.clone()));
                return Ok(());
            }
            links.insert(key, rel.to_owned());
        }
        match ft {
            FileType::RegularFile => self.copy_file(sdir, ddir, name, &st, rel),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(sdir, name, Vec::new())
                    .map_err(|e| io_err(|| format!("readlink {}", src_path()), e))?;
                rustix::fs::symlinkat(target.as_c_str(), ddir, name)
                    .map_err(|e| io_err(|| format!("symlink {}", dst_path()), e))?;
                self.special_meta(sdir, ddir, name, &st, rel, false)
            }
            _ => {
                rustix::fs::mknodat(ddir, name, ft, perm(&st), st.st_rdev as _)
                    .map_err(|e| io_err(|| format!("mknod {}", dst_path()), e))?;
                self.special_meta(sdir, ddir, name, &st, rel, true)
            }
        }
    }

    /// Metadata of symlinks and special files (no fd: `*at` calls and path xattrs).
    fn special_meta(
        &self,
        _sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
        chmod: bool,
    ) -> Result<()> {
        let what = || format!("copy metadata to {}", self.dst.join(rel).display());
        let (u, g) = uid_gid(st);
        rustix::fs::chownat(ddir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(what, e))?;
        if chmod {
            rustix::fs::chmodat(ddir, name, perm(st), AtFlags::empty())
                .map_err(|e| io_err(what, e))?;
        }
        let (sp, dp) = (self.src.join(rel), self.dst.join(rel));
        copy_xattrs(&Target::Path(&sp), &Target::Path(&dp)).map_err(|e| io_err(what, e))?;
        rustix::fs::utimensat(ddir, name, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(what, e))
    }

    fn copy_file(
        &self,
        sdir: BorrowedFd<'_>,
        ddir: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
    ) -> Result<()> {
        let src_path = || self.src.join(rel).display().to_string();
        let dst_path = || self.dst.join(rel).display().to_string();
        let s = rustix::fs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME,
            Mode::empty(),
        )
        .or_else(|e| {
            if e == Errno::PERM {
                rustix::fs::openat(
                    sdir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            } else {
                Err(e)
            }
        })
        .map_err(|e| io_err(|| format!("open {}", src_path()), e))?;
        // Created with its permission bits (no setuid/setgid/sticky before the owner
        // is right), so usually no chmod is needed after.
        let d = rustix::fs::openat(
            ddir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_bits_retain(st.st_mode & 0o777),
        )
        .map_err(|e| io_err(|| format!("create {}", dst_path()), e))?;
        let size = st.st_size as u64;
        if size > 0 {
            self.copy_data(s.as_fd(), d.as_fd(), st)
                .map_err(|e| io_err(|| format!("copy {} to {}", src_path(), dst_path()), e))?;
        }
        let what = || format!("copy metadata to {}", dst_path());
        set_owner_and_mode(d.as_fd(), Some((st.st_uid, st.st_gid)), st.st_mode)
            .map_err(|e| io_err(what, e))?;
        copy_xattrs(&Target::Fd(s.as_fd()), &Target::Fd(d.as_fd())).map_err(|e| io_err(what, e))?;
        rustix::fs::futimens(&d, &times_of(st)).map_err(|e| io_err(what, e))
    }

    fn copy_data(
        &self,
        s: BorrowedFd<'_>,
        d: BorrowedFd<'_>,
        st: &Stat,
    ) -> std::result::Result<(), Errno> {
        let size = st.st_size as u64;
        if !self.no_reflink.load(Ordering::Relaxed) {
            match rustix::fs::ioctl_ficlone(d, s) {
                Ok(()) => return Ok(()),
                Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::PERM) => {
                    self.no_reflink.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let sparse = (st.st_blocks as u64) * 512 < size;
        if !sparse {
            return copy_range(s, d, 0, size);
        }
        // Copy only the data segments, leaving holes; the length is set first.
        rustix::fs::ftruncate(d, size)?;
        let mut off = 0u64;
        while off < size {
            let start = match rustix::fs::seek(s, SeekFrom::Data(off)) {
                Ok(p) => p,
                Err(Errno::NXIO) => break, // only a hole remains
                Err(e) => return Err(e),
            };
            let end = rustix::fs::seek(s, SeekFrom::Hole(start))?.min(size);
            copy_range(s, d, start, end)?;
            off = end;
        }
        Ok(())
    }
}

/// Copies bytes `[from, to)` of `s` to the same offsets of `d`: `copy_file_range`, falling
/// back to `pread`/`pwrite` where the kernel refuses.
fn copy_range(
    s: BorrowedFd<'_>,
    d: BorrowedFd<'_>,
    from: u64,
    to: u64,
) -> std::result::Result<(), Errno> {
    let (mut so, mut dof) = (from, from);
    while so < to {
        let want = (to - so).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(s, Some(&mut so), d, Some(&mut dof), want) {
            Ok(0) => return Ok(()), // source shrank
            Ok(_) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_rw(s, d, so, to);
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn copy_rw(
    s: BorrowedFd<'_>,
    d: BorrowedFd<'_>,
    mut off: u64,
    to: u64,
) -> std::result::Result<(), Errno> {
    let mut buf = vec![0u8; 1 << 20];
    while off < to {
        let n = ((to - off) as usize).min(buf.len());
        let r = rustix::io::pread(s, &mut buf[..n], off)?;
        if r == 0 {
            break;
        }
        let mut w = 0;
        while w < r {
            w += rustix::io::pwrite(d, &buf[w..r], off + w as u64)?;
        }
        off += r as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
