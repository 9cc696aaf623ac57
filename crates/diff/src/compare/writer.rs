//! The deterministic layer tar writer (containerd's `archive.ChangeWriter`).
//!
//! Output rules: entries in change order; PAX records for long names, long link targets
//! and xattrs; no atime/ctime; mtimes truncated to seconds and clamped to
//! `SOURCE_DATE_EPOCH` when set; whiteouts are empty files at the Unix epoch; directory
//! names end in `/`; parents of a changed path are emitted (once) before it; files that
//! share an inode are written once and then as hardlinks; sockets are skipped.

use super::{Change, ChangeKind};
use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use strata_content::{Error, Result};
use tar::{EntryType, Header};

/// Options of the tar writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterOptions {
    /// Clamp mtimes to this Unix time (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// Writes [`Change`]s of an upper tree as a layer tar into `W`.
pub struct ChangeWriter<W: Write> {
    builder: tar::Builder<W>,
    upper: PathBuf,
    opts: WriterOptions,
    dirs: HashSet<PathBuf>,
    /// Inodes written in this layer → the first path written.
    inodes: HashMap<(u64, u64), PathBuf>,
    /// Inodes of unchanged multiply-linked files → their paths, re-emitted as links when
    /// a new link to the inode is written (containerd's `inodeRefs`).
    kept: HashMap<(u64, u64), Vec<PathBuf>>,
}

fn io_err(what: &str, p: &Path, e: io::Error) -> Error {
    Error::io(format!("{what} {}", p.display()), e)
}

/// xattrs written into layers: everything but `trusted.*`, `security.selinux` and the
/// overlayfs bookkeeping in `user.overlay.*`.
fn xattr_exported(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.")
        || name == b"security.selinux"
        || name.starts_with(b"user.overlay."))
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

