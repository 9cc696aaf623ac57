//! The local content store: blobs in the filesystem, metadata in SQLite.
//!
//! ```text
//! <root>/blobs/sha256/<hex>        committed blobs, read-only, shared by all namespaces
//! <root>/ingest/<key>/data         bytes of an in-progress ingest
//! <root>/ingest/<key>/lock         flock'ed by the ingest's writer (any process)
//! <root>/ingest/<key>/ref          "<namespace>/<ref>", for humans and garbage collection
//! <root>/metadata.db               SQLite (WAL): per-namespace blob records, ingest records
//! ```
//! `<key>` is the hex sha256 of `<namespace>/<ref>`, so refs are per namespace.
//!
//! Commit protocol: flush and `fsync` the data file → check size and digest (a mismatch
//! is `FailedPrecondition` and leaves the ingest resumable) → in one `BEGIN IMMEDIATE`
//! transaction: `AlreadyExists` if this namespace has the blob; else, unless another
//! namespace already put the bytes in place, `chmod 0444` + `rename` the data into
//! `blobs/sha256/<hex>` + `fsync` the directory; insert the namespace's blob record
//! (size, times, labels) and drop the ingest record → remove the ingest directory.
//! Deleting a blob removes the namespace's record and, in the same transaction, the
//! bytes once no namespace references them; so bytes and records never disagree for
//! another process, which takes the same database lock.
//!
//! Readers only see blobs through the database records, which exist only after the
//! bytes are complete, verified and in place: partial data is never visible.
//!
//! Buffering: a writer hashes every `write` at once but writes the bytes to the data file
//! in 1 MiB chunks (pipelined with the caller). The status another process (or another
//! handle) reads from disk therefore lags by at most one chunk until `close`/`commit`;
//! after a crash the ingest resumes at the data file's size, with the digest recomputed
//! from the file, so what is kept is always consistent.
//!
//! Sharing policy (containerd's default "shared"): a writer opened in one namespace with
//! an expected digest whose bytes another namespace committed starts at
//! `offset == total == size`; committing it just adds this namespace's record. Writing
//! to (or truncating) such a writer first copies the existing bytes into the ingest.

mod db;
mod lock;
mod writer;

#[cfg(test)]
mod tests;

use crate::digest::{self, Digest};
use crate::filters::{Adaptor, Filter, label_field};
use crate::labels::{self, Labels};
use crate::store::{
    Info, IngestManager, Ingester, Manager, Provider, ReaderAt, Status, Writer, WriterOpts,
};
use crate::{Error, Result, sqlite};
use async_trait::async_trait;
use oci_spec::image::Descriptor;
use rusqlite::Connection;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// The default namespace of a freshly opened store.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The local content store, bound to one namespace.
///
/// Cloning is cheap (an `Arc`); clones and [`LocalStore::namespace`] handles share one
/// database connection and may be used from many tasks. Several processes may open the
/// same root at once: ingests are locked with `flock` and metadata changes are SQLite
/// transactions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
/// use strata_content::{local::LocalStore, Ingester, Manager, WriterOpts, Labels};
/// let dir = tempfile::tempdir().unwrap();
/// let store = LocalStore::open(dir.path())?;
/// let mut w = store.writer(WriterOpts::new("hello")).await?;
/// w.write(b"hello").await?;
/// let d = w.digest();
/// w.commit(5, Some(d.clone()), Labels::new()).await?;
/// assert_eq!(store.info(&d).await?.size, 5);
/// assert!(store.namespace("other").info(&d).await.unwrap_err().is_not_found());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

pub(crate) struct Shared {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
    db: Mutex<Connection>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.shared.root)
            .field("namespace", &&*self.namespace)
            .finish()
    }
}

