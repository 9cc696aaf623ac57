//! Small filesystem test helpers (after continuity's `fstest`): appliers that build or
//! change a tree, and a deep comparison of two trees.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One change to apply under a root (paths are relative to it).
#[derive(Debug, Clone)]
pub enum Op {
    /// `mkdir -p` then chmod to the mode.
    CreateDir(&'static str, u32),
    /// Write a file (truncating) with the contents, then chmod.
    CreateFile(&'static str, Vec<u8>, u32),
    /// Remove a file or empty directory.
    Remove(&'static str),
    /// `rm -rf`.
    RemoveAll(&'static str),
    /// Rename.
    Rename(&'static str, &'static str),
    /// `lchown`.
    Chown(&'static str, u32, u32),
    /// chmod.
    Chmod(&'static str, u32),
    /// `ln -s target path`.
    Symlink(&'static str, &'static str),
    /// `ln existing new`.
    Link(&'static str, &'static str),
    /// Set an xattr (no-follow).
    SetXattr(&'static str, &'static str, Vec<u8>),
}

/// A file `Op` with string contents.
pub fn file(path: &'static str, contents: &str, mode: u32) -> Op {
    Op::CreateFile(path, contents.as_bytes().to_vec(), mode)
}

/// Applies `ops` in order under `root`.
///
/// # Errors
/// The first failing operation's error, naming the path.
pub fn apply(root: &Path, ops: &[Op]) -> io::Result<()> {
    let ctx = |p: &str, e: io::Error| io::Error::new(e.kind(), format!("{p}: {e}"));
    for op in ops {
        match op {
            Op::CreateDir(p, mode) => {
                let full = root.join(p);
                std::fs::create_dir_all(&full).map_err(|e| ctx(p, e))?;
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| ctx(p, e))?;
            }
            Op::CreateFile(p, data, mode) => {
                let full = root.join(p);
                std::fs::write(&full, data).map_err(|e| ctx(p, e))?;
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| ctx(p, e))?;
            }
            Op::Remove(p) => {
                let full = root.join(p);
                if std::fs::symlink_metadata(&full)
                    .map_err(|e| ctx(p, e))?
                    .is_dir()
                {
                    std::fs::remove_dir(&full).map_err(|e| ctx(p, e))?;
                } else {
                    std::fs::remove_file(&full).map_err(|e| ctx(p, e))?;
                }
            }
            Op::RemoveAll(p) => {
                // As Go's os.RemoveAll: files too, and a missing path is fine.
                let full = root.join(p);
                let res = match std::fs::symlink_metadata(&full) {
                    Ok(md) if md.is_dir() => std::fs::remove_dir_all(&full),
                    Ok(_) => std::fs::remove_file(&full),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                res.map_err(|e| ctx(p, e))?
            }
            Op::Rename(a, b) => {
                std::fs::rename(root.join(a), root.join(b)).map_err(|e| ctx(a, e))?
            }
            Op::Chown(p, u, g) => std::os::unix::fs::lchown(root.join(p), Some(*u), Some(*g))
                .map_err(|e| ctx(p, e))?,
            Op::Chmod(p, mode) => {
                std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| ctx(p, e))?
            }
            Op::Symlink(target, p) => {
                std::os::unix::fs::symlink(target, root.join(p)).map_err(|e| ctx(p, e))?
            }
            Op::Link(old, new) => {
                std::fs::hard_link(root.join(old), root.join(new)).map_err(|e| ctx(new, e))?
            }
            Op::SetXattr(p, name, value) => {
                rustix::fs::lsetxattr(root.join(p), *name, value, rustix::fs::XattrFlags::empty())
                    .map_err(|e| ctx(p, e.into()))?
            }
        }
    }
    Ok(())
}

/// What [`check_directory_equal`] compares for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of char/block devices.
    pub rdev: u64,
    /// File contents (regular files) or link target (symlinks).
    pub data: Vec<u8>,
    /// Extended attributes (overlayfs' own `trusted.overlay.*` excluded).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(p: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(p, &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => return Err(e.into()),
    };
    for name in buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..])?;
        v.truncate(len);
        out.insert(name, v);
    }
    Ok(out)
}

/// Reads every path under `root` (relative path → [`Entry`]); the root itself is `""`.
///
/// # Errors
/// I/O errors naming the path.
pub fn read_tree(root: &Path) -> io::Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let md = std::fs::symlink_metadata(&full)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
        let ft = md.file_type();
        let data = if ft.is_file() {
            std::fs::read(&full)?
        } else if ft.is_symlink() {
            std::fs::read_link(&full)?
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        if ft.is_dir() {
            for e in std::fs::read_dir(&full)? {
                stack.push(rel.join(e?.file_name()));
            }
        }
        out.insert(
            rel,
            Entry {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                rdev: if ft.is_file() || ft.is_dir() || ft.is_symlink() {
                    0
                } else {
                    md.rdev()
                },
                data,
                xattrs: xattrs(&full)?,
            },
        );
    }
    Ok(out)
}

/// Checks that trees `a` and `b` hold the same paths with the same type, mode, owner,
/// contents, link targets, device numbers and xattrs (continuity's
/// `CheckDirectoryEqual`; times, directory sizes and the roots themselves are not
/// compared).
///
/// # Errors
/// A message listing the first differences.
pub fn check_directory_equal(a: &Path, b: &Path) -> Result<(), String> {
    let mut ta = read_tree(a).map_err(|e| format!("read {}: {e}", a.display()))?;
    let mut tb = read_tree(b).map_err(|e| format!("read {}: {e}", b.display()))?;
    ta.remove(Path::new(""));
    tb.remove(Path::new(""));
    let mut diffs = Vec::new();
    for (p, ea) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("{}: only in {}", p.display(), a.display())),
            Some(eb) if eb != ea => diffs.push(format!("{}: {ea:?} != {eb:?}", p.display())),
            _ => {}
        }
    }
    for p in tb.keys().filter(|p| !ta.contains_key(*p)) {
        diffs.push(format!("{}: only in {}", p.display(), b.display()));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        diffs.truncate(10);
        Err(diffs.join("\n"))
    }
}
