//! Applying one tar entry: create the node relative to its resolved parent fd, then its
//! metadata (lchown before chmod, xattrs, times).

use super::meta::{Time, apply_xattrs, io_err, set_times_at, ts};
use super::resolve::{clean, join};
use super::{Applier, show};
use crate::fsutil;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::io::{self, Read, Write};
use std::rc::Rc;
use strata_content::{Error, Result};
use strata_snapshot::copy::set_owner_and_mode;
use tar::EntryType;

/// Metadata carried by one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Time,
    atime: Time,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: Option<Sparse>,
}

/// A PAX-format GNU sparse file (formats 0.1 and 1.0; the old GNU `S` type is expanded
/// by the tar crate itself).
#[derive(Default)]
struct Sparse {
    name: Option<Vec<u8>>,
    realsize: u64,
    major: u32,
    map: Vec<(u64, u64)>,
}

fn parse_map(v: &[u8]) -> Option<Vec<(u64, u64)>> {
    let nums: Vec<u64> = std::str::from_utf8(v)
        .ok()?
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    if !nums.len().is_multiple_of(2) {
        return None;
    }
    Some(nums.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// Reads the sparse map that starts the data of a format 1.0 sparse entry (decimal
/// numbers, one per line, padded to 512 bytes).
fn read_v1_map(r: &mut impl Read) -> io::Result<Vec<(u64, u64)>> {
    let mut consumed = 0usize;
    let mut next = |r: &mut dyn Read| -> io::Result<u64> {
        let mut v: u64 = 0;
        let mut digits = 0;
        loop {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)?;
            consumed += 1;
            match b[0] {
                b'\n' if digits > 0 => return Ok(v),
                c @ b'0'..=b'9' if digits < 20 => {
                    v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add((c - b'0') as u64))
                        .ok_or(io::ErrorKind::InvalidData)?;
                    digits += 1;
                }
                _ => return Err(io::ErrorKind::InvalidData.into()),
            }
        }
    };
    let n = next(r)?;
    if n > 1 << 20 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut map = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let off = next(r)?;
        let len = next(r)?;
        map.push((off, len));
    }
    let pad = (512 - consumed % 512) % 512;
    io::copy(&mut r.take(pad as u64), &mut io::sink())?;
    Ok(map)
}

/// Parses a PAX time (`1234.5678`, `-1.5`).
fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut ns: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        ns += (c - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    Some(if neg {
        if ns > 0 {
            (-sec - 1, 1_000_000_000 - ns)
        } else {
            (-sec, 0)
        }
    } else {
        (sec, ns)
    })
}