impl Shared {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.digest())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LocalStore {
    /// Opens the store at `root`, creating `blobs/sha256`, `ingest` and `metadata.db` as
    /// needed. The handle uses the namespace [`DEFAULT_NAMESPACE`].
    ///
    /// This does a little blocking I/O; call it at startup or in `spawn_blocking`.
    ///
    /// # Errors
    /// `Io` when a directory cannot be created; `Internal` when the database cannot be
    /// opened or migrated.
    pub fn open(root: impl AsRef<Path>) -> Result<LocalStore> {
        let root = root.as_ref().to_path_buf();
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("create content directory {}", d.display()), e))?;
        }
        let conn = db::open(&root.join("metadata.db"))?;
        Ok(LocalStore {
            shared: Arc::new(Shared {
                root,
                blobs,
                ingest,
                db: Mutex::new(conn),
            }),
            namespace: Arc::from(DEFAULT_NAMESPACE),
        })
    }

    /// A handle on the same store for namespace `ns` (any non-empty string; blob
    /// records, labels and ingest refs are per namespace, bytes are shared).
    pub fn namespace(&self, ns: &str) -> LocalStore {
        LocalStore {
            shared: self.shared.clone(),
            namespace: Arc::from(ns),
        }
    }

    /// This handle's namespace.
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The path of a committed blob's bytes (whether or not it exists). Read-only: never
    /// write to or rename it; it may be shared by several namespaces.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.shared.blob_path(digest)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let sh = self.shared.clone();
        let ns = self.namespace.clone();
        tokio::task::spawn_blocking(move || f(&sh, &ns))
            .await
            .map_err(|e| Error::internal("content store task failed").with_source(e))?
    }

    /// **Low level, for garbage collection.** The digests of every blob file on disk,
    /// whatever namespace (if any) references them, sorted.
    ///
    /// # Errors
    /// `Io` when `blobs/sha256` cannot be read.
    pub async fn blobs_on_disk(&self) -> Result<Vec<Digest>> {
        self.blocking(|sh, _| {
            let rd = std::fs::read_dir(&sh.blobs)
                .map_err(|e| Error::io(format!("read {}", sh.blobs.display()), e))?;
            let mut out = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(format!("read {}", sh.blobs.display()), e))?;
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Ok(d) = digest::parse(&format!("sha256:{name}")) {
                    out.push(d);
                }
            }
            out.sort_by_key(|d| d.to_string());
            Ok(out)
        })
        .await
    }

    /// **Low level, for garbage collection.** Every `(namespace, digest)` blob record.
    ///
    /// # Errors
    /// `Internal` on a database failure.
    pub async fn all_blob_records(&self) -> Result<Vec<(String, Digest)>> {
        self.blocking(|sh, _| db::all_blob_records(&sh.conn()))
            .await
    }

    /// **Low level, for garbage collection and checks.** Every blob record of every
    /// namespace with its info (size, labels …), as `(namespace, info)`.
    ///
    /// # Errors
    /// `Internal` on a database failure.
    pub async fn all_blob_infos(&self) -> Result<Vec<(String, Info)>> {
        let namespaces: std::collections::BTreeSet<String> = self
            .all_blob_records()
            .await?
            .into_iter()
            .map(|(ns, _)| ns)
            .collect();
        let mut out = Vec::new();
        for ns in namespaces {
            for info in self.namespace(&ns).walk(&[]).await? {
                out.push((ns.clone(), info));
            }
        }
        Ok(out)
    }

    /// **Low level, for garbage collection.** Every ingest of every namespace, as
    /// `(namespace, status)`.
    ///
    /// # Errors
    /// `Internal` on a database failure.
    pub async fn all_ingests(&self) -> Result<Vec<(String, Status)>> {
        self.blocking(|sh, _| {
            let rows = db::list_ingests(&sh.conn(), None)?;
            rows.into_iter()
                .map(|r| Ok((r.namespace.clone(), writer::status_of(sh, &r)?)))
                .collect()
        })
        .await
    }

    /// **Low level, for garbage collection.** Removes the bytes of `digest` if no
    /// namespace has a record of it. Returns whether a file was removed.
    ///
    /// # Errors
    /// `FailedPrecondition` when some namespace still references the digest; `Io` when
    /// the file cannot be removed.
    pub async fn remove_blob_bytes(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.clone();
        self.blocking(move |sh, _| {
            let conn = sh.conn();
            sqlite::write_tx(&conn, &format!("remove bytes of {digest}"), |tx| {
                if db::blob_referenced(tx, &digest)? {
                    return Err(Error::failed_precondition(format!(
                        "blob {digest} is still referenced by a namespace"
                    )));
                }
                let p = sh.blob_path(&digest);
                match std::fs::remove_file(&p) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(Error::io(format!("remove blob {}", p.display()), e)),
                }
            })
        })
        .await
    }

    /// **Low level, for checks.** The names of ingest directories that no ingest record
    /// owns (what [`LocalStore::remove_orphan_ingest_dirs`] would remove, minus those a
    /// writer holds), without removing anything.
    ///
    /// # Errors
    /// `Io` when `ingest/` cannot be read; `Internal` on a database failure.
    pub async fn orphan_ingest_dirs(&self) -> Result<Vec<String>> {
        self.blocking(|sh, _| {
            let recorded: std::collections::HashSet<String> = db::list_ingests(&sh.conn(), None)?
                .into_iter()
                .map(|r| r.key)
                .collect();
            let rd = match std::fs::read_dir(&sh.ingest) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(format!("read {}", sh.ingest.display()), e)),
            };
            let mut out = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(format!("read {}", sh.ingest.display()), e))?;
                let Some(key) = ent.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let busy = || lock::try_lock(&ent.path(), &key).is_err();
                if !recorded.contains(&key) && !busy() {
                    out.push(key);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// **Low level, for garbage collection.** Removes ingest directories that no ingest
    /// record owns: a process killed between creating an ingest's directory and recording
    /// it, or between a commit and the directory's removal, leaves one. A directory whose
    /// lock is held (a writer is at work) is skipped; the absence of a record is checked
    /// again under the lock. Returns how many were removed.
    ///
    /// # Errors
    /// `Io` when `ingest/` cannot be read or a directory cannot be removed; `Internal` on a
    /// database failure.
    pub async fn remove_orphan_ingest_dirs(&self) -> Result<usize> {
        self.blocking(|sh, _| {
            let recorded = |key: &str| -> Result<bool> {
                Ok(db::list_ingests(&sh.conn(), None)?
                    .iter()
                    .any(|r| r.key == key))
            };
            let rd = match std::fs::read_dir(&sh.ingest) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(format!("read {}", sh.ingest.display()), e)),
            };
            let mut removed = 0;
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(format!("read {}", sh.ingest.display()), e))?;
                let Some(key) = ent.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if recorded(&key)? {
                    continue;
                }
                let dir = ent.path();
                let _lock = match lock::try_lock(&dir, &key) {
                    Ok(l) => l,
                    Err(e) if e.is_unavailable() => continue,
                    Err(e) => return Err(e),
                };
                if recorded(&key)? {
                    continue;
                }
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| Error::io(format!("remove orphan ingest {}", dir.display()), e))?;
                removed += 1;
            }
            Ok(removed)
        })
        .await
    }

    fn not_found(digest: &Digest) -> Error {
        Error::not_found(format!("content {digest}"))
    }
}