impl<W: Write> ChangeWriter<W> {
    /// A writer for changes of the tree at `upper`.
    pub fn new(w: W, upper: &Path, opts: WriterOptions) -> Self {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Deterministic);
        ChangeWriter {
            builder,
            upper: upper.to_path_buf(),
            opts,
            dirs: HashSet::new(),
            inodes: HashMap::new(),
            kept: HashMap::new(),
        }
    }

    /// Writes the entries for one change.
    ///
    /// # Errors
    /// `Io` when the upper tree cannot be read or the output cannot be written;
    /// `FailedPrecondition` when a file changed size while it was being copied.
    pub fn handle(&mut self, c: Change) -> Result<()> {
        if let Some(parent) = c.path.parent() {
            self.include_parents(parent)?;
        }
        match c.kind {
            ChangeKind::Delete => {
                let base = c.path.file_name().map(|b| b.as_bytes()).unwrap_or_default();
                let mut name = c
                    .path
                    .parent()
                    .map(|p| p.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default();
                if !name.is_empty() {
                    name.push(b'/');
                }
                name.extend_from_slice(b".wh.");
                name.extend_from_slice(base);
                let mut h = Header::new_ustar();
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(0);
                self.write(h, &name, None, &[], io::empty())
            }
            ChangeKind::Add | ChangeKind::Modify => {
                let full = self.upper.join(&c.path);
                let md = fs::symlink_metadata(&full).map_err(|e| io_err("lstat", &full, e))?;
                if md.is_dir() && self.dirs.contains(&c.path) {
                    return Ok(());
                }
                self.entry(&c.path, &full, &md)
            }
        }
    }

    /// Notes an unchanged non-directory with several links (from
    /// [`changes_with_links`](super::walk::changes_with_links)). If its inode was already
    /// written in this layer, the path is re-linked to it now; otherwise it is re-linked
    /// (after its parents) right after the first new link to the inode is written.
    ///
    /// # Errors
    /// `Io` when the upper tree cannot be read or the output cannot be written.
    pub fn unchanged(&mut self, rel: &Path) -> Result<()> {
        let full = self.upper.join(rel);
        let md = fs::symlink_metadata(&full).map_err(|e| io_err("lstat", &full, e))?;
        let key = (md.dev(), md.ino());
        if self.inodes.contains_key(&key) {
            if let Some(parent) = rel.parent() {
                self.include_parents(parent)?;
            }
            return self.entry(rel, &full, &md);
        }
        self.kept.entry(key).or_default().push(rel.to_path_buf());
        Ok(())
    }

    fn include_parents(&mut self, parent: &Path) -> Result<()> {
        let mut todo = Vec::new();
        let mut p = parent;
        while !p.as_os_str().is_empty() && !self.dirs.contains(p) {
            todo.push(p.to_path_buf());
            p = p.parent().unwrap_or(Path::new(""));
        }
        for d in todo.into_iter().rev() {
            let full = self.upper.join(&d);
            if let Ok(md) = fs::symlink_metadata(&full)
                && md.is_dir()
            {
                self.entry(&d, &full, &md)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path, full: &Path, md: &Metadata) -> Result<()> {
        let ft = md.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let mut name = rel.as_os_str().as_bytes().to_vec();
        let mut h = Header::new_ustar();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        let mut mtime = md.mtime();
        if let Some(e) = self.opts.source_date_epoch {
            mtime = mtime.min(e);
        }
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        let xattrs = crate::fsutil::lxattrs(full.as_os_str())
            .map_err(|e| io_err("list xattrs of", full, e))?
            .into_iter()
            .filter(|(k, _)| xattr_exported(k))
            .collect::<Vec<_>>();
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            name.push(b'/');
            self.dirs.insert(rel.to_path_buf());
            return self.write(h, &name, None, &xattrs, io::empty());
        }
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.inodes.get(&key) {
                h.set_entry_type(EntryType::Link);
                let link = first.as_os_str().as_bytes().to_vec();
                return self.write(h, &name, Some(&link), &[], io::empty());
            }
            self.inodes.insert(key, rel.to_path_buf());
        }
        if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let t = fs::read_link(full).map_err(|e| io_err("readlink", full, e))?;
            let link = t.as_os_str().as_bytes().to_vec();
            self.write(h, &name, Some(&link), &xattrs, io::empty())?;
            return self.relink_kept(md);
        }
        if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(full).map_err(|e| io_err("open", full, e))?;
            let mut r = Counting {
                inner: f.take(md.len()),
                n: 0,
            };
            self.write(h, &name, None, &xattrs, &mut r)?;
            if r.n != md.len() {
                return Err(Error::failed_precondition(format!(
                    "{} changed size while writing the layer (short write: {} of {})",
                    full.display(),
                    r.n,
                    md.len()
                )));
            }
            return self.relink_kept(md);
        }
        let (et, dev) = if ft.is_char_device() {
            (EntryType::Char, true)
        } else if ft.is_block_device() {
            (EntryType::Block, true)
        } else {
            (EntryType::Fifo, false)
        };
        h.set_entry_type(et);
        if dev {
            let rdev = md.rdev();
            h.set_device_major(rustix::fs::major(rdev))
                .map_err(|e| io_err("device of", full, e))?;
            h.set_device_minor(rustix::fs::minor(rdev))
                .map_err(|e| io_err("device of", full, e))?;
        }
        self.write(h, &name, None, &xattrs, io::empty())?;
        self.relink_kept(md)
    }

    /// After the first entry of a multiply-linked inode, re-emits the unchanged paths that
    /// share it as links to that entry.
    fn relink_kept(&mut self, md: &Metadata) -> Result<()> {
        if md.nlink() <= 1 {
            return Ok(());
        }
        let Some(others) = self.kept.remove(&(md.dev(), md.ino())) else {
            return Ok(());
        };
        for o in others {
            if let Some(parent) = o.parent() {
                self.include_parents(parent)?;
            }
            let ofull = self.upper.join(&o);
            let omd = fs::symlink_metadata(&ofull).map_err(|e| io_err("lstat", &ofull, e))?;
            self.entry(&o, &ofull, &omd)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        mut h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl Read,
    ) -> Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if name.len() > 100 {
            pax.push(("path".into(), name.to_vec()));
        }
        if let Some(l) = link
            && l.len() > 100
        {
            pax.push(("linkpath".into(), l.to_vec()));
        }
        for (k, v) in xattrs {
            if let Ok(k) = std::str::from_utf8(k) {
                pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
            }
        }
        let werr = |e: io::Error| {
            Error::io(
                format!("write layer entry {}", String::from_utf8_lossy(name)),
                e,
            )
        };
        if !pax.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &pax {
                let rest = 3 + k.len() + v.len();
                let mut len = rest + 1;
                while len.to_string().len() + rest > len {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            let mut ph = Header::new_ustar();
            let base = name
                .rsplit(|b| *b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"x");
            let mut pname = b"PaxHeaders.0/".to_vec();
            pname.extend_from_slice(&base[..base.len().min(80)]);
            set_name(&mut ph, &pname, false);
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_mtime(0);
            ph.set_size(data.len() as u64);
            ph.set_cksum();
            self.builder.append(&ph, data.as_slice()).map_err(werr)?;
        }
        set_name(&mut h, name, false);
        if let Some(l) = link {
            set_name(&mut h, l, true);
        }
        h.set_cksum();
        self.builder.append(&h, data).map_err(werr)
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    ///
    /// # Errors
    /// `Io` if the final write fails.
    pub fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|e| Error::io("finish layer tar", e))
    }
}

/// Stores `v` (truncated to 100 bytes; the full value is in a PAX record) as the name or
/// link name of a ustar header.
fn set_name(h: &mut Header, v: &[u8], link: bool) {
    let u = h.as_ustar_mut().expect("ustar header");
    let field = if link { &mut u.linkname } else { &mut u.name };
    field.fill(0);
    let n = v.len().min(100);
    field[..n].copy_from_slice(&v[..n]);
}
