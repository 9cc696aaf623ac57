//! Ingest locks: an exclusive `flock` on `ingest/<key>/lock`.
//!
//! `flock` locks belong to an open file description, so the lock excludes other
//! processes *and* other handles in this process (each opener opens the file anew). The
//! kernel releases it when the holder exits, so a crash never leaves a stale lock. After
//! locking, the holder checks that the path still names the file it locked (an `abort`
//! or `commit` may have removed the directory in between) and retries otherwise. The
//! holder writes its pid and the lock time into the file, for the `Unavailable` message.

use crate::{Error, Result};
use rustix::fs::{FlockOperation, flock};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A held ingest lock; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct IngestLock {
    _file: File,
}

/// Tries to lock the ingest directory `dir` (creating it), for the ingest named `what`.
///
/// # Errors
/// `Unavailable` when another holder has it; `Io` when the directory cannot be created.
pub(crate) fn try_lock(dir: &Path, what: &str) -> Result<IngestLock> {
    for _ in 0..100 {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create ingest directory {}", dir.display()), e))?;
        let path = lock_path(dir);
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // Removed between create_dir_all and open: try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("open lock {}", path.display()), e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Error::unavailable(format!(
                    "ref {what} locked{}",
                    holder_description(&mut file)
                )));
            }
            Err(e) => {
                return Err(Error::io(format!("lock {}", path.display()), e.into()));
            }
        }
        if !same_file(&file, &path) {
            continue;
        }
        let _ = file.set_len(0);
        let stamp = humantime::format_rfc3339_nanos(SystemTime::now());
        let _ = write!(&file, "{} {}", std::process::id(), stamp);
        return Ok(IngestLock { _file: file });
    }
    Err(Error::unavailable(format!(
        "ref {what}: ingest directory {} keeps disappearing",
        dir.display()
    )))
}

/// `dir/lock`.
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join("lock")
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn holder_description(file: &mut File) -> String {
    let mut s = String::new();
    if file.read_to_string(&mut s).is_err() {
        return String::new();
    }
    let mut parts = s.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(pid), Some(since)) => {
            let age = humantime::parse_rfc3339(since)
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| {
                    format!(
                        " for {}",
                        humantime::format_duration(std::time::Duration::from_millis(
                            d.as_millis() as u64
                        ))
                    )
                })
                .unwrap_or_default();
            format!("{age} (since {since}, by pid {pid})")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_unavailable_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("x");
        let l = try_lock(&d, "r1").unwrap();
        let e = try_lock(&d, "r1").unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        assert!(e.to_string().contains("ref r1 locked"), "{e}");
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(l);
        try_lock(&d, "r1").unwrap();
    }

    #[test]
    fn lock_survives_directory_removal_race() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("x");
        let l = try_lock(&d, "r").unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        // The old holder's file is gone: a new locker gets a fresh directory.
        let l2 = try_lock(&d, "r").unwrap();
        assert!(d.join("lock").exists());
        drop(l);
        drop(l2);
    }
}