/// `ReaderAt` over a blob file.
struct FileReaderAt {
    file: File,
    size: u64,
}

impl ReaderAt for FileReaderAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let max = ((self.size - offset) as usize).min(buf.len());
        self.file.read_at(&mut buf[..max], offset)
    }

    fn size(&self) -> u64 {
        self.size
    }
}

fn open_blob(sh: &Shared, ns: &str, digest: &Digest) -> Result<(File, u64)> {
    let info =
        db::get_blob(&sh.conn(), ns, digest)?.ok_or_else(|| LocalStore::not_found(digest))?;
    let p = sh.blob_path(digest);
    let file = File::open(&p).map_err(|e| Error::io(format!("open blob {}", p.display()), e))?;
    Ok((file, info.size))
}

#[async_trait]
impl Provider for LocalStore {
    async fn reader_at(&self, desc: &Descriptor) -> Result<Arc<dyn ReaderAt>> {
        let d = desc.digest().clone();
        let (file, size) = self.blocking(move |sh, ns| open_blob(sh, ns, &d)).await?;
        Ok(Arc::new(FileReaderAt { file, size }))
    }

    async fn reader(&self, desc: &Descriptor) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        let d = desc.digest().clone();
        let (file, _) = self.blocking(move |sh, ns| open_blob(sh, ns, &d)).await?;
        let mut f = tokio::fs::File::from_std(file);
        f.set_max_buf_size(1 << 20);
        Ok(Box::new(f))
    }
}

#[async_trait]
impl Ingester for LocalStore {
    async fn writer(&self, opts: WriterOpts) -> Result<Box<dyn Writer>> {
        let w = writer::LocalWriter::open(self.clone(), opts).await?;
        Ok(Box::new(w))
    }
}

struct InfoAdaptor<'a>(&'a Info);

impl Adaptor for InfoAdaptor<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "digest" => Some(self.0.digest.to_string()),
            "size" => Some(self.0.size.to_string()),
            "labels" => label_field(&self.0.labels, &path[1..]),
            _ => None,
        }
    }
}

