//! The unix socket a server listens on: [`bind`] refuses a socket a live server holds,
//! replaces the stale file of a dead one, sets the file's mode, and [`SocketFile`] removes
//! the file when the server is done.

use std::io::ErrorKind as IoKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strata_content::{Error, Result};
use tokio::net::UnixListener;

/// The socket file of a listening server; dropping it removes the file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != IoKind::NotFound
        {
            tracing::warn!("remove socket {}: {e}", self.path.display());
        }
    }
}

/// Binds a unix socket at `path` with file mode `mode` (for example `0o660`). Must be
/// called inside a tokio runtime.
///
/// # Errors
/// - `AlreadyExists` when a live server accepts connections on `path`, or `path` exists
///   and is not a socket.
/// - `Io` when the stale file cannot be removed, or binding or `chmod` fails.
///
/// # Example
/// ```no_run
/// # async fn demo() -> strata_content::Result<()> {
/// let (listener, file) = strata_grpc::socket::bind("/run/strata.sock".as_ref(), 0o660)?;
/// # Ok(()) }
/// ```
pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile)> {
    remove_stale(path)?;
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::io(format!("bind unix socket {}", path.display()), e))?;
    let file = SocketFile {
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {mode:o} unix socket {}", path.display()), e))?;
    Ok((listener, file))
}

/// Removes `path` if it is the socket of a server that no longer accepts connections.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat socket path {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::already_exists(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::already_exists(format!(
            "socket {} is held by a live server",
            path.display()
        ))),
        Err(e) if e.kind() == IoKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e)),
        Err(e) => Err(Error::io(format!("probe socket {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_socket_is_refused_stale_one_replaced_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sock");
        let (live, file) = bind(&p, 0o660).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let e = bind(&p, 0o660).unwrap_err();
        assert!(
            e.is_already_exists() && e.message().contains("live server"),
            "{e}"
        );
        // A dead server: the listener is gone, the file stays.
        drop(live);
        std::mem::forget(file);
        let (_l, file) = bind(&p, 0o600).unwrap();
        drop(file);
        assert!(!p.exists());
    }

    #[tokio::test]
    async fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"keep").unwrap();
        assert!(bind(&p, 0o660).unwrap_err().is_already_exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
    }
}