impl Applier<'_> {
    /// Resolves (and creates) the parent directory `comps`.
    ///
    /// In overlay mode a directory created here takes its metadata from the lowerdirs;
    /// when none has it, its path is remembered in `implied` (see
    /// [`ApplyStats::implied_dirs`](super::ApplyStats::implied_dirs)).
    pub(super) fn parent(&mut self, comps: &[&[u8]], create: bool) -> Result<Option<Rc<OwnedFd>>> {
        let lowers = &self.lowers;
        let implied = &mut self.implied;
        let overlay = self.opts.overlay.is_some();
        self.root
            .dir(comps, create, &mut |fd, path| {
                if !super::lower::copy_parent_info(lowers, fd, path)? && overlay {
                    implied.push(path.to_vec());
                }
                Ok(())
            })
            .map_err(|e| io_err("resolve parent", &join(comps), e))
    }

    /// Removes `name` in `dir` and drops the parent cache if a dir or symlink went away.
    pub(super) fn remove(&mut self, dir: &OwnedFd, name: &[u8], path: &[u8]) -> Result<()> {
        let structural = fsutil::remove_all(dir, name).map_err(|e| io_err("remove", path, e))?;
        if structural {
            self.root.invalidate();
        }
        Ok(())
    }

    /// Applies one entry.
    pub(super) fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if matches!(etype, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let mut path = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(|c| c.into_owned());
        let meta = self.meta(entry, &path)?;
        if let Some(Sparse { name: Some(n), .. }) = &meta.sparse {
            path = n.clone();
        }
        let comps = clean(&path);
        let Some((base, parent)) = comps.split_last() else {
            return Ok(()); // resolves to the root itself: skipped, like containerd
        };
        let base: &[u8] = base;
        if let Some(wh) = base.strip_prefix(b".wh.") {
            return self.whiteout(parent, wh, &path);
        }
        let full = join(&comps);
        let pfd = self.parent(parent, true)?.expect("created");
        let is_dir = matches!(etype, EntryType::Directory);
        match etype {
            EntryType::Directory => self.dir(&pfd, base, &comps, &full, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&pfd, base, &full, &meta, entry)?
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| {
                    Error::invalid_argument(format!("symlink {} without target", show(&path)))
                })?;
                self.create_retry(&pfd, base, &full, |d| {
                    rustix::fs::symlinkat(target.as_slice(), d.as_fd(), base)
                })?;
                self.special_meta(&pfd, base, &full, &meta, true)?;
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| {
                    Error::invalid_argument(format!("hardlink {} without target", show(&path)))
                })?;
                self.hardlink(&pfd, base, &full, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match etype {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                self.create_retry(&pfd, base, &full, |d| {
                    rustix::fs::mknodat(d.as_fd(), base, ft, Mode::from_raw_mode(0o600), dev)
                })?;
                self.special_meta(&pfd, base, &full, &meta, false)?;
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "unhandled tar entry type {other:?} for {}",
                    show(&path)
                )));
            }
        }
        if !is_dir || !self.unpacked.contains(&full) {
            self.unpacked.insert(full);
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &[u8]) -> Result<Meta> {
        let bad = |what: &str, e: io::Error| {
            Error::invalid_argument(format!("invalid archive: {what} of {}: {e}", show(path)))
        };
        let h = entry.header();
        // As Go's archive/tar (the reference for layers in the wild): a numeric field
        // that is all NULs or spaces reads as 0.
        let blank = |f: &[u8]| f.iter().all(|&b| b == 0 || b == b' ');
        let num = |r: io::Result<u64>, f: &[u8], what: &str| match r {
            Err(_) if blank(f) => Ok(0),
            r => r.map_err(|e| bad(what, e)),
        };
        let old = h.as_old();
        let mode = num(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
        let uid = num(h.uid(), &old.uid, "uid")?;
        let gid = num(h.gid(), &old.gid, "gid")?;
        let mtime_s = num(h.mtime(), &old.mtime, "mtime")?;
        let mut m = Meta {
            mode,
            uid: u32::try_from(uid).map_err(|_| bad("uid", io::ErrorKind::InvalidData.into()))?,
            gid: u32::try_from(gid).map_err(|_| bad("gid", io::ErrorKind::InvalidData.into()))?,
            mtime: (mtime_s.min(i64::MAX as u64) as i64, 0),
            atime: (0, 0),
            xattrs: Vec::new(),
            sparse: None,
        };
        let mut sp = Sparse::default();
        let mut is_sparse = false;
        let mut atime = None;
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("pax record", e))?;
                let k = ext.key_bytes();
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    m.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if k == b"uid" || k == b"gid" {
                    // PAX ids override the header (ids too large for its octal field).
                    let v = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.trim().parse::<u32>().ok())
                        .ok_or_else(|| bad("pax uid/gid", io::ErrorKind::InvalidData.into()))?;
                    if k == b"uid" {
                        m.uid = v;
                    } else {
                        m.gid = v;
                    }
                } else if k == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        m.mtime = t;
                    }
                } else if k == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                } else if let Some(sk) = k.strip_prefix(b"GNU.sparse.") {
                    let v = ext.value_bytes();
                    let num = || -> Result<u64> {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .ok_or_else(|| bad("sparse header", io::ErrorKind::InvalidData.into()))
                    };
                    match sk {
                        b"major" => {
                            is_sparse = true;
                            sp.major = num()? as u32;
                        }
                        b"name" => {
                            is_sparse = true;
                            sp.name = Some(v.to_vec());
                        }
                        b"realsize" | b"size" => {
                            is_sparse = true;
                            sp.realsize = num()?;
                        }
                        b"map" => {
                            is_sparse = true;
                            sp.map = parse_map(v).ok_or_else(|| {
                                bad("sparse map", io::ErrorKind::InvalidData.into())
                            })?;
                        }
                        _ => {}
                    }
                }
            }
        }
        if is_sparse {
            m.sparse = Some(sp);
        }
        m.atime = match atime {
            Some(a) if a > m.mtime => a,
            _ => m.mtime,
        };
        Ok(m)
    }

    /// Runs `create` and, on EEXIST, removes what is there and retries once.
    fn create_retry(
        &mut self,
        pfd: &OwnedFd,
        base: &[u8],
        full: &[u8],
        create: impl Fn(&OwnedFd) -> rustix::io::Result<()>,
    ) -> Result<()> {
        match create(pfd) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.remove(pfd, base, full)?;
                create(pfd).map_err(|e| io_err("create", full, e))
            }
            Err(e) => Err(io_err("create", full, e)),
        }
    }

    fn dir(
        &mut self,
        pfd: &OwnedFd,
        base: &[u8],
        comps: &[&[u8]],
        full: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        match rustix::fs::mkdirat(pfd.as_fd(), base, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(pfd.as_fd(), base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("stat", full, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.remove(pfd, base, full)?;
                    rustix::fs::mkdirat(pfd.as_fd(), base, Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err("mkdir", full, e))?;
                }
            }
            Err(e) => return Err(io_err("mkdir", full, e)),
        }
        let dfd = rustix::fs::openat(
            pfd.as_fd(),
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open dir", full, e))?;
        self.fd_meta(&dfd, full, meta, false)?;
        self.root.remember(comps, dfd);
        self.dir_times.push((full.to_vec(), meta.atime, meta.mtime));
        Ok(())
    }

    fn fd_meta(&self, fd: &OwnedFd, full: &[u8], meta: &Meta, times: bool) -> Result<()> {
        let owner = (!self.opts.no_same_owner).then_some((meta.uid, meta.gid));
        set_owner_and_mode(fd.as_fd(), owner, meta.mode)
            .map_err(|e| io_err("chown/chmod", full, e))?;
        apply_xattrs(&meta.xattrs, false, full, |k, v| {
            rustix::fs::fsetxattr(fd, k, v, XattrFlags::empty())
        })?;
        if times {
            let t = Timestamps {
                last_access: ts(meta.atime),
                last_modification: ts(meta.mtime),
            };
            rustix::fs::futimens(fd, &t).map_err(|e| io_err("set times of", full, e))?;
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        pfd: &OwnedFd,
        base: &[u8],
        full: &[u8],
        meta: &Meta,
        data: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Its permission bits at once (no setuid/setgid/sticky before the owner is set):
        // usually no chmod is needed after (see `set_owner_and_mode`).
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let fd = match rustix::fs::openat(pfd.as_fd(), base, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.remove(pfd, base, full)?;
                rustix::fs::openat(pfd.as_fd(), base, flags, mode)
                    .map_err(|e| io_err("create", full, e))?
            }
            Err(e) => return Err(io_err("create", full, e)),
        };
        let mut f = std::fs::File::from(fd);
        if let Some(sp) = &meta.sparse {
            self.sparse_data(&mut f, sp, full, data)?;
            let fd = OwnedFd::from(f);
            return self.fd_meta(&fd, full, meta, true);
        }
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::invalid_argument(format!(
                        "read data of {}: {e}",
                        show(full)
                    )));
                }
            };
            f.write_all(&self.buf[..n])
                .map_err(|e| io_err("write", full, e))?;
            copied += n as u64;
        }
        let _ = copied;
        let fd = OwnedFd::from(f);
        self.fd_meta(&fd, full, meta, true)
    }

    /// Writes the data of a PAX sparse entry: each map segment at its offset, then the
    /// real size.
    fn sparse_data<R: Read>(
        &mut self,
        f: &mut std::fs::File,
        sp: &Sparse,
        full: &[u8],
        data: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let bad = |e: io::Error| {
            Error::invalid_argument(format!(
                "invalid archive: sparse data of {}: {e}",
                show(full)
            ))
        };
        let map = if sp.major >= 1 {
            read_v1_map(data).map_err(bad)?
        } else {
            sp.map.clone()
        };
        for (off, len) in map {
            if off.checked_add(len).is_none_or(|end| end > sp.realsize) {
                return Err(bad(io::ErrorKind::InvalidData.into()));
            }
            f.seek(SeekFrom::Start(off))
                .map_err(|e| io_err("seek", full, e))?;
            let n =
                io::copy(&mut (&mut *data).take(len), f).map_err(|e| io_err("write", full, e))?;
            if n != len {
                return Err(bad(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        f.set_len(sp.realsize)
            .map_err(|e| io_err("truncate", full, e))
    }

    /// Metadata for symlinks and special files, by `(parent, name)` without following.
    fn special_meta(
        &self,
        pfd: &OwnedFd,
        base: &[u8],
        full: &[u8],
        meta: &Meta,
        symlink: bool,
    ) -> Result<()> {
        if !self.opts.no_same_owner {
            rustix::fs::chownat(
                pfd.as_fd(),
                base,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err("lchown", full, e))?;
        }
        if !symlink {
            // A node we just created; open it O_PATH|O_NOFOLLOW and chmod through the fd
            // path so a swapped-in symlink is never followed.
            let o = rustix::fs::openat(
                pfd.as_fd(),
                base,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("open", full, e))?;
            let st = rustix::fs::fstat(&o).map_err(|e| io_err("stat", full, e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Err(io_err("chmod", full, Errno::LOOP));
            }
            rustix::fs::chmodat(
                rustix::fs::CWD,
                fsutil::proc_path(&o, b"").as_os_str(),
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| io_err("chmod", full, e))?;
        }
        let p = fsutil::proc_path(pfd, base);
        apply_xattrs(&meta.xattrs, true, full, |k, v| {
            rustix::fs::lsetxattr(p.as_os_str(), k, v, XattrFlags::empty())
        })?;
        set_times_at(pfd, base, meta.atime, meta.mtime).map_err(|e| io_err("set times of", full, e))
    }

    fn hardlink(&mut self, pfd: &OwnedFd, base: &[u8], full: &[u8], target: &[u8]) -> Result<()> {
        let tcomps = clean(target);
        let Some((tbase, tparent)) = tcomps.split_last() else {
            return Err(Error::invalid_argument(format!(
                "invalid archive: hardlink {} to the root",
                show(full)
            )));
        };
        let tfull = join(&tcomps);
        if tfull == full {
            return Ok(());
        }
        if !self.lowers.is_empty()
            && self.parent(tparent, false)?.is_none_or(|d| {
                rustix::fs::statat(d.as_fd(), *tbase, AtFlags::SYMLINK_NOFOLLOW).is_err()
            })
        {
            // A hardlink to a file of a lower layer: copy it up first, as overlayfs would.
            self.copy_up(&tcomps)?;
        }
        let tpfd = self.parent(tparent, false)?.ok_or_else(|| {
            Error::invalid_argument(format!(
                "hardlink {} to missing {}",
                show(full),
                show(target)
            ))
        })?;
        let tbase: &[u8] = tbase;
        self.create_retry(pfd, base, full, |d| {
            rustix::fs::linkat(tpfd.as_fd(), tbase, d.as_fd(), base, AtFlags::empty())
        })
        .map_err(|e| {
            if e.is_not_found() {
                Error::invalid_argument(format!(
                    "hardlink {} to missing {}",
                    show(full),
                    show(target)
                ))
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1234"), Some((1234, 0)));
        assert_eq!(parse_pax_time(b"1234.5"), Some((1234, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.000000001999"), Some((1, 1)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