struct StatusAdaptor<'a>(&'a Status);

impl Adaptor for StatusAdaptor<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "ref" => Some(self.0.reference.clone()),
            "expected" => self.0.expected.as_ref().map(|d| d.to_string()),
            _ => None,
        }
    }
}

/// Applies containerd's `Update` field paths to `current` labels.
fn updated_labels(current: &Labels, info: &Info, fieldpaths: &[String]) -> Result<Labels> {
    if fieldpaths.is_empty() {
        return Ok(info.labels.clone());
    }
    let mut out = current.clone();
    for fp in fieldpaths {
        if fp == "labels" {
            out = info.labels.clone();
        } else if let Some(key) = fp.strip_prefix("labels.") {
            match info.labels.get(key).filter(|v| !v.is_empty()) {
                Some(v) => {
                    out.insert(key.to_string(), v.clone());
                }
                None => {
                    out.remove(key);
                }
            }
        } else {
            return Err(Error::invalid_argument(format!(
                "cannot update field {fp:?} of content {}",
                info.digest
            )));
        }
    }
    Ok(out)
}

#[async_trait]
impl Manager for LocalStore {
    async fn info(&self, digest: &Digest) -> Result<Info> {
        let d = digest.clone();
        self.blocking(move |sh, ns| {
            db::get_blob(&sh.conn(), ns, &d)?.ok_or_else(|| LocalStore::not_found(&d))
        })
        .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let fieldpaths = fieldpaths.to_vec();
        self.blocking(move |sh, ns| {
            let conn = sh.conn();
            let what = format!("update content {}", info.digest);
            sqlite::write_tx(&conn, &what, |tx| {
                let mut cur = db::get_blob(tx, ns, &info.digest)?
                    .ok_or_else(|| LocalStore::not_found(&info.digest))?;
                let new = updated_labels(&cur.labels, &info, &fieldpaths)?;
                labels::validate(&new)?;
                let now = SystemTime::now();
                db::set_labels(tx, ns, &info.digest, &new, now)?;
                cur.labels = new;
                cur.updated_at = now;
                Ok(cur)
            })
        })
        .await
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        let all = self
            .blocking(|sh, ns| db::list_blobs(&sh.conn(), ns))
            .await?;
        Ok(all
            .into_iter()
            .filter(|i| filter.matches(&InfoAdaptor(i)))
            .collect())
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let d = digest.clone();
        self.blocking(move |sh, ns| {
            let conn = sh.conn();
            let what = format!("delete content {d}");
            let blob = sh.blob_path(&d);
            let trash = sh
                .blobs
                .join(format!(".deleted-{}-{}", d.digest(), rand::random::<u64>()));
            let moved = std::cell::Cell::new(false);
            let res = sqlite::write_tx(&conn, &what, |tx| {
                let (existed, left) = db::delete_blob(tx, ns, &d)?;
                if !existed {
                    return Err(LocalStore::not_found(&d));
                }
                if left == 0 {
                    match std::fs::rename(&blob, &trash) {
                        Ok(()) => moved.set(true),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(Error::io(format!("remove blob {}", blob.display()), e));
                        }
                    }
                }
                Ok(())
            });
            if moved.get() {
                if res.is_ok() {
                    let _ = std::fs::remove_file(&trash);
                } else {
                    let _ = std::fs::rename(&trash, &blob);
                }
            }
            res
        })
        .await
    }
}

#[async_trait]
impl IngestManager for LocalStore {
    async fn status(&self, reference: &str) -> Result<Status> {
        let r = reference.to_string();
        self.blocking(move |sh, ns| {
            let row = db::get_ingest(&sh.conn(), ns, &r)?
                .ok_or_else(|| Error::not_found(format!("ingest ref {r}")))?;
            writer::status_of(sh, &row)
        })
        .await
    }

    async fn list_statuses(&self, filters: &[String]) -> Result<Vec<Status>> {
        let filter = Filter::parse_all(filters)?;
        let all = self
            .blocking(|sh, ns| {
                let rows = db::list_ingests(&sh.conn(), Some(ns))?;
                rows.iter()
                    .map(|r| writer::status_of(sh, r))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|s| filter.matches(&StatusAdaptor(s)))
            .collect())
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        let r = reference.to_string();
        self.blocking(move |sh, ns| writer::abort(sh, ns, &r)).await
    }
}
