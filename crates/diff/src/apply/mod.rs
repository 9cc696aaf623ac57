//! The synchronous streaming layer applier.
//!
//! [`apply_layer`] decompresses a layer on one thread (hashing the uncompressed bytes into
//! the DiffID as they pass) and parses and applies the tar entries on the calling thread.
//! Every filesystem operation is relative to a directory fd resolved beneath the root
//! (see [`resolve`]); the tar crate is used as a parser only. Whiteout names are in
//! [`whiteout`].

mod entry;
mod lower;
mod meta;
pub mod resolve;
pub mod whiteout;

use crate::compression::{self, Compression};
use crate::pipeline;
use resolve::Root;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_content::{Digest, Error, Result};

/// A progress callback: called with the number of uncompressed bytes read so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How to apply a layer.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    /// Apply into an overlayfs upperdir: whiteouts become 0:0 char devices, opaque markers
    /// become `trusted.overlay.opaque=y`.
    pub overlay: Option<OverlayOptions>,
    /// Do not chown entries to the archive's uid/gid.
    pub no_same_owner: bool,
    /// Called as the uncompressed stream is read.
    pub progress: Option<Progress>,
    /// `syncfs` the target filesystem after applying.
    pub sync_fs: bool,
}

impl std::fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("overlay", &self.overlay)
            .field("no_same_owner", &self.no_same_owner)
            .field("sync_fs", &self.sync_fs)
            .finish()
    }
}

/// Overlay upperdir mode settings.
#[derive(Debug, Clone, Default)]
pub struct OverlayOptions {
    /// The lowerdirs, top first: implied parent directories copy their owner, mode, times
    /// and non-`trusted.*` xattrs from the first lowerdir that has them (containerd's
    /// `WithParents`).
    pub parents: Vec<PathBuf>,
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed stream, including bytes after the tar end (the DiffID).
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Tar entries processed (including whiteouts).
    pub entries: u64,
    /// Overlay mode only: directories (relative to the root) that the layer needed but
    /// did not contain, and that no lowerdir had either, so they were created with
    /// default metadata. A layer applied without its lowerdirs (to apply layers in
    /// parallel) passes these to [`inherit_dirs`] once its lowerdirs exist.
    pub implied_dirs: Vec<PathBuf>,
    /// Overlay mode only: the whiteouts made (0:0 character devices, relative to the
    /// root), for [`prune_whiteouts`] once the lowerdirs are known.
    pub whiteouts: Vec<PathBuf>,
}

