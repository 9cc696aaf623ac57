//! Path resolution beneath the apply root.
//!
//! Names from the archive are cleaned lexically first (`..` never climbs above the root).
//! Parent directories are then opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to the root fd: symlinks inside the root are followed but absolute targets and
//! `..` are clamped to the root (containerd's `fs.RootPath` semantics), and the kernel
//! guarantees the result is beneath the root even if the tree changes concurrently. The
//! final component is never followed: callers use `*at` calls with `AT_SYMLINK_NOFOLLOW` /
//! `O_NOFOLLOW` on `(parent_fd, name)`.
//!
//! Opened parents are cached by path. The cache is cleared whenever the applier removes a
//! directory or a symlink, since a cached fd may then name a directory that a later path
//! no longer resolves to.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

/// Maximum number of cached parent fds.
const CACHE_MAX: usize = 256;

/// Splits a tar name into cleaned components: empty and `.` parts are dropped and `..`
/// pops (never above the root). An empty result names the root itself.
pub fn clean(name: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Joins components with `/` into `buf` (cleared first).
pub fn join_into(buf: &mut Vec<u8>, comps: &[&[u8]]) {
    buf.clear();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            buf.push(b'/');
        }
        buf.extend_from_slice(c);
    }
}

/// Joins components with `/`.
pub fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    join_into(&mut v, comps);
    v
}

/// Called for each directory the resolver creates implicitly: `(new dir fd, path)`.
pub type OnCreate<'a> = dyn FnMut(&OwnedFd, &[u8]) -> io::Result<()> + 'a;

/// The apply root and its cache of opened parent directories.
pub struct Root {
    root: Rc<OwnedFd>,
    cache: HashMap<Vec<u8>, Rc<OwnedFd>>,
    key: Vec<u8>,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// `openat2` beneath `root` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, retrying EAGAIN.
pub fn open_in_root(root: &OwnedFd, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root.as_fd(),
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            Err(Errno::INTR) => {}
            r => return r.map_err(io::Error::from),
        }
    }
}

impl Root {
    /// Wraps an opened root directory.
    pub fn new(root: OwnedFd) -> Self {
        Root {
            root: Rc::new(root),
            cache: HashMap::new(),
            key: Vec::new(),
        }
    }

    /// The root directory fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.root
    }

    /// Drops every cached parent fd.
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Caches `fd` as the directory at `comps` (after creating it).
    pub fn remember(&mut self, comps: &[&[u8]], fd: OwnedFd) {
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(join(comps), Rc::new(fd));
    }

    /// Opens the directory at `comps` beneath the root (following symlinks, clamped).
    /// With `create`, missing directories are made (mode 0755, or as `on_create` decides)
    /// one component at a time; otherwise a missing directory gives `Ok(None)`.
    ///
    /// # Errors
    /// ENOTDIR when a component is not a directory; ELOOP from the kernel; EEXIST when a
    /// component to create is a dangling symlink.
    pub fn dir(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        on_create: &mut OnCreate<'_>,
    ) -> io::Result<Option<Rc<OwnedFd>>> {
        if comps.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        join_into(&mut self.key, comps);
        if let Some(fd) = self.cache.get(self.key.as_slice()) {
            return Ok(Some(fd.clone()));
        }
        match open_in_root(&self.root, &self.key, dir_flags()) {
            Ok(fd) => {
                let fd = Rc::new(fd);
                if self.cache.len() >= CACHE_MAX {
                    self.cache.clear();
                }
                self.cache.insert(self.key.clone(), fd.clone());
                Ok(Some(fd))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // The kernel walk fails on a missing component even when a later `..`
                // or a dangling symlink would lead elsewhere; containerd's RootPath is
                // lexical there. Emulate it, then open the result beneath the root again.
                let rp = root_path(&self.root, comps)?;
                let rcomps: Vec<&[u8]> = rp.iter().map(|c| c.as_slice()).collect();
                if rcomps.as_slice() != comps {
                    if rcomps.is_empty() {
                        return Ok(Some(self.root.clone()));
                    }
                    match open_in_root(&self.root, &join(&rcomps), dir_flags()) {
                        Ok(fd) => return Ok(Some(Rc::new(fd))),
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(e) => return Err(e),
                    }
                }
                if !create {
                    return Ok(None);
                }
                self.create_all(&rcomps, on_create).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    fn create_all(
        &mut self,
        comps: &[&[u8]],
        on_create: &mut OnCreate<'_>,
    ) -> io::Result<Rc<OwnedFd>> {
        let mut cur = self.root.clone();
        let mut key = Vec::new();
        for i in 0..comps.len() {
            join_into(&mut key, &comps[..=i]);
            let next = match open_in_root(&self.root, &key, dir_flags()) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match rustix::fs::mkdirat(cur.as_fd(), comps[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let fd = rustix::fs::openat(
                        cur.as_fd(),
                        comps[i],
                        dir_flags() | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| {
                        if e == Errno::LOOP {
                            io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!(
                                    "parent {} is a dangling symlink",
                                    String::from_utf8_lossy(&key)
                                ),
                            )
                        } else {
                            e.into()
                        }
                    })?;
                    on_create(&fd, &key)?;
                    fd
                }
                Err(e) => return Err(e),
            };
            cur = Rc::new(next);
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, cur.clone());
        Ok(cur)
    }
}

/// containerd's `fs.RootPath` in user space: walks `comps` from the root, following
/// symlinks (absolute targets restart at the root, `..` never leaves it, at most 255
/// links) and treating missing components lexically. Only used to compute a path that is
/// then opened with [`open_in_root`], so the kernel still enforces containment.
///
/// # Errors
/// ELOOP after 255 symlinks; I/O errors other than ENOENT/ENOTDIR.
pub fn root_path(root: &OwnedFd, comps: &[&[u8]]) -> io::Result<Vec<Vec<u8>>> {
    let mut queue: std::collections::VecDeque<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let parent: Vec<&[u8]> = out.iter().map(|c| c.as_slice()).collect();
        let target = match open_in_root(root, &join(&parent), dir_flags()) {
            Ok(pfd) => match rustix::fs::readlinkat(&pfd, c.as_slice(), Vec::new()) {
                Ok(t) => Some(t.into_bytes()),
                Err(Errno::INVAL) | Err(Errno::NOENT) | Err(Errno::NOTDIR) => None,
                Err(e) => return Err(e.into()),
            },
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => None,
            Err(e) => return Err(e),
        };
        match target {
            None => out.push(c),
            Some(t) => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                if t.starts_with(b"/") {
                    out.clear();
                }
                for (i, tc) in t.split(|b| *b == b'/').enumerate() {
                    queue.insert(i, tc.to_vec());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_clamps_and_drops() {
        let j = |s: &str| join(&clean(s.as_bytes()));
        assert_eq!(j("../../etc/passwd"), b"etc/passwd");
        assert_eq!(j("/a/./b//c/"), b"a/b/c");
        assert_eq!(j("dne/../.wh.etc"), b".wh.etc");
        assert_eq!(j("localetc/sub/.."), b"localetc");
        assert!(clean(b"..").is_empty());
        assert!(clean(b"").is_empty());
        assert!(clean(b"./").is_empty());
    }
}
