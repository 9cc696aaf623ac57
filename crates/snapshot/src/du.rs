//! Disk usage of a directory tree (continuity's `fs.DiskUsage`).

use crate::snapshotter::Usage;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use strata_content::{Error, Result};

/// The allocated bytes and distinct inodes under `root` (hardlinks counted once; the
/// root itself included).
///
/// # Errors
/// `Io`/`NotFound` naming the path that could not be read.
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)
            .map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
        if seen.insert((md.dev(), md.ino())) {
            usage.inodes += 1;
            usage.size += md.blocks() * 512;
        }
        if md.is_dir() {
            let rd =
                std::fs::read_dir(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
            for e in rd {
                let e = e.map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                stack.push(e.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hardlinks_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("c")).unwrap();
        let u = disk_usage(d.path()).unwrap();
        assert_eq!(u.inodes, 3); // root, a(=b), c
        assert!(u.size >= 10_000, "{u:?}");
        assert!(
            disk_usage(&d.path().join("nope"))
                .unwrap_err()
                .is_not_found()
        );
    }
}