/// Applies a layer stream to the directory `root`.
///
/// `compression` selects the decoder ([`Compression::Detect`] sniffs the magic bytes).
/// The DiffID covers every uncompressed byte: the reader is drained past the tar's
/// end-of-archive marker.
///
/// # Errors
/// - `InvalidArgument` for a malformed archive (bad headers, whiteouts of `.`/`..`,
///   unknown entry types, a hardlink to a missing target, corrupt compression).
/// - `Io` for filesystem failures, naming the entry.
pub fn apply_layer<R: Read + Send>(
    reader: R,
    compression: Compression,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open apply root {}", root.display()), e.into()))?;
    let lowers = match &opts.overlay {
        Some(o) => o
            .parents
            .iter()
            .map(|p| {
                rustix::fs::open(
                    p,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io(format!("open lowerdir {}", p.display()), e.into()))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let progress = opts.progress.clone();
    std::thread::scope(|s| {
        let (tx, mut chunks, recycle) = pipeline::channel();
        let decode = s.spawn(move || {
            let dec = compression::decoder(reader, compression)?;
            pipeline::decode_loop(dec, tx, recycle, progress.as_deref().map(|p| p as _))
        });
        let applied = (|| {
            let mut ap = Applier::new(Root::new(root_fd), lowers, opts);
            let entries = ap.run(&mut chunks)?;
            chunks
                .drain()
                .map_err(|e| Error::invalid_argument(format!("read layer: {e}")))?;
            ap.finish()?;
            Ok::<_, Error>((entries, ap.implied_dirs(), ap.whiteouts()))
        })();
        drop(chunks);
        let decoded = decode
            .join()
            .map_err(|_| Error::internal("layer decode thread panicked"))?;
        match (applied, decoded) {
            (Ok((entries, implied_dirs, whiteouts)), Ok(sum)) => Ok(ApplyStats {
                diff_id: strata_content::digest::from_hex(&sum.sha256_hex),
                size: sum.size,
                entries,
                implied_dirs,
                whiteouts,
            }),
            (_, Err(e)) => Err(Error::invalid_argument(format!("decompress layer: {e}"))),
            (Err(e), _) => Err(e),
        }
    })
}

/// Per-layer apply state.
pub(crate) struct Applier<'o> {
    root: Root,
    lowers: Vec<OwnedFd>,
    opts: &'o ApplyOptions,
    /// Paths created by this layer (for opaque directories).
    unpacked: HashSet<Vec<u8>>,
    /// Directory times to set after all entries: (path, atime, mtime).
    dir_times: Vec<(Vec<u8>, meta::Time, meta::Time)>,
    /// Overlay mode: parents created with no lowerdir to copy metadata from.
    implied: Vec<Vec<u8>>,
    /// Overlay mode: the whiteout devices made.
    whiteouts: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl<'o> Applier<'o> {
    fn new(root: Root, lowers: Vec<OwnedFd>, opts: &'o ApplyOptions) -> Self {
        Applier {
            root,
            lowers,
            opts,
            unpacked: HashSet::new(),
            dir_times: Vec::new(),
            implied: Vec::new(),
            whiteouts: Vec::new(),
            buf: vec![0u8; 256 * 1024],
        }
    }

    fn run<R: Read>(&mut self, r: R) -> Result<u64> {
        let mut archive = tar::Archive::new(r);
        let mut n = 0u64;
        let entries = archive
            .entries()
            .map_err(|e| Error::invalid_argument(format!("read tar: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::invalid_argument(format!("invalid archive: {e}")))?;
            n += 1;
            self.entry(&mut entry)?;
        }
        Ok(n)
    }

    fn finish(&mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        for (path, atime, mtime) in times.iter().rev() {
            let comps = resolve::clean(path);
            let (base, parent) = comps.split_last().expect("non-root dir");
            let Some(pfd) = self
                .root
                .dir(parent, false, &mut |_, _| Ok(()))
                .map_err(|e| Error::io(format!("resolve {}", show(path)), e))?
            else {
                continue;
            };
            meta::set_times_at(&pfd, base, *atime, *mtime)
                .map_err(|e| Error::io(format!("set times of {}", show(path)), e))?;
        }
        if self.opts.sync_fs {
            rustix::fs::syncfs(self.root.fd())
                .map_err(|e| Error::io("syncfs after apply", e.into()))?;
        }
        Ok(())
    }
}

impl Applier<'_> {
    /// The implied directories that no later entry of the layer created explicitly.
    fn implied_dirs(&mut self) -> Vec<PathBuf> {
        let implied = std::mem::take(&mut self.implied);
        unique_paths(implied, |p| !self.unpacked.contains(p))
    }

    /// The whiteout devices made, each once.
    fn whiteouts(&mut self) -> Vec<PathBuf> {
        unique_paths(std::mem::take(&mut self.whiteouts), |_| true)
    }
}

/// The paths of `raw` that `keep` accepts, each once, in their first order.
fn unique_paths(raw: Vec<Vec<u8>>, keep: impl Fn(&Vec<u8>) -> bool) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut seen = HashSet::new();
    raw.into_iter()
        .filter(|p| keep(p) && seen.insert(p.clone()))
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(&p)))
        .collect()
}

/// Gives each directory of `dirs` (relative to `root`; see
/// [`ApplyStats::implied_dirs`]) the owner, mode, times and non-`trusted.*` xattrs of the
/// first of `lowers` (top first) that has it — what [`apply_layer`] in overlay mode does
/// when it is given the lowerdirs up front. Directories no longer in `root`, or in none
/// of `lowers`, are left as they are.
///
/// # Errors
/// `Io` when a directory cannot be opened or its metadata set.
///
/// # Example
/// ```no_run
/// # fn main() -> strata_content::Result<()> {
/// use std::path::{Path, PathBuf};
/// use strata_diff::{ApplyOptions, Compression, OverlayOptions, apply_layer, inherit_dirs};
/// let upper = Path::new("/snapshots/7/fs");
/// let opts = ApplyOptions { overlay: Some(OverlayOptions::default()), ..Default::default() };
/// let blob = std::fs::File::open("layer.tar.gz").expect("layer");
/// let stats = apply_layer(blob, Compression::Gzip, upper, &opts)?;
/// // … later, once the layers below exist:
/// inherit_dirs(upper, &[PathBuf::from("/snapshots/6/fs")], &stats.implied_dirs)?;
/// # Ok(()) }
/// ```
pub fn inherit_dirs(root: &Path, lowers: &[PathBuf], dirs: &[PathBuf]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if dirs.is_empty() || lowers.is_empty() {
        return Ok(());
    }
    let (root_fd, lower_fds) = open_dirs(root, lowers)?;
    for d in dirs {
        let rel = d.as_os_str().as_bytes();
        let fd = match resolve::open_in_root(
            &root_fd,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        ) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                continue;
            }
            Err(e) => return Err(Error::io(format!("open {}", d.display()), e)),
        };
        lower::copy_parent_info(&lower_fds, &fd, rel)
            .map_err(|e| Error::io(format!("copy metadata of {}", d.display()), e))?;
    }
    Ok(())
}

/// Removes the overlay whiteouts among `whiteouts` (from [`ApplyStats::whiteouts`]) of
/// the upperdir `root` that hide nothing in `lowers` (top first; none for a base layer):
/// its target is not in the lowerdirs' merged view, or a directory above it in `root`
/// is opaque. overlayfs shows a directory that only one layer has as it is, whiteouts
/// included (`ls` lists a name it cannot stat), so a whiteout a layer makes inside a
/// directory of its own, or of a path that no lower layer has, must go, as an apply
/// through an overlay mount would never have made it. Entries that are no longer 0:0
/// devices (a later entry replaced them) are left.
///
/// # Errors
/// `Io` when a directory cannot be opened or a whiteout removed.
pub fn prune_whiteouts(root: &Path, lowers: &[PathBuf], whiteouts: &[PathBuf]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if whiteouts.is_empty() {
        return Ok(());
    }
    let (root_fd, lower_fds) = open_dirs(root, lowers)?;
    for w in whiteouts {
        lower::prune_whiteout(&root_fd, &lower_fds, w.as_os_str().as_bytes())
            .map_err(|e| Error::io(format!("prune whiteout {}", root.join(w).display()), e))?;
    }
    Ok(())
}

/// Opens the upperdir `root` and the lowerdirs `lowers`.
fn open_dirs(root: &Path, lowers: &[PathBuf]) -> Result<(OwnedFd, Vec<OwnedFd>)> {
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("open {}", p.display()), e.into()))
    };
    let lower_fds = lowers.iter().map(|p| open(p)).collect::<Result<Vec<_>>>()?;
    Ok((open(root)?, lower_fds))
}

/// Lossy display of a tar path.
pub(crate) fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}
