//! OCI whiteouts: `.wh.<name>` deletes `<name>` from lower layers, `.wh..wh..opq` makes its
//! directory opaque, other `.wh..wh.*` entries are ignored. In overlay mode they become a
//! 0:0 character device and `trusted.overlay.opaque=y`.

use super::resolve::join;
use super::{Applier, show};
use crate::fsutil;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use std::collections::HashSet;
use strata_content::{Error, Result};

/// The prefix of whiteout names.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The prefix of whiteout meta entries.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";

impl Applier<'_> {
    /// Applies the whiteout `parent/.wh.<wh>` (`wh` is the name after `.wh.`).
    pub(super) fn whiteout(&mut self, parent: &[&[u8]], wh: &[u8], path: &[u8]) -> Result<()> {
        let overlay = self.opts.overlay.is_some();
        if wh == b".wh..opq" {
            return self.opaque(parent, path, overlay);
        }
        if wh.starts_with(b".wh.") {
            return Ok(()); // other meta entries are ignored
        }
        if wh.is_empty() || wh == b"." || wh == b".." {
            return Err(Error::invalid_argument(format!(
                "invalid archive: whiteout {} escapes its directory",
                show(path)
            )));
        }
        let mut full = join(parent);
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(wh);
        let Some(pfd) = self
            .parent(parent, overlay)
            .map_err(|e| e.context(format!("whiteout {}", show(path))))?
        else {
            return Ok(()); // parent does not exist: nothing to delete
        };
        self.remove(&pfd, wh, &full)?;
        if overlay {
            rustix::fs::mknodat(
                pfd.as_fd(),
                wh,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| Error::io(format!("create overlay whiteout {}", show(&full)), e.into()))?;
            rustix::fs::chownat(
                pfd.as_fd(),
                wh,
                Some(rustix::fs::Uid::ROOT),
                Some(rustix::fs::Gid::ROOT),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::io(format!("chown overlay whiteout {}", show(&full)), e.into()))?;
            self.whiteouts.push(full);
        }
        Ok(())
    }

    fn opaque(&mut self, parent: &[&[u8]], path: &[u8], overlay: bool) -> Result<()> {
        let dir = join(parent);
        let Some(dfd) = self
            .parent(parent, overlay)
            .map_err(|e| e.context(format!("opaque marker {}", show(path))))?
        else {
            return Ok(());
        };
        if overlay {
            return rustix::fs::fsetxattr(
                &*dfd,
                "trusted.overlay.opaque",
                b"y",
                XattrFlags::empty(),
            )
            .map_err(|e| Error::io(format!("mark {} opaque", show(&dir)), e.into()));
        }
        // Keep what this layer unpacked (and their ancestors); remove the rest.
        let mut keep: HashSet<Vec<u8>> = HashSet::new();
        let prefix = if dir.is_empty() {
            Vec::new()
        } else {
            [dir.as_slice(), b"/"].concat()
        };
        for p in &self.unpacked {
            if let Some(rest) = p.strip_prefix(prefix.as_slice()) {
                let mut acc = prefix.clone();
                for (i, c) in rest.split(|b| *b == b'/').enumerate() {
                    if i > 0 {
                        acc.push(b'/');
                    }
                    acc.extend_from_slice(c);
                    keep.insert(acc.clone());
                }
            }
        }
        let dfd: &OwnedFd = &dfd;
        let structural = prune(dfd, &prefix, &keep)
            .map_err(|e| Error::io(format!("apply opaque directory {}", show(&dir)), e))?;
        if structural {
            self.root.invalidate();
        }
        Ok(())
    }
}

/// Removes every child of `dir` (whose path is `prefix`, ending in `/` unless the root)
/// not in `keep`, recursing into kept directories. Returns whether any dir or symlink
/// was removed.
fn prune(dir: &OwnedFd, prefix: &[u8], keep: &HashSet<Vec<u8>>) -> std::io::Result<bool> {
    let mut structural = false;
    for name in fsutil::list_dir(dir)? {
        let p = [prefix, name.as_slice()].concat();
        if !keep.contains(&p) {
            structural |= fsutil::remove_all(dir, &name)?;
            continue;
        }
        let st = rustix::fs::statat(dir.as_fd(), name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat(
                dir.as_fd(),
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            structural |= prune(&sub, &[p.as_slice(), b"/"].concat(), keep)?;
        }
    }
    Ok(structural)
}
